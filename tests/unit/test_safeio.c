/* SPDX-License-Identifier: MIT */
/*
 * test_safeio.c - the single-file safe operations against a real bumbad:
 * write (new, replace, mode and owner kept, verify, no sync), read (with
 * the MONITORED log), delete, move (same and across filesystems), restore
 * (last change and --at), backups (hard link and copy here; reflink on a
 * loop-mounted XFS image), authority (-EPERM without the lock), and every
 * error that must not damage: ENOSPC on a small tmpfs, a read-only
 * filesystem, EACCES, paths outside the workspace, a directory where a file
 * was expected, symlinks on the way.  Each runs on io_uring and on the
 * plain-syscall fallback (BUMBA_NO_IO_URING=1).
 *
 * Tests that need root (mounts, chown, another uid) skip without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"
#include "unit_bumbad.h"
#include "safeio.h"

static char dir[64], sock_path[128], ws[128];
static pid_t sup, xfs_sup; /* xfs_sup: the reflink test's own bumbad */
static struct bumba *A;	   /* io_uring */
static struct bumba *F;	   /* fallback (BUMBA_NO_IO_URING=1 before its first op) */
static struct bumba *handles[2];

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static pid_t start_bumbad(const char *sock, const char *workspace, const char *logname)
{
	char log[PATH_MAX];

	snprintf(log, sizeof(log), "%s/%s", dir, logname);
	return unit_start_bumbad(sock, workspace, log, NULL);
}

static void stop_bumbad(pid_t pid)
{
	unit_stop_bumbad(pid, SIGTERM);
}

static const char *P(const char *rel)
{
	static char buf[8][PATH_MAX];
	static int k;
	char *out = buf[k++ & 7];

	snprintf(out, PATH_MAX, "%s/%s", ws, rel);
	return out;
}

static void put(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
}

/* Whole file as a string ("" if missing: use exists()). */
static char *get(const char *path)
{
	static char buf[4][1 << 16];
	static int k;
	char *out = buf[k++ & 3];
	int fd = open(path, O_RDONLY);
	ssize_t n = 0;

	out[0] = '\0';
	if (fd < 0)
		return out;
	n = read(fd, out, sizeof(buf[0]) - 1);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	return out;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Temporaries (".x.bumba-<token>.tmp") left in directory d. */
static int temps_in(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *e;
	int n = 0;

	if (!dd)
		return 0;
	while ((e = readdir(dd)))
		n += bumba_sio_parse_tmp(e->d_name, NULL, NULL);
	closedir(dd);
	return n;
}

static int lock(struct bumba *b, const char *path, struct bumba_lock *lk)
{
	return bumba_lock_acquire(b, path, BUMBA_EXCLUSIVE, 2000, BUMBA_PRIO_NORMAL, lk);
}

static bool is_root(void)
{
	return geteuid() == 0;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int group_setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/bumba-safeio.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	chmod(dir, 0755);
	snprintf(sock_path, sizeof(sock_path), "%s/bumba.sock", dir);
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	mkdir(ws, 0755);
	sup = start_bumbad(sock_path, ws, "bumbad.log");
	if (sup <= 0)
		return -1;
	unsetenv("BUMBA_NO_IO_URING");
	if (bumba_open(sock_path, NULL, &A))
		goto fail;
	setenv("BUMBA_NO_IO_URING", "1", 1);
	if (bumba_open(sock_path, NULL, &F))
		goto fail;
	/* The env is read when a handle makes its ring: F's first operation. */
	size_t n;
	char c;
	bumba_safe_read(F, "nothing-here", &c, 1, &n);
	unsetenv("BUMBA_NO_IO_URING");
	handles[0] = A;
	handles[1] = F;
	return 0;
fail:
	/* cmocka skips the group teardown when the setup fails. */
	print_message("group setup: cannot register with bumbad (see %s/bumbad.log)\n", dir);
	kill(sup, SIGTERM);
	waitpid(sup, NULL, 0);
	sup = 0;
	return -1;
}

static int group_teardown(void **state)
{
	bumba_close(A);
	bumba_close(F);
	if (sup > 0)
		stop_bumbad(sup);
	if (xfs_sup > 0)
		stop_bumbad(xfs_sup);
	/* Whatever a failed test left mounted goes before the directory. */
	if (getenv("BUMBA_TEST_KEEP")) { /* a look at bumbad.log and the tree */
		print_message("kept %s\n", dir);
		return 0;
	}
	sh("for m in $(awk '$2 ~ \"^%s/\" {print $2}' /proc/mounts | sort -r); do umount -l "
	   "\"$m\"; done; "
	   "rm -rf %s",
	   dir, dir);
	return 0;
}

/* ------------------------------------------------------------------ */
/* write                                                               */

static void test_write_basic(void **state)
{
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock lk;
		char name[32];
		snprintf(name, sizeof(name), "basic%d.txt", h);
		const char *p = P(name);
		mode_t um = umask(022);
		umask(um);

		assert_int_equal(lock(b, p, &lk), 0);
		assert_int_equal(bumba_safe_write(b, p, "hello", 5, 0), 0);
		assert_string_equal(get(p), "hello");
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0666 & ~um);
		/* Replace, relative path, empty content, big content. */
		assert_int_equal(bumba_safe_write(b, name, "world!", 6, 0), 0);
		assert_string_equal(get(p), "world!");
		assert_int_equal(bumba_safe_write(b, p, "", 0, 0), 0);
		assert_string_equal(get(p), "");
		size_t big = 3u << 20;
		char *buf = malloc(big);
		for (size_t i = 0; i < big; i++)
			buf[i] = (char)(i * 7 + 3);
		assert_int_equal(bumba_safe_write(b, p, buf, big, BUMBA_WRITE_VERIFY), 0);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_size, (off_t)big);
		free(buf);
		assert_int_equal(temps_in(ws), 0);
		assert_int_equal(bumba_safe_write(b, p, "x", 1, 0x80), -EINVAL);
		assert_int_equal(bumba_safe_write(b, p, NULL, 1, 0), -EINVAL);
		bumba_lock_release(b, &lk);
	}
	struct bumba_safeio_stats sa, sf;
	bumba_safeio_stats(A, &sa);
	bumba_safeio_stats(F, &sf);
	assert_true(sa.ring);
	assert_true(sa.ring_ops > 0);
	assert_false(sf.ring);
	assert_int_equal(sf.ring_ops, 0);
	assert_true(sf.sync_ops > 0);
}

static void test_write_mode_owner(void **state)
{
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock lk;
		struct stat st;
		char name[32];
		snprintf(name, sizeof(name), "mode%d", h);
		const char *p = P(name);

		put(p, "old");
		/* Group-writable: the umask (022) would take it away. */
		chmod(p, 0664);
		assert_int_equal(lock(b, p, &lk), 0);
		assert_int_equal(bumba_safe_write(b, p, "new", 3, 0), 0);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0664);
		chmod(p, 0600);
		assert_int_equal(bumba_safe_write(b, p, "newer", 5, BUMBA_WRITE_NOSYNC), 0);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
		if (is_root()) {
			assert_int_equal(chown(p, 1234, 5678), 0);
			chmod(p, 0640);
			assert_int_equal(bumba_safe_write(b, p, "owned", 5, BUMBA_WRITE_VERIFY), 0);
			assert_int_equal(stat(p, &st), 0);
			assert_int_equal(st.st_uid, 1234);
			assert_int_equal(st.st_gid, 5678);
			assert_int_equal(st.st_mode & 07777, 0640);
			assert_string_equal(get(p), "owned");
		}
		bumba_lock_release(b, &lk);
	}
	assert_int_equal(temps_in(ws), 0);
}

static void test_authority(void **state)
{
	struct bumba *other;
	struct bumba_lock lk, olk;
	const char *p = P("auth.txt");
	uint64_t tid;

	put(p, "original");
	/* No lock at all. */
	assert_int_equal(bumba_safe_write(A, p, "x", 1, 0), -EPERM);
	assert_int_equal(bumba_safe_delete(A, p, 0), -EPERM);
	/* A shared lock is not enough. */
	assert_int_equal(bumba_lock_acquire(A, p, BUMBA_SHARED, 1000, BUMBA_PRIO_NORMAL, &lk), 0);
	assert_int_equal(bumba_safe_write(A, p, "x", 1, 0), -EPERM);
	bumba_lock_release(A, &lk);
	/* Another agent's exclusive lock. */
	assert_int_equal(bumba_open(sock_path, NULL, &other), 0);
	assert_int_equal(lock(other, p, &olk), 0);
	assert_int_equal(bumba_safe_write(A, p, "x", 1, 0), -EPERM);
	bumba_lock_release(other, &olk);
	bumba_close(other);
	assert_string_equal(get(p), "original");
	/* An EXCLUSIVE territory over the directory is. */
	mkdir(P("terr"), 0755);
	const char *paths[] = {P("terr")};
	assert_int_equal(bumba_territory_claim(A, "t", paths, 1, BUMBA_TERRITORY_EXCLUSIVE, &tid,
					       NULL, 0, NULL),
			 0);
	assert_int_equal(bumba_safe_write(A, P("terr/in.txt"), "in", 2, 0), 0);
	assert_int_equal(bumba_safe_write(A, P("terr/in.txt"), "in2", 3, BUMBA_WRITE_BACKUP), 0);
	assert_string_equal(get(P("terr/in.txt")), "in2");
	assert_int_equal(bumba_safe_write(F, P("terr/in.txt"), "no", 2, 0), -EPERM);
	assert_int_equal(bumba_territory_release(A, tid), 0);
	assert_int_equal(bumba_safe_write(A, P("terr/in.txt"), "x", 1, 0), -EPERM);
	assert_string_equal(get(P("terr/in.txt")), "in2");
}

static void test_bad_paths(void **state)
{
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock lk;

		assert_int_equal(bumba_safe_write(b, "/etc/passwd-bumba", "x", 1, 0), -EINVAL);
		assert_int_equal(bumba_safe_write(b, "../escape", "x", 1, 0), -EINVAL);
		assert_int_equal(bumba_safe_write(b, "", "x", 1, 0), -EINVAL);
		assert_int_equal(bumba_safe_write(b, ws, "x", 1, 0), -EISDIR);
		assert_int_equal(bumba_safe_write(b, P(".bumba/backups/x"), "x", 1, 0), -EPERM);
		/* A directory where a file was expected. */
		mkdir(P("adir"), 0755);
		assert_int_equal(lock(b, P("adir"), &lk), 0);
		assert_int_equal(bumba_safe_write(b, P("adir"), "x", 1, BUMBA_WRITE_BACKUP),
				 -EISDIR);
		assert_int_equal(bumba_safe_write(b, P("adir"), "x", 1, 0), -EISDIR);
		assert_int_equal(bumba_safe_delete(b, P("adir"), 0), -EISDIR);
		bumba_lock_release(b, &lk);
		assert_true(exists(P("adir")));
		/* A missing parent; a file on the way. */
		assert_int_equal(lock(b, P("nodir/x"), &lk), 0);
		assert_int_equal(bumba_safe_write(b, P("nodir/x"), "x", 1, 0), -ENOENT);
		bumba_lock_release(b, &lk);
		put(P("plain"), "p");
		assert_int_equal(lock(b, P("plain/x"), &lk), 0);
		assert_int_equal(bumba_safe_write(b, P("plain/x"), "x", 1, 0), -ENOTDIR);
		bumba_lock_release(b, &lk);
		/* Symlinks: the target, and a directory on the way. */
		unlink(P("link"));
		assert_int_equal(symlink("plain", P("link")), 0);
		assert_int_equal(lock(b, P("link"), &lk), 0);
		assert_int_equal(bumba_safe_write(b, P("link"), "x", 1, 0), -ELOOP);
		bumba_lock_release(b, &lk);
		unlink(P("dlink"));
		assert_int_equal(symlink("/etc", P("dlink")), 0);
		assert_int_equal(lock(b, P("dlink/passwd"), &lk), 0);
		assert_int_equal(bumba_safe_write(b, P("dlink/passwd"), "x", 1, 0), -ELOOP);
		bumba_lock_release(b, &lk);
		assert_string_equal(get(P("plain")), "p");
	}
	assert_int_equal(temps_in(ws), 0);
}

/* A tmpfs of size KiB at ws/<name>, root only. */
static bool small_tmpfs(const char *name, const char *opts)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", ws, name);
	mkdir(p, 0755);
	return mount("tmpfs", p, "tmpfs", 0, opts) == 0;
}

static void test_enospc(void **state)
{
	if (!is_root())
		skip();
	if (!small_tmpfs("small", "size=256k,mode=0755"))
		skip();
	size_t big = 1u << 20;
	char *buf = malloc(big);
	memset(buf, 'z', big);
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock lk;
		char name[32];
		snprintf(name, sizeof(name), "small/f%d", h);
		const char *p = P(name);
		put(p, "precious");
		assert_int_equal(lock(b, p, &lk), 0);
		/* Partly written, then full: a short write on io_uring. */
		assert_int_equal(bumba_safe_write(b, p, buf, big, 0), -ENOSPC);
		assert_string_equal(get(p), "precious");
		assert_int_equal(temps_in(P("small")), 0);
		assert_int_equal(bumba_safe_write(b, p, buf, big, BUMBA_WRITE_VERIFY), -ENOSPC);
		assert_int_equal(bumba_safe_write(b, p, buf, big, BUMBA_WRITE_NOSYNC), -ENOSPC);
		assert_string_equal(get(p), "precious");
		assert_int_equal(temps_in(P("small")), 0);
		/* The rest still works. */
		assert_int_equal(bumba_safe_write(b, p, "fits", 4, 0), 0);
		assert_string_equal(get(p), "fits");
		bumba_lock_release(b, &lk);
	}
	/* Full to the last byte: even the first write fails. */
	int fd = open(P("small/filler"), O_WRONLY | O_CREAT, 0644);
	while (write(fd, buf, 4096) > 0)
		;
	close(fd);
	struct bumba_lock lk;
	assert_int_equal(lock(A, P("small/f0"), &lk), 0);
	assert_int_equal(bumba_safe_write(A, P("small/f0"), buf, 8192, 0), -ENOSPC);
	assert_string_equal(get(P("small/f0")), "fits");
	bumba_lock_release(A, &lk);
	assert_int_equal(temps_in(P("small")), 0);
	free(buf);
	umount2(P("small"), MNT_DETACH);
}

static void test_erofs(void **state)
{
	if (!is_root())
		skip();
	if (!small_tmpfs("ro", "size=1m,mode=0755"))
		skip();
	put(P("ro/f"), "keep me");
	put(P("ro/g"), "and me");
	assert_int_equal(mount(NULL, P("ro"), NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock lk, lk2, lk3;
		assert_int_equal(lock(b, P("ro/f"), &lk), 0);
		assert_int_equal(lock(b, P("ro/g"), &lk2), 0);
		assert_int_equal(lock(b, P("ro/new"), &lk3), 0);
		assert_int_equal(bumba_safe_write(b, P("ro/f"), "x", 1, 0), -EROFS);
		assert_int_equal(bumba_safe_write(b, P("ro/new"), "x", 1, 0), -EROFS);
		assert_int_equal(bumba_safe_move(b, P("ro/f"), P("ro/g"), 0), -EEXIST);
		/* The backup itself is fine (the store is elsewhere): the
		 * write still fails, and its backup is dropped. */
		assert_int_equal(bumba_safe_write(b, P("ro/f"), "x", 1, BUMBA_WRITE_BACKUP),
				 -EROFS);
		bumba_lock_release(b, &lk);
		bumba_lock_release(b, &lk2);
		bumba_lock_release(b, &lk3);
		assert_string_equal(get(P("ro/f")), "keep me");
	}
	umount2(P("ro"), MNT_DETACH);
}

/* As another uid: a forked child acting as its agent (the socket is
 * root's alone, so it cannot register one of its own). */
static void test_eacces(void **state)
{
	struct bumba_lock lk;

	if (!is_root())
		skip();
	mkdir(P("locked"), 0755); /* root's: nobody may create in it */
	put(P("locked/f"), "root's");
	chmod(P("locked/f"), 0666); /* writable in place, not replaceable */
	assert_int_equal(lock(A, P("locked/f"), &lk), 0);
	for (int h = 0; h < 2; h++) {
		pid_t pid = fork();
		if (pid == 0) {
			if (setgid(65534) || setuid(65534))
				_exit(2);
			if (h)
				setenv("BUMBA_NO_IO_URING", "1", 1);
			int rc = bumba_safe_write(A, P("locked/f"), "x", 1, 0);
			if (rc != -EACCES) {
				fprintf(stderr, "safe_write as nobody: %d\n", rc);
				_exit(5);
			}
			rc = bumba_safe_delete(A, P("locked/f"), 0);
			if (rc != -EACCES) {
				fprintf(stderr, "safe_delete as nobody: %d\n", rc);
				_exit(6);
			}
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	bumba_lock_release(A, &lk);
	assert_string_equal(get(P("locked/f")), "root's");
	assert_int_equal(temps_in(P("locked")), 0);
}

/* ------------------------------------------------------------------ */
/* backups, read, delete, move, restore                                */

struct collect {
	int n;
	char last[PATH_MAX];
	char ops[8][16];
};

static int collect_cb(void *ctx, const struct bumba_backup_version *v)
{
	struct collect *c = ctx;

	if (c->n < 8)
		snprintf(c->ops[c->n], 16, "%s", v->op);
	c->n++;
	snprintf(c->last, sizeof(c->last), "%s", v->file);
	return 0;
}

static int versions(const char *path, struct collect *c)
{
	const struct bumba_seg *s = bumba_handle_seg(A);
	char norm[PATH_MAX];

	memset(c, 0, sizeof(*c));
	bumba_path_normalize(A, path, norm, sizeof(norm));
	return bumba_backup_list(s->root_ptrs, s->hdr->n_roots, norm, collect_cb, c);
}

static void test_backup_methods(void **state)
{
	struct bumba_lock lk;
	struct bumba_safeio_stats s0, s1;
	struct collect c;
	const char *p = P("bk.txt");

	put(p, "v1");
	assert_int_equal(lock(A, p, &lk), 0);
	bumba_safeio_stats(A, &s0);
	/* A single-link file on ext4/tmpfs: kept by a hard link. */
	assert_int_equal(bumba_safe_write(A, p, "v2", 2, BUMBA_WRITE_BACKUP), 0);
	bumba_safeio_stats(A, &s1);
	assert_int_equal(s1.link + s1.clone, s0.link + s0.clone + 1);
	assert_int_equal(versions(p, &c), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ops[0], "write");
	assert_string_equal(get(c.last), "v1");
	/* A second name: the old inode may change later, so a copy. */
	assert_int_equal(link(p, P("bk.hard")), 0);
	assert_int_equal(bumba_safe_write(A, p, "v3", 2, BUMBA_WRITE_BACKUP), 0);
	bumba_safeio_stats(A, &s0);
	assert_int_equal(s0.copy, s1.copy + (s1.clone == s0.clone));
	assert_int_equal(versions(p, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(get(c.last), "v2");
	assert_string_equal(get(P("bk.hard")), "v2"); /* the other name keeps the old inode */
	/* The backup keeps the mode. */
	struct stat st;
	chmod(p, 0604);
	assert_int_equal(bumba_safe_write(A, p, "v4", 2, BUMBA_WRITE_BACKUP), 0);
	assert_int_equal(versions(p, &c), 0);
	assert_int_equal(stat(c.last, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0604);
	bumba_lock_release(A, &lk);

	/* Across filesystems (a tmpfs in the workspace, the store on the
	 * root's filesystem): a copy. */
	if (is_root() && small_tmpfs("other", "size=1m,mode=0755")) {
		put(P("other/f"), "tmpfs-old");
		assert_int_equal(lock(A, P("other/f"), &lk), 0);
		bumba_safeio_stats(A, &s0);
		assert_int_equal(
			bumba_safe_write(A, P("other/f"), "tmpfs-new", 9, BUMBA_WRITE_BACKUP), 0);
		bumba_safeio_stats(A, &s1);
		assert_int_equal(s1.copy, s0.copy + 1);
		assert_int_equal(versions(P("other/f"), &c), 0);
		assert_string_equal(get(c.last), "tmpfs-old");
		bumba_lock_release(A, &lk);
		umount2(P("other"), MNT_DETACH);
	}
}

static void test_read(void **state)
{
	char buf[64];
	size_t n = 0;

	put(P("r.txt"), "read me");
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		assert_int_equal(bumba_safe_read(b, P("r.txt"), buf, sizeof(buf), &n), 0);
		assert_int_equal(n, 7);
		assert_memory_equal(buf, "read me", 7);
		assert_int_equal(bumba_safe_read(b, P("r.txt"), buf, 3, &n), -ENOBUFS);
		assert_int_equal(n, 7);
		assert_int_equal(bumba_safe_read(b, P("missing"), buf, sizeof(buf), &n), -ENOENT);
		assert_int_equal(bumba_safe_read(b, ws, buf, sizeof(buf), &n), -EISDIR);
		assert_int_equal(bumba_safe_read(b, "/etc/hostname", buf, sizeof(buf), &n),
				 -EINVAL);
	}
	/* Inside a MONITORED territory: logged. */
	uint64_t tid;
	mkdir(P("mon"), 0755);
	put(P("mon/watched"), "w");
	const char *paths[] = {P("mon")};
	assert_int_equal(bumba_territory_claim(F, "watch", paths, 1, BUMBA_TERRITORY_MONITORED,
					       &tid, NULL, 0, NULL),
			 0);
	assert_int_equal(bumba_safe_read(A, P("mon/watched"), buf, sizeof(buf), &n), 0);
	char *log = get(P(".bumba/access.log"));
	assert_non_null(strstr(log, "\"op\":\"read\""));
	assert_non_null(strstr(log, "mon/watched"));
	assert_non_null(strstr(log, bumba_agent_id(A)));
	assert_int_equal(bumba_territory_release(F, tid), 0);
}

static void test_delete_restore(void **state)
{
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock lk;
		struct collect c;
		char name[32];
		snprintf(name, sizeof(name), "del%d", h);
		const char *p = P(name);

		put(p, "to be deleted");
		chmod(p, 0640);
		assert_int_equal(lock(b, p, &lk), 0);
		assert_int_equal(bumba_safe_delete(b, p, 0), 0);
		assert_false(exists(p));
		assert_int_equal(bumba_safe_delete(b, p, 0), -ENOENT);
		assert_int_equal(versions(p, &c), 0);
		assert_int_equal(c.n, 1);
		assert_string_equal(c.ops[0], "delete");
		assert_string_equal(get(c.last), "to be deleted");
		/* Undo: back, with its mode. */
		assert_int_equal(bumba_safe_restore(b, p, -1, 0), 0);
		assert_string_equal(get(p), "to be deleted");
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0640);
		bumba_lock_release(b, &lk);
		assert_int_equal(bumba_safe_restore(b, p, -1, 0), -EPERM);
	}
	assert_int_equal(temps_in(ws), 0);
}

static void test_restore_at(void **state)
{
	struct bumba_lock lk;
	const char *p = P("hist.txt");
	int64_t t[4];

	assert_int_equal(lock(A, p, &lk), 0);
	const char *v[] = {"one", "two", "three", "four"};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(bumba_safe_write(A, p, v[i], strlen(v[i]), BUMBA_WRITE_BACKUP), 0);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		/* Rounded up: the instant is after the write, to the ms. */
		t[i] = (int64_t)ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
		usleep(5000);
	}
	assert_string_equal(get(p), "four");
	/* What it was right after "two" was written. */
	assert_int_equal(bumba_safe_restore(A, p, t[1], 0), 0);
	assert_string_equal(get(p), "two");
	/* Undo the restore: "four" again. */
	assert_int_equal(bumba_safe_restore(A, p, -1, 0), 0);
	assert_string_equal(get(p), "four");
	/* Nothing replaced since now. */
	assert_int_equal(bumba_safe_restore(A, p, t[3] + 600000, 0), -EALREADY);
	assert_int_equal(bumba_safe_restore(A, P("never"), -1, 0), -EPERM);
	bumba_lock_release(A, &lk);
}

static void test_move(void **state)
{
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_lock l1, l2;
		char a[32], c[32];
		snprintf(a, sizeof(a), "mv-a%d", h);
		snprintf(c, sizeof(c), "mv-c%d", h);

		put(P(a), "moving");
		put(P(c), "in the way");
		assert_int_equal(lock(b, P(a), &l1), 0);
		/* The destination needs authority too. */
		assert_int_equal(bumba_safe_move(b, P(a), P("mv-b"), 0), -EPERM);
		assert_int_equal(lock(b, P("mv-b"), &l2), 0);
		assert_int_equal(bumba_safe_move(b, P(a), P("mv-b"), 0), 0);
		assert_false(exists(P(a)));
		assert_string_equal(get(P("mv-b")), "moving");
		bumba_lock_release(b, &l1);
		/* Never clobbers. */
		assert_int_equal(lock(b, P(c), &l1), 0);
		assert_int_equal(bumba_safe_move(b, P("mv-b"), P(c), 0), -EEXIST);
		assert_string_equal(get(P(c)), "in the way");
		assert_string_equal(get(P("mv-b")), "moving");
		assert_int_equal(bumba_safe_move(b, P("mv-b"), P("mv-b"), 0), -EINVAL);
		unlink(P("mv-b"));
		bumba_lock_release(b, &l1);
		bumba_lock_release(b, &l2);
	}
	/* Across filesystems: copy, publish, unlink, as one transaction. */
	if (is_root() && small_tmpfs("xfs-less", "size=2m,mode=0755")) {
		struct bumba_lock l1, l2;
		put(P("xfs-less/src"), "travelling");
		chmod(P("xfs-less/src"), 0640);
		assert_int_equal(lock(A, P("xfs-less/src"), &l1), 0);
		assert_int_equal(lock(A, P("dst-across"), &l2), 0);
		assert_int_equal(bumba_safe_move(A, P("xfs-less/src"), P("dst-across"), 0), 0);
		assert_false(exists(P("xfs-less/src")));
		assert_string_equal(get(P("dst-across")), "travelling");
		struct stat st;
		assert_int_equal(stat(P("dst-across"), &st), 0);
		assert_int_equal(st.st_mode & 07777, 0640);
		assert_int_equal(temps_in(ws), 0);
		assert_int_equal(temps_in(P("xfs-less")), 0);
		bumba_lock_release(A, &l1);
		bumba_lock_release(A, &l2);
		umount2(P("xfs-less"), MNT_DETACH);
	}
}

/* ------------------------------------------------------------------ */
/* reflink on XFS                                                      */

static bool extent_shared(const char *path)
{
	char buf[sizeof(struct fiemap) + 8 * sizeof(struct fiemap_extent)];
	struct fiemap *fm = (struct fiemap *)buf;
	int fd = open(path, O_RDONLY);
	bool shared = false;

	if (fd < 0)
		return false;
	memset(buf, 0, sizeof(buf));
	fm->fm_length = ~0ull;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = 8;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) == 0) {
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
			shared |= (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) != 0;
	}
	close(fd);
	return shared;
}

static void test_reflink_xfs(void **state)
{
	char img[256], mnt[256], xsock[256];
	struct bumba *x;
	struct bumba_lock lk;
	struct bumba_safeio_stats s0, s1;

	if (!is_root() || sh("command -v mkfs.xfs >/dev/null 2>&1") != 0) {
		print_message("skip: reflink test needs root and mkfs.xfs (xfsprogs)\n");
		skip();
	}
	snprintf(img, sizeof(img), "%s/xfs.img", dir);
	snprintf(mnt, sizeof(mnt), "%s/xfs", dir);
	snprintf(xsock, sizeof(xsock), "%s/xfs.sock", dir);
	mkdir(mnt, 0755);
	if (sh("truncate -s 320M %s && mkfs.xfs -q -m reflink=1 %s && mount -o loop %s %s", img,
	       img, img, mnt) != 0) {
		print_message("skip: cannot make or loop-mount an XFS image\n");
		skip();
	}
	pid_t xs = xfs_sup = start_bumbad(xsock, mnt, "bumbad-xfs.log");
	assert_true(xs > 0);
	assert_int_equal(bumba_open(xsock, NULL, &x), 0);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/big", mnt);
	size_t n = 4u << 20;
	char *buf = malloc(n);
	memset(buf, 'o', n);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	fsync(fd);
	close(fd);
	int keep = open(p, O_RDONLY); /* the old inode stays, so sharing shows */
	assert_int_equal(lock(x, p, &lk), 0);
	bumba_safeio_stats(x, &s0);
	memset(buf, 'n', n);
	assert_int_equal(bumba_safe_write(x, p, buf, n, BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY),
			 0);
	bumba_safeio_stats(x, &s1);
	assert_int_equal(s1.clone, s0.clone + 1);
	assert_int_equal(s1.link, s0.link);
	assert_int_equal(s1.copy, s0.copy);
	/* The version shares its blocks with the old file. */
	const struct bumba_seg *seg = bumba_handle_seg(x);
	struct collect c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(bumba_backup_list(seg->root_ptrs, 1, p, collect_cb, &c), 0);
	assert_int_equal(c.n, 1);
	assert_true(extent_shared(c.last));
	char head[4] = {0};
	int vf = open(c.last, O_RDONLY);
	assert_int_equal(read(vf, head, 3), 3);
	close(vf);
	assert_string_equal(head, "ooo");
	close(keep);
	bumba_lock_release(x, &lk);
	bumba_close(x);
	free(buf);
	stop_bumbad(xs);
	xfs_sup = 0;
	sh("umount %s && rm -f %s", mnt, img);
}

/* ------------------------------------------------------------------ */
/* engine                                                              */

static void test_fallback_switch(void **state)
{
	setenv("BUMBA_NO_IO_URING", "1", 1);
	assert_int_equal(bumba_io_uring_available(), 0);
	unsetenv("BUMBA_NO_IO_URING");
	assert_int_equal(bumba_io_uring_available(), 1);
}

struct thr {
	int i;
	int fails;
};

static void *writer(void *arg)
{
	struct thr *t = arg;
	char name[32], content[64];
	struct bumba_lock lk;

	snprintf(name, sizeof(name), "thr%d", t->i);
	if (lock(A, P(name), &lk))
		t->fails++;
	for (int k = 0; k < 50; k++) {
		int n = snprintf(content, sizeof(content), "thread %d round %d", t->i, k);
		if (bumba_safe_write(A, P(name), content, (size_t)n,
				     k % 3 == 0 ? BUMBA_WRITE_BACKUP : BUMBA_WRITE_NOSYNC))
			t->fails++;
	}
	bumba_lock_release(A, &lk);
	return NULL;
}

/* Several threads on one handle: one takes the ring, the others fall back
 * to plain calls rather than wait. */
static void test_threads(void **state)
{
	pthread_t th[4];
	struct thr t[4];

	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){.i = i};
		pthread_create(&th[i], NULL, writer, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].fails, 0);
		char name[32], want[64];
		snprintf(name, sizeof(name), "thr%d", i);
		snprintf(want, sizeof(want), "thread %d round 49", i);
		assert_string_equal(get(P(name)), want);
	}
	assert_int_equal(temps_in(ws), 0);
}

/* A forked child acts as its agent with its own ring. */
static void test_fork(void **state)
{
	struct bumba_lock lk;

	assert_int_equal(bumba_safe_read(A, P("r.txt"), (char[16]){0}, 16, &(size_t){0}), 0);
	assert_int_equal(lock(A, P("forked"), &lk), 0);
	assert_int_equal(bumba_safe_write(A, P("forked"), "parent", 6, 0), 0);
	pid_t pid = fork();
	if (pid == 0)
		_exit(bumba_safe_write(A, P("forked"), "child", 5, 0) == 0 ? 0 : 1);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_string_equal(get(P("forked")), "child");
	assert_int_equal(bumba_safe_write(A, P("forked"), "parent again", 12, 0), 0);
	assert_string_equal(get(P("forked")), "parent again");
	bumba_lock_release(A, &lk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_basic), cmocka_unit_test(test_write_mode_owner),
		cmocka_unit_test(test_authority),   cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_enospc),	    cmocka_unit_test(test_erofs),
		cmocka_unit_test(test_eacces),	    cmocka_unit_test(test_backup_methods),
		cmocka_unit_test(test_read),	    cmocka_unit_test(test_delete_restore),
		cmocka_unit_test(test_restore_at),  cmocka_unit_test(test_move),
		cmocka_unit_test(test_reflink_xfs), cmocka_unit_test(test_fallback_switch),
		cmocka_unit_test(test_threads),	    cmocka_unit_test(test_fork),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
