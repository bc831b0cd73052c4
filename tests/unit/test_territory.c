/* SPDX-License-Identifier: MIT */
/*
 * test_territory.c - territories on a real segment made in-process: the
 * overlap algebra, every cell of the compatibility matrix, conflict
 * reporting, resize, hierarchy, the interplay with locks, lifecycle, write
 * authority and the guard's judgement, a randomized model test against a
 * brute-force reference, and real processes racing and dying mid-claim.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"

#define EXCL BUMBA_TERRITORY_EXCLUSIVE
#define SHRD BUMBA_TERRITORY_SHARED
#define MON  BUMBA_TERRITORY_MONITORED

static struct bumba_seg seg;

static int setup(void **state)
{
	const char *roots[] = {"/ws"};
	struct bumba_caps c = {.max_agents = 16,
			       .max_locks = 64,
			       .max_waiters = 64,
			       .holds_per_agent = 16,
			       .max_territories = 256,
			       .max_tpaths = 1024};
	int rc = bumba_seg_create(&c, roots, 1, 30000, 60000, &seg);

	if (rc)
		return rc;
	atomic_store(&seg.hdr->sup_pid, getpid());
	atomic_store(&seg.hdr->sup_start_time, bumba_proc_start_time(getpid()));
	atomic_store(&seg.hdr->heartbeat_ns, bumba_now_ns());
	return 0;
}

static int teardown(void **state)
{
	bumba_seg_unmap(&seg);
	return 0;
}

static struct bumba *agent_p(uint32_t slot, int parent)
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
	a->parent1 = parent >= 0 ? (uint32_t)parent + 1 : 0;
	snprintf(a->id, sizeof(a->id), "Test-T%u-0-00000000", slot);
	atomic_store(&a->state, AGENT_LIVE);
	return b;
}

static struct bumba *agent(uint32_t slot)
{
	return agent_p(slot, -1);
}

static void drop(struct bumba *b)
{
	bumba_locks_release_all(b);
	bumba_locks_reclaim_agent(&seg, b->slot, b->gen);
	free(b);
}

static int claim1(struct bumba *b, const char *p, enum bumba_territory_type t, uint64_t *id)
{
	const char *ps[] = {p};
	size_t n;

	return bumba_territory_claim(b, "t", ps, 1, t, id, NULL, 0, &n);
}

/* ------------------------------------------------------------------ */

static void test_overlap_algebra(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	uint64_t ta, tb;
	static const struct {
		const char *mine, *theirs;
		bool overlap;
	} cases[] = {
		{"src/a.c", "src/a.c", true}, /* same file */
		{"src", "src/a.c", true},     /* directory over file */
		{"src/a.c", "src", true},     /* file under directory */
		{"src/a", "src/ab", false},   /* siblings sharing a prefix */
		{"src/ab", "src/a", false},
		{"src/a", "src/a/b/c", true},  /* nested directories */
		{"src/a/", "src/a/x", true},   /* trailing slash */
		{"src/./a", "src/a", true},    /* "." segment */
		{"src/x/../a", "src/a", true}, /* ".." segment */
		{".", "deep/er/file", true},   /* the root itself */
		{"/ws", "x", true},	       /* the root, absolute */
		{"src/a.c", "src/a.cc", false},
		{"a/b", "a/bb/b", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(claim1(b, cases[i].theirs, EXCL, &tb), 0);
		int rc = claim1(a, cases[i].mine, EXCL, &ta);
		if (rc != (cases[i].overlap ? -EBUSY : 0))
			fail_msg("%s vs %s: got %d", cases[i].mine, cases[i].theirs, rc);
		if (!rc)
			assert_int_equal(bumba_territory_release(a, ta), 0);
		assert_int_equal(bumba_territory_release(b, tb), 0);
	}
	/* Escapes are refused outright. */
	assert_int_equal(claim1(a, "../etc", EXCL, &ta), -EINVAL);
	assert_int_equal(claim1(a, "/etc", EXCL, &ta), -EINVAL);
	assert_int_equal(claim1(a, "", EXCL, &ta), -EINVAL);
	drop(a);
	drop(b);
}

static void test_matrix(void **state)
{
	/* want \ have:   EXCL   SHARED  MONITORED   (other agent, same path) */
	static const bool ok[3][3] = {
		{false, false, false},
		{false, true, false},
		{false, false, true},
	};
	struct bumba *a = agent(0), *b = agent(1);

	for (int have = 0; have < 3; have++) {
		for (int want = 0; want < 3; want++) {
			uint64_t ta, tb, tc;
			assert_int_equal(claim1(b, "m/dir", have, &tb), 0);
			/* Same path, a file below, a directory above. */
			int r1 = claim1(a, "m/dir", want, &ta);
			if (!r1)
				bumba_territory_release(a, ta);
			int r2 = claim1(a, "m/dir/f", want, &ta);
			if (!r2)
				bumba_territory_release(a, ta);
			int r3 = claim1(a, "m", want, &ta);
			if (!r3)
				bumba_territory_release(a, ta);
			int expect = ok[want][have] ? 0 : -EBUSY;
			if (r1 != expect || r2 != expect || r3 != expect)
				fail_msg("want %d have %d: %d %d %d", want, have, r1, r2, r3);
			/* The same agent never conflicts with itself. */
			assert_int_equal(claim1(b, "m/dir/own", want, &tc), 0);
			bumba_territory_release(b, tc);
			assert_int_equal(bumba_territory_release(b, tb), 0);
		}
	}
	drop(a);
	drop(b);
}

static void test_conflict_report(void **state)
{
	struct bumba *a = agent(0), *b = agent(1), *c = agent(2);
	const char *pb[] = {"r/one", "r/two"};
	const char *pc[] = {"r/three"};
	const char *want[] = {"r", "free/x"};
	struct bumba_conflict conf[4];
	uint64_t tb, tc, ta;
	size_t n;

	assert_int_equal(bumba_territory_claim(b, "B", pb, 2, EXCL, &tb, NULL, 0, NULL), 0);
	assert_int_equal(bumba_territory_claim(c, "C", pc, 1, SHRD, &tc, NULL, 0, NULL), 0);
	assert_int_equal(bumba_territory_claim(a, "A", want, 2, EXCL, &ta, conf, 4, &n), -EBUSY);
	assert_int_equal(n, 3);
	int seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(conf[i].path, "/ws/r/one") == 0 && conf[i].type == EXCL &&
		    strcmp(conf[i].holder_id, seg.agents[1].id) == 0)
			seen |= 1;
		if (strcmp(conf[i].path, "/ws/r/two") == 0)
			seen |= 2;
		if (strcmp(conf[i].path, "/ws/r/three") == 0 && conf[i].type == SHRD &&
		    strcmp(conf[i].holder_id, seg.agents[2].id) == 0)
			seen |= 4;
	}
	assert_int_equal(seen, 7);
	/* All or nothing: free/x was not claimed. */
	uint64_t tx;
	assert_int_equal(claim1(b, "free/x", EXCL, &tx), 0);
	/* The total is reported even past the caller's array. */
	assert_int_equal(bumba_territory_claim(a, "A", want, 2, EXCL, &ta, conf, 1, &n), -EBUSY);
	assert_int_equal(n, 4);
	struct bumba_terr_totals t;
	bumba_territory_totals(&seg, &t);
	assert_int_equal(t.active, 3);
	assert_int_equal(t.exclusive, 2);
	assert_int_equal(t.shared, 1);
	assert_int_equal(t.paths, 4);
	assert_true(t.conflicts >= 2);
	drop(a);
	drop(b);
	drop(c);
}

/* Territories and locks in the way are reported together. */
static void test_conflict_both_kinds(void **state)
{
	struct bumba *a = agent(0), *b = agent(1), *c = agent(2);
	const char *want[] = {"both"};
	struct bumba_conflict conf[4];
	struct bumba_lock l;
	uint64_t tb, ta;
	size_t n;

	assert_int_equal(claim1(b, "both/t", EXCL, &tb), 0);
	assert_int_equal(bumba_lock_acquire(c, "both/f", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_territory_claim(a, "x", want, 1, EXCL, &ta, conf, 4, &n), -EBUSY);
	assert_int_equal(n, 2);
	assert_true((conf[0].type == BUMBA_TERRITORY_LOCKED) !=
		    (conf[1].type == BUMBA_TERRITORY_LOCKED));
	assert_int_equal(bumba_lock_release(c, &l), 0);
	drop(a);
	drop(b);
	drop(c);
}

static void test_resize(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	uint64_t ta, tb;
	const char *add[] = {"g/2", "g/3"};
	const char *bad[] = {"g/4", "h/1"};
	struct bumba_conflict conf[2];
	size_t n;

	assert_int_equal(claim1(a, "g/1", EXCL, &ta), 0);
	assert_int_equal(claim1(b, "h", EXCL, &tb), 0);
	assert_int_equal(bumba_territory_add(a, ta, add, 2, NULL, 0, NULL), 0);
	assert_int_equal(bumba_territory_add(a, ta, bad, 2, conf, 2, &n), -EBUSY);
	assert_int_equal(n, 1);
	assert_string_equal(conf[0].path, "/ws/h");
	/* g/4 did not go in: b can take it. */
	uint64_t t4;
	assert_int_equal(claim1(b, "g/4", EXCL, &t4), 0);
	assert_int_equal(claim1(b, "g/2", EXCL, &t4), -EBUSY);
	const char *rm[] = {"g/2", "g/nope"};
	assert_int_equal(bumba_territory_remove(a, ta, rm, 2), -ENOENT);
	assert_int_equal(claim1(b, "g/2", EXCL, &t4), -EBUSY);
	assert_int_equal(bumba_territory_remove(a, ta, rm, 1), 0);
	assert_int_equal(claim1(b, "g/2", EXCL, &t4), 0);
	/* Not ours: */
	assert_int_equal(bumba_territory_add(b, ta, add, 1, NULL, 0, NULL), -ENOENT);
	assert_int_equal(bumba_territory_release(b, ta), -ENOENT);
	assert_int_equal(bumba_territory_release(a, ta), 0);
	assert_int_equal(bumba_territory_release(a, ta), -ENOENT);
	drop(a);
	drop(b);
}

static void test_hierarchy(void **state)
{
	struct bumba *p = agent(0), *c = agent_p(1, 0), *g = agent_p(2, 1), *o = agent(3);
	struct bumba_lock l;
	uint64_t tp, tc, tg, to;

	/* A child claims only inside its parent's territories. */
	assert_int_equal(claim1(c, "k/x", EXCL, &tc), -EACCES);
	assert_int_equal(claim1(p, "k", EXCL, &tp), 0);
	assert_int_equal(claim1(c, "k/x", EXCL, &tc), 0);
	assert_int_equal(claim1(c, "elsewhere", EXCL, &tc), -EACCES);
	/* A grandchild inside the child's. */
	assert_int_equal(claim1(g, "k/x/y", EXCL, &tg), 0);
	/* Outsiders still conflict. */
	assert_int_equal(claim1(o, "k/x/y", SHRD, &to), -EBUSY);
	/* Children lock inside their parent's territory as the parent. */
	assert_int_equal(bumba_lock_acquire(c, "k/z", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_release(c, &l), 0);
	assert_int_equal(bumba_may_write(&seg, 1, "/ws/k/z", 7), 0);
	assert_int_equal(bumba_lock_acquire(o, "k/z", BUMBA_EXCLUSIVE, 0, 1, &l), -EACCES);
	/* The parent's release ends the territories of its line inside it. */
	assert_int_equal(bumba_territory_release(p, tp), 0);
	assert_int_equal(claim1(o, "k/x/y", EXCL, &to), 0);
	assert_int_equal(bumba_territory_release(c, tc), -ENOENT);
	assert_int_equal(bumba_territory_release(g, tg), -ENOENT);
	drop(g);
	drop(c);
	drop(p);
	drop(o);
}

static void locks_interplay(void)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_lock l;
	struct bumba_conflict conf[2];
	const char *dir[] = {"lk"};
	uint64_t ta, tb;
	size_t n;

	assert_int_equal(claim1(a, "ex", EXCL, &ta), 0);
	assert_int_equal(bumba_lock_acquire(b, "ex/f", BUMBA_EXCLUSIVE, 0, 1, &l), -EACCES);
	/* Reading inside someone's EXCLUSIVE territory is fine. */
	assert_int_equal(bumba_lock_acquire(b, "ex/f", BUMBA_SHARED, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_release(b, &l), 0);
	assert_int_equal(bumba_lock_acquire(a, "ex/f", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	/* Nobody writes inside a SHARED territory, not even its owner. */
	assert_int_equal(claim1(b, "sh", SHRD, &tb), 0);
	assert_int_equal(bumba_lock_acquire(b, "sh/f", BUMBA_EXCLUSIVE, 0, 1, &l), -EACCES);
	assert_int_equal(bumba_lock_acquire(a, "sh/f", BUMBA_EXCLUSIVE, 0, 1, &l), -EACCES);
	assert_int_equal(bumba_lock_acquire(a, "sh/f", BUMBA_SHARED, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	/* A claim over another agent's exclusive lock is a conflict. */
	assert_int_equal(bumba_lock_acquire(b, "lk/deep/file", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_territory_claim(a, "x", dir, 1, EXCL, &ta, conf, 2, &n), -EBUSY);
	assert_int_equal(n, 1);
	assert_int_equal(conf[0].type, BUMBA_TERRITORY_LOCKED);
	assert_string_equal(conf[0].path, "/ws/lk/deep/file");
	assert_string_equal(conf[0].holder_id, seg.agents[1].id);
	/* MONITORED territories live with locks. */
	assert_int_equal(bumba_territory_claim(a, "x", dir, 1, MON, &ta, NULL, 0, NULL), 0);
	assert_int_equal(bumba_lock_release(b, &l), 0);
	/* Own locks never conflict with own claims. */
	assert_int_equal(bumba_lock_acquire(a, "own/f", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(claim1(a, "own", EXCL, &ta), 0);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	drop(a);
	drop(b);
}

/* Both ways a claim finds locks in its way: the lock table, and the hold
 * tables of the agents under the high-water mark. */
/* The family cells of the matrix: a parent over its child, siblings, and
 * a parent's lock inside its child's EXCLUSIVE territory. */
static void test_family_cells(void **state)
{
	struct bumba *p = agent(0), *c1 = agent_p(1, 0), *c2 = agent_p(2, 0);
	struct bumba_lock l;
	uint64_t tp, t1, t2, tx;

	assert_int_equal(claim1(p, "fam", EXCL, &tp), 0);
	assert_int_equal(claim1(c1, "fam/x", EXCL, &t1), 0);
	/* A parent's further claim over its child's territory: same family,
	 * no conflict. */
	assert_int_equal(claim1(p, "fam/x/deeper", EXCL, &tx), 0);
	assert_int_equal(bumba_territory_release(p, tx), 0);
	/* Siblings are not family: they conflict like strangers. */
	assert_int_equal(claim1(c2, "fam/x", EXCL, &t2), -EBUSY);
	assert_int_equal(claim1(c2, "fam/x", SHRD, &t2), -EBUSY);
	assert_int_equal(claim1(c2, "fam/y", EXCL, &t2), 0);
	/* Locking looks up the family line, not down: the parent may not
	 * lock inside its child's EXCLUSIVE territory (the child's work),
	 * the child may lock inside its parent's. */
	assert_int_equal(bumba_lock_acquire(p, "fam/x/f", BUMBA_EXCLUSIVE, 0, 1, &l), -EACCES);
	assert_int_equal(bumba_lock_acquire(c1, "fam/z", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_lock_release(c1, &l), 0);
	/* Nor may a sibling. */
	assert_int_equal(bumba_lock_acquire(c2, "fam/x/f", BUMBA_EXCLUSIVE, 0, 1, &l), -EACCES);
	drop(c1);
	drop(c2);
	drop(p);
}

static void test_locks_interplay(void **state)
{
	atomic_store(&seg.hdr->agent_hwm, 0);
	locks_interplay();
}

static void test_locks_interplay_holds(void **state)
{
	atomic_store(&seg.hdr->agent_hwm, 4);
	locks_interplay();
}

static void test_lifecycle(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	uint64_t ta, tb;

	assert_int_equal(claim1(a, "life", EXCL, &ta), 0);
	/* Dies with its agent. */
	bumba_locks_reclaim_agent(&seg, 0, a->gen);
	assert_int_equal(claim1(b, "life", EXCL, &tb), 0);
	assert_int_equal(bumba_territory_release(b, tb), 0);
	free(a);
	/* Times out. */
	seg.hdr->terr_timeout_ms = 50;
	assert_int_equal(claim1(b, "tmo", EXCL, &tb), 0);
	assert_int_equal(bumba_territory_sweep(&seg, bumba_now_ns()), 0);
	assert_int_equal(bumba_territory_sweep(&seg, bumba_now_ns() + 100000000ull), 1);
	assert_int_equal(bumba_territory_release(b, tb), -ENOENT);
	seg.hdr->terr_timeout_ms = 0;
	/* Ended territories are forgotten after the grace period. */
	bumba_territory_sweep(&seg, bumba_now_ns() + 2 * TERR_GRACE_NS);
	struct bumba_terr_totals t;
	bumba_territory_totals(&seg, &t);
	assert_int_equal(t.active, 0);
	assert_int_equal(t.expired, 1);
	assert_int_equal(atomic_load(&seg.hdr->depth_mask), 0);
	drop(b);
}

static void test_authority(void **state)
{
	struct bumba *a = agent(0), *b = agent(1);
	struct bumba_verdict v;
	struct bumba_lock l;
	uint64_t ta, tm;

	assert_int_equal(bumba_may_write(&seg, 0, "/ws/f", 5), -EPERM);
	assert_int_equal(bumba_lock_acquire(a, "f", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	assert_int_equal(bumba_may_write(&seg, 0, "/ws/f", 5), 0);
	assert_int_equal(bumba_may_write(&seg, 1, "/ws/f", 5), -EPERM);
	uint64_t during = bumba_now_ns();
	bumba_classify_write(&seg, 0, "/ws/f", 5, during, &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_LOCK);
	bumba_classify_write(&seg, 1, "/ws/f", 5, during, &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_VIOLATION);
	assert_string_equal(v.holder_kind, "lock");
	assert_string_equal(v.holder_id, seg.agents[0].id);
	bumba_classify_write(&seg, UINT32_MAX, "/ws/f", 5, during, &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_VIOLATION);
	assert_int_equal(bumba_lock_release(a, &l), 0);
	/* Judged after the release, at the write's own instant: sanctioned. */
	bumba_classify_write(&seg, 0, "/ws/f", 5, during, &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_LOCK);
	bumba_classify_write(&seg, 0, "/ws/f", 5, bumba_now_ns(), &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_VIOLATION);

	assert_int_equal(claim1(a, "tree", EXCL, &ta), 0);
	assert_int_equal(bumba_may_write(&seg, 0, "/ws/tree/x/y", 12), 0);
	bumba_classify_write(&seg, 0, "/ws/tree/x", 10, bumba_now_ns(), &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_TERRITORY);
	assert_int_equal(v.territory_id, ta);
	bumba_classify_write(&seg, 1, "/ws/tree/x", 10, bumba_now_ns(), &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_VIOLATION);
	assert_string_equal(v.holder_kind, "exclusive");
	uint64_t before = bumba_now_ns();
	assert_int_equal(bumba_territory_release(a, ta), 0);
	bumba_classify_write(&seg, 0, "/ws/tree/x", 10, before, &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_TERRITORY);
	assert_int_equal(bumba_may_write(&seg, 0, "/ws/tree/x/y", 12), -EPERM);

	/* MONITORED: the owner and lock holders write, logged; others not. */
	assert_int_equal(claim1(a, "mon", MON, &tm), 0);
	bumba_classify_write(&seg, 0, "/ws/mon/a", 9, bumba_now_ns(), &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_MONITORED);
	assert_int_equal(v.territory_id, tm);
	assert_int_equal(bumba_lock_acquire(b, "mon/a", BUMBA_EXCLUSIVE, 0, 1, &l), 0);
	bumba_classify_write(&seg, 1, "/ws/mon/a", 9, bumba_now_ns(), &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_MONITORED);
	assert_int_equal(bumba_lock_release(b, &l), 0);
	bumba_classify_write(&seg, UINT32_MAX, "/ws/mon/a", 9, bumba_now_ns(), &v);
	assert_int_equal(v.kind, BUMBA_VERDICT_VIOLATION);
	drop(a);
	drop(b);
}

/* ------------------------------------------------------------------ */
/* randomized model test                                               */

static const char *const universe[] = {
	".", "a", "a/b", "a/b/c", "a/bc", "a/x", "a/b/y", "a/b/c/z", "a/bc/w", "d", "d/v", "ab",
};
#define NU (sizeof(universe) / sizeof(universe[0]))
#define NA 4

struct model_terr {
	bool live;
	int owner, type;
	uint64_t id;
	bool has[NU];
};
static struct model_terr model[64];

static bool overlap(size_t i, size_t j)
{
	const char *p = universe[i], *q = universe[j];
	size_t lp = strlen(p), lq = strlen(q);

	if (!strcmp(p, ".") || !strcmp(q, "."))
		return true;
	if (lp > lq) {
		const char *t = p;
		p = q;
		q = t;
		size_t tl = lp;
		lp = lq;
		lq = tl;
	}
	return strncmp(p, q, lp) == 0 && (lp == lq || q[lp] == '/');
}

static bool model_conflict(int owner, int type, int self, const bool *want)
{
	for (int t = 0; t < 64; t++) {
		if (!model[t].live || model[t].owner == owner || t == self)
			continue;
		bool ok = type != EXCL && model[t].type != EXCL && type == model[t].type;
		for (size_t i = 0; i < NU; i++) {
			for (size_t j = 0; j < NU && want[i]; j++) {
				if (model[t].has[j] && overlap(i, j) && !ok)
					return true;
			}
		}
	}
	return false;
}

static bool model_may_write(int agent, size_t path)
{
	bool own = false, shared = false;

	for (int t = 0; t < 64; t++) {
		if (!model[t].live)
			continue;
		for (size_t j = 0; j < NU; j++) {
			/* covers: j is path or an ancestor of it */
			if (!model[t].has[j] || !overlap(j, path))
				continue;
			bool covers = !strcmp(universe[j], ".") ||
				      (strcmp(universe[path], ".") != 0 &&
				       strlen(universe[j]) <= strlen(universe[path]));
			if (!covers)
				continue;
			if (model[t].type == SHRD)
				shared = true;
			if (model[t].type == EXCL && model[t].owner == agent)
				own = true;
		}
	}
	return own && !shared;
}

static void test_model(void **state)
{
	struct bumba *ag[NA];
	unsigned seed = 12345;
	const char *ps[4];
	char full[64];

	memset(model, 0, sizeof(model));
	for (int i = 0; i < NA; i++)
		ag[i] = agent((uint32_t)i);
	const int steps = getenv("BUMBA_MODEL_STEPS") ? atoi(getenv("BUMBA_MODEL_STEPS")) : 100000;
	for (int step = 0; step < steps; step++) {
		int op = (int)(rand_r(&seed) % 10), who = (int)(rand_r(&seed) % NA);
		bool want[NU] = {0};
		size_t n = 1 + rand_r(&seed) % 3, k = 0;
		for (size_t i = 0; i < n; i++) {
			size_t u = rand_r(&seed) % NU;
			if (want[u])
				continue;
			want[u] = true;
			ps[k++] = universe[u];
		}
		/* Pick one of who's territories for add/remove/release. */
		int mine = -1;
		for (int t = 0, c = 0; t < 64; t++) {
			if (model[t].live && model[t].owner == who && rand_r(&seed) % ++c == 0)
				mine = t;
		}
		int nlive = 0;
		for (int t = 0; t < 64; t++)
			nlive += model[t].live;
		if (nlive > 40 && mine >= 0)
			op = 9; /* keep the model's table from filling */
		if (op < 5 || mine < 0) {
			int type = (int)(rand_r(&seed) % 3), slot = -1;
			for (int t = 0; t < 64 && slot < 0; t++)
				slot = model[t].live ? -1 : t;
			if (slot < 0)
				continue;
			uint64_t id;
			int rc = bumba_territory_claim(ag[who], "m", ps, k, type, &id, NULL, 0,
						       NULL);
			bool conflict = model_conflict(who, type, -1, want);
			if (rc != (conflict ? -EBUSY : 0))
				fail_msg("step %d claim by %d type %d: rc %d, model %d", step, who,
					 type, rc, conflict);
			if (!rc) {
				model[slot] = (struct model_terr){
					.live = true, .owner = who, .type = type, .id = id};
				memcpy(model[slot].has, want, sizeof(want));
			}
		} else if (op < 7) {
			int rc = bumba_territory_add(ag[who], model[mine].id, ps, k, NULL, 0, NULL);
			bool conflict = model_conflict(who, model[mine].type, mine, want);
			if (rc != (conflict ? -EBUSY : 0))
				fail_msg("step %d add: rc %d, model %d", step, rc, conflict);
			for (size_t u = 0; u < NU && !rc; u++)
				model[mine].has[u] |= want[u];
		} else if (op < 8) {
			/* Remove one claimed path (the model keeps sets, so
			 * remove a path claimed once). */
			size_t u = rand_r(&seed) % NU;
			if (!model[mine].has[u])
				continue;
			const char *one[] = {universe[u]};
			int rc = bumba_territory_remove(ag[who], model[mine].id, one, 1);
			/* It may have been added twice; remove until gone. */
			while (rc == 0 &&
			       bumba_territory_remove(ag[who], model[mine].id, one, 1) == 0)
				;
			assert_int_equal(rc, 0);
			model[mine].has[u] = false;
		} else {
			assert_int_equal(bumba_territory_release(ag[who], model[mine].id), 0);
			model[mine].live = false;
		}
		if (step % 7 == 0) {
			size_t u = rand_r(&seed) % NU;
			snprintf(full, sizeof(full), "/ws/%s", universe[u]);
			if (!strcmp(universe[u], "."))
				snprintf(full, sizeof(full), "/ws");
			int w = (int)(rand_r(&seed) % NA);
			bool got = bumba_may_write(&seg, (uint32_t)w, full, strlen(full)) == 0;
			if (got != model_may_write(w, u))
				fail_msg("step %d may_write(%d, %s) = %d", step, w, full, got);
		}
		if (step % 1000 == 999)
			bumba_territory_sweep(&seg, bumba_now_ns() + 2 * TERR_GRACE_NS);
	}
	struct bumba_terr_totals t;
	bumba_territory_totals(&seg, &t);
	uint32_t live = 0;
	for (int i = 0; i < 64; i++)
		live += model[i].live;
	assert_int_equal(t.active, live);
	for (int i = 0; i < NA; i++)
		drop(ag[i]);
}

/* ------------------------------------------------------------------ */
/* processes                                                           */

static void test_process_race(void **state)
{
	enum { N = 8 };
	static const char *const sets[N][2] = {
		{"race/a", "race/b"}, {"race/b", "race/c"}, {"race", "x"},   {"race/a/deep", "y"},
		{"z", "race/c/d"},    {"w", "v"},	    {"race/b", "u"}, {"q/r", "race/a"},
	};
	pid_t pid[N];
	_Atomic uint64_t *won =
		mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < N; i++)
			atomic_store(&won[i], 0);
		for (int i = 0; i < N; i++) {
			pid[i] = fork();
			if (pid[i] == 0) {
				struct bumba *b = agent((uint32_t)i);
				uint64_t id;
				if (bumba_territory_claim(b, "race", sets[i], 2, EXCL, &id, NULL, 0,
							  NULL) == 0)
					atomic_store(&won[i], id);
				_exit(0);
			}
		}
		for (int i = 0; i < N; i++)
			waitpid(pid[i], NULL, 0);
		/* Winners are pairwise compatible, and everything of theirs is
		 * claimed: nobody won half. */
		for (int i = 0; i < N; i++) {
			for (int j = i + 1; j < N; j++) {
				if (!won[i] || !won[j])
					continue;
				for (int x = 0; x < 2; x++)
					for (int y = 0; y < 2; y++) {
						const char *p = sets[i][x], *q = sets[j][y];
						size_t lp = strlen(p), lq = strlen(q);
						size_t m = lp < lq ? lp : lq;
						bool ov = !strncmp(p, q, m) &&
							  (lp == lq ||
							   (lp < lq ? q[lp] : p[lq]) == '/');
						assert_false(ov);
					}
			}
		}
		struct bumba_terr_totals t;
		bumba_territory_totals(&seg, &t);
		uint32_t nwon = 0;
		for (int i = 0; i < N; i++)
			nwon += won[i] != 0;
		assert_true(nwon >= 1);
		assert_int_equal(t.active, nwon);
		assert_int_equal(t.paths, 2 * nwon);
		/* The children are gone: reclaim them like bumbad would. */
		for (int i = 0; i < N; i++)
			bumba_locks_reclaim_agent(&seg, (uint32_t)i,
						  atomic_load(&seg.agents[i].gen));
		bumba_territory_totals(&seg, &t);
		assert_int_equal(t.active, 0);
	}
	munmap(won, 4096);
}

static void test_sigkill_mid_claim(void **state)
{
	const int kills = getenv("BUMBA_KILLS") ? atoi(getenv("BUMBA_KILLS")) : 200;
	unsigned seed = 99;
	struct bumba *me = agent(9);

	for (int k = 0; k < kills; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			struct bumba *b = agent(1);
			static char names[200][32];
			const char *ps[200];
			for (int i = 0; i < 200; i++) {
				snprintf(names[i], sizeof(names[i]), "kill/%d/f%d", k % 3, i);
				ps[i] = names[i];
			}
			uint64_t id;
			for (;;) {
				if (bumba_territory_claim(b, "victim", ps, 200, EXCL, &id, NULL, 0,
							  NULL) == 0)
					bumba_territory_release(b, id);
			}
		}
		usleep(rand_r(&seed) % 3000);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		bumba_locks_reclaim_agent(&seg, 1, atomic_load(&seg.agents[1].gen));
		/* No trace: the whole tree is claimable, counts are zero. */
		uint64_t id;
		assert_int_equal(claim1(me, "kill", EXCL, &id), 0);
		struct bumba_terr_totals t;
		bumba_territory_totals(&seg, &t);
		assert_int_equal(t.active, 1);
		assert_int_equal(t.paths, 1);
		assert_int_equal(bumba_territory_release(me, id), 0);
		bumba_territory_sweep(&seg, bumba_now_ns() + 2 * TERR_GRACE_NS);
	}
	drop(me);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overlap_algebra, setup, teardown),
		cmocka_unit_test_setup_teardown(test_matrix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_both_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hierarchy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locks_interplay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locks_interplay_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_family_cells, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_process_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigkill_mid_claim, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
