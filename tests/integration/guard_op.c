/* SPDX-License-Identifier: MIT */
/*
 * guard_op.c - does one write-like operation on a file, as a given kind of
 * writer, for the guard's tests (t_guard_*.sh).
 *
 *   guard_op [--who stranger|holder|agent|monitored|none] [--fork]
 *            [--release-now] OP PATH [PATH2]
 *
 *   stranger   (default) the descriptors the operation needs are opened
 *              by an agent holding an exclusive lock on PATH, which then
 *              releases it and unregisters: only OP itself is done by a
 *              process that holds nothing (so exactly one violation).
 *   agent      the same, but the process stays a registered agent that
 *              holds nothing: the violation names the agent.
 *   holder     an agent holding exclusive locks on PATH (and PATH2) does
 *              everything: nothing to report.
 *   monitored  an agent holding a MONITORED territory over PATH's directory
 *              does everything: logged, not a violation.
 *   territory  an agent holding an EXCLUSIVE territory over PATH's
 *              directory does everything: nothing to report.
 *   none       no agent at all does everything (opens included).
 *   second     the process registers two agents; the second one holds the
 *              lock, the first one (the one the kernel charges) nothing.
 *   --fork     OP is done by a child process (an agent's child is the
 *              agent).
 *   --release-now  holder: release the lock right after OP (no sleep).
 *
 * Prints "pid=N" (the process that did OP) on stdout.  Exit 0 if OP
 * succeeded, 1 if it failed (with the reason on stderr), 64 bad usage.
 *
 * OPs: write pwrite64 writev pwritev pwritev2 open openat openat2 creat
 * truncate ftruncate rename renameat renameat2 unlink unlinkat rmdir
 * fallocate copy_file_range sendfile splice mmap mprotect link symlink
 * mkdir io_uring_write io_uring_writev io_uring_write_fixed
 * io_uring_fixed_file io_uring_sqpoll io_uring_fallocate io_uring_ftruncate io_uring_splice
 * io_uring_openat io_uring_renameat io_uring_unlinkat; safe_write (through
 * bumba_safe_write, as a holder); ia32_write (a 32-bit write(2) through
 * int 0x80: exit 77 if the kernel has no ia32 emulation); mmap_late (as
 * holder: maps the file shared and writable under the lock, releases it,
 * then stores into the mapping).  Source data for
 * copies comes from a file outside the workspace ($GUARD_SRC, default
 * /etc/hostname).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bumba.h"

static const char *op, *path, *path2;
static struct bumba *agent;
static struct bumba_lock locks[2];
static int nlocks;
static uint64_t tid;

static int die(const char *what, int err)
{
	fprintf(stderr, "guard_op %s %s: %s: %s\n", op, path, what, strerror(err));
	return 1;
}

static bool is(const char *name)
{
	return !strcmp(op, name);
}

static bool needs_fd(void)
{
	static const char *const fdops[] = {"write",
					    "pwrite64",
					    "writev",
					    "pwritev",
					    "pwritev2",
					    "ftruncate",
					    "fallocate",
					    "copy_file_range",
					    "sendfile",
					    "splice",
					    "mmap",
					    "mprotect",
					    "io_uring_write",
					    "io_uring_writev",
					    "io_uring_write_fixed",
					    "io_uring_fixed_file",
					    "io_uring_sqpoll",
					    "io_uring_fallocate",
					    "io_uring_splice",
					    "io_uring_ftruncate",
					    "ia32_write",
					    "mmap_late",
					    NULL};
	for (int i = 0; fdops[i]; i++) {
		if (is(fdops[i]))
			return true;
	}
	return false;
}

static int do_uring(int fd)
{
	struct io_uring ring;
	struct io_uring_params p = {0};
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	static char buf[4096] = "io_uring data\n";
	struct iovec iov = {buf, 14};
	int rc, pipefd[2] = {-1, -1};

	if (is("io_uring_sqpoll")) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 100;
	}
	rc = io_uring_queue_init_params(8, &ring, &p);
	if (rc < 0)
		return die("io_uring_queue_init", -rc);
	sqe = io_uring_get_sqe(&ring);
	if (is("io_uring_write") || is("io_uring_sqpoll")) {
		io_uring_prep_write(sqe, fd, buf, 14, 0);
	} else if (is("io_uring_writev")) {
		io_uring_prep_writev(sqe, fd, &iov, 1, 0);
	} else if (is("io_uring_write_fixed")) {
		rc = io_uring_register_buffers(&ring, &iov, 1);
		if (rc < 0)
			return die("register_buffers", -rc);
		io_uring_prep_write_fixed(sqe, fd, buf, 14, 0, 0);
	} else if (is("io_uring_fixed_file")) {
		rc = io_uring_register_files(&ring, &fd, 1);
		if (rc < 0)
			return die("register_files", -rc);
		io_uring_prep_write(sqe, 0, buf, 14, 0);
		sqe->flags |= IOSQE_FIXED_FILE;
	} else if (is("io_uring_fallocate")) {
		io_uring_prep_fallocate(sqe, fd, 0, 0, 8192);
	} else if (is("io_uring_ftruncate")) {
		/* IORING_OP_FTRUNCATE (6.9): liburing 2.3 has no helper */
		io_uring_prep_rw(55, sqe, fd, NULL, 0, 1);
	} else if (is("io_uring_splice")) {
		if (pipe(pipefd) < 0 || write(pipefd[1], buf, 14) != 14)
			return die("pipe", errno);
		io_uring_prep_splice(sqe, pipefd[0], -1, fd, 0, 14, 0);
	} else if (is("io_uring_openat")) {
		io_uring_prep_openat(sqe, AT_FDCWD, path, O_WRONLY | O_CREAT, 0644);
	} else if (is("io_uring_renameat")) {
		io_uring_prep_renameat(sqe, AT_FDCWD, path, AT_FDCWD, path2, 0);
	} else if (is("io_uring_unlinkat")) {
		io_uring_prep_unlinkat(sqe, AT_FDCWD, path, 0);
	} else {
		fprintf(stderr, "guard_op: unknown operation %s\n", op);
		return 64;
	}
	rc = io_uring_submit(&ring);
	if (rc < 0)
		return die("io_uring_submit", -rc);
	rc = io_uring_wait_cqe(&ring, &cqe);
	if (rc < 0)
		return die("io_uring_wait_cqe", -rc);
	rc = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	if (rc == -EINVAL && is("io_uring_ftruncate")) {
		fprintf(stderr, "guard_op: this kernel's io_uring has no ftruncate\n");
		return 77;
	}
	if (rc < 0)
		return die("io_uring request", -rc);
	if (is("io_uring_openat"))
		close(rc);
	return 0;
}

/* The operation itself, on fd (or -1) and the paths. */
static int do_op(int fd)
{
	static const char data[] = "guarded data\n";
	struct iovec iov = {(void *)data, sizeof(data) - 1};
	int src, rc = 0;

	if (!strncmp(op, "io_uring_", 9))
		return do_uring(fd);
	if (is("ia32_write")) {
		/* The 32-bit ABI wants addresses below 4 GiB. */
		char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
		long ret;
		if (low == MAP_FAILED)
			return die("mmap MAP_32BIT", errno);
		memcpy(low, data, iov.iov_len);
		__asm__ volatile("int $0x80"
				 : "=a"(ret)
				 : "a"(4L), "b"((long)fd), "c"((long)(uintptr_t)low),
				   "d"((long)iov.iov_len)
				 : "memory");
		if (ret == -ENOSYS) {
			fprintf(stderr, "guard_op: no ia32 emulation in this kernel\n");
			return 77;
		}
		return ret < 0 ? die("int 0x80 write", (int)-ret) : 0;
	}
	if (is("safe_write")) {
		rc = bumba_safe_write(agent, path, data, iov.iov_len, BUMBA_WRITE_BACKUP);
		return rc < 0 ? die("bumba_safe_write", -rc) : 0;
	}
	if (is("write"))
		rc = write(fd, data, iov.iov_len) < 0;
	else if (is("pwrite64"))
		rc = pwrite(fd, data, iov.iov_len, 0) < 0;
	else if (is("writev"))
		rc = writev(fd, &iov, 1) < 0;
	else if (is("pwritev"))
		rc = pwritev(fd, &iov, 1, 0) < 0;
	else if (is("pwritev2"))
		rc = pwritev2(fd, &iov, 1, 0, 0) < 0;
	else if (is("ftruncate"))
		rc = ftruncate(fd, 1) < 0;
	else if (is("fallocate"))
		rc = fallocate(fd, 0, 0, 8192) < 0;
	else if (is("copy_file_range") || is("sendfile")) {
		const char *s = getenv("GUARD_SRC") ? getenv("GUARD_SRC") : "/etc/hostname";
		src = open(s, O_RDONLY | O_CLOEXEC);
		if (src < 0)
			return die(s, errno);
		if (is("sendfile"))
			rc = sendfile(fd, src, NULL, 4) < 0;
		else
			rc = copy_file_range(src, NULL, fd, NULL, 4, 0) < 0;
		close(src);
	} else if (is("splice")) {
		int p[2];
		if (pipe(p) < 0 || write(p[1], data, iov.iov_len) < 0)
			return die("pipe", errno);
		rc = splice(p[0], NULL, fd, NULL, iov.iov_len, 0) < 0;
	} else if (is("mmap") || is("mprotect")) {
		char *m = mmap(NULL, 4096, is("mmap") ? PROT_READ | PROT_WRITE : PROT_READ,
			       MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			return die("mmap", errno);
		if (is("mprotect") && mprotect(m, 4096, PROT_READ | PROT_WRITE) < 0)
			return die("mprotect", errno);
		m[0] = 'M';
		munmap(m, 4096);
	} else if (is("open")) {
		rc = (fd = (int)syscall(SYS_open, path, O_WRONLY | O_CREAT, 0644)) < 0;
	} else if (is("openat")) {
		rc = (fd = openat(AT_FDCWD, path, O_RDWR | O_TRUNC)) < 0;
	} else if (is("openat2")) {
		struct open_how how = {.flags = O_WRONLY | O_CREAT, .mode = 0644};
		rc = (fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how))) < 0;
	} else if (is("creat")) {
		rc = (fd = creat(path, 0644)) < 0;
	} else if (is("truncate")) {
		rc = truncate(path, 2) < 0;
	} else if (is("rename")) {
		rc = (int)syscall(SYS_rename, path, path2) < 0;
	} else if (is("renameat")) {
		rc = renameat(AT_FDCWD, path, AT_FDCWD, path2) < 0;
	} else if (is("renameat2")) {
		rc = renameat2(AT_FDCWD, path, AT_FDCWD, path2, RENAME_NOREPLACE) < 0;
	} else if (is("unlink")) {
		rc = (int)syscall(SYS_unlink, path) < 0;
	} else if (is("unlinkat")) {
		rc = unlinkat(AT_FDCWD, path, 0) < 0;
	} else if (is("rmdir")) {
		rc = (int)syscall(SYS_rmdir, path) < 0;
	} else if (is("link")) {
		rc = (int)syscall(SYS_link, path, path2) < 0;
	} else if (is("symlink")) {
		rc = (int)syscall(SYS_symlink, "target", path) < 0;
	} else if (is("mkdir")) {
		rc = (int)syscall(SYS_mkdir, path, 0755) < 0;
	} else {
		fprintf(stderr, "guard_op: unknown operation %s\n", op);
		return 64;
	}
	if (rc)
		return die(op, errno);
	if ((is("open") || is("openat") || is("openat2") || is("creat")) && fd >= 0)
		close(fd);
	return 0;
}

static int become_agent(void)
{
	struct bumba_agent_info info = {.type = "Test", .name = "guardop"};
	int rc = bumba_open(NULL, &info, &agent);

	if (rc < 0)
		return die("bumba_open", -rc);
	return 0;
}

static int lock(const char *p)
{
	int rc = bumba_lock_acquire(agent, p, BUMBA_EXCLUSIVE, 5000, BUMBA_PRIO_NORMAL,
				    &locks[nlocks]);
	if (rc < 0)
		return die("bumba_lock_acquire", -rc);
	nlocks++;
	return 0;
}

static void unlock_all(void)
{
	while (nlocks > 0)
		bumba_lock_release(agent, &locks[--nlocks]);
}

static int run(int fd, bool do_fork)
{
	pid_t c;
	int st;

	if (!do_fork) {
		printf("pid=%d\n", (int)getpid());
		fflush(stdout);
		return do_op(fd);
	}
	fflush(stdout);
	c = fork();
	if (c < 0)
		return die("fork", errno);
	if (c == 0) {
		printf("pid=%d\n", (int)getpid());
		fflush(stdout);
		_exit(do_op(fd));
	}
	if (waitpid(c, &st, 0) < 0 || !WIFEXITED(st))
		return 1;
	return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
	const char *who = "stranger";
	bool do_fork = false, release_now = false;
	int i, fd = -1, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--who") && i + 1 < argc)
			who = argv[++i];
		else if (!strcmp(argv[i], "--fork"))
			do_fork = true;
		else if (!strcmp(argv[i], "--release-now"))
			release_now = true;
		else
			return 64;
	}
	if (argc - i < 2)
		return 64;
	op = argv[i];
	path = argv[i + 1];
	path2 = argc - i > 2 ? argv[i + 2] : NULL;

	if (!strcmp(who, "none")) {
		if (needs_fd() && (fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
			return die("open", errno);
		return run(fd, do_fork);
	}
	if ((rc = become_agent()))
		return rc;
	if (!strcmp(who, "second")) {
		struct bumba *first = agent;
		if ((rc = become_agent()) || (rc = lock(path)))
			return rc;
		if (needs_fd() && (fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
			return die("open", errno);
		rc = run(fd, do_fork);
		usleep(1000);
		unlock_all();
		bumba_close(agent);
		bumba_close(first);
		return rc;
	}
	if (!strcmp(who, "monitored") || !strcmp(who, "territory")) {
		char dir[4096];
		const char *paths[2];
		size_t n = 0;
		snprintf(dir, sizeof(dir), "%s", path);
		*strrchr(dir, '/') = '\0';
		paths[n++] = dir;
		rc = bumba_territory_claim(agent, "guard test", paths, n,
					   !strcmp(who, "monitored") ? BUMBA_TERRITORY_MONITORED
								     : BUMBA_TERRITORY_EXCLUSIVE,
					   &tid, NULL, 0, NULL);
		if (rc < 0)
			return die("bumba_territory_claim", -rc);
		if (needs_fd() && (fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
			return die("open", errno);
		rc = run(fd, do_fork);
		bumba_territory_release(agent, tid);
		bumba_close(agent);
		return rc;
	}
	if ((rc = lock(path)) || (path2 &&
				  (is("rename") || is("renameat") || is("renameat2") ||
				   is("link") || is("io_uring_renameat")) &&
				  (rc = lock(path2))))
		return rc;
	if (needs_fd() && (fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return die("open", errno);
	if (!strcmp(who, "holder") && is("mmap_late")) {
		char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			return die("mmap", errno);
		unlock_all();
		printf("pid=%d\n", (int)getpid());
		fflush(stdout);
		m[1] = 'L'; /* after the release: not sanctioned */
		munmap(m, 4096);
		bumba_close(agent);
		return 0;
	}
	if (!strcmp(who, "holder")) {
		rc = run(fd, do_fork);
		if (!release_now)
			usleep(1000);
		unlock_all();
		bumba_close(agent);
		return rc;
	}
	/* stranger, agent: give everything up, then do OP. */
	unlock_all();
	if (!strcmp(who, "stranger")) {
		bumba_close(agent);
		agent = NULL;
	}
	rc = run(fd, do_fork);
	bumba_close(agent);
	return rc;
}
