/* SPDX-License-Identifier: MIT */
/*
 * harness.h - what the multi-process tests (tests/integration/mp_*.c) share:
 *
 *   - a private bumbad per test program, in a fresh mkdtemp directory under
 *     /tmp (socket, workspace and bumbad's stderr log inside), its clean
 *     stop, its kill -9 and its restart on the same socket;
 *   - a TAP-ish reporter: "ok N - name" / "not ok N - name: reason", a last
 *     line "P passed, F failed", exit status 1 on any failure, and
 *     "skip: reason" with exit status 77 when something is missing;
 *   - agent children: a forked process that registers its own agent and
 *     runs lock commands the parent sends it over a pipe, so the parent can
 *     SIGKILL it at a chosen moment;
 *   - the hammer: worker processes taking random locks on a few paths under
 *     an independent mutual-exclusion checker (a MAP_SHARED page that is not
 *     bumba), while the parent SIGKILLs them at random and forks
 *     replacements;
 *   - a leak check of the segment through a read-only observer mapping.
 *
 * Everything here is static: each test program includes it once.  Only the
 * parent process reports; children leave with _exit().
 *
 * Environment: BUILD (default "build") holds bumbad; HARNESS_KEEP=1 keeps
 * the temporary directory (it is always kept after a failure);
 * HARNESS_SABOTAGE=1 makes the hammer's workers lock private paths, so
 * the checker must report violations (a self-test of the checker).
 */
#ifndef BUMBA_MP_HARNESS_H
#define BUMBA_MP_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define H_FN static __attribute__((unused))

/* ---------------------------------------------------------------------
 * Clock, random numbers, small utilities
 * ------------------------------------------------------------------- */

H_FN uint64_t h_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

H_FN void h_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

H_FN void h_sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* xorshift64*: every process seeds its own. */
static uint64_t h_rng_state = 88172645463325252ull;

H_FN void h_srand(uint64_t seed)
{
	h_rng_state = seed ? seed : 88172645463325252ull;
}

H_FN uint32_t h_rand(uint32_t n)
{
	uint64_t x = h_rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	h_rng_state = x;
	return n ? (uint32_t)((x * 2685821657736338717ull) >> 32) % n : 0;
}

/* A positive integer from the environment, def if unset or malformed. */
H_FN long h_env_long(const char *name, long def)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno || *end || v <= 0 ? def : v;
}

H_FN const char *h_err(int rc)
{
	return strerror(rc < 0 ? -rc : rc);
}

/* ---------------------------------------------------------------------
 * Reporter
 * ------------------------------------------------------------------- */

static int h_tests, h_passed, h_failed;
static char h_why[2048]; /* reason of the running test's first failure */
static pid_t h_main_pid; /* the reporting process */
static bool h_keep_dir;	 /* a failure: keep the logs */

/* Records the first failure reason of the running test. */
H_FN void h_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
H_FN void h_fail(const char *fmt, ...)
{
	va_list ap;

	if (h_why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(h_why, sizeof(h_why), fmt, ap);
	va_end(ap);
}

/* A diagnostic line ("# ..."), from the parent only. */
H_FN void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
H_FN void h_note(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Checks cond; on failure records the reason.  Returns cond. */
H_FN bool h_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
H_FN bool h_check(bool cond, const char *fmt, ...)
{
	va_list ap;

	if (cond || h_why[0])
		return cond;
	va_start(ap, fmt);
	vsnprintf(h_why, sizeof(h_why), fmt, ap);
	va_end(ap);
	return false;
}

/* Prints the verdict of one test from h_why (empty: passed). */
H_FN void h_report(const char *name)
{
	h_tests++;
	if (!h_why[0]) {
		h_passed++;
		printf("ok %d - %s\n", h_tests, name);
	} else {
		h_failed++;
		h_keep_dir = true;
		printf("not ok %d - %s: %s\n", h_tests, name, h_why);
	}
	h_why[0] = '\0';
	fflush(stdout);
}

/* Runs fn as one test; fn records failures with h_fail() / h_check(). */
H_FN void h_run(const char *name, void (*fn)(void))
{
	h_why[0] = '\0';
	fn();
	h_report(name);
}

H_FN void h_cleanup(void);

/* Stops bumbad, removes (or, after a failure, keeps) the temporary
 * directory, prints the last line; returns the exit status. */
H_FN int h_finish(void)
{
	h_cleanup();
	printf("%d passed, %d failed\n", h_passed, h_failed);
	fflush(stdout);
	return h_failed ? 1 : 0;
}

H_FN _Noreturn void h_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
H_FN _Noreturn void h_skip(const char *fmt, ...)
{
	va_list ap;

	printf("skip: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(77);
}

/* ---------------------------------------------------------------------
 * The supervisor
 * ------------------------------------------------------------------- */

struct h_sup {
	char dir[64];
	char sock[128];
	char ws[128];
	char ws_real[PATH_MAX]; /* the workspace as bumbad normalises it */
	char log[128];
	char bin[PATH_MAX];
	pid_t pid;
	int starts;
};

static struct h_sup *h_the_sup; /* stopped and removed at exit */

/* Forks a child that dies with the parent. */
H_FN pid_t h_fork(int deathsig)
{
	pid_t parent = getpid(), pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, deathsig);
		if (getppid() != parent)
			_exit(1);
	}
	return pid;
}

H_FN void h_sup_log_tail(const struct h_sup *s, int lines)
{
	char cmd[256];

	h_note("last %d lines of %s:", lines, s->log);
	fflush(stdout);
	snprintf(cmd, sizeof(cmd), "tail -n %d '%s' | sed 's/^/#   /'", lines, s->log);
	if (system(cmd) != 0)
		h_note("(no log)");
	fflush(stdout);
}

/* Starts bumbad on s's socket and waits until an agent can register.
 * 0, or -1 with the reason recorded. */
H_FN int h_sup_spawn(struct h_sup *s)
{
	const uint64_t deadline = h_now_ns() + 5000000000ull;
	pid_t pid = h_fork(SIGTERM);

	if (pid < 0) {
		h_fail("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			dup2(fd, 2);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		execl(s->bin, "bumbad", "--foreground", "--socket", s->sock, "--workspace", s->ws,
		      "--no-guard", "--http", "off", "--keeper-linger", "10", (char *)NULL);
		dprintf(2, "harness: exec %s: %s\n", s->bin, strerror(errno));
		_exit(127);
	}
	s->pid = pid;
	s->starts++;
	for (;;) {
		struct bumba *b;
		int st, rc;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			s->pid = 0;
			h_fail("bumbad exited during start-up (status 0x%x)", st);
			h_sup_log_tail(s, 20);
			return -1;
		}
		rc = bumba_open(s->sock, NULL, &b);
		if (rc == 0) {
			bumba_close(b);
			return 0;
		}
		if (h_now_ns() > deadline) {
			h_fail("bumbad not ready after 5 s (bumba_open: %s)", h_err(rc));
			h_sup_log_tail(s, 20);
			return -1;
		}
		h_sleep_ms(20);
	}
}

/* A fresh directory and a bumbad in it; BUMBA_SOCKET points to it.  Skips
 * the program (exit 77) when there is no bumbad binary. */
H_FN int h_sup_start(struct h_sup *s)
{
	const char *build = getenv("BUILD");

	memset(s, 0, sizeof(*s));
	if (!build || !*build)
		build = "build";
	snprintf(s->bin, sizeof(s->bin), "%s/bumbad", build);
	if (access(s->bin, X_OK) != 0)
		h_skip("no executable %s (build it first: make %s)", s->bin, s->bin);
	snprintf(s->dir, sizeof(s->dir), "/tmp/bumba-mp.XXXXXX");
	if (!mkdtemp(s->dir)) {
		h_fail("mkdtemp: %s", strerror(errno));
		return -1;
	}
	snprintf(s->sock, sizeof(s->sock), "%s/bumba.sock", s->dir);
	snprintf(s->ws, sizeof(s->ws), "%s/ws", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/bumbad.log", s->dir);
	if (mkdir(s->ws, 0700) < 0 || !realpath(s->ws, s->ws_real)) {
		h_fail("%s: %s", s->ws, strerror(errno));
		return -1;
	}
	setenv("BUMBA_SOCKET", s->sock, 1);
	h_the_sup = s;
	return h_sup_spawn(s);
}

/* SIGTERM and wait (SIGKILL after 5 s).  Returns bumbad's wait status, or
 * -1 if it had to be killed or was not running. */
H_FN int h_sup_stop(struct h_sup *s)
{
	const uint64_t deadline = h_now_ns() + 5000000000ull;
	int st = -1;

	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	for (;;) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid)
			break;
		if (h_now_ns() > deadline) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			st = -1;
			break;
		}
		h_sleep_ms(5);
	}
	s->pid = 0;
	return st;
}

/* kill -9, reaped. */
H_FN void h_sup_kill9(struct h_sup *s)
{
	if (s->pid <= 0)
		return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

/* kill -9 (if running) and start again on the same socket. */
H_FN int h_sup_restart(struct h_sup *s)
{
	h_sup_kill9(s);
	return h_sup_spawn(s);
}

H_FN int h_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* Stops bumbad and removes the directory unless something failed; also
 * run at exit, so that an early exit leaves nothing running. */
H_FN void h_cleanup(void)
{
	struct h_sup *s = h_the_sup;

	if (getpid() != h_main_pid || !s)
		return;
	h_the_sup = NULL;
	if (s->pid > 0)
		h_sup_stop(s);
	if (h_keep_dir || getenv("HARNESS_KEEP")) {
		printf("# kept %s (bumbad log: %s)\n", s->dir, s->log);
		fflush(stdout);
		return;
	}
	if (s->dir[0])
		nftw(s->dir, h_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* First thing in main(). */
H_FN void h_init(void)
{
	h_main_pid = getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	atexit(h_cleanup);
	h_srand((uint64_t)h_now_ns() ^ ((uint64_t)getpid() << 32));
}

/* ---------------------------------------------------------------------
 * Looking at the segment: a read-only observer mapping
 * ------------------------------------------------------------------- */

/* Holds lock view of the lock whose normalised path is ws_real/rel; false if
 * it is idle or unknown. */
H_FN bool h_find_lock(const struct bumba_seg *seg, const struct h_sup *s, const char *rel,
		      struct bumba_lock_view *v)
{
	char want[PATH_MAX + 256];
	int n = snprintf(want, sizeof(want), "%s/%s", s->ws_real, rel);

	if (n < 0 || (size_t)n >= sizeof(want))
		return false;
	for (uint32_t i = 0; i < seg->hdr->lock_slots; i++) {
		if (bumba_locks_view(seg, i, v) && strcmp(v->path, want) == 0)
			return true;
	}
	return false;
}

/* Nothing may be left once every agent is gone: no live agent slot, no
 * held or waited-for lock, no queued waiter record, no hold record, no
 * waiting mark.  Returns the number of leaks; verbose: reports them (notes
 * and h_fail). */
H_FN int h_seg_leaks(const struct bumba_seg *seg, bool verbose)
{
	const struct seg_header *h = seg->hdr;
	struct bumba_totals t;
	unsigned live = 0, other = 0, views = 0, waiters = 0, holds = 0, waitmarks = 0;
	int leaks = 0;

	bumba_seg_totals(seg, &t);
	for (uint32_t a = 0; a < h->caps.max_agents; a++) {
		const struct agent_slot *ag = &seg->agents[a];
		uint32_t st = atomic_load(&ag->state);
		if (st == AGENT_LIVE) {
			if (verbose && live < 3)
				h_note("leak: agent slot %u live: %s pid %d", a, ag->id, ag->pid);
			live++;
		} else if (st != AGENT_FREE) {
			if (verbose && other < 3)
				h_note("leak: agent slot %u in state %u: %s pid %d", a, st, ag->id,
				       ag->pid);
			other++;
		}
		if (st == AGENT_FREE && atomic_load(&ag->gen) == 0)
			continue; /* never used: do not fault its hold table in */
		if (atomic_load(&ag->n_waiting))
			waitmarks++;
		for (int k = 0; k < BUMBA_AGENT_WAITS; k++)
			waitmarks += atomic_load(&ag->waiting[k]) != 0;
		if (st != AGENT_FREE)
			continue;
		const struct hold *hs = bumba_seg_holds_of(seg, a);
		for (uint32_t j = 0; j < h->caps.holds_per_agent; j++) {
			uint32_t l = atomic_load(&hs[j].lock1);
			uint32_t hst = atomic_load(&hs[j].state);
			if ((!l || l == UINT32_MAX) && (hst & 0xff) == HOLD_FREE)
				continue;
			if (verbose && holds < 3)
				h_note("leak: free agent slot %u (gen %u), hold %u: lock+1 %u, "
				       "state 0x%x, count %u, mode %u",
				       a, atomic_load(&ag->gen), j, l, hst,
				       atomic_load(&hs[j].count), hs[j].mode);
			holds++;
		}
	}
	for (uint32_t w = 0; w < (h->caps.max_agents + 63) / 64; w++)
		waitmarks += atomic_load(&seg->waitmap[w]) != 0;
	for (uint32_t i = 0; i < h->lock_slots; i++) {
		struct bumba_lock_view v;
		if (!bumba_locks_view(seg, i, &v))
			continue;
		if (verbose && views < 3)
			h_note("leak: lock %s: owner slot+1 %u, %u sharers, %u waiters, fence %llu",
			       v.path, v.owner1, v.shared, v.nwaiters, (unsigned long long)v.fence);
		views++;
	}
	for (uint32_t i = 0; i < h->caps.max_waiters; i++) {
		const struct waiter *w = &seg->waiters[i];
		uint32_t st = atomic_load(&w->state);
		if (st != WAITER_FREE) {
			if (verbose && waiters < 3)
				h_note("leak: waiter record %u state %u agent slot+1 %u lock %u", i,
				       st, w->agent1, w->lock);
			waiters++;
		}
	}
	leaks = (int)(live + other + views + waiters + holds + waitmarks + t.agents_active +
		      t.locks_active + t.locks_waiting + atomic_load(&h->n_agents));
	if (leaks && verbose)
		h_fail("leaks: %u live + %u dying/closing agent slots (n_agents %u, totals say %u "
		       "active), %u locks held or waited for (totals: %u active, %u waiting), "
		       "%u waiter records, %u hold records, %u waiting marks",
		       live, other, atomic_load(&h->n_agents), t.agents_active, views,
		       t.locks_active, t.locks_waiting, waiters, holds, waitmarks);
	return leaks;
}

/* Looks at the segment settle_ms after the last agent is gone: any leak
 * then is a failure.  To tell slow from leaked, it keeps looking up to
 * max_ms and says which.  Returns the number of leaks of the first look. */
H_FN int h_check_clean(const struct h_sup *s, unsigned settle_ms, unsigned max_ms,
		       struct bumba_totals *out)
{
	struct bumba_seg seg;
	uint64_t t0;
	int rc, leaks, left;

	h_sleep_ms(settle_ms);
	rc = bumba_observe(s->sock, &seg);
	if (rc) {
		h_fail("bumba_observe: %s", h_err(rc));
		return 1;
	}
	t0 = h_now_ns();
	leaks = h_seg_leaks(&seg, true);
	left = leaks;
	while (left && h_now_ns() - t0 < max_ms * 1000000ull) {
		h_sleep_ms(10);
		left = h_seg_leaks(&seg, false);
	}
	if (leaks && !left)
		h_note("the segment was clean only %.0f ms after the last agent was gone",
		       settle_ms + (double)(h_now_ns() - t0) / 1e6);
	else if (left)
		h_note("still there %u ms after the last agent was gone", settle_ms + max_ms);
	if (out)
		bumba_seg_totals(&seg, out);
	bumba_seg_unmap(&seg);
	return leaks;
}

/* ---------------------------------------------------------------------
 * Agent children: one process, one agent, lock commands over a pipe
 * ------------------------------------------------------------------- */

enum h_cmd {
	H_READY = 1,  /* child -> parent after bumba_open: rc, slot */
	H_ACQUIRE,    /* path, mode, timeout_ms, prio, lease_ms -> rc, lock, fence, owner_died */
	H_RELEASE,    /* lock -> rc */
	H_RENEW,      /* lock, lease_ms -> rc */
	H_RENEW_LOOP, /* lock, lease_ms, period_ms, duration_ms -> rc (first error), count */
	H_CLOSE,      /* bumba_close, then exit 0 */
};

#define H_AGENT_LOCKS 8

struct h_msg {
	int32_t cmd;
	int32_t rc;
	int32_t mode, timeout_ms, prio;
	uint32_t lease_ms, period_ms, duration_ms;
	int32_t lock; /* index into the child's table of held locks */
	int32_t owner_died;
	uint32_t slot, count;
	uint64_t fence;
	uint64_t elapsed_ns;
	char path[128];
};

struct h_agent {
	pid_t pid;
	int to, from; /* pipes: parent writes to, reads from */
	uint32_t slot;
	char name[32];
};

H_FN int h_write_msg(int fd, const struct h_msg *m)
{
	return write(fd, m, sizeof(*m)) == (ssize_t)sizeof(*m) ? 0 : -EPIPE;
}

/* 0, -ETIMEDOUT or -EPIPE (peer gone). */
H_FN int h_read_msg(int fd, struct h_msg *m, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	size_t got = 0;

	while (got < sizeof(*m)) {
		int r = poll(&p, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t n = read(fd, (char *)m + got, sizeof(*m) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

H_FN _Noreturn void h_agent_main(int in, int out, const char *name)
{
	struct bumba_agent_info info = {.type = "Test", .name = name};
	struct bumba_lock locks[H_AGENT_LOCKS];
	bool used[H_AGENT_LOCKS] = {false};
	struct bumba *b = NULL;
	struct h_msg m = {.cmd = H_READY};

	m.rc = bumba_open(NULL, &info, &b);
	if (m.rc == 0)
		m.slot = bumba_handle_slot(b);
	h_write_msg(out, &m);
	if (m.rc)
		_exit(2);
	while (h_read_msg(in, &m, -1) == 0) {
		uint64_t t0 = h_now_ns();
		struct bumba_lock *lk =
			m.lock >= 0 && m.lock < H_AGENT_LOCKS ? &locks[m.lock] : NULL;

		switch (m.cmd) {
		case H_ACQUIRE: {
			struct bumba_lock_opts o = {.mode = (enum bumba_mode)m.mode,
						    .timeout_ms = m.timeout_ms,
						    .prio = (enum bumba_priority)m.prio,
						    .lease_ms = m.lease_ms};
			int i = 0;
			while (i < H_AGENT_LOCKS && used[i])
				i++;
			if (i == H_AGENT_LOCKS) {
				m.rc = -ENOBUFS;
				break;
			}
			m.rc = bumba_lock_acquire_opts(b, m.path, &o, &locks[i]);
			m.elapsed_ns = h_now_ns() - t0;
			if (m.rc == 0) {
				used[i] = true;
				m.lock = i;
				m.fence = locks[i].fence;
				m.owner_died = bumba_lock_owner_died(&locks[i]);
			}
			break;
		}
		case H_RELEASE:
			m.rc = lk ? bumba_lock_release(b, lk) : -EINVAL;
			if (m.rc == 0)
				used[m.lock] = false;
			break;
		case H_RENEW:
			m.rc = lk ? bumba_lock_renew(b, lk, m.lease_ms) : -EINVAL;
			break;
		case H_RENEW_LOOP:
			m.rc = lk ? 0 : -EINVAL;
			m.count = 0;
			while (lk && h_now_ns() - t0 < (uint64_t)m.duration_ms * 1000000ull) {
				h_sleep_ms(m.period_ms);
				int rc = bumba_lock_renew(b, lk, m.lease_ms);
				if (rc && !m.rc)
					m.rc = rc;
				m.count++;
			}
			m.elapsed_ns = h_now_ns() - t0;
			break;
		case H_CLOSE:
			bumba_close(b);
			m.rc = 0;
			h_write_msg(out, &m);
			_exit(0);
		default:
			m.rc = -EINVAL;
			break;
		}
		if (h_write_msg(out, &m) < 0)
			break;
	}
	_exit(0);
}

/* Forks an agent child and waits for its registration (5 s).  0 or the
 * negative errno of its bumba_open (recorded with h_fail). */
H_FN int h_agent_start(struct h_agent *a, const char *name)
{
	int to[2], from[2];
	struct h_msg m;
	int rc;

	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		h_fail("pipe: %s", strerror(errno));
		return -errno;
	}
	a->pid = h_fork(SIGKILL);
	if (a->pid == 0) {
		close(to[1]);
		close(from[0]);
		h_agent_main(to[0], from[1], a->name);
	}
	close(to[0]);
	close(from[1]);
	a->to = to[1];
	a->from = from[0];
	if (a->pid < 0) {
		h_fail("fork: %s", strerror(errno));
		return -EAGAIN;
	}
	rc = h_read_msg(a->from, &m, 5000);
	if (rc == 0)
		rc = m.rc;
	if (rc) {
		h_fail("agent %s: bumba_open: %s", name, h_err(rc));
		return rc;
	}
	a->slot = m.slot;
	return 0;
}

/* Sends one command without waiting for its answer. */
H_FN int h_agent_send(struct h_agent *a, struct h_msg *m)
{
	return h_write_msg(a->to, m);
}

/* Waits for the answer of the last command (timeout_ms); 0 or -ETIMEDOUT /
 * -EPIPE.  The command's own result is in m->rc. */
H_FN int h_agent_wait(struct h_agent *a, struct h_msg *m, int timeout_ms)
{
	return h_read_msg(a->from, m, timeout_ms);
}

/* Acquire helpers; return the acquire's rc (or the pipe error), m gets the
 * details. */
H_FN int h_agent_acquire(struct h_agent *a, const char *path, enum bumba_mode mode, int timeout_ms,
			 uint32_t lease_ms, struct h_msg *m)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->cmd = H_ACQUIRE;
	m->mode = (int32_t)mode;
	m->timeout_ms = timeout_ms;
	m->prio = BUMBA_PRIO_NORMAL;
	m->lease_ms = lease_ms;
	snprintf(m->path, sizeof(m->path), "%s", path);
	rc = h_agent_send(a, m);
	if (!rc)
		rc = h_agent_wait(a, m, timeout_ms + 5000);
	return rc ? rc : m->rc;
}

H_FN int h_agent_simple(struct h_agent *a, enum h_cmd cmd, int lock, uint32_t lease_ms)
{
	struct h_msg m = {.cmd = (int32_t)cmd, .lock = lock, .lease_ms = lease_ms};
	int rc = h_agent_send(a, &m);

	if (!rc)
		rc = h_agent_wait(a, &m, 5000);
	return rc ? rc : m.rc;
}

/* SIGKILL and reap.  Returns the wait status. */
H_FN int h_agent_kill(struct h_agent *a)
{
	int st = 0;

	if (a->pid <= 0)
		return -1;
	kill(a->pid, SIGKILL);
	waitpid(a->pid, &st, 0);
	a->pid = 0;
	close(a->to);
	close(a->from);
	return st;
}

/* bumba_close and exit; SIGKILL if it does not within 5 s. */
H_FN int h_agent_close(struct h_agent *a)
{
	struct h_msg m = {.cmd = H_CLOSE};
	int st = 0;

	if (a->pid <= 0)
		return -1;
	if (h_agent_send(a, &m) == 0)
		h_agent_wait(a, &m, 5000);
	for (int i = 0; i < 500 && waitpid(a->pid, &st, WNOHANG) != a->pid; i++)
		h_sleep_ms(10);
	if (kill(a->pid, 0) == 0 && waitpid(a->pid, &st, WNOHANG) != a->pid) {
		kill(a->pid, SIGKILL);
		waitpid(a->pid, &st, 0);
	}
	a->pid = 0;
	close(a->to);
	close(a->from);
	return st;
}

/* ---------------------------------------------------------------------
 * The hammer
 *
 * Workers (slots 0..n-1) each register their own agent and loop: a random
 * path of n_paths ("p/00".."p/15"), mostly exclusive, random priority, a
 * timeout of 2-5 s.  The checker is a MAP_SHARED anonymous page, not bumba:
 * per path the incarnation holding it exclusive (CAS 0 -> me) and, per
 * worker slot, the incarnation holding it shared; an exclusive holder
 * must see no live sharer and a sharer no live exclusive holder.  An entry
 * of a SIGKILLed incarnation is stale, not a violation: it is taken over
 * once the incarnation is confirmed dead (reaped by the parent, or a
 * zombie), and an exclusive acquirer taking over from a dead exclusive
 * holder must be told bumba_lock_owner_died().  Fencing tokens are checked
 * against the highest one recorded for the path.
 *
 * Per-slot arrays rather than one shared counter, because a sharer killed
 * between its increment and its decrement would leave the counter wrong
 * forever, with no way to tell a stale share from a live one.
 * ------------------------------------------------------------------- */

#define HM_MAX_WORKERS 64
#define HM_MAX_PATHS   16
#define HM_MAX_INC     8192 /* incarnations over the whole run */

enum { HM_FORKED, HM_REGISTERING, HM_IDLE, HM_WAITING, HM_HOLDING, HM_CHECKING, HM_STOPPED };

struct hm_inc { /* one worker process */
	_Atomic int32_t pid;
	_Atomic uint32_t state; /* HM_* */
	_Atomic uint32_t reaped;
	uint32_t slot;
	_Atomic uint64_t reg_ns; /* bumba_open returned (0: not yet) */
	_Atomic uint64_t end_ns; /* reaped */
	_Atomic uint64_t acquires;
	_Atomic uint64_t wait_start_ns; /* of the acquire in progress */
	/* The hold in progress, for violation reports. */
	_Atomic uint32_t agent_slot, mode, owner_died;
	_Atomic uint64_t fence, got_ns, waited_ns;
	char path[16];
} BUMBA_ALIGNED;

struct hm_path {
	_Atomic uint32_t excl;		     /* incarnation, 0: none */
	_Atomic uint32_t sh[HM_MAX_WORKERS]; /* per worker slot: incarnation, 0: none */
	_Atomic uint64_t last_fence;	     /* highest token recorded */
	_Atomic uint64_t last_excl_fence;    /* highest exclusive token recorded */
	_Atomic uint64_t acquires;
} BUMBA_ALIGNED;

struct hm_shared {
	_Atomic uint32_t stop;
	_Atomic uint32_t excl_violations, fence_violations, died_violations;
	_Atomic uint32_t errors; /* unexpected results of the API */
	_Atomic uint32_t excl_taken, fence_taken, died_taken, err_taken;
	char first_excl[1024], first_fence[512], first_died[512], first_error[512];
	_Atomic uint64_t acquires, excl_acquires, shared_acquires, timeouts, owner_died;
	_Atomic uint64_t takeovers, max_wait_ns, open_retries;
	struct hm_path paths[HM_MAX_PATHS];
	struct hm_inc inc[HM_MAX_INC + 1]; /* index 0 unused */
};

struct hammer {
	struct hm_shared *sh;
	int n_workers, n_paths;
	unsigned kill_ms;    /* mean interval between SIGKILLs */
	unsigned shared_pct; /* share of shared-mode acquires */
	bool sabotage;	     /* HARNESS_SABOTAGE=1: lock the wrong path (checker self-test) */
	pid_t pid[HM_MAX_WORKERS];
	uint32_t inc_of[HM_MAX_WORKERS];
	uint32_t next_inc;
	uint64_t kills, kills_by_state[HM_STOPPED + 1];
	uint64_t unexpected; /* workers that died without our SIGKILL */
	uint64_t stragglers; /* workers that did not stop in time */
	char first_unexpected[256];
};

H_FN void hm_record(_Atomic uint32_t *counter, _Atomic uint32_t *taken, char *buf, size_t cap,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
H_FN void hm_record(_Atomic uint32_t *counter, _Atomic uint32_t *taken, char *buf, size_t cap,
		    const char *fmt, ...)
{
	va_list ap;
	uint32_t z = 0;

	atomic_fetch_add(counter, 1);
	if (!atomic_compare_exchange_strong(taken, &z, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

/* kind: excl, fence or died. */
#define HM_VIOLATION(sh, kind, ...)                                                                \
	hm_record(&(sh)->kind##_violations, &(sh)->kind##_taken, (sh)->first_##kind,               \
		  sizeof((sh)->first_##kind), __VA_ARGS__)
#define HM_ERROR(sh, ...)                                                                          \
	hm_record(&(sh)->errors, &(sh)->err_taken, (sh)->first_error, sizeof((sh)->first_error),   \
		  __VA_ARGS__)

/* Is incarnation i gone?  Reaped by the parent, or a zombie / no process
 * (a pid cannot be reused before its zombie is reaped). */
H_FN bool hm_dead_now(struct hm_shared *sh, uint32_t i)
{
	struct hm_inc *r = &sh->inc[i];
	char path[64], buf[512];
	int fd;
	ssize_t n;

	if (atomic_load(&r->reaped))
		return true;
	pid_t pid = atomic_load(&r->pid);
	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

/* Dead now or within a grace period (a reclaimer may act on the pidfd a
 * moment before /proc says so). */
H_FN bool hm_dead(struct hm_shared *sh, uint32_t i)
{
	for (int k = 0; k < 200; k++) {
		if (hm_dead_now(sh, i))
			return true;
		h_sleep_ms(5);
	}
	return false;
}

H_FN void hm_path_name(int p, char *out, size_t cap)
{
	snprintf(out, cap, "p/%02d", p);
}

/* "pid P (agent slot S, exclusive fence F, held for X us after a wait of
 * Y us, owner-died)": what incarnation i is doing, for a violation report. */
H_FN void hm_who(struct hm_shared *sh, uint32_t i, char *out, size_t cap)
{
	const struct hm_inc *r = &sh->inc[i];
	uint64_t got = atomic_load(&r->got_ns), now = h_now_ns();

	snprintf(out, cap,
		 "pid %d (agent slot %u, %s on %s fence %llu, held for %.0f us after a "
		 "wait of %.0f us%s, state %u%s)",
		 (int)atomic_load(&r->pid), atomic_load(&r->agent_slot),
		 atomic_load(&r->mode) == BUMBA_SHARED ? "shared" : "exclusive", r->path,
		 (unsigned long long)atomic_load(&r->fence),
		 got && now > got ? (double)(now - got) / 1e3 : -1.0,
		 (double)atomic_load(&r->waited_ns) / 1e3,
		 atomic_load(&r->owner_died) ? ", owner-died" : "", atomic_load(&r->state),
		 hm_dead_now(sh, i) ? ", dead" : "");
}

/* The lock word of path as this worker's mapping shows it now. */
H_FN void hm_word(struct bumba *b, const char *path, char *out, size_t cap)
{
	const struct bumba_seg *seg = bumba_handle_seg(b);
	char norm[PATH_MAX];
	struct bumba_lock_view v;

	snprintf(out, cap, "lock word: idle or not found");
	if (bumba_path_normalize(b, path, norm, sizeof(norm)) < 0)
		return;
	for (uint32_t i = 0; i < seg->hdr->lock_slots; i++) {
		if (bumba_locks_view(seg, i, &v) && strcmp(v.path, norm) == 0) {
			snprintf(out, cap,
				 "lock word now: owner slot+1 %u, %u sharers, %u waiters, fence "
				 "%llu%s",
				 v.owner1, v.shared, v.nwaiters, (unsigned long long)v.fence,
				 v.owner_died ? ", owner-died" : "");
			return;
		}
	}
}

/* Reports a mutual-exclusion violation between me and other. */
H_FN void hm_clash(struct hm_shared *sh, struct bumba *b, const char *path, uint32_t me,
		   uint32_t other, const char *what)
{
	char a[320], o[320], w[160];

	hm_who(sh, me, a, sizeof(a));
	hm_who(sh, other, o, sizeof(o));
	hm_word(b, path, w, sizeof(w));
	HM_VIOLATION(sh, excl, "%s: %s: %s vs %s; %s", path, what, a, o, w);
}

/* Is other dead?  Waits a grace period; the parent leaves us alone while
 * we look (state HM_CHECKING), so that a clash is reported by both sides. */
H_FN bool hm_check_dead(struct hm_shared *sh, uint32_t me, uint32_t other)
{
	uint32_t st = atomic_exchange(&sh->inc[me].state, HM_CHECKING);
	bool dead = hm_dead(sh, other);

	atomic_store(&sh->inc[me].state, st);
	return dead;
}

/* Independent check of one grant, then a short hold, then the undo. */
H_FN void hm_hold(struct hm_shared *sh, struct bumba *b, int slot, uint32_t me, int pi,
		  const char *path, enum bumba_mode mode, const struct bumba_lock *lk)
{
	struct hm_path *p = &sh->paths[pi];
	bool took_from_dead = false;
	uint32_t cur;

	if (mode == BUMBA_EXCLUSIVE) {
		cur = 0;
		while (!atomic_compare_exchange_strong(&p->excl, &cur, me)) {
			if (!hm_check_dead(sh, me, cur)) {
				hm_clash(sh, b, path, me, cur,
					 "exclusive grant while another holds it exclusive");
				return;
			}
			took_from_dead = true;
			atomic_fetch_add(&sh->takeovers, 1);
		}
		for (int w = 0; w < HM_MAX_WORKERS; w++) {
			uint32_t o = atomic_load(&p->sh[w]);
			if (!o || o == me)
				continue;
			if (!hm_check_dead(sh, me, o)) {
				hm_clash(sh, b, path, me, o,
					 "exclusive grant while another holds it shared");
			} else {
				atomic_compare_exchange_strong(&p->sh[w], &o, 0);
				atomic_fetch_add(&sh->takeovers, 1);
			}
		}
		uint64_t last = atomic_load(&p->last_fence);
		if (lk->fence <= last)
			HM_VIOLATION(sh, fence, "%s: exclusive fencing token %llu after %llu", path,
				     (unsigned long long)lk->fence, (unsigned long long)last);
		if (took_from_dead && !bumba_lock_owner_died(lk))
			HM_VIOLATION(sh, died,
				     "%s: exclusive holder died holding it, but the next "
				     "exclusive acquirer (fence %llu) was not told owner-died",
				     path, (unsigned long long)lk->fence);
	} else {
		atomic_store(&p->sh[slot], me);
		uint64_t last = atomic_load(&p->last_excl_fence);
		if (lk->fence <= last)
			HM_VIOLATION(sh, fence,
				     "%s: shared fencing token %llu after exclusive %llu", path,
				     (unsigned long long)lk->fence, (unsigned long long)last);
		cur = atomic_load(&p->excl);
		if (cur) {
			if (!hm_check_dead(sh, me, cur)) {
				hm_clash(sh, b, path, me, cur,
					 "shared grant while another holds it exclusive");
				atomic_store(&p->sh[slot], 0);
				return;
			}
			atomic_compare_exchange_strong(&p->excl, &cur, 0);
			atomic_fetch_add(&sh->takeovers, 1);
		}
	}
	uint64_t f = atomic_load(&p->last_fence);
	while (lk->fence > f && !atomic_compare_exchange_weak(&p->last_fence, &f, lk->fence))
		;
	if (mode == BUMBA_EXCLUSIVE) {
		f = atomic_load(&p->last_excl_fence);
		while (lk->fence > f &&
		       !atomic_compare_exchange_weak(&p->last_excl_fence, &f, lk->fence))
			;
	}

	/* Hold it: mostly a few microseconds of spinning, sometimes long
	 * enough that waiters queue and sleep. */
	if (h_rand(16) == 0) {
		h_sleep_us(200 + h_rand(800));
	} else {
		uint64_t until = h_now_ns() + 1000 + h_rand(9000);
		while (h_now_ns() < until)
			;
	}

	if (mode == BUMBA_EXCLUSIVE) {
		cur = me;
		if (!atomic_compare_exchange_strong(&p->excl, &cur, 0))
			hm_clash(sh, b, path, me, cur,
				 "exclusive mark replaced while its holder held the lock");
		for (int w = 0; w < HM_MAX_WORKERS; w++) {
			uint32_t o = atomic_load(&p->sh[w]);
			if (o && o != me && !hm_dead_now(sh, o))
				hm_clash(sh, b, path, me, o,
					 "another took it shared during an exclusive hold");
		}
	} else {
		cur = atomic_load(&p->excl);
		if (cur && !hm_dead_now(sh, cur))
			hm_clash(sh, b, path, me, cur,
				 "another took it exclusive during a shared hold");
		atomic_store(&p->sh[slot], 0);
	}
}

/* The worker process: never returns. */
H_FN _Noreturn void hm_worker(struct hammer *hm, int slot, uint32_t me)
{
	struct hm_shared *sh = hm->sh;
	struct hm_inc *r = &sh->inc[me];
	struct bumba_agent_info info = {.type = "Hammer", .name = NULL};
	struct bumba *b = NULL;
	uint64_t deadline = h_now_ns() + 20000000000ull;
	char name[32];
	int rc;

	h_srand(h_now_ns() ^ ((uint64_t)me << 40) ^ (uint64_t)getpid());
	snprintf(name, sizeof(name), "w%d", slot);
	info.name = name;
	atomic_store(&r->pid, getpid());
	atomic_store(&r->state, HM_REGISTERING);
	/* The supervisor may be down (restart tests): keep trying. */
	while ((rc = bumba_open(NULL, &info, &b)) != 0) {
		if (atomic_load(&sh->stop)) {
			atomic_store(&r->state, HM_STOPPED);
			_exit(0);
		}
		if ((rc != -ECONNREFUSED && rc != -ENOENT && rc != -ESTALE && rc != -ECONNRESET &&
		     rc != -EPIPE) ||
		    h_now_ns() > deadline) {
			HM_ERROR(sh, "worker %d: bumba_open: %s", slot, h_err(rc));
			_exit(2);
		}
		atomic_fetch_add(&sh->open_retries, 1);
		h_sleep_ms(10 + h_rand(20));
	}
	atomic_store(&r->agent_slot, bumba_handle_slot(b));
	atomic_store(&r->reg_ns, h_now_ns());
	atomic_store(&r->state, HM_IDLE);

	while (!atomic_load(&sh->stop)) {
		int pi = (int)h_rand((uint32_t)hm->n_paths);
		enum bumba_mode mode =
			h_rand(100) < hm->shared_pct ? BUMBA_SHARED : BUMBA_EXCLUSIVE;
		enum bumba_priority prio = (enum bumba_priority)h_rand(3);
		int timeout = 2000 + (int)h_rand(3001);
		struct bumba_lock lk;
		char path[16];

		hm_path_name(pi, path, sizeof(path));
		if (hm->sabotage) /* negative control: a private lock protects nothing */
			snprintf(path, sizeof(path), "own/%02d", slot);
		uint64_t t0 = h_now_ns();
		atomic_store(&r->wait_start_ns, t0);
		atomic_store(&r->state, HM_WAITING);
		rc = bumba_lock_acquire(b, path, mode, timeout, prio, &lk);
		uint64_t waited = h_now_ns() - t0;
		if (rc == -ETIMEDOUT) {
			atomic_fetch_add(&sh->timeouts, 1);
			atomic_store(&r->state, HM_IDLE);
			continue;
		}
		if (rc) {
			HM_ERROR(sh, "worker %d pid %d: acquire %s %s: %s", slot, (int)getpid(),
				 path, mode == BUMBA_SHARED ? "shared" : "exclusive", h_err(rc));
			_exit(3);
		}
		atomic_store(&r->fence, lk.fence);
		atomic_store(&r->mode, mode);
		atomic_store(&r->owner_died, (uint32_t)bumba_lock_owner_died(&lk));
		atomic_store(&r->waited_ns, waited);
		memcpy(r->path, path, sizeof(r->path));
		atomic_store(&r->got_ns, h_now_ns());
		atomic_store(&r->state, HM_HOLDING);
		uint64_t mx = atomic_load(&sh->max_wait_ns);
		while (waited > mx && !atomic_compare_exchange_weak(&sh->max_wait_ns, &mx, waited))
			;
		if (bumba_lock_owner_died(&lk))
			atomic_fetch_add(&sh->owner_died, 1);
		hm_hold(sh, b, slot, me, pi, path, mode, &lk);
		rc = bumba_lock_release(b, &lk);
		if (rc) {
			HM_ERROR(sh, "worker %d pid %d: release %s: %s", slot, (int)getpid(), path,
				 h_err(rc));
			_exit(3);
		}
		atomic_store(&r->state, HM_IDLE);
		atomic_fetch_add(&r->acquires, 1);
		atomic_fetch_add(&sh->paths[pi].acquires, 1);
		atomic_fetch_add(&sh->acquires, 1);
		atomic_fetch_add(mode == BUMBA_SHARED ? &sh->shared_acquires : &sh->excl_acquires,
				 1);
	}
	bumba_close(b);
	atomic_store(&r->state, HM_STOPPED);
	_exit(0);
}

/* Forks the worker for slot. */
H_FN int hm_spawn(struct hammer *hm, int slot)
{
	uint32_t me;
	pid_t pid;

	if (hm->next_inc >= HM_MAX_INC)
		return -ENOSPC;
	me = ++hm->next_inc;
	memset(&hm->sh->inc[me], 0, sizeof(hm->sh->inc[me]));
	hm->sh->inc[me].slot = (uint32_t)slot;
	pid = h_fork(SIGKILL);
	if (pid < 0) {
		h_fail("fork: %s", strerror(errno));
		return -errno;
	}
	if (pid == 0)
		hm_worker(hm, slot, me);
	atomic_store(&hm->sh->inc[me].pid, pid);
	hm->pid[slot] = pid;
	hm->inc_of[slot] = me;
	return 0;
}

H_FN int hm_slot_of(const struct hammer *hm, pid_t pid)
{
	for (int w = 0; w < hm->n_workers; w++) {
		if (hm->pid[w] == pid)
			return w;
	}
	return -1;
}

H_FN void hm_reaped(struct hammer *hm, int slot)
{
	struct hm_inc *r = &hm->sh->inc[hm->inc_of[slot]];

	atomic_store(&r->end_ns, h_now_ns());
	atomic_store(&r->reaped, 1);
	hm->pid[slot] = 0;
}

/* Sets up the checker page and forks n workers. */
H_FN int hm_start(struct hammer *hm, int n_workers, int n_paths, unsigned kill_ms,
		  unsigned shared_pct)
{
	memset(hm, 0, sizeof(*hm));
	hm->sh = mmap(NULL, sizeof(*hm->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		      0);
	if (hm->sh == MAP_FAILED) {
		hm->sh = NULL;
		h_fail("mmap: %s", strerror(errno));
		return -1;
	}
	hm->n_workers = n_workers > HM_MAX_WORKERS ? HM_MAX_WORKERS : n_workers;
	hm->n_paths = n_paths > HM_MAX_PATHS ? HM_MAX_PATHS : n_paths;
	hm->kill_ms = kill_ms ? kill_ms : 1;
	hm->shared_pct = shared_pct;
	hm->sabotage = h_env_long("HARNESS_SABOTAGE", 0) == 1;
	if (hm->sabotage)
		h_note("HARNESS_SABOTAGE=1: workers lock private paths; the checker must fail");
	for (int w = 0; w < hm->n_workers; w++) {
		if (hm_spawn(hm, w) < 0)
			return -1;
	}
	return 0;
}

/* Reaps workers that died on their own (an error, or a crash). */
H_FN void hm_reap_unexpected(struct hammer *hm, bool respawn)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		int w = hm_slot_of(hm, pid);
		if (w < 0)
			continue;
		hm_reaped(hm, w);
		hm->unexpected++;
		if (!hm->first_unexpected[0])
			snprintf(hm->first_unexpected, sizeof(hm->first_unexpected),
				 "worker pid %d %s %d", (int)pid,
				 WIFSIGNALED(st) ? "killed by signal" : "exited with status",
				 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		if (respawn)
			hm_spawn(hm, w);
	}
}

/* A victim: a third of the time a holder, a third a waiter, else anyone. */
H_FN int hm_pick(struct hammer *hm)
{
	uint32_t want = h_rand(3);
	int cand[HM_MAX_WORKERS], n = 0;

	if (want < 2) {
		uint32_t st = want == 0 ? HM_HOLDING : HM_WAITING;
		for (int w = 0; w < hm->n_workers; w++) {
			if (hm->pid[w] > 0 && atomic_load(&hm->sh->inc[hm->inc_of[w]].state) == st)
				cand[n++] = w;
		}
		if (n)
			return cand[h_rand((uint32_t)n)];
	}
	for (int w = 0; w < hm->n_workers; w++) {
		if (hm->pid[w] > 0 && atomic_load(&hm->sh->inc[hm->inc_of[w]].state) != HM_CHECKING)
			cand[n++] = w;
	}
	return n ? cand[h_rand((uint32_t)n)] : -1;
}

/* SIGKILLs worker slot w, reaps it; respawns if asked. */
H_FN void hm_kill(struct hammer *hm, int w, bool respawn)
{
	uint32_t st = atomic_load(&hm->sh->inc[hm->inc_of[w]].state);

	kill(hm->pid[w], SIGKILL);
	waitpid(hm->pid[w], NULL, 0);
	hm_reaped(hm, w);
	hm->kills++;
	hm->kills_by_state[st <= HM_STOPPED ? st : 0]++;
	if (respawn)
		hm_spawn(hm, w);
}

/* Lets the workers run for ms milliseconds, SIGKILLing one every kill_ms
 * (on average) and forking its replacement. */
H_FN void hm_run(struct hammer *hm, unsigned ms)
{
	const uint64_t end = h_now_ns() + (uint64_t)ms * 1000000ull;

	for (;;) {
		uint64_t now = h_now_ns();
		if (now >= end)
			break;
		uint64_t nap = (uint64_t)(hm->kill_ms / 2 + h_rand(hm->kill_ms + 1)) * 1000000ull;
		if (nap > end - now)
			nap = end - now;
		h_sleep_us((unsigned)(nap / 1000));
		hm_reap_unexpected(hm, true);
		if (h_now_ns() >= end || hm->next_inc >= HM_MAX_INC)
			continue;
		int w = hm_pick(hm);
		if (w >= 0)
			hm_kill(hm, w, true);
	}
}

/* Stops the run: half of the workers (at random) are SIGKILLed, the others
 * finish their acquire in progress, bumba_close and exit. */
H_FN void hm_stop(struct hammer *hm)
{
	const uint64_t deadline = h_now_ns() + 15000000000ull;

	atomic_store(&hm->sh->stop, 1);
	for (int w = 0; w < hm->n_workers; w++) {
		if (hm->pid[w] > 0 && h_rand(2))
			hm_kill(hm, w, false);
	}
	for (;;) {
		int left = 0, st;
		for (int w = 0; w < hm->n_workers; w++) {
			if (hm->pid[w] <= 0)
				continue;
			pid_t r = waitpid(hm->pid[w], &st, WNOHANG);
			if (r == hm->pid[w]) {
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
					hm->unexpected++;
					if (!hm->first_unexpected[0])
						snprintf(hm->first_unexpected,
							 sizeof(hm->first_unexpected),
							 "worker pid %d ended with status 0x%x",
							 (int)hm->pid[w], st);
				}
				hm_reaped(hm, w);
			} else {
				left++;
			}
		}
		if (!left)
			break;
		if (h_now_ns() > deadline) {
			for (int w = 0; w < hm->n_workers; w++) {
				if (hm->pid[w] > 0) {
					hm->stragglers++;
					hm_kill(hm, w, false);
				}
			}
			break;
		}
		h_sleep_ms(5);
	}
}

H_FN void hm_print(const struct hammer *hm)
{
	const struct hm_shared *sh = hm->sh;

	h_note("acquires %llu (exclusive %llu, shared %llu), timeouts %llu, owner-died %llu, "
	       "checker take-overs from dead holders %llu, longest successful wait %.1f ms",
	       (unsigned long long)sh->acquires, (unsigned long long)sh->excl_acquires,
	       (unsigned long long)sh->shared_acquires, (unsigned long long)sh->timeouts,
	       (unsigned long long)sh->owner_died, (unsigned long long)sh->takeovers,
	       (double)sh->max_wait_ns / 1e6);
	h_note("kills %llu (holding %llu, waiting %llu, idle %llu, registering %llu), "
	       "workers forked %u, bumba_open retries %llu",
	       (unsigned long long)hm->kills, (unsigned long long)hm->kills_by_state[HM_HOLDING],
	       (unsigned long long)hm->kills_by_state[HM_WAITING],
	       (unsigned long long)hm->kills_by_state[HM_IDLE],
	       (unsigned long long)(hm->kills_by_state[HM_REGISTERING] +
				    hm->kills_by_state[HM_FORKED]),
	       hm->next_inc, (unsigned long long)sh->open_retries);
}

/* Mutual exclusion and API errors. */
H_FN void hm_verdict_exclusion(const struct hammer *hm)
{
	const struct hm_shared *sh = hm->sh;

	h_check(sh->excl_violations == 0, "%u mutual-exclusion violations, first: %s",
		sh->excl_violations, sh->first_excl);
	h_check(sh->errors == 0, "%u unexpected API results, first: %s", sh->errors,
		sh->first_error);
	h_check(hm->unexpected == 0, "%llu workers died without our SIGKILL, first: %s",
		(unsigned long long)hm->unexpected, hm->first_unexpected);
	h_check(sh->acquires > 0, "no acquire completed at all");
}

H_FN void hm_verdict_fencing(const struct hammer *hm)
{
	const struct hm_shared *sh = hm->sh;

	h_check(sh->fence_violations == 0, "%u fencing-token violations, first: %s",
		sh->fence_violations, sh->first_fence);
	h_check(sh->died_violations == 0, "%u owner-died violations, first: %s",
		sh->died_violations, sh->first_died);
}

/* Every waiter is eventually served: few timeouts, every worker that
 * lived a second got in at least once, every worker stopped in time. */
H_FN void hm_verdict_served(const struct hammer *hm)
{
	const struct hm_shared *sh = hm->sh;
	unsigned starved = 0;
	char first[160] = "";

	for (uint32_t i = 1; i <= hm->next_inc; i++) {
		const struct hm_inc *r = &sh->inc[i];
		uint64_t reg = atomic_load(&r->reg_ns), end = atomic_load(&r->end_ns);
		if (!reg || !end || end < reg || end - reg < 1000000000ull ||
		    atomic_load(&r->acquires))
			continue;
		if (!starved++)
			snprintf(first, sizeof(first), "pid %d lived %.2f s registered, state %u",
				 (int)r->pid, (double)(end - reg) / 1e9, atomic_load(&r->state));
	}
	h_check(!starved, "%u workers lived >= 1 s without completing an acquire (%s)", starved,
		first);
	h_check(sh->timeouts * 20 < sh->acquires, "%llu timeouts for %llu acquires (5%% allowed)",
		(unsigned long long)sh->timeouts, (unsigned long long)sh->acquires);
	h_check(hm->stragglers == 0, "%llu workers did not finish within 15 s of the stop",
		(unsigned long long)hm->stragglers);
}

H_FN void hm_verdict_kills(const struct hammer *hm)
{
	if (hm->kills < 30)
		return;
	h_check(hm->kills_by_state[HM_HOLDING] > 0 && hm->kills_by_state[HM_WAITING] > 0,
		"the run never SIGKILLed a holder (%llu) or a waiter (%llu)",
		(unsigned long long)hm->kills_by_state[HM_HOLDING],
		(unsigned long long)hm->kills_by_state[HM_WAITING]);
}

H_FN void hm_end(struct hammer *hm)
{
	if (hm->sh)
		munmap(hm->sh, sizeof(*hm->sh));
	hm->sh = NULL;
}

#endif /* BUMBA_MP_HARNESS_H */
