/* SPDX-License-Identifier: MIT */
/*
 * locks.c - the lock table: path-keyed locks in the shared segment.
 *
 * Owns: the open-addressed table of lock entries keyed by the hash of the
 * normalised path, each agent's hold table, the waiter records and their
 * per-lock priority queues, fencing tokens, deadlock detection, leases, and
 * the reclaim of a dead agent's locks.
 *
 * The lock word (lock_entry.state) carries the exclusive owner (agent slot +
 * 1), the shared count and three flags.  The uncontended exclusive acquire
 * and release are single CASes on it; everything that touches the waiter
 * queue or the shared count happens under the entry's robust mutex, so that
 * a process killed inside can be repaired from the records alone (the queue
 * is rebuilt from the waiter records, the shared count recounted from the
 * hold records).
 *
 * Table keys are inserted and removed only under the table mutex; lookups
 * are lock-free.  An entry is removed only by CASing an idle lock word to
 * LK_DEAD, so whoever wins a CAS on a word holds an entry that cannot vanish;
 * it re-reads the key afterwards to catch a slot recycled under its lookup.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "handle.h"

#define HOLD_TOMB   UINT32_MAX
#define HOLD_WANTED 0x100u /* another thread of the agent waits on this hold */

#define SPIN_TRIES     64
#define LIVENESS_NS    200000000ull /* re-check dead owners every 200 ms */
#define DEADLOCK_HOPS  64
#define SWEEP_GRACE_NS 1000000000ull

const double bumba_wait_bounds[WAIT_HIST_BUCKETS] = {
	1e-6, 1e-5, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1, 1.0, 5.0, 1e300,
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts,
		  uint32_t val3)
{
	return syscall(SYS_futex, (uint32_t *)uaddr, op, val, ts, NULL, val3);
}

/* Sleeps while *w == val, until deadline (CLOCK_MONOTONIC ns, 0 = none).
 * The segment is shared between processes: never FUTEX_PRIVATE_FLAG. */
static void futex_wait_until(_Atomic uint32_t *w, uint32_t val, uint64_t deadline)
{
	struct timespec ts = {0};

	if (deadline) {
		ts.tv_sec = (time_t)(deadline / 1000000000ull);
		ts.tv_nsec = (long)(deadline % 1000000000ull);
	}
	futex(w, FUTEX_WAIT_BITSET, val, deadline ? &ts : NULL, FUTEX_BITSET_MATCH_ANY);
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	futex(w, FUTEX_WAKE, INT_MAX, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Robust lock: a holder killed inside leaves EOWNERDEAD to the next one,
 * which repairs what the mutex protects before marking it consistent. */
static void mu_lock(pthread_mutex_t *m, void (*repair)(struct bumba_seg *, uint32_t),
		    struct bumba_seg *s, uint32_t arg)
{
	int rc = bumba_robust_lock(m);

	if (rc == EOWNERDEAD) {
		if (repair)
			repair(s, arg);
		pthread_mutex_consistent(m);
	}
}

static void mu_unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

uint64_t bumba_lock_key(const char *p, size_t n)
{
	uint64_t h = XXH3_64bits(p, n);

	return h < 2 ? h + 2 : h;
}

/* Counters only ever changed under the agent mutex (acquired, released,
 * the wait histogram and sum; the reclaimer folds them under it too): a
 * load and a store, not a locked add (~5 ns each on the fast path). */
static inline void ctr_add_locked(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* Under the agent mutex. */
static void hist_add_locked(struct agent_slot *a, uint64_t ns)
{
	double s = (double)ns / 1e9;
	unsigned i = 0;

	while (i < WAIT_HIST_BUCKETS - 1 && s > bumba_wait_bounds[i])
		i++;
	ctr_add_locked(&a->wait_hist[i], 1);
	ctr_add_locked(&a->wait_ns_sum, ns);
}

/* ------------------------------------------------------------------ */
/* the table                                                           */

int64_t bumba_locks_find(const struct bumba_seg *s, uint64_t key)
{
	const uint32_t mask = s->hdr->lock_slots - 1;
	uint32_t i = (uint32_t)key & mask;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		uint64_t k = atomic_load_explicit(&s->locks[i].key, memory_order_acquire);
		if (k == key)
			return i;
		if (k == LK_KEY_EMPTY)
			return -1;
	}
	return -1;
}

/* Under table_mu: turn trailing tombstones back into empty slots, so probe
 * chains stay short.  Safe because no key can lie past an empty slot. */
static void table_trim(struct bumba_seg *s, uint32_t i)
{
	const uint32_t mask = s->hdr->lock_slots - 1;

	if (atomic_load(&s->locks[(i + 1) & mask].key) != LK_KEY_EMPTY)
		return;
	while (atomic_load(&s->locks[i].key) == LK_KEY_TOMBSTONE) {
		atomic_store(&s->locks[i].key, LK_KEY_EMPTY);
		i = (i - 1) & mask;
	}
}

/* Under table_mu: remove idle entries so new keys fit.  An idle entry has
 * no holder, no waiter; one whose last holder died keeps its flag for the
 * next acquirer unless we are out of room. */
static uint32_t table_evict(struct bumba_seg *s, bool evict_died)
{
	struct seg_header *h = s->hdr;
	uint32_t freed = 0;

	for (uint32_t i = 0; i < h->lock_slots; i++) {
		struct lock_entry *e = &s->locks[i];
		uint64_t k = atomic_load(&e->key);
		uint64_t st = 0;

		if (k < 2)
			continue;
		if (!atomic_compare_exchange_strong(&e->state, &st, LK_DEAD)) {
			if (!evict_died || st != LK_OWNER_DIED ||
			    !atomic_compare_exchange_strong(&e->state, &st, LK_DEAD))
				continue;
		}
		uint64_t f = atomic_load(&e->fence), base = atomic_load(&h->fence_base);
		while (f > base && !atomic_compare_exchange_weak(&h->fence_base, &base, f))
			;
		atomic_store(&e->key, LK_KEY_TOMBSTONE);
		atomic_fetch_sub(&h->live_keys, 1);
		table_trim(s, i);
		freed++;
	}
	return freed;
}

static void repair_table(struct bumba_seg *s, uint32_t unused)
{
	/* A remover killed between its two stores leaves a DEAD word under a
	 * live key: finish the removal.  Insertions publish the key last. */
	for (uint32_t i = 0; i < s->hdr->lock_slots; i++) {
		struct lock_entry *e = &s->locks[i];
		if (atomic_load(&e->key) >= 2 && (atomic_load(&e->state) & LK_DEAD)) {
			atomic_store(&e->key, LK_KEY_TOMBSTONE);
			atomic_fetch_sub(&s->hdr->live_keys, 1);
		}
	}
}

static int table_insert(struct bumba_seg *s, uint64_t key, const char *path, size_t len,
			uint32_t *out)
{
	struct seg_header *h = s->hdr;
	const uint32_t mask = h->lock_slots - 1;
	int64_t found;
	int rc = 0;

	mu_lock(&h->table_mu, repair_table, s, 0);
	found = bumba_locks_find(s, key);
	if (found >= 0) {
		*out = (uint32_t)found;
		goto out;
	}
	if (atomic_load(&h->live_keys) >= h->caps.max_locks && !table_evict(s, false) &&
	    !table_evict(s, true)) {
		atomic_fetch_add(&h->table_full, 1);
		rc = -ENOSPC;
		goto out;
	}
	uint32_t i = (uint32_t)key & mask;
	for (;; i = (i + 1) & mask) {
		uint64_t k = atomic_load(&s->locks[i].key);
		if (k == LK_KEY_EMPTY || k == LK_KEY_TOMBSTONE)
			break;
	}
	struct lock_entry *e = &s->locks[i];
	atomic_store(&e->fence, atomic_load(&h->fence_base));
	atomic_store(&e->nwaiters, 0);
	e->qhead = e->qtail = 0;
	atomic_store(&e->acquired_ns, 0);
	/* Keep the tail of long paths: it is the part that tells them apart. */
	if (len < BUMBA_LOCK_NAME) {
		memcpy(s->names[i], path, len + 1);
	} else {
		size_t keep = BUMBA_LOCK_NAME - 4;
		memcpy(s->names[i], "...", 3);
		memcpy(s->names[i] + 3, path + len - keep, keep + 1);
	}
	atomic_store(&e->state, 0);
	atomic_store_explicit(&e->key, key, memory_order_release);
	atomic_fetch_add(&h->live_keys, 1);
	*out = i;
out:
	mu_unlock(&h->table_mu);
	return rc;
}

/* ------------------------------------------------------------------ */
/* holds                                                               */

static void repair_nothing(struct bumba_seg *s, uint32_t unused)
{
	/* Hold records are published by their lock1 store last and freed by a
	 * single store: a holder killed under the agent mutex leaves them
	 * consistent.  One killed between the fast path's CAS and the hold's
	 * activation (both under this mutex) leaves a PENDING exclusive hold
	 * over a word that names the agent: exactly what reclaim looks for.
	 * The counters changed under it are single stores too. */
}

/* Under the agent mutex.  Returns the existing hold for idx, or a new
 * PENDING one. */
static struct hold *hold_get(struct bumba *b, uint32_t idx, enum bumba_mode mode, uint32_t *hidx,
			     bool *fresh)
{
	int64_t free_at = -1;

	for (uint32_t n = 0; n <= b->hold_mask; n++) {
		uint32_t j = (idx + n) & b->hold_mask;
		uint32_t l = atomic_load(&b->holds[j].lock1);
		if (l == idx + 1) {
			*hidx = j;
			*fresh = false;
			return &b->holds[j];
		}
		if (l == HOLD_TOMB && free_at < 0)
			free_at = j;
		if (l == 0) {
			if (free_at < 0)
				free_at = j;
			break;
		}
	}
	if (free_at < 0)
		return NULL;
	struct hold *h = &b->holds[free_at];
	/* Relaxed: nobody reads these fields before the release store of
	 * lock1 below publishes the record (lock-free readers load lock1
	 * first; everyone else takes this mutex).  A seq_cst store is a
	 * locked instruction on x86, ~5 ns each on the fast path. */
	atomic_store_explicit(&h->count, 0, memory_order_relaxed);
	atomic_store_explicit(&h->state, HOLD_PENDING, memory_order_relaxed);
	atomic_store_explicit(&h->fence, 0, memory_order_relaxed);
	atomic_store_explicit(&h->lease_deadline_ns, 0, memory_order_relaxed);
	h->mode = (uint8_t)mode;
	h->since_ns = 0;
	atomic_store_explicit(&h->lock1, idx + 1, memory_order_release);
	*hidx = (uint32_t)free_at;
	*fresh = true;
	return h;
}

/* Under the agent mutex, by the thread whose hold it is (ACTIVE, or
 * PENDING and never activated).  Every other writer of the record's words
 * holds that mutex too, HOLD_WANTED included: so plain (release) stores
 * suffice, no locked instruction.  Lock-free readers load lock1 and then
 * state, and never trust anything but an ACTIVE state under a matching
 * lock1. */
static void hold_free(struct hold *holds, uint32_t mask, uint32_t hidx)
{
	struct hold *h = &holds[hidx];
	uint32_t old;

	if (atomic_load_explicit(&h->lease_deadline_ns, memory_order_relaxed))
		atomic_store_explicit(&h->lease_deadline_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&h->lock1, HOLD_TOMB, memory_order_release);
	old = atomic_load_explicit(&h->state, memory_order_relaxed);
	atomic_store_explicit(&h->state, HOLD_FREE, memory_order_release);
	if (old & HOLD_WANTED)
		futex_wake_all(&h->state);
	if (atomic_load_explicit(&holds[(hidx + 1) & mask].lock1, memory_order_relaxed) == 0) {
		uint32_t j = hidx;
		while (atomic_load_explicit(&holds[j].lock1, memory_order_relaxed) == HOLD_TOMB) {
			atomic_store_explicit(&holds[j].lock1, 0, memory_order_release);
			j = (j - 1) & mask;
		}
	}
}

/* now: when the lock became ours (the guard judges writes against it).
 * Without the agent mutex: another thread may set HOLD_WANTED at any time,
 * so the state changes by an exchange.  fence and count are published by
 * it (readers check the state first). */
static void hold_activate(struct hold *h, uint64_t fence, uint64_t now)
{
	uint32_t old;

	atomic_store_explicit(&h->fence, fence, memory_order_relaxed);
	atomic_store_explicit(&h->count, 1, memory_order_relaxed);
	h->since_ns = now;
	old = atomic_exchange(&h->state, HOLD_ACTIVE);
	if (old & HOLD_WANTED)
		futex_wake_all(&h->state);
}

/* The same under the agent mutex, held since hold_get made the record:
 * no other thread has seen it PENDING (they find holds under the mutex),
 * so HOLD_WANTED cannot be set and a release store is enough. */
static void hold_activate_locked(struct hold *h, uint64_t fence, uint64_t now)
{
	atomic_store_explicit(&h->fence, fence, memory_order_relaxed);
	atomic_store_explicit(&h->count, 1, memory_order_relaxed);
	h->since_ns = now;
	atomic_store_explicit(&h->state, HOLD_ACTIVE, memory_order_release);
}

/* ------------------------------------------------------------------ */
/* queues (under the entry mutex)                                      */

static struct waiter *W(const struct bumba_seg *s, uint32_t w1)
{
	return &s->waiters[w1 - 1];
}

static void q_insert(struct bumba_seg *s, struct lock_entry *e, uint32_t w1)
{
	struct waiter *w = W(s, w1);
	uint32_t prev = 0, cur = e->qhead;

	/* Highest priority first, FIFO (ticket order) within a priority. */
	while (cur && W(s, cur)->prio >= w->prio) {
		prev = cur;
		cur = W(s, cur)->next;
	}
	w->next = cur;
	if (prev)
		W(s, prev)->next = w1;
	else
		e->qhead = w1;
	if (!cur)
		e->qtail = w1;
	atomic_fetch_add(&e->nwaiters, 1);
	atomic_fetch_or(&e->state, LK_WAITERS);
}

static void q_remove(struct bumba_seg *s, struct lock_entry *e, uint32_t w1)
{
	uint32_t prev = 0, cur = e->qhead;

	while (cur && cur != w1) {
		prev = cur;
		cur = W(s, cur)->next;
	}
	if (!cur)
		return;
	if (prev)
		W(s, prev)->next = W(s, cur)->next;
	else
		e->qhead = W(s, cur)->next;
	if (e->qtail == w1)
		e->qtail = prev;
	W(s, w1)->next = 0;
	atomic_fetch_sub(&e->nwaiters, 1);
	if (!e->qhead)
		atomic_fetch_and(&e->state, ~LK_WAITERS);
}

static void wake_waiter(struct waiter *w, uint32_t state)
{
	atomic_store(&w->state, state);
	atomic_store(&w->futex, 1);
	futex_wake_all(&w->futex);
}

/* Grants the lock to the head of the queue while it is compatible: one
 * exclusive waiter, or every shared waiter up to the first exclusive one. */
static void dispatch_locked(struct bumba_seg *s, struct lock_entry *e)
{
	for (;;) {
		uint32_t w1 = e->qhead;
		if (!w1)
			return;
		struct waiter *w = W(s, w1);
		uint64_t st = atomic_load(&e->state);

		if (st & LK_OWNER_MASK)
			return;
		if (w->mode == BUMBA_EXCLUSIVE && (st & LK_SHARED_MASK))
			return;
		uint64_t nst = w->mode == BUMBA_EXCLUSIVE
				       ? (st & ~(LK_OWNER_MASK | LK_OWNER_DIED)) | w->agent1
				       : st + LK_SHARED_ONE;
		/* The word may have moved (a lock-free release): look again. */
		if (!atomic_compare_exchange_strong(&e->state, &st, nst))
			continue;
		/* Readers are told too; the flag stays until a writer takes it. */
		w->owner_died = (st & LK_OWNER_DIED) != 0;
		w->granted_fence = atomic_fetch_add(&e->fence, 1) + 1;
		atomic_store(&e->acquired_ns, bumba_now_ns());
		q_remove(s, e, w1);
		wake_waiter(w, WAITER_GRANTED);
		if (w->mode == BUMBA_EXCLUSIVE)
			return;
	}
}

/* EOWNERDEAD on an entry mutex: rebuild the queue from the waiter records
 * and the shared count from the hold records and granted waiters. */
static void repair_entry(struct bumba_seg *s, uint32_t idx)
{
	struct seg_header *h = s->hdr;
	struct lock_entry *e = &s->locks[idx];
	uint64_t shared = 0;

	e->qhead = e->qtail = 0;
	atomic_store(&e->nwaiters, 0);
	atomic_fetch_and(&e->state, ~LK_WAITERS);
	for (uint32_t i = 0; i < h->caps.max_waiters; i++) {
		struct waiter *w = &s->waiters[i];
		if (w->lock != idx || !atomic_load(&w->agent1))
			continue;
		uint32_t ws = atomic_load(&w->state);
		if (ws == WAITER_QUEUED) {
			w->next = 0;
			q_insert(s, e, i + 1);
		} else if (ws == WAITER_GRANTED && w->mode == BUMBA_SHARED) {
			/* Counted once: as a grant until its hold turns ACTIVE. */
			const struct hold *hd = &bumba_seg_holds_of(s, w->agent1 - 1)[w->hold];
			if (atomic_load(&hd->lock1) != idx + 1 ||
			    (atomic_load(&hd->state) & 0xff) != HOLD_ACTIVE)
				shared++;
		}
	}
	for (uint32_t a = 0; a < h->caps.max_agents; a++) {
		if (atomic_load(&s->agents[a].state) == AGENT_FREE)
			continue;
		struct hold *hs = bumba_seg_holds_of(s, a);
		for (uint32_t j = 0; j < h->caps.holds_per_agent; j++) {
			if (atomic_load(&hs[j].lock1) == idx + 1 && hs[j].mode == BUMBA_SHARED &&
			    (atomic_load(&hs[j].state) & 0xff) == HOLD_ACTIVE)
				shared++;
		}
	}
	uint64_t st = atomic_load(&e->state), nst;
	do {
		nst = (st & ~LK_SHARED_MASK) | (shared << LK_SHARED_SHIFT);
	} while (!atomic_compare_exchange_weak(&e->state, &st, nst));
}

static void entry_lock(struct bumba_seg *s, uint32_t idx)
{
	mu_lock(&s->locks[idx].mu, repair_entry, s, idx);
}

/* ------------------------------------------------------------------ */
/* waiting agents (deadlock detection)                                 */

static void waitmap_update(struct bumba_seg *s, uint32_t slot)
{
	_Atomic uint64_t *word = &s->waitmap[slot / 64];
	uint64_t bit = 1ull << (slot % 64);

	if (atomic_load(&s->agents[slot].n_waiting))
		atomic_fetch_or(word, bit);
	else {
		atomic_fetch_and(word, ~bit);
		/* A waiter that registered between our load and the clear. */
		if (atomic_load(&s->agents[slot].n_waiting))
			atomic_fetch_or(word, bit);
	}
}

static int waiting_add(struct bumba_seg *s, uint32_t slot, uint32_t idx)
{
	struct agent_slot *a = &s->agents[slot];

	for (int k = 0; k < BUMBA_AGENT_WAITS; k++) {
		uint32_t z = 0;
		if (atomic_compare_exchange_strong(&a->waiting[k], &z, idx + 1)) {
			atomic_fetch_add(&a->n_waiting, 1);
			waitmap_update(s, slot);
			return k;
		}
	}
	return -1; /* more threads waiting than tracked: no deadlock detection */
}

static void waiting_del(struct bumba_seg *s, uint32_t slot, int k)
{
	if (k < 0)
		return;
	atomic_store(&s->agents[slot].waiting[k], 0);
	atomic_fetch_sub(&s->agents[slot].n_waiting, 1);
	waitmap_update(s, slot);
}

static bool agent_holds(const struct bumba_seg *s, uint32_t a, uint32_t idx)
{
	const struct hold *hs = bumba_seg_holds_of(s, a);
	const uint32_t mask = s->hdr->caps.holds_per_agent - 1;

	for (uint32_t n = 0; n <= mask; n++) {
		uint32_t l = atomic_load(&hs[(idx + n) & mask].lock1);
		if (l == idx + 1)
			return (atomic_load(&hs[(idx + n) & mask].state) & 0xff) == HOLD_ACTIVE;
		if (l == 0)
			return false;
	}
	return false;
}

/* Would agent me waiting on lock idx close a wait-for cycle?  Called after
 * me has published its wait, so of two agents closing a cycle at the same
 * time at least one sees it. */
static bool would_deadlock(const struct bumba_seg *s, uint32_t me, uint32_t idx)
{
	uint32_t stack[DEADLOCK_HOPS], visited[DEADLOCK_HOPS];
	size_t sp = 0, nv = 0;
	const uint32_t words = (s->hdr->caps.max_agents + 63) / 64;

	stack[sp++] = idx;
	while (sp) {
		uint32_t l = stack[--sp];
		uint64_t st = atomic_load(&s->locks[l].state);
		uint32_t holders[DEADLOCK_HOPS];
		size_t nh = 0;

		if (st & LK_OWNER_MASK)
			holders[nh++] = (uint32_t)(st & LK_OWNER_MASK) - 1;
		if (st & LK_SHARED_MASK) {
			for (uint32_t wd = 0; wd < words && nh < DEADLOCK_HOPS; wd++) {
				uint64_t m = atomic_load(&s->waitmap[wd]);
				while (m && nh < DEADLOCK_HOPS) {
					uint32_t a = wd * 64 + (uint32_t)__builtin_ctzll(m);
					m &= m - 1;
					if (agent_holds(s, a, l))
						holders[nh++] = a;
				}
			}
		}
		for (size_t i = 0; i < nh; i++) {
			uint32_t a = holders[i];
			bool seen = false;
			if (a == me) {
				if (l == idx)
					continue; /* our own shared hold on the lock we want */
				return true;
			}
			for (size_t v = 0; v < nv; v++)
				seen |= visited[v] == a;
			if (seen || nv == DEADLOCK_HOPS)
				continue;
			visited[nv++] = a;
			for (int k = 0; k < BUMBA_AGENT_WAITS; k++) {
				uint32_t wl = atomic_load(&s->agents[a].waiting[k]);
				if (wl && sp < DEADLOCK_HOPS)
					stack[sp++] = wl - 1;
			}
		}
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* waiter records                                                      */

/* Claims a record by its agent word, so a record is never in a queue
 * state before its fields are written, and a claimer that dies right after
 * the CAS leaves a record its reclaim finds. */
static uint32_t waiter_alloc(struct bumba_seg *s, uint32_t slot)
{
	const uint32_t n = s->hdr->caps.max_waiters;
	uint32_t start = (uint32_t)(slot * 7u) % n;

	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (start + k) % n;
		struct waiter *w = &s->waiters[i];
		uint32_t z = 0;
		if (!atomic_load_explicit(&w->agent1, memory_order_relaxed) &&
		    atomic_compare_exchange_strong(&w->agent1, &z, slot + 1))
			return i + 1;
	}
	return 0;
}

static void waiter_free(struct waiter *w)
{
	w->next = 0;
	atomic_store(&w->state, WAITER_FREE);
	atomic_store_explicit(&w->agent1, 0, memory_order_release);
}

/* ------------------------------------------------------------------ */
/* liveness without a supervisor                                       */

static void reclaim_if_dead(struct bumba_seg *s, uint32_t a)
{
	struct agent_slot *ag = &s->agents[a];
	uint32_t gen = atomic_load(&ag->gen);

	if (atomic_load(&ag->state) == AGENT_LIVE && !bumba_proc_same(ag->pid, ag->start_time))
		bumba_locks_reclaim_agent(s, a, gen);
}

/* The supervisor is gone: find out ourselves whether the holders of idx
 * are dead, and reclaim them (DESIGN decision 3). */
static void check_holders(struct bumba_seg *s, uint32_t me, uint32_t idx)
{
	uint64_t st = atomic_load(&s->locks[idx].state);

	if (st & LK_OWNER_MASK) {
		uint32_t a = (uint32_t)(st & LK_OWNER_MASK) - 1;
		if (a != me && a < s->hdr->caps.max_agents)
			reclaim_if_dead(s, a);
	}
	if (st & LK_SHARED_MASK) {
		for (uint32_t a = 0; a < s->hdr->caps.max_agents; a++) {
			if (a != me && atomic_load(&s->agents[a].state) == AGENT_LIVE &&
			    agent_holds(s, a, idx))
				reclaim_if_dead(s, a);
		}
	}
	/* Grants not yet taken up, and queued waiters ahead of us, belong to
	 * processes that may be dead too. */
	for (uint32_t i = 0; i < s->hdr->caps.max_waiters; i++) {
		const struct waiter *w = &s->waiters[i];
		uint32_t a1 = atomic_load(&w->agent1);
		uint32_t ws = atomic_load(&w->state);
		if (a1 && a1 - 1 != me && w->lock == idx &&
		    (ws == WAITER_GRANTED || ws == WAITER_QUEUED))
			reclaim_if_dead(s, a1 - 1);
	}
}

/* ------------------------------------------------------------------ */
/* acquire                                                             */

struct acq {
	uint32_t idx, hidx;
	uint64_t key;
	struct hold *h;
	enum bumba_mode mode;
	enum bumba_priority prio;
	int timeout_ms;	      /* 0: try once */
	uint64_t start_ns;    /* coarse: grant time, hold start */
	uint64_t deadline_ns; /* set when we first have to wait */
	uint64_t wait_ns;     /* precise: when the slow path began */
	uint64_t fence;
	bool owner_died;
};

static uint64_t opaque_tag(const struct bumba *b, const struct acq *q)
{
	return ((uint64_t)b->gen << 32) | (q->owner_died ? 1u : 0u) | ((uint64_t)q->mode << 1);
}

static void release_word(struct bumba_seg *s, uint32_t idx, uint32_t agent1, enum bumba_mode mode,
			 bool died);
static int release_hold(struct bumba *b, uint32_t idx, uint32_t hidx, bool all);

/* Slow path: spin a little, then queue and sleep.  The hold q->h is ours
 * and PENDING. */
static int acquire_slow(struct bumba *b, struct acq *q)
{
	struct bumba_seg *s = &b->seg;
	struct lock_entry *e = &s->locks[q->idx];
	const uint64_t agent1 = b->slot + 1;

	if (!q->wait_ns)
		q->wait_ns = bumba_now_ns();
	if (q->timeout_ms && !q->deadline_ns)
		q->deadline_ns = q->wait_ns + (uint64_t)q->timeout_ms * 1000000ull;
	if (q->mode == BUMBA_EXCLUSIVE && q->timeout_ms) {
		for (int i = 0; i < SPIN_TRIES; i++) {
			uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
			if ((st & ~LK_OWNER_DIED) == 0 &&
			    atomic_compare_exchange_weak(&e->state, &st, agent1)) {
				if (atomic_load(&e->key) != q->key) {
					release_word(s, q->idx, (uint32_t)agent1, BUMBA_EXCLUSIVE,
						     false);
					return -EAGAIN;
				}
				if (b->joined && !agent_live(b)) {
					/* Reclaimed under us: see acquire_common. */
					release_word(s, q->idx, (uint32_t)agent1, BUMBA_EXCLUSIVE,
						     false);
					return -ENOLINK;
				}
				q->owner_died = (st & LK_OWNER_DIED) != 0;
				q->fence = atomic_fetch_add(&e->fence, 1) + 1;
				return 0;
			}
			cpu_relax();
		}
	}

	/* A joined handle's agent can be reclaimed while we run (its
	 * registering process died): the reclaimer works under the agent
	 * mutex and takes every process of the agent for dead, freeing a
	 * waiter record that is claimed but not yet queued.  So a joined
	 * handle grants itself the lock or queues under that mutex, having
	 * seen the agent live: the reclaimer then finds the lock word, the
	 * hold or the queued record complete. */
	pthread_mutex_t *amu = NULL;
	if (b->joined) {
		amu = &b->agent->mu;
		mu_lock(amu, repair_nothing, s, 0);
		if (!agent_live(b)) {
			mu_unlock(amu);
			return -ENOLINK;
		}
	}
	entry_lock(s, q->idx);
	if (atomic_load(&e->key) != q->key || (atomic_load(&e->state) & LK_DEAD)) {
		mu_unlock(&e->mu);
		if (amu)
			mu_unlock(amu);
		return -EAGAIN; /* entry recycled under us: look it up again */
	}
	/* Take it now if it is free and nobody queues before us; otherwise
	 * set WAITERS by a CAS that succeeds only while the lock is still
	 * held, so a holder's lock-free release cannot slip past us and
	 * leave us asleep with nobody to wake us. */
	for (;;) {
		uint64_t st = atomic_load(&e->state), nst;
		const bool busy = (st & LK_OWNER_MASK) ||
				  (q->mode == BUMBA_EXCLUSIVE && (st & LK_SHARED_MASK));
		if (!busy && e->qhead == 0) {
			if (q->mode == BUMBA_SHARED)
				nst = st + LK_SHARED_ONE;
			else
				nst = (st & ~(LK_OWNER_MASK | LK_OWNER_DIED)) | agent1;
			if (!atomic_compare_exchange_weak(&e->state, &st, nst))
				continue;
			q->owner_died = (st & LK_OWNER_DIED) != 0;
			q->fence = atomic_fetch_add(&e->fence, 1) + 1;
			atomic_store(&e->acquired_ns, bumba_now_ns());
			/* A shared hold turns ACTIVE under the mutex: the recount
			 * in repair_entry must see it counted or not, never half. */
			hold_activate(q->h, q->fence, bumba_coarse_ns());
			mu_unlock(&e->mu);
			if (amu)
				mu_unlock(amu);
			return 1;
		}
		if (!busy && !(st & (LK_OWNER_MASK | LK_SHARED_MASK))) {
			/* Free yet queued: hand it to the queue first. */
			dispatch_locked(s, e);
			continue;
		}
		if (!q->timeout_ms) {
			mu_unlock(&e->mu);
			if (amu)
				mu_unlock(amu);
			return -EBUSY;
		}
		if ((st & LK_WAITERS) ||
		    atomic_compare_exchange_weak(&e->state, &st, st | LK_WAITERS))
			break;
	}
	uint32_t w1 = waiter_alloc(s, b->slot);
	if (!w1) {
		mu_unlock(&e->mu);
		if (amu)
			mu_unlock(amu);
		return -ENOSPC;
	}
	struct waiter *w = W(s, w1);
	w->lock = q->idx;
	w->mode = (uint8_t)q->mode;
	w->prio = (uint8_t)q->prio;
	w->owner_died = 0;
	w->pid = b->pid;
	w->hold = q->hidx;
	w->ticket = atomic_fetch_add(&s->hdr->ticket, 1);
	w->deadline_ns = q->deadline_ns;
	w->granted_fence = 0;
	atomic_store(&w->futex, 0);
	atomic_store(&w->state, WAITER_QUEUED);
	q_insert(s, e, w1);
	mu_unlock(&e->mu);

	atomic_fetch_add_explicit(&b->agent->contended, 1, memory_order_relaxed);
	/* The dashboard shows a queued agent as blocked until it gets in. */
	uint32_t prev_status = atomic_exchange(&b->agent->status, BUMBA_STATUS_BLOCKED);
	int wk = waiting_add(s, b->slot, q->idx);
	if (amu)
		mu_unlock(amu);
	int rc = 0;
	if (wk >= 0 && would_deadlock(s, b->slot, q->idx))
		rc = -EDEADLK;

	while (!rc) {
		uint64_t now = bumba_now_ns();
		if (atomic_load(&w->state) != WAITER_QUEUED)
			break;
		/* A reclaim frees our record without waking us (it takes
		 * the agent's processes for dead): we notice within the
		 * liveness interval. */
		if (b->joined && !agent_live(b))
			break;
		if (now >= q->deadline_ns) {
			rc = -ETIMEDOUT;
			break;
		}
		uint64_t until = q->deadline_ns;
		if (until - now > LIVENESS_NS)
			until = now + LIVENESS_NS;
		futex_wait_until(&w->futex, 0, until);
		if (atomic_load(&w->state) == WAITER_QUEUED && bumba_now_ns() < q->deadline_ns &&
		    !bumba_seg_supervisor_alive(s))
			check_holders(s, b->slot, q->idx);
	}

	entry_lock(s, q->idx);
	if (b->joined && !agent_live(b)) {
		/* Reclaimed: the reclaimer dequeues our record or takes back
		 * its grant (under this mutex), and may already have given
		 * the record to someone else: touch nothing. */
		mu_unlock(&e->mu);
		return -ENOLINK;
	}
	uint32_t ws = atomic_load(&w->state);
	if (ws == WAITER_GRANTED) {
		rc = 1;
		q->fence = w->granted_fence;
		q->owner_died = w->owner_died;
		hold_activate(q->h, q->fence, bumba_coarse_ns());
	} else {
		if (ws == WAITER_QUEUED) {
			bool was_head = e->qhead == w1;
			q_remove(s, e, w1);
			/* Leaving the head may unblock compatible waiters behind us. */
			if (was_head)
				dispatch_locked(s, e);
		}
		if (!rc || ws == WAITER_CANCEL)
			rc = -ETIMEDOUT;
	}
	waiter_free(w);
	mu_unlock(&e->mu);
	/* A joined handle's agent may be reclaimed by now, its slot even
	 * reused: the reclaimer clears the wait-for entries itself. */
	if (amu)
		mu_lock(amu, repair_nothing, s, 0);
	if (!amu || agent_live(b)) {
		waiting_del(s, b->slot, wk);
		uint32_t blocked = BUMBA_STATUS_BLOCKED;
		atomic_compare_exchange_strong(&b->agent->status, &blocked, prev_status);
	}
	if (amu)
		mu_unlock(amu);
	return rc;
}

/* Frees a PENDING hold of ours that did not get its lock.  A joined
 * handle whose agent was reclaimed meanwhile leaves it to the reclaimer:
 * the slot may already belong to another agent. */
static void drop_pending(struct bumba *b, uint32_t hidx)
{
	mu_lock(&b->agent->mu, repair_nothing, &b->seg, 0);
	if (!b->joined || agent_live(b))
		hold_free(b->holds, b->hold_mask, hidx);
	mu_unlock(&b->agent->mu);
}

/* A joined handle counts the holds it took itself (per hold index, with
 * the lock it was for), so that bumba_close gives back exactly those. */
static void own_add(struct bumba *b, uint32_t hidx, uint32_t lock1)
{
	_Atomic uint64_t *o = &b->own[hidx];
	uint64_t v = atomic_load(o), nv;

	do {
		nv = (v >> 32) == lock1 ? v + 1 : ((uint64_t)lock1 << 32 | 1u);
	} while (!atomic_compare_exchange_weak(o, &v, nv));
}

static void own_sub(struct bumba *b, uint32_t hidx, uint32_t lock1)
{
	_Atomic uint64_t *o = &b->own[hidx];
	uint64_t v = atomic_load(o);

	while ((v >> 32) == lock1 && (uint32_t)v &&
	       !atomic_compare_exchange_weak(o, &v, (uint32_t)v == 1 ? 0 : v - 1))
		;
}

static int acquire_common(struct bumba *b, const char *path, const struct bumba_lock_opts *o,
			  struct bumba_lock *out)
{
	struct bumba_seg *s = &b->seg;
	char norm[PATH_MAX];
	size_t root;
	struct acq q = {0};
	int rc, len;
	bool fresh;

	if (!b || !path || !o || !out || (o->mode != BUMBA_EXCLUSIVE && o->mode != BUMBA_SHARED) ||
	    o->prio > BUMBA_PRIO_HIGH)
		return -EINVAL;
	if (atomic_load_explicit(&b->agent->gen, memory_order_relaxed) != b->gen)
		return -ENOLINK; /* our agent was reclaimed (lease expired) */
	len = bumba_path_norm(s->root_ptrs, s->hdr->n_roots, path, (size_t)-1, norm, sizeof(norm),
			      &root);
	if (len < 0)
		return len == -ENAMETOOLONG ? -EINVAL : len;

	/* Refuse at once rather than queue for a lock we could not keep.  The
	 * epoch read first tells, after the lock is ours, whether any claim
	 * appeared meanwhile that this check could not have seen. */
	uint64_t epoch = atomic_load(&s->hdr->terr_epoch);
	if (o->mode == BUMBA_EXCLUSIVE) {
		rc = bumba_territory_lock_check(s, b->slot, norm, (size_t)len);
		if (rc)
			return rc;
	}
	q.key = bumba_lock_key(norm, (size_t)len);
	q.mode = o->mode;
	q.prio = o->prio;
	/* The coarse clock: the precise one costs ~25 ns on a VM, a third of
	 * an uncontended acquire+release.  Waiting reads the precise one. */
	q.start_ns = bumba_coarse_ns();
	int timeout = o->timeout_ms < 0 ? s->hdr->default_timeout_ms : o->timeout_ms;
	if (timeout > s->hdr->max_timeout_ms)
		timeout = s->hdr->max_timeout_ms;
	q.timeout_ms = timeout;

retry:;
	int64_t found = bumba_locks_find(s, q.key);
	if (found < 0) {
		rc = table_insert(s, q.key, norm, (size_t)len, &q.idx);
		if (rc)
			return rc;
	} else {
		q.idx = (uint32_t)found;
	}

	mu_lock(&b->agent->mu, repair_nothing, s, 0);
	/* The reclaimer works under this mutex: seen live here, our agent's
	 * hold table is still ours to write. */
	if (b->joined && !agent_live(b)) {
		mu_unlock(&b->agent->mu);
		return -ENOLINK;
	}
	q.h = hold_get(b, q.idx, q.mode, &q.hidx, &fresh);
	if (!q.h) {
		mu_unlock(&b->agent->mu);
		return -ENOSPC;
	}
	if (!fresh) {
		uint32_t hs = atomic_load(&q.h->state);
		if ((hs & 0xff) == HOLD_PENDING) {
			/* Another thread of this agent is acquiring it: wait for
			 * its outcome, then count ourselves in or retry. */
			if (!(hs & HOLD_WANTED))
				atomic_compare_exchange_strong(&q.h->state, &hs, hs | HOLD_WANTED);
			mu_unlock(&b->agent->mu);
			if (!q.timeout_ms)
				return -EBUSY;
			if (!q.deadline_ns)
				q.deadline_ns =
					bumba_now_ns() + (uint64_t)q.timeout_ms * 1000000ull;
			if (bumba_now_ns() >= q.deadline_ns)
				return -ETIMEDOUT;
			futex_wait_until(&q.h->state, HOLD_PENDING | HOLD_WANTED, q.deadline_ns);
			goto retry;
		}
		if (q.h->mode == BUMBA_SHARED && q.mode == BUMBA_EXCLUSIVE) {
			/* Upgrade: only the sole sharer may, in place. */
			struct lock_entry *e = &s->locks[q.idx];
			uint64_t st = LK_SHARED_ONE;
			if (!atomic_compare_exchange_strong(&e->state, &st, b->slot + 1)) {
				mu_unlock(&b->agent->mu);
				return -EDEADLK;
			}
			q.h->mode = BUMBA_EXCLUSIVE;
		}
		/* The count of an ACTIVE hold changes only under this mutex
		 * (hold_activate writes it while the hold is PENDING). */
		atomic_store_explicit(&q.h->count,
				      atomic_load_explicit(&q.h->count, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		q.fence = atomic_load_explicit(&q.h->fence, memory_order_relaxed);
		q.hidx = (uint32_t)(q.h - b->holds);
		ctr_add_locked(&b->agent->acquired, 1);
		mu_unlock(&b->agent->mu);
		goto done;
	}

	/* The uncontended exclusive acquire, still under the agent mutex
	 * taken for hold_get: the CAS, the activation and the counters in
	 * one critical section.  No other thread of the agent has seen the
	 * PENDING hold (they look under this mutex), so activating it needs
	 * no locked exchange; and a reclaimer of a joined agent, which marks
	 * the agent DYING and then waits for this mutex, finds the hold
	 * ACTIVE and the word ours, and gives the lock back like any lock
	 * held when the agent died.  (A process killed in here leaves the
	 * PENDING or ACTIVE hold and the word to the reclaimer, as before;
	 * the other processes of the agent get EOWNERDEAD, and the records
	 * are consistent.)  Only the agent mutex is held, and the entry
	 * mutex after it if we must undo: the order reclaim uses too. */
	struct lock_entry *e = &s->locks[q.idx];
	if (q.mode == BUMBA_EXCLUSIVE) {
		uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
		if ((st & ~LK_OWNER_DIED) == 0 &&
		    atomic_compare_exchange_strong(&e->state, &st, (uint64_t)b->slot + 1)) {
			if (atomic_load_explicit(&e->key, memory_order_relaxed) != q.key) {
				/* Slot recycled between lookup and CAS: undo. */
				release_word(s, q.idx, b->slot + 1, BUMBA_EXCLUSIVE, false);
				hold_free(b->holds, b->hold_mask, q.hidx);
				mu_unlock(&b->agent->mu);
				goto retry;
			}
			q.owner_died = (st & LK_OWNER_DIED) != 0;
			q.fence = atomic_fetch_add_explicit(&e->fence, 1, memory_order_relaxed) + 1;
			atomic_store_explicit(&e->acquired_ns, q.start_ns, memory_order_relaxed);
			/* One clock read serves the grant time and the hold's start. */
			hold_activate_locked(q.h, q.fence, q.start_ns);
			ctr_add_locked(&b->agent->wait_hist[0], 1);
			ctr_add_locked(&b->agent->acquired, 1);
			mu_unlock(&b->agent->mu);
			goto fresh;
		}
	}
	mu_unlock(&b->agent->mu);

	rc = acquire_slow(b, &q);
	if (rc == 0) {
		/* Won during the spin. */
		hold_activate(q.h, q.fence, bumba_coarse_ns());
	} else if (rc < 0) {
		if (rc == -ENOLINK)
			return rc; /* the hold is the reclaimer's */
		drop_pending(b, q.hidx);
		if (rc == -EAGAIN)
			goto retry;
		if (rc == -ETIMEDOUT || rc == -EBUSY)
			atomic_fetch_add_explicit(&b->agent->timeouts, 1, memory_order_relaxed);
		else if (rc == -EDEADLK)
			atomic_fetch_add_explicit(&b->agent->deadlocks, 1, memory_order_relaxed);
		return rc;
	}
	{
		uint64_t waited = q.wait_ns ? bumba_now_ns() - q.wait_ns : 0;
		mu_lock(&b->agent->mu, repair_nothing, s, 0);
		/* A joined agent reclaimed meanwhile: its counters are folded
		 * and the slot may be someone else's. */
		if (!b->joined || agent_live(b)) {
			hist_add_locked(b->agent, waited);
			ctr_add_locked(&b->agent->acquired, 1);
		}
		mu_unlock(&b->agent->mu);
	}

fresh:
	/* A claim published while we were getting the lock: it bumps the
	 * epoch and then looks for locks, we took the lock and then read the
	 * epoch, so either it saw our lock and refused itself or we see the
	 * new epoch and check again. */
	if (q.mode == BUMBA_EXCLUSIVE && atomic_load(&s->hdr->terr_epoch) != epoch) {
		rc = bumba_territory_lock_check(s, b->slot, norm, (size_t)len);
		if (rc) {
			release_hold(b, q.idx, q.hidx, true);
			return rc;
		}
	}
done:
	if (o->lease_ms) {
		if (!atomic_load(&q.h->lease_deadline_ns))
			atomic_fetch_add(&b->agent->n_leases, 1);
		atomic_store(&q.h->lease_deadline_ns,
			     bumba_now_ns() + (uint64_t)o->lease_ms * 1000000ull);
	}
	if (b->own)
		own_add(b, q.hidx, q.idx + 1);
	out->fence = q.fence;
	out->opaque[0] = q.idx | ((uint64_t)q.hidx << 32);
	out->opaque[1] = q.key;
	out->opaque[2] = opaque_tag(b, &q);
	return 0;
}

int bumba_lock_acquire_opts(struct bumba *b, const char *path, const struct bumba_lock_opts *opts,
			    struct bumba_lock *out)
{
	return acquire_common(b, path, opts, out);
}

int bumba_lock_acquire(struct bumba *b, const char *path, enum bumba_mode mode, int timeout_ms,
		       enum bumba_priority prio, struct bumba_lock *out)
{
	const struct bumba_lock_opts o = {.mode = mode, .timeout_ms = timeout_ms, .prio = prio};

	return acquire_common(b, path, &o, out);
}

int bumba_lock_owner_died(const struct bumba_lock *lock)
{
	return lock && (lock->opaque[2] & 1u) ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* release                                                             */

/* Gives up the lock word's share of a hold (count already at zero).  A
 * shared hold leaves ACTIVE under the entry mutex, together with the
 * count, so a recount (repair_entry) or a reclaim never counts it twice. */
static void release_word_h(struct bumba_seg *s, uint32_t idx, uint32_t agent1, enum bumba_mode mode,
			   bool died, struct hold *h)
{
	struct lock_entry *e = &s->locks[idx];

	if (mode == BUMBA_EXCLUSIVE) {
		uint64_t st = agent1;
		if (!died && atomic_compare_exchange_strong(&e->state, &st, 0))
			return;
		entry_lock(s, idx);
		st = atomic_load(&e->state);
		if ((st & LK_OWNER_MASK) == agent1) {
			uint64_t nst;
			do {
				nst = st & ~LK_OWNER_MASK;
				if (died)
					nst |= LK_OWNER_DIED;
			} while (!atomic_compare_exchange_weak(&e->state, &st, nst));
		}
	} else {
		entry_lock(s, idx);
		bool counted = !h || (atomic_load(&h->state) & 0xff) == HOLD_ACTIVE;
		if (counted && (atomic_load(&e->state) & LK_SHARED_MASK))
			atomic_fetch_sub(&e->state, LK_SHARED_ONE);
		if (h && counted)
			atomic_store(&h->state, HOLD_LEAVING);
	}
	dispatch_locked(s, e);
	mu_unlock(&e->mu);
}

static void release_word(struct bumba_seg *s, uint32_t idx, uint32_t agent1, enum bumba_mode mode,
			 bool died)
{
	release_word_h(s, idx, agent1, mode, died, NULL);
}

static int release_hold(struct bumba *b, uint32_t idx, uint32_t hidx, bool all)
{
	struct hold *h;
	int rc = 0;

	if (idx >= b->seg.hdr->lock_slots || hidx > b->hold_mask)
		return -EINVAL;
	h = &b->holds[hidx];
	mu_lock(&b->agent->mu, repair_nothing, &b->seg, 0);
	if (b->joined && !agent_live(b)) {
		rc = -ENOLCK; /* reclaimed: the slot is no longer ours */
		goto out;
	}
	if (atomic_load(&h->lock1) != idx + 1 || (atomic_load(&h->state) & 0xff) != HOLD_ACTIVE ||
	    atomic_load(&h->count) == 0) {
		rc = -ENOLCK;
		goto out;
	}
	/* The count of an ACTIVE hold changes only under this mutex: no
	 * locked instruction needed. */
	uint32_t cnt = atomic_load_explicit(&h->count, memory_order_relaxed);
	if (!all && cnt > 1) {
		atomic_store_explicit(&h->count, cnt - 1, memory_order_relaxed);
		goto out;
	}
	atomic_store_explicit(&h->count, 0, memory_order_relaxed);
	if (atomic_load(&h->lease_deadline_ns))
		atomic_fetch_sub(&b->agent->n_leases, 1);
	if (h->mode == BUMBA_EXCLUSIVE) {
		/* Remember it: the guard may judge a write made just before. */
		/* Under the agent mutex: a plain increment, no locked op. */
		uint32_t k = atomic_load_explicit(&b->agent->hist_next, memory_order_relaxed);
		atomic_store_explicit(&b->agent->hist_next, k + 1, memory_order_relaxed);
		k %= AGENT_HIST;
		atomic_store_explicit(&b->agent->hist[k].key, 0, memory_order_relaxed);
		atomic_store_explicit(&b->agent->hist[k].since_ns, h->since_ns,
				      memory_order_relaxed);
		/* The precise clock here: the coarse one can lag by more than
		 * a tick (tickless kernels), and a write just before the
		 * release must still be judged as under the lock.  (The start
		 * of a hold may be early: that only widens the window.) */
		atomic_store_explicit(&b->agent->hist[k].until_ns, bumba_now_ns(),
				      memory_order_relaxed);
		atomic_store_explicit(&b->agent->hist[k].key, atomic_load(&b->seg.locks[idx].key),
				      memory_order_release);
	}
	release_word_h(&b->seg, idx, b->slot + 1, (enum bumba_mode)h->mode, false, h);
	hold_free(b->holds, b->hold_mask, hidx);
	ctr_add_locked(&b->agent->released, 1);
out:
	mu_unlock(&b->agent->mu);
	return rc;
}

int bumba_lock_release(struct bumba *b, struct bumba_lock *lock)
{
	if (!b || !lock)
		return -EINVAL;
	/* A handle whose agent was reclaimed must not touch the slot's next
	 * occupant's locks. */
	if ((uint32_t)(lock->opaque[2] >> 32) != b->gen ||
	    atomic_load_explicit(&b->agent->gen, memory_order_acquire) != b->gen)
		return -ENOLCK;
	uint32_t idx = (uint32_t)lock->opaque[0], hidx = (uint32_t)(lock->opaque[0] >> 32);
	int rc = release_hold(b, idx, hidx, false);
	if (rc == 0 && b->own)
		own_sub(b, hidx, idx + 1);
	return rc;
}

int bumba_lock_renew(struct bumba *b, struct bumba_lock *lock, uint32_t lease_ms)
{
	if (!b || !lock || !lease_ms)
		return -EINVAL;
	uint32_t idx = (uint32_t)lock->opaque[0], hidx = (uint32_t)(lock->opaque[0] >> 32);
	if ((uint32_t)(lock->opaque[2] >> 32) != b->gen || hidx > b->hold_mask ||
	    atomic_load_explicit(&b->agent->gen, memory_order_acquire) != b->gen)
		return -ENOLCK;
	struct hold *h = &b->holds[hidx];
	if (atomic_load(&h->lock1) != idx + 1 || (atomic_load(&h->state) & 0xff) != HOLD_ACTIVE ||
	    (b->joined && !agent_live(b)))
		return -ENOLCK;
	uint64_t d = atomic_load(&h->lease_deadline_ns);
	if (!d)
		return -EINVAL;
	if (!atomic_compare_exchange_strong(&h->lease_deadline_ns, &d,
					    bumba_now_ns() + (uint64_t)lease_ms * 1000000ull))
		return -ENOLCK; /* cleared by a release in another thread */
	return 0;
}

void bumba_locks_release_all(struct bumba *b)
{
	for (uint32_t j = 0; j <= b->hold_mask; j++) {
		uint32_t l = atomic_load(&b->holds[j].lock1);
		if (l && l != HOLD_TOMB)
			release_hold(b, l - 1, j, true);
	}
}

void bumba_locks_release_own(struct bumba *b)
{
	if (!b->own)
		return;
	for (uint32_t j = 0; j <= b->hold_mask; j++) {
		uint64_t v = atomic_exchange(&b->own[j], 0);
		uint32_t l = (uint32_t)(v >> 32), n = (uint32_t)v;
		/* One count at a time: counts the other processes of the agent
		 * took on the same lock stay. */
		while (n-- && atomic_load(&b->holds[j].lock1) == l &&
		       release_hold(b, l - 1, j, false) == 0)
			;
	}
}

/* ------------------------------------------------------------------ */
/* reclaim and sweep (supervisor, or any client when it is gone)       */

static void repair_reclaim(struct bumba_seg *s, uint32_t unused)
{
	/* A reclaimer killed mid-way leaves the agent DYING: the next pass
	 * over that agent redoes every idempotent step. */
}

static void fold_counters(struct seg_header *h, struct agent_slot *a)
{
	struct retired_counters *r = &h->retired;

	atomic_fetch_add(&r->acquired, atomic_exchange(&a->acquired, 0));
	atomic_fetch_add(&r->released, atomic_exchange(&a->released, 0));
	atomic_fetch_add(&r->contended, atomic_exchange(&a->contended, 0));
	atomic_fetch_add(&r->timeouts, atomic_exchange(&a->timeouts, 0));
	atomic_fetch_add(&r->deadlocks, atomic_exchange(&a->deadlocks, 0));
	atomic_fetch_add(&r->wait_ns_sum, atomic_exchange(&a->wait_ns_sum, 0));
	for (int i = 0; i < WAIT_HIST_BUCKETS; i++)
		atomic_fetch_add(&r->wait_hist[i], atomic_exchange(&a->wait_hist[i], 0));
}

void bumba_locks_reclaim_agent(struct bumba_seg *s, uint32_t slot, uint32_t gen)
{
	struct seg_header *h = s->hdr;
	struct agent_slot *a;
	const uint32_t agent1 = slot + 1;

	if (slot >= h->caps.max_agents)
		return;
	a = &s->agents[slot];
	mu_lock(&h->reclaim_mu, repair_reclaim, s, 0);
	uint32_t st = atomic_load(&a->state);
	if (st == AGENT_FREE || atomic_load(&a->gen) != gen) {
		mu_unlock(&h->reclaim_mu);
		return;
	}
	atomic_store(&a->state, AGENT_DYING);
	mu_lock(&a->mu, repair_nothing, s, 0);

	/* 1. Its waiter records: dequeue, or give back what was granted to a
	 * process that died before it woke. */
	for (uint32_t i = 0; i < h->caps.max_waiters; i++) {
		struct waiter *w = &s->waiters[i];
		if (atomic_load(&w->agent1) != agent1)
			continue;
		if (atomic_load(&w->state) == WAITER_FREE) {
			/* Claimed but never queued: the claimer died in between. */
			waiter_free(w);
			continue;
		}
		struct lock_entry *e = &s->locks[w->lock];
		entry_lock(s, w->lock);
		uint32_t ws = atomic_load(&w->state);
		if (ws == WAITER_QUEUED) {
			q_remove(s, e, i + 1);
		} else if (ws == WAITER_GRANTED) {
			struct hold *hd = &bumba_seg_holds_of(s, slot)[w->hold];
			/* Not yet turned into an ACTIVE hold: the word still
			 * carries the grant; step 2 will not see it. */
			if ((atomic_load(&hd->state) & 0xff) != HOLD_ACTIVE) {
				if (w->mode == BUMBA_EXCLUSIVE) {
					uint64_t ls = atomic_load(&e->state);
					if ((ls & LK_OWNER_MASK) == agent1)
						atomic_fetch_and(&e->state, ~LK_OWNER_MASK);
					atomic_fetch_or(&e->state, LK_OWNER_DIED);
					atomic_fetch_add(&h->retired.owner_died, 1);
				} else if (atomic_load(&e->state) & LK_SHARED_MASK) {
					atomic_fetch_sub(&e->state, LK_SHARED_ONE);
				}
			}
		}
		waiter_free(w);
		dispatch_locked(s, e);
		mu_unlock(&e->mu);
	}

	/* 2. Its holds. */
	struct hold *hs = bumba_seg_holds_of(s, slot);
	const uint32_t hmask = h->caps.holds_per_agent - 1;
	for (uint32_t j = 0; j <= hmask; j++) {
		uint32_t l = atomic_load(&hs[j].lock1);
		if (!l || l == HOLD_TOMB)
			continue;
		uint32_t idx = l - 1;
		uint32_t hst = atomic_load(&hs[j].state) & 0xff;
		if (idx < h->lock_slots) {
			struct lock_entry *e = &s->locks[idx];
			if (hs[j].mode == BUMBA_EXCLUSIVE) {
				/* PENDING or ACTIVE: the word says whether it got it. */
				if ((atomic_load(&e->state) & LK_OWNER_MASK) == agent1) {
					release_word(s, idx, agent1, BUMBA_EXCLUSIVE, true);
					atomic_fetch_add(&h->retired.owner_died, 1);
				}
			} else if (hst == HOLD_ACTIVE || hst == HOLD_PENDING) {
				/* Re-checked under the entry mutex: a release
				 * cut short may have given it back already, and
				 * a joined process of the agent, still running,
				 * may be turning a PENDING hold ACTIVE. */
				release_word_h(s, idx, agent1, BUMBA_SHARED, true, &hs[j]);
			}
		}
		atomic_store(&hs[j].count, 0);
		atomic_store(&hs[j].lease_deadline_ns, 0);
		atomic_store(&hs[j].lock1, 0);
		uint32_t old = atomic_exchange(&hs[j].state, HOLD_FREE);
		if (old & HOLD_WANTED)
			futex_wake_all(&hs[j].state);
	}

	/* 3. Its territories, and those of its children inside them. */
	bumba_territory_reclaim_agent(s, slot);

	/* 4. The slot. */
	fold_counters(h, a);
	for (int k = 0; k < AGENT_HIST; k++)
		atomic_store(&a->hist[k].key, 0);
	for (int k = 0; k < BUMBA_AGENT_WAITS; k++)
		atomic_store(&a->waiting[k], 0);
	atomic_store(&a->n_waiting, 0);
	waitmap_update(s, slot);
	atomic_store(&a->n_leases, 0);
	atomic_fetch_add(&h->retired.agents_reclaimed, 1);
	atomic_fetch_sub(&h->n_agents, 1);
	atomic_fetch_add(&a->gen, 1);
	mu_unlock(&a->mu);
	atomic_store(&a->state, AGENT_FREE);
	mu_unlock(&h->reclaim_mu);
}

size_t bumba_locks_sweep(struct bumba_seg *s, uint64_t now, uint32_t *expired, size_t max)
{
	struct seg_header *h = s->hdr;
	size_t n = 0;

	/* Waiters whose own process did not time them out: stopped or hung.
	 * They must not keep a queue blocked. */
	for (uint32_t i = 0; i < h->caps.max_waiters; i++) {
		struct waiter *w = &s->waiters[i];
		if (atomic_load_explicit(&w->state, memory_order_relaxed) != WAITER_QUEUED ||
		    !atomic_load(&w->agent1) || w->deadline_ns + SWEEP_GRACE_NS > now)
			continue;
		struct lock_entry *e = &s->locks[w->lock];
		entry_lock(s, w->lock);
		if (atomic_load(&w->state) == WAITER_QUEUED && atomic_load(&w->agent1)) {
			bool was_head = e->qhead == i + 1;
			q_remove(s, e, i + 1);
			wake_waiter(w, WAITER_CANCEL);
			if (was_head)
				dispatch_locked(s, e);
		}
		mu_unlock(&e->mu);
	}

	for (uint32_t a = 0; a < h->caps.max_agents && n < max; a++) {
		struct agent_slot *ag = &s->agents[a];
		if (atomic_load_explicit(&ag->state, memory_order_relaxed) != AGENT_LIVE ||
		    !atomic_load_explicit(&ag->n_leases, memory_order_relaxed))
			continue;
		struct hold *hs = bumba_seg_holds_of(s, a);
		for (uint32_t j = 0; j < h->caps.holds_per_agent; j++) {
			uint64_t d = atomic_load(&hs[j].lease_deadline_ns);
			if (d && d < now && (atomic_load(&hs[j].state) & 0xff) == HOLD_ACTIVE) {
				expired[n++] = a;
				break;
			}
		}
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* views                                                               */

bool bumba_locks_view(const struct bumba_seg *s, uint32_t i, struct bumba_lock_view *v)
{
	const struct lock_entry *e;

	if (i >= s->hdr->lock_slots)
		return false;
	e = &s->locks[i];
	for (int tries = 0; tries < 4; tries++) {
		uint64_t k = atomic_load(&e->key);
		uint64_t st = atomic_load(&e->state);
		if (k < 2 || (st & LK_DEAD) ||
		    !(st & (LK_OWNER_MASK | LK_SHARED_MASK | LK_WAITERS)))
			return false;
		memset(v, 0, sizeof(*v));
		v->index = i;
		v->fence = atomic_load(&e->fence);
		v->owner1 = (uint32_t)(st & LK_OWNER_MASK);
		v->shared = (uint32_t)((st & LK_SHARED_MASK) >> LK_SHARED_SHIFT);
		v->nwaiters = atomic_load(&e->nwaiters);
		v->owner_died = (st & LK_OWNER_DIED) != 0;
		v->acquired_ns = atomic_load(&e->acquired_ns);
		memcpy(v->path, s->names[i], BUMBA_LOCK_NAME);
		v->path[BUMBA_LOCK_NAME - 1] = '\0';
		/* The name is written before the key is published; a key that
		 * did not change while we copied means the name is its own. */
		if (atomic_load(&e->key) == k)
			return true;
	}
	return false;
}

void bumba_seg_totals(const struct bumba_seg *s, struct bumba_totals *t)
{
	const struct seg_header *h = s->hdr;
	const struct retired_counters *r = &h->retired;

	memset(t, 0, sizeof(*t));
	t->acquired = atomic_load(&r->acquired);
	t->released = atomic_load(&r->released);
	t->contended = atomic_load(&r->contended);
	t->timeouts = atomic_load(&r->timeouts);
	t->deadlocks = atomic_load(&r->deadlocks);
	t->wait_ns_sum = atomic_load(&r->wait_ns_sum);
	for (int i = 0; i < WAIT_HIST_BUCKETS; i++)
		t->wait_hist[i] = atomic_load(&r->wait_hist[i]);
	t->agents_spawned = atomic_load(&r->agents_spawned);
	t->agents_reclaimed = atomic_load(&r->agents_reclaimed);
	t->owner_died = atomic_load(&r->owner_died);
	t->leases_expired = atomic_load(&r->leases_expired);
	t->table_full = atomic_load(&h->table_full);
	for (uint32_t a = 0; a < h->caps.max_agents; a++) {
		const struct agent_slot *ag = &s->agents[a];
		if (atomic_load_explicit(&ag->state, memory_order_relaxed) == AGENT_FREE)
			continue;
		if (atomic_load(&ag->state) == AGENT_LIVE)
			t->agents_active++;
		t->acquired += atomic_load(&ag->acquired);
		t->released += atomic_load(&ag->released);
		t->contended += atomic_load(&ag->contended);
		t->timeouts += atomic_load(&ag->timeouts);
		t->deadlocks += atomic_load(&ag->deadlocks);
		t->wait_ns_sum += atomic_load(&ag->wait_ns_sum);
		for (int i = 0; i < WAIT_HIST_BUCKETS; i++)
			t->wait_hist[i] += atomic_load(&ag->wait_hist[i]);
	}
	for (uint32_t i = 0; i < h->lock_slots; i++) {
		const struct lock_entry *e = &s->locks[i];
		uint64_t k = atomic_load_explicit(&e->key, memory_order_relaxed);
		if (k < 2)
			continue;
		t->lock_keys++;
		uint64_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
		if (st & LK_DEAD)
			continue;
		if (st & (LK_OWNER_MASK | LK_SHARED_MASK))
			t->locks_active++;
		t->locks_waiting += atomic_load_explicit(&e->nwaiters, memory_order_relaxed);
	}
}
