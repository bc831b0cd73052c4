/* SPDX-License-Identifier: MIT */
/*
 * test_locks.c - unit tests of the lock table (shm/locks.c) on a real
 * segment made in-process: every agent is a handle over its own slot, so
 * threads can play several agents (and ThreadSanitizer can watch them).
 * Process death is real where it matters: a forked child dies holding a
 * robust mutex of the segment.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"

static struct bumba_seg seg;
static char ws[] = "/ws";

static int setup_caps(void **state, uint32_t agents, uint32_t locks, uint32_t holds)
{
	const char *roots[] = {ws};
	struct bumba_caps c = {.max_agents = agents,
			       .max_locks = locks,
			       .max_waiters = 256,
			       .holds_per_agent = holds};
	int rc = bumba_seg_create(&c, roots, 1, 30000, 60000, &seg);

	if (rc)
		return rc;
	atomic_store(&seg.hdr->sup_pid, getpid());
	atomic_store(&seg.hdr->sup_start_time, bumba_proc_start_time(getpid()));
	atomic_store(&seg.hdr->heartbeat_ns, bumba_now_ns());
	return 0;
}

static int setup(void **state)
{
	return setup_caps(state, 16, 64, 16);
}

static int teardown(void **state)
{
	bumba_seg_unmap(&seg);
	return 0;
}

/* What bumbad does at registration, minus the socket. */
static struct bumba *agent(uint32_t slot)
{
	struct bumba *b = calloc(1, sizeof(*b));
	struct agent_slot *a = &seg.agents[slot];

	b->seg = seg;
	b->seg.fd = -1;
	b->slot = slot;
	b->gen = atomic_load(&a->gen);
	b->agent = a;
	b->holds = bumba_seg_holds_of(&seg, slot);
	b->hold_mask = seg.hdr->caps.holds_per_agent - 1;
	b->pid = getpid();
	b->sock = -1;
	a->pid = getpid();
	a->start_time = bumba_proc_start_time(getpid());
	snprintf(a->id, sizeof(a->id), "Test-A%u-0-00000000", slot);
	atomic_store(&a->state, AGENT_LIVE);
	atomic_fetch_add(&seg.hdr->n_agents, 1);
	return b;
}

static void drop(struct bumba *b)
{
	bumba_locks_release_all(b);
	bumba_locks_reclaim_agent(&seg, b->slot, b->gen);
	free(b);
}

static uint32_t waiters_on(const char *path)
{
	struct bumba_lock_view v;

	for (uint32_t i = 0; i < seg.hdr->lock_slots; i++) {
		if (bumba_locks_view(&seg, i, &v) && strcmp(v.path, path) == 0)
			return v.nwaiters;
	}
	return 0;
}

static void wait_for_waiters(const char *path, uint32_t n)
{
	for (int i = 0; i < 5000 && waiters_on(path) < n; i++)
		usleep(1000);
	assert_int_equal(waiters_on(path), n);
}

/* ------------------------------------------------------------------ */

static void test_bad_paths(void **state)
{
	struct bumba *a = agent(0);
	struct bumba_lock l;
	char longp[PATH_MAX + 16];

	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(bumba_lock_acquire(a, "", BUMBA_EXCLUSIVE, 0, 1, &l), -EINVAL);
	assert_int_equal(bumba_lock_acquire(a, "../etc/passwd", BUMBA_EXCLUSIVE, 0, 1, &l),
			 -EINVAL);
	assert_int_equal(bumba_lock_acquire(a, "/etc/passwd", BUMBA_EXCLUSIVE, 0, 1, &l), -EINVAL);
	assert_int_equal(bumba_lock_acquire(a, "/wsx/a", BUMBA_EXCLUSIVE, 0, 1, &l), -EINVAL);
	assert_int_equal(bumba_lock_acquire(a, longp, BUMBA_EXCLUSIVE, 0, 1, &l), -EINVAL);
	assert_int_equal(bumba_lock_acquire(a, "a\xff", BUMBA_EXCLUSIVE, 0, 1, &l), -EINVAL);
	assert_int_equal(bumba_lock_acquire(a, "a", 7, 0, 1, &l), -EINVAL);
	/* The same file by several spellings is one lock. */
	assert_int_equal(bumba_lock_acquire(a, "src/./x/../f.c", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	struct bumba *b = agent(1);
	struct bumba_lock l2;
	assert_int_equal(bumba_lock_acquire(b, "/ws//src/f.c", BUMBA_EXCLUSIVE, 0, 1, &l2), -EBUSY);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	drop(a);
	drop(b);
}

static void test_exclusive_reentrant(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock l1, l2, l3, lb;

	assert_int_equal(bumba_lock_acquire(a, "f", BUMBA_EXCLUSIVE, 0, 1, &l1), 0);
	assert_int_equal(bumba_lock_acquire(a, "f", BUMBA_EXCLUSIVE, 0, 1, &l2), 0);
	assert_int_equal(bumba_lock_acquire(a, "f", BUMBA_SHARED, 0, 1, &l3), 0);
	assert_true(l1.fence == l2.fence && l2.fence == l3.fence);
	assert_int_equal(bumba_lock_acquire(b, "f", BUMBA_EXCLUSIVE, 0, 1, &lb), -EBUSY);
	assert_int_equal(bumba_lock_acquire(b, "f", BUMBA_SHARED, 0, 1, &lb), -EBUSY);
	assert_int_equal(bumba_lock_release(a, &l3), 0);
	assert_int_equal(bumba_lock_release(a, &l2), 0);
	assert_int_equal(bumba_lock_acquire(b, "f", BUMBA_EXCLUSIVE, 0, 1, &lb), -EBUSY);
	assert_int_equal(bumba_lock_release(a, &l1), 0);
	assert_int_equal(bumba_lock_release(a, &l1), -ENOLCK);
	assert_int_equal(bumba_lock_acquire(b, "f", BUMBA_EXCLUSIVE, 0, 1, &lb), 0);
	assert_true(lb.fence > l1.fence);
	assert_int_equal(bumba_lock_release(b, &lb), 0);
	drop(a);
	drop(b);
}

static void test_shared(void **state)
{
	struct bumba *a = agent(0), *b = agent(1), *c = agent(2);
	struct bumba_lock la, lb, lc;

	assert_int_equal(bumba_lock_acquire(a, "s", BUMBA_SHARED, 0, 1, &la), 0);
	assert_int_equal(bumba_lock_acquire(b, "s", BUMBA_SHARED, 0, 1, &lb), 0);
	assert_true(lb.fence > la.fence);
	assert_int_equal(bumba_lock_acquire(c, "s", BUMBA_EXCLUSIVE, 0, 1, &lc), -EBUSY);
	/* Upgrade with another sharer present would deadlock: refused. */
	assert_int_equal(bumba_lock_acquire(a, "s", BUMBA_EXCLUSIVE, 0, 1, &lc), -EDEADLK);
	assert_int_equal(bumba_lock_release(b, &lb), 0);
	/* Sole sharer upgrades in place. */
	assert_int_equal(bumba_lock_acquire(a, "s", BUMBA_EXCLUSIVE, 0, 1, &lc), 0);
	assert_int_equal(bumba_lock_acquire(b, "s", BUMBA_SHARED, 0, 1, &lb), -EBUSY);
	assert_int_equal(bumba_lock_release(a, &lc), 0);
	assert_int_equal(bumba_lock_release(a, &la), 0);
	assert_int_equal(bumba_lock_acquire(c, "s", BUMBA_EXCLUSIVE, 0, 1, &lc), 0);
	assert_int_equal(bumba_lock_release(c, &lc), 0);
	drop(a);
	drop(b);
	drop(c);
}

struct waiter_arg {
	struct bumba *b;
	const char *path;
	enum bumba_mode mode;
	enum bumba_priority prio;
	int timeout;
	int rc;
	int order;
	int owner_died;
	uint64_t fence;
	bool hold_release;
};
static _Atomic int order_ctr;

static void *waiter_thread(void *p)
{
	struct waiter_arg *w = p;
	struct bumba_lock l;

	w->rc = bumba_lock_acquire(w->b, w->path, w->mode, w->timeout, w->prio, &l);
	if (w->rc == 0) {
		w->order = atomic_fetch_add(&order_ctr, 1);
		w->owner_died = bumba_lock_owner_died(&l);
		w->fence = l.fence;
		if (w->hold_release)
			usleep(2000);
		bumba_lock_release(w->b, &l);
	}
	return NULL;
}

static void test_timeout(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock l;
	uint64_t t0;

	assert_int_equal(bumba_lock_acquire(a, "t", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	t0 = bumba_now_ns();
	struct bumba_lock lb;
	assert_int_equal(bumba_lock_acquire(b, "t", BUMBA_EXCLUSIVE, 100, 1, &lb), -ETIMEDOUT);
	assert_true(bumba_now_ns() - t0 >= 100000000ull);
	/* The timed-out waiter left the queue. */
	assert_int_equal(waiters_on("/ws/t"), 0);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	assert_int_equal(bumba_lock_acquire(b, "t", BUMBA_EXCLUSIVE, 100, 1, &lb), 0);
	assert_int_equal(bumba_lock_release(b, &lb), 0);
	drop(a);
	drop(b);
}

static void test_priority_fifo(void **state)
{
	struct bumba *h = agent(0);
	struct bumba *ag[6];
	struct waiter_arg w[6];
	pthread_t th[6];
	struct bumba_lock l;
	/* Queue order of arrival: low, normal1, high1, normal2, high2, low2.
	 * Service order must be high1, high2, normal1, normal2, low, low2. */
	const enum bumba_priority prio[6] = {BUMBA_PRIO_LOW,	BUMBA_PRIO_NORMAL, BUMBA_PRIO_HIGH,
					     BUMBA_PRIO_NORMAL, BUMBA_PRIO_HIGH,   BUMBA_PRIO_LOW};
	const int expect[6] = {4, 2, 0, 3, 1, 5};

	atomic_store(&order_ctr, 0);
	assert_int_equal(bumba_lock_acquire(h, "p", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	for (int i = 0; i < 6; i++) {
		ag[i] = agent(1 + i);
		w[i] = (struct waiter_arg){.b = ag[i],
					   .path = "p",
					   .mode = BUMBA_EXCLUSIVE,
					   .prio = prio[i],
					   .timeout = 10000,
					   .hold_release = true};
		pthread_create(&th[i], NULL, waiter_thread, &w[i]);
		wait_for_waiters("/ws/p", (uint32_t)i + 1);
	}
	assert_int_equal(bumba_lock_release(h, &l), 0);
	for (int i = 0; i < 6; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(w[i].rc, 0);
		assert_int_equal(w[i].order, expect[i]);
		drop(ag[i]);
	}
	drop(h);
}

static void test_shared_batch_behind_writer(void **state)
{
	struct bumba *h = agent(0), *x = agent(1), *r1 = agent(2), *r2 = agent(3);
	struct waiter_arg wx = {.b = x,
				.path = "q",
				.mode = BUMBA_EXCLUSIVE,
				.prio = 1,
				.timeout = 10000,
				.hold_release = true};
	struct waiter_arg w1 = {.b = r1,
				.path = "q",
				.mode = BUMBA_SHARED,
				.prio = 1,
				.timeout = 10000,
				.hold_release = true};
	struct waiter_arg w2 = w1;
	pthread_t t[3];
	struct bumba_lock l;

	w2.b = r2;
	atomic_store(&order_ctr, 0);
	assert_int_equal(bumba_lock_acquire(h, "q", BUMBA_SHARED, 0, 1, &l), 0);
	/* A writer queues; later readers queue behind it (no writer starvation). */
	pthread_create(&t[0], NULL, waiter_thread, &wx);
	wait_for_waiters("/ws/q", 1);
	pthread_create(&t[1], NULL, waiter_thread, &w1);
	wait_for_waiters("/ws/q", 2);
	pthread_create(&t[2], NULL, waiter_thread, &w2);
	wait_for_waiters("/ws/q", 3);
	assert_int_equal(bumba_lock_release(h, &l), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(wx.rc, 0);
	assert_int_equal(wx.order, 0);
	assert_int_equal(w1.rc, 0);
	assert_int_equal(w2.rc, 0);
	assert_true(w1.fence > wx.fence && w2.fence > wx.fence);
	drop(h);
	drop(x);
	drop(r1);
	drop(r2);
}

static void test_deadlock(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock la, lb, lx;

	assert_int_equal(bumba_lock_acquire(a, "d1", BUMBA_EXCLUSIVE, 0, 1, &la), 0);
	assert_int_equal(bumba_lock_acquire(b, "d2", BUMBA_EXCLUSIVE, 0, 1, &lb), 0);
	struct waiter_arg wa = {
		.b = a, .path = "d2", .mode = BUMBA_EXCLUSIVE, .prio = 1, .timeout = 10000};
	pthread_t t;
	pthread_create(&t, NULL, waiter_thread, &wa);
	wait_for_waiters("/ws/d2", 1);
	uint64_t t0 = bumba_now_ns();
	assert_int_equal(bumba_lock_acquire(b, "d1", BUMBA_EXCLUSIVE, 10000, 1, &lx), -EDEADLK);
	/* Reported at once, not after the 10 s timeout. */
	assert_true(bumba_now_ns() - t0 < 5000000000ull);
	assert_int_equal(bumba_lock_release(b, &lb), 0);
	pthread_join(t, NULL);
	assert_int_equal(wa.rc, 0);
	assert_int_equal(bumba_lock_release(a, &la), 0);
	struct bumba_totals tot;
	bumba_seg_totals(&seg, &tot);
	assert_true(tot.deadlocks >= 1);
	drop(a);
	drop(b);
}

static void test_deadlock_three(void **state)
{
	struct bumba *a = agent(0), *b = agent(1), *c = agent(2);
	struct bumba_lock l1, l2, l3, lx;
	pthread_t t1, t2;

	assert_int_equal(bumba_lock_acquire(a, "c1", BUMBA_EXCLUSIVE, 0, 1, &l1), 0);
	assert_int_equal(bumba_lock_acquire(b, "c2", BUMBA_SHARED, 0, 1, &l2), 0);
	assert_int_equal(bumba_lock_acquire(c, "c3", BUMBA_EXCLUSIVE, 0, 1, &l3), 0);
	struct waiter_arg wa = {.b = a, .path = "c2", .mode = BUMBA_EXCLUSIVE, .timeout = 10000};
	struct waiter_arg wb = {.b = b, .path = "c3", .mode = BUMBA_EXCLUSIVE, .timeout = 10000};
	pthread_create(&t1, NULL, waiter_thread, &wa);
	wait_for_waiters("/ws/c2", 1);
	pthread_create(&t2, NULL, waiter_thread, &wb);
	wait_for_waiters("/ws/c3", 1);
	/* c -> c1 (a) -> c2 (b, shared) -> c3 (c): a cycle through a sharer. */
	assert_int_equal(bumba_lock_acquire(c, "c1", BUMBA_EXCLUSIVE, 10000, 1, &lx), -EDEADLK);
	assert_int_equal(bumba_lock_release(c, &l3), 0);
	pthread_join(t2, NULL);
	assert_int_equal(bumba_lock_release(b, &l2), 0);
	pthread_join(t1, NULL);
	assert_int_equal(wa.rc, 0);
	assert_int_equal(wb.rc, 0);
	assert_int_equal(bumba_lock_release(a, &l1), 0);
	drop(a);
	drop(b);
	drop(c);
}

static void test_reclaim_owner_died(void **state)
{
	struct bumba *a = agent(0), *b = agent(1), *c = agent(2);
	struct bumba_lock la, ls, lc;
	pthread_t t;

	assert_int_equal(bumba_lock_acquire(a, "r", BUMBA_EXCLUSIVE, 0, 1, &la), 0);
	assert_int_equal(bumba_lock_acquire(a, "rs", BUMBA_SHARED, 0, 1, &ls), 0);
	struct waiter_arg wb = {.b = b, .path = "r", .mode = BUMBA_EXCLUSIVE, .timeout = 10000};
	pthread_create(&t, NULL, waiter_thread, &wb);
	wait_for_waiters("/ws/r", 1);
	/* The agent "dies": reclaim as bumbad would. */
	uint32_t gen = a->gen;
	bumba_locks_reclaim_agent(&seg, 0, gen);
	pthread_join(t, NULL);
	assert_int_equal(wb.rc, 0);
	assert_int_equal(wb.owner_died, 1);
	assert_true(wb.fence > la.fence);
	/* Its shared hold is gone too. */
	assert_int_equal(bumba_lock_acquire(c, "rs", BUMBA_EXCLUSIVE, 0, 1, &lc), 0);
	assert_int_equal(bumba_lock_owner_died(&lc), 0);
	assert_int_equal(bumba_lock_release(c, &lc), 0);
	/* The dead handle's locks are not releasable any more. */
	assert_int_equal(bumba_lock_release(a, &la), -ENOLCK);
	assert_int_equal(atomic_load(&seg.agents[0].state), AGENT_FREE);
	assert_int_not_equal(atomic_load(&seg.agents[0].gen), gen);
	/* Reclaiming a stale generation is a no-op. */
	bumba_locks_reclaim_agent(&seg, 0, gen);
	free(a);
	drop(b);
	drop(c);
}

static void test_owner_died_no_waiter(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock l;

	assert_int_equal(bumba_lock_acquire(a, "o", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	bumba_locks_reclaim_agent(&seg, 0, a->gen);
	assert_int_equal(bumba_lock_acquire(b, "o", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_owner_died(&l), 1);
	assert_int_equal(bumba_lock_release(b, &l), 0);
	assert_int_equal(bumba_lock_acquire(b, "o", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_owner_died(&l), 0);
	assert_int_equal(bumba_lock_release(b, &l), 0);
	free(a);
	drop(b);
}

static void test_table_full(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock l[64], x;
	char p[32];
	int held = 0;

	/* max_locks 64, holds_per_agent 16: the hold table fills first. */
	for (int i = 0; i < 16; i++) {
		snprintf(p, sizeof(p), "h%d", i);
		assert_int_equal(bumba_lock_acquire(a, p, BUMBA_EXCLUSIVE, 0, 1, &l[held++]), 0);
	}
	assert_int_equal(bumba_lock_acquire(a, "h99", BUMBA_EXCLUSIVE, 0, 1, &x), -ENOSPC);
	/* Now fill the lock table with live locks of several agents. */
	struct bumba *more[4];
	int k = 0;
	for (int g = 0; g < 4; g++) {
		more[g] = agent(2 + g);
		for (int i = 0; i < 16 && k < 48; i++, k++) {
			snprintf(p, sizeof(p), "t%d", k);
			struct bumba_lock y;
			assert_int_equal(bumba_lock_acquire(more[g], p, BUMBA_EXCLUSIVE, 0, 1, &y),
					 0);
		}
	}
	assert_int_equal(bumba_lock_acquire(b, "one-too-many", BUMBA_EXCLUSIVE, 0, 1, &x), -ENOSPC);
	struct bumba_totals t;
	bumba_seg_totals(&seg, &t);
	assert_true(t.table_full >= 1);
	assert_int_equal(t.locks_active, 64);
	/* Released entries are evicted to make room, and fences continue. */
	uint64_t old = l[0].fence;
	for (int i = 0; i < held; i++)
		assert_int_equal(bumba_lock_release(a, &l[i]), 0);
	assert_int_equal(bumba_lock_acquire(b, "one-too-many", BUMBA_EXCLUSIVE, 0, 1, &x), 0);
	assert_int_equal(bumba_lock_release(b, &x), 0);
	for (int i = 0; i < 16; i++) {
		snprintf(p, sizeof(p), "n%d", i);
		assert_int_equal(bumba_lock_acquire(b, p, BUMBA_EXCLUSIVE, 0, 1, &x), 0);
		assert_int_equal(bumba_lock_release(b, &x), 0);
	}
	assert_int_equal(bumba_lock_acquire(b, "h0", BUMBA_EXCLUSIVE, 0, 1, &x), 0);
	assert_true(x.fence > old);
	assert_int_equal(bumba_lock_release(b, &x), 0);
	for (int g = 0; g < 4; g++)
		drop(more[g]);
	drop(a);
	drop(b);
}

static void test_lease(void **state)
{
	struct bumba *a = agent(0);
	struct bumba_lock l, n;
	struct bumba_lock_opts o = {.mode = BUMBA_EXCLUSIVE, .timeout_ms = 0, .lease_ms = 50};
	uint32_t expired[4];

	assert_int_equal(bumba_lock_acquire(a, "nolease", BUMBA_EXCLUSIVE, 0, 1, &n), 0);
	assert_int_equal(bumba_lock_renew(a, &n, 100), -EINVAL);
	assert_int_equal(bumba_lock_acquire_opts(a, "lease", &o, &l), 0);
	assert_int_equal(bumba_locks_sweep(&seg, bumba_now_ns(), expired, 4), 0);
	assert_int_equal(bumba_lock_renew(a, &l, 1000), 0);
	assert_int_equal(bumba_locks_sweep(&seg, bumba_now_ns() + 500000000ull, expired, 4), 0);
	assert_int_equal(bumba_locks_sweep(&seg, bumba_now_ns() + 2000000000ull, expired, 4), 1);
	assert_int_equal(expired[0], 0);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	assert_int_equal(bumba_lock_renew(a, &l, 100), -ENOLCK);
	assert_int_equal(bumba_locks_sweep(&seg, bumba_now_ns() + 2000000000ull, expired, 4), 0);
	assert_int_equal(bumba_lock_release(a, &n), 0);
	drop(a);
}

static void test_sweep_stuck_waiter(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock l;
	uint32_t expired[4];
	pthread_t t;

	assert_int_equal(bumba_lock_acquire(a, "w", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	struct waiter_arg wb = {.b = b, .path = "w", .mode = BUMBA_EXCLUSIVE, .timeout = 60000};
	pthread_create(&t, NULL, waiter_thread, &wb);
	wait_for_waiters("/ws/w", 1);
	/* As if the waiter's process were stopped past its deadline. */
	bumba_locks_sweep(&seg, bumba_now_ns() + 120000000000ull, expired, 4);
	pthread_join(t, NULL);
	assert_int_equal(wb.rc, -ETIMEDOUT);
	assert_int_equal(waiters_on("/ws/w"), 0);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	drop(a);
	drop(b);
}

static void test_robust_entry_repair(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock la, lb;

	assert_int_equal(bumba_lock_acquire(a, "m", BUMBA_SHARED, 0, 1, &la), 0);
	uint32_t idx = (uint32_t)la.opaque[0];
	pid_t pid = fork();
	if (pid == 0) {
		/* Die holding the entry's mutex, with the shared count skewed as
		 * if killed half-way through an acquire. */
		pthread_mutex_lock(&seg.locks[idx].mu);
		atomic_fetch_add(&seg.locks[idx].state, LK_SHARED_ONE);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	/* The next locker repairs: the count is back to the one real sharer. */
	assert_int_equal(bumba_lock_acquire(b, "m", BUMBA_SHARED, 0, 1, &lb), 0);
	struct bumba_lock_view v;
	assert_true(bumba_locks_view(&seg, idx, &v));
	assert_int_equal(v.shared, 2);
	assert_int_equal(bumba_lock_release(b, &lb), 0);
	assert_int_equal(bumba_lock_release(a, &la), 0);
	assert_int_equal(bumba_lock_acquire(b, "m", BUMBA_EXCLUSIVE, 0, 1, &lb), 0);
	assert_int_equal(bumba_lock_release(b, &lb), 0);
	drop(a);
	drop(b);
}

static void test_proc_start_time(void **state)
{
	uint64_t st = bumba_proc_start_time(getpid());
	char path[64], buf[1024];
	unsigned long long field22 = 0;

	/* Field 22 of /proc/<pid>/stat, parsed the slow obvious way. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)getpid());
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	char *p = strrchr(buf, ')') + 2;
	for (int field = 3; field < 22; field++)
		p = strchr(p, ' ') + 1;
	field22 = strtoull(p, NULL, 10);
	assert_int_equal(st, field22);
	/* It must not move as the process grows (a neighbouring field does). */
	void *big = malloc(64 << 20);
	memset(big, 1, 64 << 20);
	assert_true(bumba_proc_same(getpid(), st));
	free(big);
	assert_false(bumba_proc_same(getpid(), st + 1));
	assert_int_equal(bumba_proc_start_time(-1), 0);
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	uint64_t cst = bumba_proc_start_time(child);
	waitpid(child, NULL, 0);
	assert_false(bumba_proc_same(child, cst));
}

/* Threads as agents hammering a few paths: mutual exclusion checked by a
 * plain counter that would tear without it (and by ThreadSanitizer). */
struct hammer {
	struct bumba *b;
	unsigned seed;
	int errors;
};
static long counters[4];
static _Atomic int inside_excl[4], inside_shared[4];

static void *hammer_thread(void *p)
{
	struct hammer *h = p;
	char path[8];

	for (int i = 0; i < 3000; i++) {
		int k = (int)(rand_r(&h->seed) % 4);
		bool sh = rand_r(&h->seed) % 4 == 0;
		struct bumba_lock l;
		snprintf(path, sizeof(path), "x%d", k);
		int rc = bumba_lock_acquire(h->b, path, sh ? BUMBA_SHARED : BUMBA_EXCLUSIVE, 10000,
					    (enum bumba_priority)(rand_r(&h->seed) % 3), &l);
		if (rc) {
			fprintf(stderr, "acquire %s %s: %s\n", path, sh ? "shared" : "excl",
				strerror(-rc));
			h->errors++;
			continue;
		}
		if (sh) {
			atomic_fetch_add(&inside_shared[k], 1);
			if (atomic_load(&inside_excl[k])) {
				fprintf(stderr, "shared inside exclusive on %s\n", path);
				h->errors++;
			}
			atomic_fetch_sub(&inside_shared[k], 1);
		} else {
			if (atomic_fetch_add(&inside_excl[k], 1) != 0 ||
			    atomic_load(&inside_shared[k])) {
				fprintf(stderr, "exclusive not alone on %s\n", path);
				h->errors++;
			}
			long v = counters[k];
			sched_yield();
			counters[k] = v + 1;
			atomic_fetch_sub(&inside_excl[k], 1);
		}
		rc = bumba_lock_release(h->b, &l);
		if (rc) {
			fprintf(stderr, "release %s: %s\n", path, strerror(-rc));
			h->errors++;
		}
	}
	return NULL;
}

static void test_threads_hammer(void **state)
{
	enum { N = 6 };
	struct hammer h[N];
	pthread_t t[N];

	for (int i = 0; i < N; i++) {
		h[i] = (struct hammer){.b = agent((uint32_t)i), .seed = (unsigned)i * 7919u + 1};
		pthread_create(&t[i], NULL, hammer_thread, &h[i]);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		assert_int_equal(h[i].errors, 0);
		drop(h[i].b);
	}
	struct bumba_totals tot;
	bumba_seg_totals(&seg, &tot);
	assert_int_equal(tot.locks_active, 0);
	assert_int_equal(tot.locks_waiting, 0);
	assert_int_equal(tot.agents_active, 0);
	assert_int_equal(tot.acquired, tot.released);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exclusive_reentrant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_batch_behind_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadlock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadlock_three, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_owner_died, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_died_no_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_stuck_waiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_robust_entry_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_hammer, setup, teardown),
		cmocka_unit_test(test_proc_start_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
