/* SPDX-License-Identifier: MIT */
/*
 * bench_locks.c - the lock benchmark: bumba's locks against the anchors a
 * user would otherwise reach for, in one run, with the ratios printed.
 *
 * Anchors: flock(2) on an open fd, fcntl OFD locks, a process-shared robust
 * pthread mutex, and a git-style O_EXCL lockfile (git's own backoff when it
 * is taken).  Sections:
 *
 *   A  uncontended acquire+release, one process
 *   B  two processes taking turns on one lock: total ops/s, handoffs/s and
 *      the handoff latency (holder starts releasing -> other one holds)
 *   C  aggregate ops/s with 2..64 processes, each on its own path
 *      ("distinct") and all on one path ("shared"): flock and bumba
 *   D  a holder is SIGKILLed while another process waits: time until the
 *      waiter holds the lock, p50/p99/max
 *   E  bytes per lock entry
 *   and a summary of the targets against what this run measured.
 *
 * Benchmarks never fail: they print.  The exit status is non-zero only when
 * the harness itself cannot run.
 *
 * The bumba sections need a live bumbad: the socket comes from BUMBA_SOCKET
 * (bench/run.sh starts one).  Without it, or when built with
 * -DBENCH_ANCHORS_ONLY (against libc alone, no libbumba), they are skipped.
 *
 * Environment: BENCH_SECTIONS (letters of the sections to run, default
 * ABCDE), BENCH_MS (measuring window per cell, default 300),
 * BENCH_RECLAIM_SAMPLES (default 200), BENCH_MAX_PROCS (largest N of
 * section C, default 64), BENCH_DIR (where the anchors' files go; default a
 * fresh directory under /tmp, removed at the end).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "bench.h"

#ifndef BENCH_ANCHORS_ONLY
#include "bumba.h"
#include "internal.h"
#endif

/* The Node.js BUMBA's published figures: lock acquire ~0.2 ms, release
 * ~0.1 ms (not measured here). */
#define NODE_ACQUIRE_NS 200000.0
#define NODE_RELEASE_NS 100000.0

#define TARGET_ACQREL_NS     150.0
#define TARGET_FLOCK_RATIO   0.2
#define TARGET_RECLAIM_P99   5000000.0 /* ns */
#define TARGET_DISTINCT_OPS  10e6
#define TARGET_ENTRY_BYTES   128
#define CONTENDED_TIMEOUT_MS 30000
#define RECLAIM_TIMEOUT_MS   10000

static unsigned g_ms = 300;
static unsigned g_reclaim_samples = 200;
static unsigned g_max_procs = 64;
static const char *g_sections = "ABCDE";
static char g_dir[PATH_MAX / 2]; /* leaves room for a file name */
static bool g_dir_ours;
static pthread_mutex_t *g_mu; /* robust, process-shared, in shared memory */

/* What the summary reports. */
static struct {
	double flock_ns, bumba_ns;
	double reclaim_p99_ns;
	bool have_reclaim;
	double best_distinct, worst_distinct;
	unsigned best_distinct_n, worst_distinct_n;
	size_t entry_bytes, per_lock_bytes;
} g_sum;

enum kind { K_FLOCK, K_OFD, K_MUTEX, K_LOCKFILE, K_BUMBA, K_N };

static const char *const kind_name[K_N] = {
	[K_FLOCK] = "flock(2) LOCK_EX",
	[K_OFD] = "fcntl OFD write lock",
	[K_MUTEX] = "robust pshared pthread mutex",
	[K_LOCKFILE] = "git-style O_EXCL lockfile",
	[K_BUMBA] = "bumba exclusive",
};

#ifndef BENCH_ANCHORS_ONLY
static const char *g_sock;    /* BUMBA_SOCKET */
static struct bumba *g_b;     /* the parent's own agent, sections A and E */
static bool g_bumba;	      /* a supervisor answered */
static char g_bumba_why[256]; /* why the bumba sections are skipped */
#endif

/* One process's view of one lock under test. */
struct actx {
	enum kind kind;
	int fd;		     /* flock/OFD: the open file; lockfile: held fd */
	char path[PATH_MAX]; /* flock/OFD file, or the lockfile's name */
	pthread_mutex_t *mu; /* robust mutex */
	unsigned seed;	     /* lockfile backoff jitter */
	bool owner_died;     /* last acquire learnt the previous owner died */
#ifndef BENCH_ANCHORS_ONLY
	struct bumba *b;
	bool own_b; /* opened by this ctx: close it */
	char bpath[128];
	enum bumba_mode mode;
	int timeout_ms;
	struct bumba_lock l;
#endif
};

/* ------------------------------------------------------------------ */
/* the locks under test                                                */

static int flock_acquire(struct actx *c)
{
	while (flock(c->fd, LOCK_EX) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

static int flock_release(struct actx *c)
{
	return flock(c->fd, LOCK_UN) < 0 ? errno : 0;
}

static int ofd_lock(struct actx *c, short type, bool wait)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};

	while (fcntl(c->fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

static int mutex_acquire(struct actx *c)
{
	int rc = pthread_mutex_lock(c->mu);

	c->owner_died = rc == EOWNERDEAD;
	if (rc == EOWNERDEAD)
		rc = pthread_mutex_consistent(c->mu);
	return rc;
}

static int mutex_release(struct actx *c)
{
	return pthread_mutex_unlock(c->mu);
}

/* git's lock_file_timeout(): try O_CREAT|O_EXCL; while it exists, back off
 * 0.75-1.25 x multiplier ms, the multiplier growing as n^2 up to 1000. */
static int lockfile_acquire(struct actx *c, bool wait)
{
	int n = 1, multiplier = 1;

	for (;;) {
		int fd = open(c->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0) {
			c->fd = fd;
			return 0;
		}
		if (errno != EEXIST || !wait)
			return errno;
		long wait_ms = (750 + rand_r(&c->seed) % 500) * (long)multiplier / 1000;
		poll(NULL, 0, (int)wait_ms);
		multiplier += 2 * n + 1;
		if (multiplier > 1000)
			multiplier = 1000;
		else
			n++;
	}
}

static int lockfile_release(struct actx *c)
{
	int rc = unlink(c->path) < 0 ? errno : 0;

	close(c->fd);
	c->fd = -1;
	return rc;
}

#ifndef BENCH_ANCHORS_ONLY
static int bumba_acquire(struct actx *c)
{
	int rc = bumba_lock_acquire(c->b, c->bpath, c->mode, c->timeout_ms, BUMBA_PRIO_NORMAL,
				    &c->l);

	if (rc == 0)
		c->owner_died = bumba_lock_owner_died(&c->l);
	return -rc;
}

static int bumba_release(struct actx *c)
{
	return -bumba_lock_release(c->b, &c->l);
}
#endif

/* Blocking acquire of whatever c is. */
static int acquire(struct actx *c)
{
	switch (c->kind) {
	case K_FLOCK:
		return flock_acquire(c);
	case K_OFD:
		return ofd_lock(c, F_WRLCK, true);
	case K_MUTEX:
		return mutex_acquire(c);
	case K_LOCKFILE:
		return lockfile_acquire(c, true);
	case K_BUMBA:
#ifndef BENCH_ANCHORS_ONLY
		return bumba_acquire(c);
#endif
	default:
		return ENOSYS;
	}
}

static int release(struct actx *c)
{
	switch (c->kind) {
	case K_FLOCK:
		return flock_release(c);
	case K_OFD:
		return ofd_lock(c, F_UNLCK, false);
	case K_MUTEX:
		return mutex_release(c);
	case K_LOCKFILE:
		return lockfile_release(c);
	case K_BUMBA:
#ifndef BENCH_ANCHORS_ONLY
		return bumba_release(c);
#endif
	default:
		return ENOSYS;
	}
}

/* Sets c up for lock "key" in this process: opens its own file description
 * (never inherited: flock and OFD locks belong to the description, so two
 * processes sharing one would not exclude each other), or registers its own
 * agent.  For bumba, b is an existing handle to use, NULL to open one. */
static int actx_open(struct actx *c, enum kind k, const char *key, void *b)
{
	memset(c, 0, sizeof(*c));
	c->kind = k;
	c->fd = -1;
	c->seed = (unsigned)getpid();
	switch (k) {
	case K_FLOCK:
	case K_OFD:
		snprintf(c->path, sizeof(c->path), "%s/%s", g_dir, key);
		c->fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		return c->fd < 0 ? errno : 0;
	case K_MUTEX:
		c->mu = g_mu;
		return 0;
	case K_LOCKFILE:
		snprintf(c->path, sizeof(c->path), "%s/%s.lock", g_dir, key);
		return 0;
	case K_BUMBA:
#ifndef BENCH_ANCHORS_ONLY
	{
		const struct bumba_agent_info info = {.type = "Bench"};
		snprintf(c->bpath, sizeof(c->bpath), "src/%s.c", key);
		c->mode = BUMBA_EXCLUSIVE;
		c->timeout_ms = CONTENDED_TIMEOUT_MS;
		if (b) {
			c->b = b;
			return 0;
		}
		c->own_b = true;
		return -bumba_open(g_sock, &info, &c->b);
	}
#endif
	default:
		return ENOSYS;
	}
}

static void actx_close(struct actx *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
#ifndef BENCH_ANCHORS_ONLY
	if (c->own_b)
		bumba_close(c->b);
	c->b = NULL;
#endif
}

static void mutex_init_at(pthread_mutex_t *mu)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pthread_mutex_init(mu, &a))
		bench_die("pthread_mutex_init failed");
	pthread_mutexattr_destroy(&a);
}

static void mutex_init(void)
{
	mutex_init_at(g_mu);
}

/* ------------------------------------------------------------------ */
/* A: uncontended                                                      */

static int op_nop(void *arg)
{
	__asm__ volatile("" ::"r"(arg) : "memory");
	return 0;
}

static int op_flock(void *arg)
{
	struct actx *c = arg;

	if (flock(c->fd, LOCK_EX) < 0 || flock(c->fd, LOCK_UN) < 0)
		return errno;
	return 0;
}

static int op_ofd(void *arg)
{
	struct actx *c = arg;
	int rc = ofd_lock(c, F_WRLCK, false);

	return rc ? rc : ofd_lock(c, F_UNLCK, false);
}

static int op_mutex(void *arg)
{
	struct actx *c = arg;
	int rc = mutex_acquire(c);

	return rc ? rc : mutex_release(c);
}

static int op_lockfile(void *arg)
{
	struct actx *c = arg;
	int rc = lockfile_acquire(c, false);

	return rc ? rc : lockfile_release(c);
}

#ifndef BENCH_ANCHORS_ONLY
static int op_bumba(void *arg)
{
	struct actx *c = arg;
	int rc = bumba_acquire(c);

	return rc ? rc : bumba_release(c);
}

static int op_normalize(void *arg)
{
	struct actx *c = arg;
	char out[PATH_MAX];
	int rc = bumba_path_normalize(c->b, c->bpath, out, sizeof(out));

	return rc < 0 ? -rc : 0;
}
#endif

/* Any acquire+release, through the switch: for the multi-process sections. */
static int op_generic(void *arg)
{
	struct actx *c = arg;
	int rc = acquire(c);

	return rc ? rc : release(c);
}

static double run_a_row(const char *name, int (*op)(void *), struct actx *c, double ref,
			const char *note)
{
	struct bench_run r = bench_best_of(3, g_ms, op, c);
	double ns = bench_ns_per_op(&r);

	if (ref < 0) /* this row is the reference */
		ref = ns;
	if (r.err) {
		bench_row_text(name, "error: %s", strerror(r.err));
		return 0;
	}
	bench_row(name, ns, ref, note ? "%s" : NULL, note);
	return ns;
}

static void section_a(void)
{
	struct actx c;
	double flock_ns, ns;

	bench_title("A. Uncontended acquire+release, one process (best of 3 x %u ms)", g_ms);
	{
		struct bench_run r = bench_for_ms(g_ms / 3 + 1, op_nop, NULL);
		printf("  (harness cost of an empty op: %.2f ns, not subtracted)\n",
		       bench_ns_per_op(&r));
	}
	bench_table_head("note");

	if (actx_open(&c, K_FLOCK, "uncontended", NULL))
		bench_die("open %s: %s", c.path, strerror(errno));
	flock_ns = run_a_row(kind_name[K_FLOCK], op_flock, &c, -1, "flock(fd, LOCK_EX); LOCK_UN");
	actx_close(&c);
	g_sum.flock_ns = flock_ns;

	if (actx_open(&c, K_OFD, "uncontended", NULL))
		bench_die("open %s: %s", c.path, strerror(errno));
	run_a_row(kind_name[K_OFD], op_ofd, &c, flock_ns, "F_OFD_SETLK F_WRLCK; F_UNLCK");
	actx_close(&c);

	mutex_init();
	actx_open(&c, K_MUTEX, "uncontended", NULL);
	run_a_row(kind_name[K_MUTEX], op_mutex, &c, flock_ns, "pthread_mutex_lock; unlock");

	actx_open(&c, K_LOCKFILE, "uncontended", NULL);
	run_a_row(kind_name[K_LOCKFILE], op_lockfile, &c, flock_ns,
		  "open(O_CREAT|O_EXCL); unlink; close");

#ifndef BENCH_ANCHORS_ONLY
	if (g_bumba) {
		struct bumba_lock held;
		int rc;

		actx_open(&c, K_BUMBA, "file", g_b);
		c.timeout_ms = -1;
		ns = run_a_row("bumba exclusive \"src/file.c\"", op_bumba, &c, flock_ns,
			       "acquire(EXCLUSIVE, -1, NORMAL); release");
		g_sum.bumba_ns = ns;

		c.mode = BUMBA_SHARED;
		run_a_row("bumba shared \"src/file.c\"", op_bumba, &c, flock_ns, "mode SHARED");
		c.mode = BUMBA_EXCLUSIVE;

		/* Reentrant: the agent already holds it; acquire counts up. */
		rc = bumba_lock_acquire(g_b, c.bpath, BUMBA_EXCLUSIVE, -1, BUMBA_PRIO_NORMAL,
					&held);
		if (rc == 0) {
			run_a_row("bumba exclusive, already held (reentrant)", op_bumba, &c,
				  flock_ns, "count up and down");
			bumba_lock_release(g_b, &held);
		}

		snprintf(c.bpath, sizeof(c.bpath),
			 "src/components/editor/panels/inspector/widgets/../widgets/field_list.c");
		run_a_row("bumba exclusive, 7-component path with ..", op_bumba, &c, flock_ns,
			  "normaliser folds \"..\"");

		snprintf(c.bpath, sizeof(c.bpath), "src/file.c");
		run_a_row("  of which bumba_path_normalize", op_normalize, &c, flock_ns,
			  "\"src/file.c\", part of every acquire");
		actx_close(&c);
	} else {
		bench_row_text("bumba", "skipped: %s", g_bumba_why);
	}
#else
	(void)ns;
	bench_row_text("bumba", "skipped: built with -DBENCH_ANCHORS_ONLY");
#endif
	bench_row("BUMBA Node.js, published (not measured)", NODE_ACQUIRE_NS + NODE_RELEASE_NS,
		  flock_ns, "acquire ~0.2 ms + release ~0.1 ms");
#ifndef BENCH_ANCHORS_ONLY
	if (g_sum.bumba_ns > 0)
		printf("  bumba acquire+release is %.0fx faster than the Node.js BUMBA's published "
		       "figures\n",
		       (NODE_ACQUIRE_NS + NODE_RELEASE_NS) / g_sum.bumba_ns);
#endif
}

/* ------------------------------------------------------------------ */
/* B: two processes, one lock                                          */

#define HCAP (1u << 17) /* handoff latency samples kept per worker */

struct hshared {
	/* Written only inside the critical section of the lock under test:
	 * a second process seen inside is an exclusion failure. */
	struct {
		volatile uint64_t inside;
		volatile uint64_t last;	  /* worker index + 1 of the last holder */
		volatile uint64_t rel_ns; /* when it started to release */
		volatile uint64_t count;  /* plain increments, one per op */
	} cs __attribute__((aligned(64)));
	_Atomic uint64_t violations;
	uint64_t n_samples[2];
	uint64_t samples[2][HCAP];
};

struct hctx {
	enum kind kind;
	bool timed;
	struct hshared *sh;
};

static int handoff_worker(struct bench_pool *p, unsigned idx, void *arg)
{
	struct hctx *h = arg;
	struct hshared *sh = h->sh;
	struct actx c;
	uint64_t n = 0, handoffs = 0, ns_n = 0;
	int rc;

	rc = actx_open(&c, h->kind, "handoff", NULL);
	if (rc)
		return rc;
	bench_pool_wait_go(p);
	while (!bench_pool_stopping(p)) {
		rc = acquire(&c);
		if (rc)
			break;
		if (sh->cs.inside)
			atomic_fetch_add(&sh->violations, 1);
		sh->cs.inside = 1;
		if (sh->cs.last != idx + 1) {
			if (sh->cs.last) {
				handoffs++;
				if (h->timed && ns_n < HCAP)
					sh->samples[idx][ns_n++] = bench_now_ns() - sh->cs.rel_ns;
			}
			sh->cs.last = idx + 1;
		}
		sh->cs.count = sh->cs.count + 1;
		sh->cs.inside = 0;
		if (h->timed)
			sh->cs.rel_ns = bench_now_ns();
		rc = release(&c);
		if (rc)
			break;
		n++;
	}
	p->w[idx].ops = n;
	p->w[idx].aux = handoffs;
	p->w[idx].t_end = bench_now_ns();
	sh->n_samples[idx] = ns_n;
	actx_close(&c);
	return rc;
}

static struct bench_pool *g_pool;

static void section_b(void)
{
	struct hshared *sh = bench_shared_alloc(sizeof(*sh));
	double flock_ns = 0;
	static uint64_t all[2 * HCAP];

	bench_title("B. Two processes taking turns on one lock (%u ms throughput + %u ms with "
		    "timestamps)",
		    g_ms, g_ms);
	printf("  handoff = the other process gets the lock; latency from the holder starting "
	       "its release\n  to the other one holding it\n");
	bench_table_head("handoffs/s  handoff p50/p99 ns  exclusion");
	for (int k = 0; k < K_N; k++) {
		struct hctx h = {.kind = (enum kind)k, .sh = sh};
		struct bench_pool_result r, rt;
		char name[96], hrate[32];
		size_t n;

#ifndef BENCH_ANCHORS_ONLY
		if (k == K_BUMBA && !g_bumba) {
			bench_row_text(kind_name[k], "skipped: %s", g_bumba_why);
			continue;
		}
#else
		if (k == K_BUMBA) {
			bench_row_text(kind_name[k], "skipped: built with -DBENCH_ANCHORS_ONLY");
			continue;
		}
#endif
		if (k == K_MUTEX)
			mutex_init();
		snprintf(name, sizeof(name), "%s", kind_name[k]);
		memset(sh, 0, offsetof(struct hshared, samples));
		h.timed = false;
		r = bench_pool_run(g_pool, 2, g_ms, handoff_worker, &h);
		uint64_t viol = atomic_load(&sh->violations);
		uint64_t lost = r.ops - sh->cs.count;

		memset(sh, 0, offsetof(struct hshared, samples));
		h.timed = true;
		rt = bench_pool_run(g_pool, 2, g_ms, handoff_worker, &h);
		viol += atomic_load(&sh->violations);
		lost += rt.ops - sh->cs.count;
		if (r.err || rt.err) {
			bench_row_text(name, "error: %s", strerror(r.err ? r.err : rt.err));
			continue;
		}
		n = 0;
		for (int w = 0; w < 2; w++) {
			memcpy(all + n, sh->samples[w], sh->n_samples[w] * sizeof(uint64_t));
			n += sh->n_samples[w];
		}
		bench_sort_u64(all, n);
		double ns = r.ops_per_s > 0 ? 1e9 / r.ops_per_s : 0;
		if (k == K_FLOCK)
			flock_ns = ns;
		bench_rate(hrate, sizeof(hrate), (double)r.aux * 1e9 / (double)r.ns);
		bench_row(name, ns, flock_ns, "%9s  %8" PRIu64 " / %-9" PRIu64 " %s", hrate,
			  bench_pct(all, n, 50), bench_pct(all, n, 99),
			  viol || lost ? "VIOLATED" : "ok");
	}
	bench_row("BUMBA Node.js, published (not measured)", NODE_ACQUIRE_NS + NODE_RELEASE_NS,
		  flock_ns, "its uncontended figures, for scale");
	bench_shared_free(sh, sizeof(*sh));
}

/* ------------------------------------------------------------------ */
/* C: aggregate                                                        */

struct actx_arg {
	enum kind kind;
	bool shared;
};

static int agg_worker(struct bench_pool *p, unsigned idx, void *arg)
{
	const struct actx_arg *a = arg;
	struct actx c;
	char key[64];
	int rc;

	if (a->shared)
		snprintf(key, sizeof(key), "agg-shared");
	else
		snprintf(key, sizeof(key), "agg-%u", idx);
	rc = actx_open(&c, a->kind, key, NULL);
	if (rc)
		return rc;
	rc = bench_pool_loop(p, idx, op_generic, &c);
	actx_close(&c);
	return rc;
}

static void section_c(void)
{
	static const unsigned ns_list[] = {2, 4, 8, 16, 32, 64};
	const enum kind kinds[] = {K_FLOCK, K_BUMBA};

	bench_title("C. Aggregate acquire+release with N processes (%u ms per cell)", g_ms);
	printf("  distinct: each process its own path (flock: its own file); shared: all on one\n"
	       "  path.  ns/op = 1e9 / aggregate ops/s.  Each bumba process registers its own "
	       "agent.\n");
	bench_table_head("per process");
	g_sum.worst_distinct = -1;
	for (int shared = 0; shared < 2; shared++) {
		for (size_t i = 0; i < sizeof(ns_list) / sizeof(ns_list[0]); i++) {
			unsigned n = ns_list[i];
			double flock_ns = 0;

			if (n > g_max_procs)
				break;
			for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
				struct actx_arg a = {.kind = kinds[k], .shared = shared};
				char name[96], rate[32];
				struct bench_pool_result r;

				snprintf(name, sizeof(name), "%-8s N=%-3u %s",
					 shared ? "shared" : "distinct", n,
					 kinds[k] == K_FLOCK ? "flock" : "bumba");
#ifndef BENCH_ANCHORS_ONLY
				if (kinds[k] == K_BUMBA && !g_bumba) {
					bench_row_text(name, "skipped: %s", g_bumba_why);
					continue;
				}
#else
				if (kinds[k] == K_BUMBA) {
					bench_row_text(name, "skipped: -DBENCH_ANCHORS_ONLY");
					continue;
				}
#endif
				r = bench_pool_run(g_pool, n, g_ms, agg_worker, &a);
				if (r.err) {
					bench_row_text(name, "error: %s", strerror(r.err));
					continue;
				}
				double ns = r.ops_per_s > 0 ? 1e9 / r.ops_per_s : 0;
				if (kinds[k] == K_FLOCK)
					flock_ns = ns;
				bench_row(name, ns, flock_ns, "%s/s",
					  bench_rate(rate, sizeof(rate), r.ops_per_s / n));
				if (kinds[k] == K_BUMBA && !shared) {
					if (r.ops_per_s > g_sum.best_distinct) {
						g_sum.best_distinct = r.ops_per_s;
						g_sum.best_distinct_n = n;
					}
					if (g_sum.worst_distinct < 0 ||
					    r.ops_per_s < g_sum.worst_distinct) {
						g_sum.worst_distinct = r.ops_per_s;
						g_sum.worst_distinct_n = n;
					}
				}
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* D: SIGKILL of a holder                                              */

#define RS_STARTING 0u
#define RS_WAITING  1u /* about to call the blocking acquire */
#define RS_HOLDING  2u
#define RS_FAILED   3u

struct rrec {
	_Atomic uint32_t state;
	int32_t err;
	uint64_t t1; /* when its acquire returned */
	uint32_t owner_died;
	uint32_t lock_idx; /* bumba: the lock's table index, for the view */
} __attribute__((aligned(64)));

/* Shared by the parent and the chain's processes through a memfd: they are
 * fresh programs (this one, exec'd), not forks of the parent, so that a
 * holder's death costs what an agent's would, not the teardown of the
 * parent's address space. */
struct rarea {
	pthread_mutex_t mu; /* the robust mutex under test */
	struct rrec recs[];
};

#define RECLAIM_CHILD_ARG "--reclaim-child"

/* Child of the chain: take the lock (waiting for the current holder to be
 * killed), say so, then hold it until killed in turn. */
static void reclaim_child(struct rrec *rec, enum kind k)
{
	struct actx c;
	int rc = actx_open(&c, k, "reclaim", NULL);

	if (rc)
		goto fail;
#ifndef BENCH_ANCHORS_ONLY
	c.timeout_ms = RECLAIM_TIMEOUT_MS;
#endif
	atomic_store(&rec->state, RS_WAITING);
	bench_futex_wake(&rec->state);
	rc = acquire(&c);
	rec->t1 = bench_now_ns();
	if (rc)
		goto fail;
	rec->owner_died = c.owner_died;
#ifndef BENCH_ANCHORS_ONLY
	if (k == K_BUMBA)
		rec->lock_idx = (uint32_t)c.l.opaque[0];
#endif
	atomic_store(&rec->state, RS_HOLDING);
	bench_futex_wake(&rec->state);
	for (;;)
		pause();
fail:
	rec->err = rc;
	atomic_store(&rec->state, RS_FAILED);
	bench_futex_wake(&rec->state);
	_exit(1);
}

/* State letter of /proc/<pid>/stat ('S': sleeping in the kernel). */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/* Waits until rec leaves state from (or the deadline passes). */
static uint32_t rrec_wait(struct rrec *rec, uint32_t from, uint64_t timeout_ns)
{
	uint64_t deadline = bench_now_ns() + timeout_ns;
	uint32_t s;

	while ((s = atomic_load(&rec->state)) == from && bench_now_ns() < deadline)
		bench_futex_wait(&rec->state, from, 1000000ull);
	return s;
}

#ifndef BENCH_ANCHORS_ONLY
static struct bumba_seg g_obs; /* read-only view of the segment */
static bool g_obs_ok;
#endif

/* Is the waiter pid really blocked: asleep in the kernel and, for bumba,
 * queued on the lock. */
static bool waiter_blocked(enum kind k, pid_t pid, const struct rrec *holder)
{
	if (proc_state(pid) != 'S')
		return false;
#ifndef BENCH_ANCHORS_ONLY
	if (k == K_BUMBA && g_obs_ok) {
		struct bumba_lock_view v;
		if (!bumba_locks_view(&g_obs, holder->lock_idx, &v) || v.nwaiters < 1)
			return false;
	}
#endif
	return true;
}

/* The exec'd side: bench_locks --reclaim-child KIND FD INDEX DIR. */
static int reclaim_child_main(char **argv)
{
	int k = atoi(argv[2]), fd = atoi(argv[3]), idx = atoi(argv[4]);
	struct stat st;
	struct rarea *a;

	if (k < 0 || k >= K_N || fstat(fd, &st) < 0 || idx < 0 ||
	    (size_t)st.st_size < sizeof(*a) + (size_t)(idx + 1) * sizeof(struct rrec) ||
	    strlen(argv[5]) >= sizeof(g_dir))
		return 64;
	a = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED)
		return 1;
	close(fd);
	snprintf(g_dir, sizeof(g_dir), "%s", argv[5]);
	g_mu = &a->mu;
#ifndef BENCH_ANCHORS_ONLY
	g_sock = getenv("BUMBA_SOCKET");
#endif
	reclaim_child(&a->recs[idx], (enum kind)k);
	return 1;
}

static pid_t reclaim_spawn(enum kind k, int fd, unsigned idx)
{
	char ks[16], fds[16], is[16], *argv[7];
	pid_t pid;

	snprintf(ks, sizeof(ks), "%d", (int)k);
	snprintf(fds, sizeof(fds), "%d", fd);
	snprintf(is, sizeof(is), "%u", idx);
	argv[0] = "bench_locks";
	argv[1] = RECLAIM_CHILD_ARG;
	argv[2] = ks;
	argv[3] = fds;
	argv[4] = is;
	argv[5] = g_dir;
	argv[6] = NULL;
	if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ))
		return -1;
	return pid;
}

static void reclaim_one(enum kind k, double *ref_p50)
{
	const unsigned n = g_reclaim_samples;
	const size_t area_len = sizeof(struct rarea) + (n + 1) * sizeof(struct rrec);
	int afd = memfd_create("bench-reclaim", 0); /* inherited by the children */
	struct rarea *area;
	struct rrec *recs;
	uint64_t *lat = calloc(n, sizeof(*lat));
	uint64_t *t0 = calloc(n + 1, sizeof(*t0));
	pid_t holder;
	unsigned got = 0, died = 0, skipped = 0;
	const char *fail = NULL;
	char failbuf[128];
	int st;

	if (!lat || !t0)
		bench_die("out of memory");
	if (afd < 0 || ftruncate(afd, (off_t)area_len) < 0)
		bench_die("memfd: %s", strerror(errno));
	area = mmap(NULL, area_len, PROT_READ | PROT_WRITE, MAP_SHARED, afd, 0);
	if (area == MAP_FAILED)
		bench_die("mmap memfd: %s", strerror(errno));
	recs = area->recs;
	mutex_init_at(&area->mu);
	fflush(NULL);
	holder = reclaim_spawn(k, afd, 0);
	if (holder < 0 || rrec_wait(&recs[0], RS_STARTING, 5000000000ull) == RS_FAILED ||
	    rrec_wait(&recs[0], RS_WAITING, 5000000000ull) != RS_HOLDING) {
		snprintf(failbuf, sizeof(failbuf), "first holder failed: %s",
			 strerror(recs[0].err ? recs[0].err : ETIMEDOUT));
		fail = failbuf;
		goto out;
	}
	for (unsigned i = 1; i <= n; i++) {
		struct rrec *r = &recs[i];
		pid_t w = reclaim_spawn(k, afd, i);
		uint64_t deadline;
		uint32_t s;

		if (w < 0) {
			fail = "posix_spawn failed";
			break;
		}
		s = rrec_wait(r, RS_STARTING, 5000000000ull);
		if (s != RS_WAITING) {
			if (s == RS_HOLDING)
				snprintf(failbuf, sizeof(failbuf),
					 "EXCLUSION BROKEN: waiter got a live holder's lock");
			else
				snprintf(failbuf, sizeof(failbuf), "waiter failed: %s",
					 strerror(r->err ? r->err : ETIMEDOUT));
			fail = failbuf;
			kill(w, SIGKILL);
			waitpid(w, &st, 0);
			break;
		}
		deadline = bench_now_ns() + 2000000000ull;
		while (!waiter_blocked(k, w, &recs[i - 1]) &&
		       atomic_load(&r->state) == RS_WAITING && bench_now_ns() < deadline)
			bench_sleep_ns(20000);
		if (atomic_load(&r->state) != RS_WAITING) {
			/* It got the lock while the holder lived: exclusion broken. */
			fail = atomic_load(&r->state) == RS_HOLDING
				       ? "EXCLUSION BROKEN: waiter got a live holder's lock"
				       : "waiter failed";
			kill(w, SIGKILL);
			waitpid(w, &st, 0);
			break;
		}
		if (bench_now_ns() >= deadline)
			skipped++; /* never seen asleep: measure anyway */
		t0[i] = bench_now_ns();
		kill(holder, SIGKILL);
		s = rrec_wait(r, RS_WAITING, (RECLAIM_TIMEOUT_MS + 2000) * 1000000ull);
		waitpid(holder, &st, 0);
		holder = w;
		if (s != RS_HOLDING) {
			snprintf(failbuf, sizeof(failbuf), "waiter did not get the lock: %s",
				 strerror(r->err ? r->err : ETIMEDOUT));
			fail = failbuf;
			break;
		}
		lat[got++] = r->t1 - t0[i];
		died += r->owner_died;
	}
	kill(holder, SIGKILL);
	waitpid(holder, &st, 0);
out:
	bench_sort_u64(lat, got);
	if (got) {
		char note[192];
		if (k == K_FLOCK || k == K_OFD)
			snprintf(note, sizeof(note), "kernel drops it at exit%s%s",
				 fail ? "; " : "", fail ? fail : "");
		else
			snprintf(note, sizeof(note), "owner-died told %u/%u%s%s", died, got,
				 fail ? "; " : "", fail ? fail : "");
		if (skipped)
			snprintf(note + strlen(note), sizeof(note) - strlen(note),
				 "; %u waiters never seen asleep", skipped);
		bench_lat_row(kind_name[k], lat, got, *ref_p50, "%s", note);
		if (k == K_FLOCK)
			*ref_p50 = (double)bench_pct(lat, got, 50);
		if (k == K_BUMBA) {
			g_sum.reclaim_p99_ns = (double)bench_pct(lat, got, 99);
			g_sum.have_reclaim = true;
		}
	} else {
		bench_row_text(kind_name[k], "error: %s", fail ? fail : "no sample");
	}
	free(lat);
	free(t0);
	munmap(area, area_len);
	close(afd);
}

static void section_d(void)
{
	double ref = 0;

	bench_title("D. SIGKILL of a holder until a waiter holds the lock (%u samples each)",
		    g_reclaim_samples);
	printf("  t0 just before kill(holder, SIGKILL), t1 when the blocked waiter's acquire "
	       "returns\n  (CLOCK_MONOTONIC in both processes); the waiter then holds until "
	       "killed in turn.\n  Holders and waiters are fresh processes (posix_spawn + exec), "
	       "like real agents.\n");
	bench_lat_head();
	for (int k = 0; k < K_N; k++) {
		if (k == K_LOCKFILE) {
			bench_row_text(kind_name[k], "never: the .lock file outlives its holder; "
						     "git asks a human to delete it");
			continue;
		}
#ifndef BENCH_ANCHORS_ONLY
		if (k == K_BUMBA && !g_bumba) {
			bench_row_text(kind_name[k], "skipped: %s", g_bumba_why);
			continue;
		}
#else
		if (k == K_BUMBA) {
			bench_row_text(kind_name[k], "skipped: -DBENCH_ANCHORS_ONLY");
			continue;
		}
#endif
		reclaim_one((enum kind)k, &ref);
	}
}

/* ------------------------------------------------------------------ */
/* E: memory                                                           */

/* objsize of a slab cache from /proc/slabinfo, 0 if unknown. */
static unsigned long slab_objsize(const char *cache)
{
	FILE *f = fopen("/proc/slabinfo", "re");
	char line[512], name[128];
	unsigned long active, num, objsize, found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%127s %lu %lu %lu", name, &active, &num, &objsize) == 4 &&
		    !strcmp(name, cache)) {
			found = objsize;
			break;
		}
	}
	fclose(f);
	return found;
}

static void mem_row(const char *name, unsigned long bytes, const char *note)
{
	if (bytes)
		printf("  %-*s %10lu  %s\n", BENCH_NAME_W, name, bytes, note);
	else
		printf("  %-*s %10s  %s\n", BENCH_NAME_W, name, "?", note);
}

static void section_e(void)
{
	unsigned long fl = slab_objsize("file_lock_cache");
	unsigned long dentry = slab_objsize("dentry");
	struct statfs sfs;
	const char *inode_cache = "ext4_inode_cache";

	bench_title("E. Bytes per lock entry");
	printf("  %-*s %10s  %s\n", BENCH_NAME_W, "name", "bytes", "note");
	printf("  %.*s %.10s  %s\n", BENCH_NAME_W,
	       "----------------------------------------------------------------", "----------",
	       "-----------------------------");
#ifndef BENCH_ANCHORS_ONLY
	{
		const size_t entry = sizeof(struct lock_entry);
		const size_t slot = entry + BUMBA_LOCK_NAME;
		char note[160];

		g_sum.entry_bytes = entry;
		mem_row("bumba struct lock_entry", entry,
			"state word, key, fence, queue, robust mutex; one cache-line multiple");
		mem_row("bumba lock name slot", BUMBA_LOCK_NAME, "display copy of the path");
		mem_row("bumba table slot (entry + name)", slot, "");
		mem_row("bumba struct hold (per agent x lock held)", sizeof(struct hold),
			"in the holder's own table");
		mem_row("bumba struct waiter (per blocked acquire)", sizeof(struct waiter), "");
		if (g_bumba) {
			const struct bumba_seg *s = bumba_handle_seg(g_b);
			const struct seg_header *h = s->hdr;
			double per = (double)h->lock_slots * (double)slot / h->caps.max_locks;
			g_sum.per_lock_bytes = (size_t)per;
			snprintf(note, sizeof(note),
				 "%u table slots for max_locks %u (load <= 1/2)", h->lock_slots,
				 h->caps.max_locks);
			mem_row("bumba per live lock, table at capacity", (unsigned long)per, note);
			snprintf(note, sizeof(note),
				 "whole segment %.1f MiB / max_locks (agents %u, holds %u each)",
				 (double)h->total_size / 1048576.0, h->caps.max_agents,
				 h->caps.holds_per_agent);
			mem_row("bumba segment per configured lock",
				(unsigned long)(h->total_size / h->caps.max_locks), note);
			printf("  %-*s %10s  agents %.1f, holds %.1f, lock entries %.1f, names "
			       "%.1f,\n  %-*s %10s  waiters %.1f, the rest %.1f MiB\n",
			       BENCH_NAME_W, "  segment by region (MiB)", "",
			       (double)(h->off_holds - h->off_agents) / 1048576.0,
			       (double)(h->off_locks - h->off_holds) / 1048576.0,
			       (double)(h->off_names - h->off_locks) / 1048576.0,
			       (double)(h->off_waiters - h->off_names) / 1048576.0, BENCH_NAME_W,
			       "", "", (double)(h->off_waitmap - h->off_waiters) / 1048576.0,
			       (double)(h->total_size - h->off_waitmap + h->off_agents) /
				       1048576.0);
		}
	}
#else
	mem_row("bumba", 0, "skipped: -DBENCH_ANCHORS_ONLY");
#endif
	mem_row("flock/OFD: kernel struct file_lock", fl, "slab file_lock_cache objsize");
	mem_row("robust pthread mutex", sizeof(pthread_mutex_t), "sizeof(pthread_mutex_t)");
	if (statfs(g_dir, &sfs) == 0 && sfs.f_type == 0x01021994)
		inode_cache = "shmem_inode_cache"; /* tmpfs */
	{
		unsigned long ino = slab_objsize(inode_cache);
		char note[128];
		snprintf(note, sizeof(note), "a dentry + an inode (%s) while it exists",
			 inode_cache);
		mem_row("git-style lockfile", dentry && ino ? dentry + ino : 0, note);
	}
}

/* ------------------------------------------------------------------ */
/* summary                                                             */

#ifndef BENCH_ANCHORS_ONLY
static void target_row(const char *what, const char *goal, bool met, const char *fmt, ...)
{
	char m[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	printf("  %-44s %-12s %-22s %s\n", what, goal, m, met ? "met" : "not met");
}
#endif

/* Only what this run measured: a section left out prints no line. */
static void summary(void)
{
	bench_title("Targets (from the issue) against this run");
	printf("  %-44s %-12s %-22s %s\n", "target", "goal", "measured", "");
	printf("  %.44s %.12s %.22s %s\n",
	       "----------------------------------------------------------------", "------------",
	       "----------------------", "-------");
#ifndef BENCH_ANCHORS_ONLY
	if (!g_bumba) {
		printf("  (bumba not measured: %s)\n", g_bumba_why);
		return;
	}
	if (g_sum.bumba_ns > 0) {
		double ratio = g_sum.bumba_ns / g_sum.flock_ns;
		target_row("uncontended acquire+release", "<= 150 ns",
			   g_sum.bumba_ns <= TARGET_ACQREL_NS, "%.1f ns", g_sum.bumba_ns);
		target_row("  ... against flock in the same run", "<= 0.2x",
			   ratio <= TARGET_FLOCK_RATIO, "%.3fx flock", ratio);
	}
	if (g_sum.have_reclaim)
		target_row("SIGKILL of a holder until a waiter holds, p99", "<= 5 ms",
			   g_sum.reclaim_p99_ns <= TARGET_RECLAIM_P99, "%.3f ms",
			   g_sum.reclaim_p99_ns / 1e6);
	if (g_sum.best_distinct > 0) {
		target_row("aggregate ops/s, distinct paths, best N", ">= 10 M",
			   g_sum.best_distinct >= TARGET_DISTINCT_OPS, "%.2f M (N=%u)",
			   g_sum.best_distinct / 1e6, g_sum.best_distinct_n);
		target_row("  ... worst N", ">= 10 M", g_sum.worst_distinct >= TARGET_DISTINCT_OPS,
			   "%.2f M (N=%u)", g_sum.worst_distinct / 1e6, g_sum.worst_distinct_n);
	}
	if (g_sum.entry_bytes) {
		target_row("bytes per lock entry (struct lock_entry)", "<= 128 B",
			   g_sum.entry_bytes <= TARGET_ENTRY_BYTES, "%zu B", g_sum.entry_bytes);
		if (g_sum.per_lock_bytes)
			target_row("  ... with name slot and table headroom", "(<= 128 B)",
				   g_sum.per_lock_bytes <= TARGET_ENTRY_BYTES, "%zu B",
				   g_sum.per_lock_bytes);
	}
#else
	printf("  (bumba not measured: built with -DBENCH_ANCHORS_ONLY)\n");
#endif
}

/* ------------------------------------------------------------------ */

static unsigned env_uint(const char *name, unsigned def, unsigned lo, unsigned hi)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		bench_die("%s=%s: want an integer in %u..%u", name, s, lo, hi);
	return (unsigned)v;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
	rmdir(dir);
}

static void setup(void)
{
	const char *dir = getenv("BENCH_DIR");
	char src[64] = "?";
	struct statfs sfs;
	FILE *f;

	g_ms = env_uint("BENCH_MS", g_ms, 10, 60000);
	g_reclaim_samples = env_uint("BENCH_RECLAIM_SAMPLES", g_reclaim_samples, 1, 100000);
	g_max_procs = env_uint("BENCH_MAX_PROCS", g_max_procs, 2, BENCH_MAX_WORKERS);
	if (getenv("BENCH_SECTIONS") && *getenv("BENCH_SECTIONS"))
		g_sections = getenv("BENCH_SECTIONS");
	if (dir && *dir) {
		if (strlen(dir) >= sizeof(g_dir))
			bench_die("BENCH_DIR too long");
		snprintf(g_dir, sizeof(g_dir), "%s", dir);
		if (mkdir(g_dir, 0700) < 0 && errno != EEXIST)
			bench_die("mkdir %s: %s", g_dir, strerror(errno));
	} else {
		snprintf(g_dir, sizeof(g_dir), "/tmp/bumba-bench.XXXXXX");
		if (!mkdtemp(g_dir))
			bench_die("mkdtemp: %s", strerror(errno));
		g_dir_ours = true;
	}
	g_mu = bench_shared_alloc(sizeof(*g_mu));
	g_pool = bench_pool_new();

	f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
	if (f) {
		if (fscanf(f, "%63s", src) != 1)
			snprintf(src, sizeof(src), "?");
		fclose(f);
	}
	printf("bench_locks: window %u ms per cell, %u reclaim samples, clocksource %s\n", g_ms,
	       g_reclaim_samples, src);
	printf("  anchor files in %s (%s)\n", g_dir,
	       statfs(g_dir, &sfs) < 0		? "?"
	       : sfs.f_type == 0x01021994	? "tmpfs"
	       : sfs.f_type == 0xEF53		? "ext2/3/4"
	       : sfs.f_type == (long)0x9123683E ? "btrfs"
	       : sfs.f_type == (long)0x58465342 ? "xfs"
	       : sfs.f_type == (long)0x794c7630 ? "overlayfs"
						: "other fs");

#ifndef BENCH_ANCHORS_ONLY
	{
		const struct bumba_agent_info info = {.type = "Bench", .name = "parent"};
		int rc;

		g_sock = getenv("BUMBA_SOCKET");
		if (!g_sock || !*g_sock) {
			snprintf(g_bumba_why, sizeof(g_bumba_why),
				 "BUMBA_SOCKET not set (run it through make bench)");
			g_sock = NULL;
		} else if ((rc = bumba_open(g_sock, &info, &g_b)) < 0) {
			snprintf(g_bumba_why, sizeof(g_bumba_why), "bumba_open(%s): %s", g_sock,
				 strerror(-rc));
		} else {
			g_bumba = true;
			g_obs_ok = bumba_observe(g_sock, &g_obs) == 0;
			printf("  bumba: agent %s via %s\n", bumba_agent_id(g_b), g_sock);
		}
		if (!g_bumba)
			printf("  bumba: %s: bumba sections skipped\n", g_bumba_why);
	}
#else
	printf("  bumba: built with -DBENCH_ANCHORS_ONLY: bumba sections skipped\n");
#endif
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], RECLAIM_CHILD_ARG))
		return reclaim_child_main(argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup();
	if (strchr(g_sections, 'A'))
		section_a();
	if (strchr(g_sections, 'B'))
		section_b();
	if (strchr(g_sections, 'C'))
		section_c();
	if (strchr(g_sections, 'D'))
		section_d();
	if (strchr(g_sections, 'E'))
		section_e();
	summary();
#ifndef BENCH_ANCHORS_ONLY
	if (g_obs_ok)
		bumba_seg_unmap(&g_obs);
	bumba_close(g_b);
#endif
	if (g_dir_ours)
		rm_dir(g_dir);
	return 0;
}
