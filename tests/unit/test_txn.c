/* SPDX-License-Identifier: MIT */
/*
 * test_txn.c - transactions and their recovery, against a real bumbad:
 * commit (writes, deletes, moves, with backups and verification), the
 * limits (maxTransactionSize, a path twice, authority), failures before the
 * commit point (read-only filesystem, full disk, lost lock) that change
 * nothing, a crash injected between every two steps of a commit (on
 * io_uring and on the fallback) followed by recovery (all or nothing, no
 * temporary, no manifest left), a conflict found by recovery (kept aside,
 * never forced over), unreadable manifests, bumbad finishing a dead
 * agent's transaction before anyone else can lock its files, the stray
 * temporary scan, and backup retention.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"
#include "unit_bumbad.h"
#include "safeio.h"

static char dir[64], sock_path[128], ws[128];
static pid_t sup;
static struct bumba *A, *F;
static struct bumba *handles[2];

static pid_t start_bumbad(void)
{
	char log[160];

	snprintf(log, sizeof(log), "%s/bumbad.log", dir);
	return unit_start_bumbad(sock_path, ws, log, NULL);
}

static const char *P(const char *rel)
{
	static char buf[16][PATH_MAX];
	static int k;
	char *out = buf[k++ & 15];

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

static char *get(const char *path)
{
	static char buf[8][4096];
	static int k;
	char *out = buf[k++ & 7];
	int fd = open(path, O_RDONLY);
	ssize_t n = 0;

	strcpy(out, "<absent>");
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

static int count_in(const char *d, bool (*pick)(const char *))
{
	DIR *dd = opendir(d);
	struct dirent *e;
	int n = 0;

	if (!dd)
		return 0;
	while ((e = readdir(dd)))
		n += pick(e->d_name);
	closedir(dd);
	return n;
}

static bool is_tmp(const char *name)
{
	return bumba_sio_parse_tmp(name, NULL, NULL);
}

static bool is_manifest(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && !strcmp(name + n - 5, ".prep")) ||
	       (n > 7 && !strcmp(name + n - 7, ".commit"));
}

static int lock(struct bumba *b, const char *path, struct bumba_lock *lk)
{
	return bumba_lock_acquire(b, path, BUMBA_EXCLUSIVE, 2000, BUMBA_PRIO_NORMAL, lk);
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
	snprintf(dir, sizeof(dir), "/tmp/bumba-txn.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/bumba.sock", dir);
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	mkdir(ws, 0755);
	sup = start_bumbad();
	if (sup <= 0)
		return -1;
	unsetenv("BUMBA_NO_IO_URING");
	if (bumba_open(sock_path, NULL, &A))
		goto fail;
	setenv("BUMBA_NO_IO_URING", "1", 1);
	if (bumba_open(sock_path, NULL, &F))
		goto fail;
	struct bumba_txn *t; /* makes F's state while the switch is on */
	bumba_txn_begin(F, 0, &t);
	bumba_txn_abort(t);
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
	if (sup > 0) {
		kill(sup, SIGTERM);
		waitpid(sup, NULL, 0);
	}
	if (getenv("BUMBA_TEST_KEEP")) { /* a look at bumbad.log and the tree */
		print_message("kept %s\n", dir);
		return 0;
	}
	sh("for m in $(awk '$2 ~ \"^%s/\" {print $2}' /proc/mounts | sort -r); do umount -l "
	   "\"$m\"; "
	   "done; rm -rf %s",
	   dir, dir);
	return 0;
}

/* ------------------------------------------------------------------ */

static int cb(void *ctx, const struct bumba_backup_version *v)
{
	(*(int *)ctx)++;
	return strcmp(v->op, "txn") == 0 && strcmp(get(v->file), "replace me") == 0 ? 0 : 1;
}

static void test_commit(void **state)
{
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_txn *t;
		struct bumba_lock lk[8];
		char name[8][32];

		for (int i = 0; i < 8; i++)
			snprintf(name[i], sizeof(name[i]), "c%d-%d", h, i);
		put(P(name[0]), "replace me");
		put(P(name[5]), "delete me");
		put(P(name[6]), "move me");
		for (int i = 0; i < 8; i++)
			assert_int_equal(lock(b, P(name[i]), &lk[i]), 0);
		assert_int_equal(
			bumba_txn_begin(b, h ? BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY : 0, &t), 0);
		for (int i = 0; i < 5; i++) {
			char c[32];
			int n = snprintf(c, sizeof(c), "content %d", i);
			assert_int_equal(bumba_txn_write(t, P(name[i]), c, (size_t)n), 0);
		}
		assert_int_equal(bumba_txn_delete(t, P(name[5])), 0);
		assert_int_equal(bumba_txn_move(t, P(name[6]), P(name[7])), 0);
		/* Nothing happens before the commit. */
		assert_string_equal(get(P(name[0])), "replace me");
		assert_int_equal(bumba_txn_commit(t), 0);
		for (int i = 0; i < 5; i++) {
			char c[32];
			snprintf(c, sizeof(c), "content %d", i);
			assert_string_equal(get(P(name[i])), c);
		}
		assert_false(exists(P(name[5])));
		assert_false(exists(P(name[6])));
		assert_string_equal(get(P(name[7])), "move me");
		for (int i = 0; i < 8; i++)
			bumba_lock_release(b, &lk[i]);
	}
	assert_int_equal(count_in(ws, is_tmp), 0);
	assert_int_equal(count_in(P(".bumba/txn"), is_manifest), 0);
	/* The delete kept a version; with BACKUP the replaced file too. */
	const struct bumba_seg *s = bumba_handle_seg(A);
	char norm[PATH_MAX];
	bumba_path_normalize(A, P("c1-0"), norm, sizeof(norm));
	assert_true(exists(P(".bumba/backups")));
	int n = 0;
	assert_int_equal(bumba_backup_list(s->root_ptrs, 1, norm, cb, &n), 0);
	assert_int_equal(n, 1);
}

static void test_limits(void **state)
{
	struct bumba_txn *t;
	struct bumba_lock lk;
	char name[32];

	assert_int_equal(bumba_txn_begin(A, 0x40, &t), -EINVAL);
	assert_int_equal(bumba_txn_begin(A, 0, &t), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "lim/%d", i);
		struct bumba_lock l;
		mkdir(P("lim"), 0755);
		assert_int_equal(lock(A, P(name), &l), 0);
		assert_int_equal(bumba_txn_write(t, P(name), name, strlen(name)), 0);
	}
	assert_int_equal(lock(A, P("lim/100"), &lk), 0);
	assert_int_equal(bumba_txn_write(t, P("lim/100"), "x", 1), -E2BIG);
	assert_int_equal(bumba_txn_commit(t), 0);
	for (int i = 0; i < 100; i += 33) {
		snprintf(name, sizeof(name), "lim/%d", i);
		assert_string_equal(get(P(name)), name);
	}
	/* A path twice; a move onto itself; no authority; an empty commit. */
	assert_int_equal(bumba_txn_begin(A, 0, &t), 0);
	assert_int_equal(bumba_txn_write(t, P("lim/1"), "a", 1), 0);
	assert_int_equal(bumba_txn_write(t, P("lim/1"), "b", 1), -EINVAL);
	assert_int_equal(bumba_txn_delete(t, P("lim/1")), -EINVAL);
	assert_int_equal(bumba_txn_move(t, P("lim/2"), P("lim/1")), -EINVAL);
	assert_int_equal(bumba_txn_move(t, P("lim/2"), P("lim/2")), -EINVAL);
	assert_int_equal(bumba_txn_write(t, P("unlocked"), "x", 1), -EPERM);
	assert_int_equal(bumba_txn_write(t, "/etc/x", "x", 1), -EINVAL);
	/* Abort: nothing changed. */
	assert_int_equal(bumba_txn_abort(t), 0);
	assert_string_equal(get(P("lim/1")), "lim/1");
	assert_int_equal(bumba_txn_abort(NULL), 0);
	assert_int_equal(bumba_txn_begin(A, 0, &t), 0);
	assert_int_equal(bumba_txn_commit(t), 0);
	/* The limit comes from safeFileOps.maxTransactionSize. */
	setenv("BUMBA_SAFEFILEOPS_MAXTRANSACTIONSIZE", "2", 1);
	assert_int_equal(bumba_txn_begin(A, 0, &t), 0);
	unsetenv("BUMBA_SAFEFILEOPS_MAXTRANSACTIONSIZE");
	assert_int_equal(bumba_txn_write(t, P("lim/1"), "a", 1), 0);
	assert_int_equal(bumba_txn_write(t, P("lim/2"), "a", 1), 0);
	assert_int_equal(bumba_txn_write(t, P("lim/3"), "a", 1), -E2BIG);
	bumba_txn_abort(t);
}

/* Failures before the commit point change nothing. */
static void test_fail_before_commit(void **state)
{
	struct bumba_lock lk[4];

	put(P("fb-a"), "a-old");
	put(P("fb-b"), "b-old");
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_txn *t;
		assert_int_equal(lock(b, P("fb-a"), &lk[0]), 0);
		assert_int_equal(lock(b, P("fb-b"), &lk[1]), 0);
		assert_int_equal(lock(b, P("fb-missing/x"), &lk[2]), 0);
		/* A parent directory that does not exist. */
		assert_int_equal(bumba_txn_begin(b, 0, &t), 0);
		assert_int_equal(bumba_txn_write(t, P("fb-a"), "a-new", 5), 0);
		assert_int_equal(bumba_txn_delete(t, P("fb-b")), 0);
		assert_int_equal(bumba_txn_write(t, P("fb-missing/x"), "x", 1), 0);
		assert_int_equal(bumba_txn_commit(t), -ENOENT);
		assert_string_equal(get(P("fb-a")), "a-old");
		assert_string_equal(get(P("fb-b")), "b-old");
		/* A lock lost between staging and commit. */
		assert_int_equal(bumba_txn_begin(b, 0, &t), 0);
		assert_int_equal(bumba_txn_write(t, P("fb-a"), "a-new", 5), 0);
		assert_int_equal(bumba_txn_delete(t, P("fb-b")), 0);
		bumba_lock_release(b, &lk[1]);
		assert_int_equal(bumba_txn_commit(t), -EPERM);
		assert_string_equal(get(P("fb-a")), "a-old");
		assert_string_equal(get(P("fb-b")), "b-old");
		/* A move onto an existing file. */
		assert_int_equal(lock(b, P("fb-b"), &lk[1]), 0);
		assert_int_equal(bumba_txn_begin(b, 0, &t), 0);
		assert_int_equal(bumba_txn_write(t, P("fb-a"), "a-new", 5), 0);
		assert_int_equal(bumba_txn_move(t, P("fb-b"), P("fb-missing/x")), 0);
		assert_int_equal(bumba_txn_commit(t), -ENOENT);
		assert_string_equal(get(P("fb-a")), "a-old");
		for (int i = 0; i < 3; i++)
			bumba_lock_release(b, &lk[i]);
	}
	assert_int_equal(count_in(ws, is_tmp), 0);
	assert_int_equal(count_in(P(".bumba/txn"), is_manifest), 0);

	if (geteuid() != 0)
		return;
	/* A read-only filesystem, a full one. */
	mkdir(P("ro"), 0755);
	mkdir(P("full"), 0755);
	assert_int_equal(mount("tmpfs", P("ro"), "tmpfs", 0, "size=1m"), 0);
	assert_int_equal(mount("tmpfs", P("full"), "tmpfs", 0, "size=128k"), 0);
	put(P("ro/f"), "ro-old");
	put(P("full/f"), "full-old");
	assert_int_equal(mount(NULL, P("ro"), NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	size_t big = 1u << 20;
	char *buf = calloc(1, big);
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		struct bumba_txn *t;
		assert_int_equal(lock(b, P("fb-a"), &lk[0]), 0);
		assert_int_equal(lock(b, P("ro/f"), &lk[1]), 0);
		assert_int_equal(lock(b, P("full/f"), &lk[2]), 0);
		assert_int_equal(bumba_txn_begin(b, BUMBA_WRITE_BACKUP, &t), 0);
		assert_int_equal(bumba_txn_write(t, P("fb-a"), "a-new", 5), 0);
		assert_int_equal(bumba_txn_write(t, P("ro/f"), "x", 1), 0);
		assert_int_equal(bumba_txn_commit(t), -EROFS);
		assert_int_equal(bumba_txn_begin(b, 0, &t), 0);
		assert_int_equal(bumba_txn_write(t, P("fb-a"), "a-new", 5), 0);
		assert_int_equal(bumba_txn_write(t, P("full/f"), buf, big), 0);
		assert_int_equal(bumba_txn_commit(t), -ENOSPC);
		assert_string_equal(get(P("fb-a")), "a-old");
		assert_string_equal(get(P("ro/f")), "ro-old");
		assert_string_equal(get(P("full/f")), "full-old");
		assert_int_equal(count_in(P("full"), is_tmp), 0);
		for (int i = 0; i < 3; i++)
			bumba_lock_release(b, &lk[i]);
	}
	free(buf);
	assert_int_equal(count_in(ws, is_tmp), 0);
	assert_int_equal(count_in(P(".bumba/txn"), is_manifest), 0);
	umount2(P("ro"), MNT_DETACH);
	umount2(P("full"), MNT_DETACH);
}

/* ------------------------------------------------------------------ */
/* crashes                                                             */

#define NW 3
static const char *cw[NW] = {"k/w0", "k/w1", "k/w2"};

static void crash_reset(void)
{
	mkdir(P("k"), 0755);
	for (int i = 0; i < NW; i++) {
		char c[32];
		snprintf(c, sizeof(c), "old %d", i);
		put(P(cw[i]), c);
	}
	unlink(P("k/w2")); /* one write creates its file */
	put(P("k/del"), "doomed");
	put(P("k/msrc"), "moving");
	unlink(P("k/mdst"));
}

/* 0: all old, 1: all new, -1: a mix (reported). */
static int crash_state(void)
{
	int old = 0, new = 0;

	for (int i = 0; i < NW; i++) {
		char o[32], n[32];
		snprintf(o, sizeof(o), "old %d", i);
		snprintf(n, sizeof(n), "new %d", i);
		const char *c = get(P(cw[i]));
		if (!strcmp(c, n))
			new ++;
		else if (!strcmp(c, i == 2 ? "<absent>" : o))
			old++;
		else
			print_message("%s holds '%s'\n", cw[i], c);
	}
	if (!strcmp(get(P("k/del")), "doomed"))
		old++;
	else if (!exists(P("k/del")))
		new ++;
	if (!strcmp(get(P("k/msrc")), "moving") && !exists(P("k/mdst")))
		old++;
	else if (!exists(P("k/msrc")) && !strcmp(get(P("k/mdst")), "moving"))
		new ++;
	if (old == NW + 2)
		return 0;
	if (new == NW + 2)
		return 1;
	print_message("mixed: %d old, %d new\n", old, new);
	return -1;
}

static int crash_txn(struct bumba *b, unsigned flags)
{
	struct bumba_txn *t;
	int rc = bumba_txn_begin(b, flags, &t);

	for (int i = 0; i < NW && !rc; i++) {
		char c[32];
		int n = snprintf(c, sizeof(c), "new %d", i);
		rc = bumba_txn_write(t, P(cw[i]), c, (size_t)n);
	}
	if (!rc)
		rc = bumba_txn_delete(t, P("k/del"));
	if (!rc)
		rc = bumba_txn_move(t, P("k/msrc"), P("k/mdst"));
	return rc ? rc : bumba_txn_commit(t);
}

static void recover_now(struct bumba_recovery_report *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(bumba_recover_root(ws, NULL, false, NULL, NULL, NULL, NULL, r), 0);
}

/* SIGKILL at every fault point of a commit, in a forked child acting as
 * the agent; recovery; all or nothing every time. */
static void test_crash_every_step(void **state)
{
	const char *paths[] = {"k/w0", "k/w1", "k/w2", "k/del", "k/msrc", "k/mdst"};
	struct bumba_lock lk[6];
	unsigned flags[] = {0, BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY, BUMBA_WRITE_NOSYNC};

	mkdir(P("k"), 0755);
	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		for (int i = 0; i < 6; i++)
			assert_int_equal(lock(b, P(paths[i]), &lk[i]), 0);
		for (unsigned fi = 0; fi < 3; fi++) {
			int kills = 0, forward = 0, back = 0;
			for (long step = 1; step < 500; step++) {
				crash_reset();
				pid_t pid = fork();
				if (pid == 0) {
					bumba_fault_arm(step);
					_exit(crash_txn(b, flags[fi]) == 0 ? 0 : 3);
				}
				int st;
				waitpid(pid, &st, 0);
				if (WIFEXITED(st)) {
					assert_int_equal(WEXITSTATUS(st), 0);
					assert_int_equal(crash_state(), 1);
					break;
				}
				assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
				kills++;
				struct bumba_recovery_report r;
				recover_now(&r);
				int s = crash_state();
				if (s < 0)
					print_message("engine %s flags %u: killed at step %ld\n",
						      h ? "sync" : "io_uring", flags[fi], step);
				assert_true(s >= 0);
				forward += s == 1;
				back += s == 0;
				assert_int_equal(r.conflicts, 0);
				assert_int_equal(count_in(P("k"), is_tmp), 0);
				assert_int_equal(count_in(P(".bumba/txn"), is_manifest), 0);
			}
			print_message("  %s, flags %u: %d kills, %d rolled back, %d forward\n",
				      h ? "fallback" : "io_uring", flags[fi], kills, back, forward);
			assert_true(kills >= 5);
			assert_true(back > 0 && forward > 0);
		}
		for (int i = 0; i < 6; i++)
			bumba_lock_release(b, &lk[i]);
	}
}

/* The same for single safe writes, deletes and moves. */
static void test_crash_single(void **state)
{
	struct bumba_lock lk[3];

	for (int h = 0; h < 2; h++) {
		struct bumba *b = handles[h];
		assert_int_equal(lock(b, P("s/f"), &lk[0]), 0);
		assert_int_equal(lock(b, P("s/g"), &lk[1]), 0);
		assert_int_equal(lock(b, P("s/h"), &lk[2]), 0);
		mkdir(P("s"), 0755);
		for (int op = 0; op < 3; op++) {
			for (long step = 1; step < 200; step++) {
				put(P("s/f"), "old");
				unlink(P("s/h"));
				pid_t pid = fork();
				if (pid == 0) {
					bumba_fault_arm(step);
					int rc = op == 0 ? bumba_safe_write(
								   b, P("s/f"), "new", 3,
								   BUMBA_WRITE_BACKUP |
									   BUMBA_WRITE_VERIFY)
						 : op == 1 ? bumba_safe_delete(b, P("s/f"), 0)
							   : bumba_safe_move(b, P("s/f"), P("s/h"),
									     0);
					_exit(rc == 0 ? 0 : 3);
				}
				int st;
				waitpid(pid, &st, 0);
				struct bumba_recovery_report r;
				recover_now(&r);
				const char *f = get(P("s/f")), *hh = get(P("s/h"));
				bool old = !strcmp(f, "old") && !strcmp(hh, "<absent>");
				bool new = op == 0   ? !strcmp(f, "new")
					   : op == 1 ? !strcmp(f, "<absent>")
						     : !strcmp(f, "<absent>") && !strcmp(hh, "old");
				if (!old && !new)
					print_message("op %d step %ld: f '%s' h '%s'\n", op, step,
						      f, hh);
				assert_true(old || new);
				assert_int_equal(count_in(P("s"), is_tmp), 0);
				if (WIFEXITED(st)) {
					assert_int_equal(WEXITSTATUS(st), 0);
					assert_true(new);
					break;
				}
			}
		}
		for (int i = 0; i < 3; i++)
			bumba_lock_release(b, &lk[i]);
	}
}

/* A committed transaction whose target changed before recovery: that
 * operation is a conflict (its content kept aside), the others apply. */
static void test_conflict(void **state)
{
	const char *paths[] = {"k/w0", "k/w1", "k/w2", "k/del", "k/msrc", "k/mdst"};
	struct bumba_lock lk[6];
	long step;
	char commit[256] = "";

	mkdir(P("k"), 0755);
	for (int i = 0; i < 6; i++)
		assert_int_equal(lock(A, P(paths[i]), &lk[i]), 0);
	/* The first step that leaves a .commit manifest behind. */
	for (step = 1; step < 500; step++) {
		crash_reset();
		pid_t pid = fork();
		if (pid == 0) {
			bumba_fault_arm(step);
			_exit(crash_txn(A, 0) == 0 ? 0 : 3);
		}
		int st;
		waitpid(pid, &st, 0);
		assert_true(WIFSIGNALED(st));
		DIR *d = opendir(P(".bumba/txn"));
		struct dirent *e;
		while (d && (e = readdir(d))) {
			size_t n = strlen(e->d_name);
			if (n > 7 && !strcmp(e->d_name + n - 7, ".commit"))
				snprintf(commit, sizeof(commit), "%s", e->d_name);
		}
		closedir(d);
		if (commit[0])
			break;
		struct bumba_recovery_report r;
		recover_now(&r);
	}
	assert_true(commit[0]);
	/* Someone else changes w1 meanwhile (a rogue writer: no lock). */
	put(P("k/w1"), "rogue");
	struct bumba_recovery_report r;
	recover_now(&r);
	assert_int_equal(r.forward, 1);
	assert_int_equal(r.conflicts, 1);
	assert_string_equal(get(P("k/w0")), "new 0");
	assert_string_equal(get(P("k/w1")), "rogue");
	assert_string_equal(get(P("k/w2")), "new 2");
	assert_false(exists(P("k/del")));
	assert_string_equal(get(P("k/mdst")), "moving");
	char aside[PATH_MAX];
	commit[strlen(commit) - 7] = '\0';
	snprintf(aside, sizeof(aside), "%s/.bumba/conflicts/%s/1-w1", ws, commit);
	assert_string_equal(get(aside), "new 1");
	assert_int_equal(count_in(P("k"), is_tmp), 0);
	for (int i = 0; i < 6; i++)
		bumba_lock_release(A, &lk[i]);
}

static void test_bad_manifests(void **state)
{
	struct bumba_recovery_report r;
	char p[PATH_MAX];

	/* Owners: a pid that cannot exist. */
	snprintf(p, sizeof(p), "%s/.bumba/txn/0123456789abcdef-7ffffff0-1-00000000.prep", ws);
	put(p, "garbage\n");
	snprintf(p, sizeof(p), "%s/.bumba/txn/0123456789abcdef-7ffffff0-2-00000000.commit", ws);
	put(p, "bumba-txn 1\ntxid x\nend 0000000000000000\n");
	recover_now(&r);
	assert_int_equal(r.bad, 1);
	assert_int_equal(r.back, 1);
	assert_int_equal(count_in(P(".bumba/txn"), is_manifest), 0);
	snprintf(p, sizeof(p), "%s/.bumba/conflicts/0123456789abcdef-7ffffff0-2-00000000.commit",
		 ws);
	assert_true(exists(p));
	/* A manifest of a live process is left alone. */
	snprintf(p, sizeof(p), "%s/.bumba/txn/0123456789abcdef-%08x-3-00000000.prep", ws,
		 (unsigned)getpid());
	put(p, "garbage\n");
	recover_now(&r);
	assert_int_equal(r.live, 1);
	assert_true(exists(p));
	unlink(p);
}

/* bumbad finishes a dead agent's committed transaction before its locks
 * go: the next holder sees the finished state. */
static void test_bumbad_recovers(void **state)
{
	const char *paths[] = {"k/w0", "k/w1", "k/w2", "k/del", "k/msrc", "k/mdst"};
	int seen[2] = {0, 0};

	for (long step = 1; step < 500 && !(seen[0] && seen[1]); step += 1) {
		crash_reset();
		int pfd[2];
		assert_int_equal(pipe(pfd), 0);
		pid_t pid = fork();
		if (pid == 0) {
			struct bumba *c;
			struct bumba_lock lk;
			close(pfd[0]);
			if (bumba_open(sock_path, NULL, &c))
				_exit(2);
			for (int i = 0; i < 6; i++)
				if (lock(c, P(paths[i]), &lk))
					_exit(2);
			bumba_fault_arm(step);
			int rc = crash_txn(c, 0);
			_exit(rc == 0 ? 0 : 3);
		}
		close(pfd[1]);
		int st;
		waitpid(pid, &st, 0);
		close(pfd[0]);
		if (WIFEXITED(st)) {
			assert_int_equal(WEXITSTATUS(st), 0);
			break;
		}
		/* The next holder of the locks (through bumbad's reclaim). */
		struct bumba_lock lk[6];
		for (int i = 0; i < 6; i++)
			assert_int_equal(lock(A, P(paths[i]), &lk[i]), 0);
		int s = crash_state();
		assert_true(s >= 0);
		seen[s]++;
		assert_int_equal(count_in(P("k"), is_tmp), 0);
		assert_int_equal(count_in(P(".bumba/txn"), is_manifest), 0);
		for (int i = 0; i < 6; i++)
			bumba_lock_release(A, &lk[i]);
	}
	assert_true(seen[0] > 0);
	assert_true(seen[1] > 0);
}

static void test_scan_and_retention(void **state)
{
	struct bumba_recovery_report r = {0};
	char p[PATH_MAX];

	mkdir(P("deep"), 0755);
	mkdir(P("deep/er"), 0755);
	/* A stray temporary of a dead process, one of a live one. */
	snprintf(p, sizeof(p), "%s/deep/er/.f.bumba-0123456789abcdef7ffffff012345678.tmp", ws);
	put(p, "stray");
	char live[PATH_MAX];
	snprintf(live, sizeof(live), "%s/deep/.g.bumba-0123456789abcdef%08x12345678.tmp", ws,
		 (unsigned)getpid());
	put(live, "in flight");
	assert_int_equal(bumba_recover_scan(ws, NULL, NULL, NULL, NULL, &r), 0);
	assert_int_equal(r.temps, 1);
	assert_false(exists(p));
	assert_true(exists(live));
	unlink(live);

	/* Retention: versions older than the window go, with their emptied
	 * directory; recent ones stay. */
	struct bumba_lock lk;
	assert_int_equal(lock(A, P("ret"), &lk), 0);
	put(P("ret"), "v0");
	assert_int_equal(bumba_safe_write(A, P("ret"), "v1", 2, BUMBA_WRITE_BACKUP), 0);
	char norm[PATH_MAX], key[17], bdir[512];
	bumba_path_normalize(A, P("ret"), norm, sizeof(norm));
	bumba_backup_key(norm, strlen(norm), key);
	snprintf(bdir, sizeof(bdir), "%s/.bumba/backups/%s", ws, key);
	snprintf(p, sizeof(p), "%s/2001-01-01T00:00:00.000000000Z.write.0badf00d", bdir);
	put(p, "ancient");
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	assert_int_equal(bumba_backup_sweep(ws, now, 3600ull * 1000000000ull), 1);
	assert_false(exists(p));
	assert_int_equal(bumba_safe_restore(A, P("ret"), -1, 0), 0);
	assert_string_equal(get(P("ret")), "v0");
	/* Everything past a zero-hour window. */
	assert_true(bumba_backup_sweep(ws, now + 3600ull * 1000000000ull, 1) >= 2);
	assert_false(exists(bdir));
	bumba_lock_release(A, &lk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commit),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_fail_before_commit),
		cmocka_unit_test(test_crash_every_step),
		cmocka_unit_test(test_crash_single),
		cmocka_unit_test(test_conflict),
		cmocka_unit_test(test_bad_manifests),
		cmocka_unit_test(test_bumbad_recovers),
		cmocka_unit_test(test_scan_and_retention),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
