/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what every bench/bench_*.c shares: the clock, a timed loop that
 * batches operations so that reading the clock costs nothing measurable,
 * percentiles of a sample array, the table printer (name, ns/op, ops/s and
 * the ratio against flock(2) measured in the same run), memory shared with
 * forked children, and a pool of worker processes that start together on a
 * barrier and report their operation counts through a shared page.
 *
 * Header only: everything is static inline, so a program uses what it
 * needs without unused-function warnings.
 */
#ifndef BUMBA_BENCH_H
#define BUMBA_BENCH_H

#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------
 * Clock
 * ------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in ns: one clock for every process of the machine, so a
 * time taken in one process can be subtracted from one taken in another. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

static inline void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ---------------------------------------------------------------------
 * Timed loop
 * ------------------------------------------------------------------- */

struct bench_run {
	uint64_t ops; /* operations done */
	uint64_t ns;  /* time they took */
	int err;      /* first non-zero return of op, 0 if none */
};

/* A batch is grown until it takes at least this long, so the two clock
 * reads around it are < 0.1% of it. */
#define BENCH_BATCH_NS 50000ull

/* Calls op(arg) for ms milliseconds (after a short warm-up of the same
 * loop) in batches read by one pair of clock reads each.  op returns 0, or
 * a non-zero error that stops the loop.  Being static inline, a call with a
 * constant op usually gets the op inlined: the harness then adds nothing
 * but a loop counter. */
static inline struct bench_run bench_for_ms(unsigned ms, int (*op)(void *), void *arg)
{
	struct bench_run r = {0};
	uint64_t batch = 1, warm_end, end, t0, t1;
	bool warm = true;

	t0 = bench_now_ns();
	warm_end = t0 + (uint64_t)(ms < 100 ? ms / 5 + 1 : 20) * 1000000ull;
	end = warm_end + (uint64_t)ms * 1000000ull;
	for (;;) {
		for (uint64_t i = 0; i < batch; i++) {
			int rc = op(arg);
			if (rc) {
				r.err = rc;
				return r;
			}
		}
		t1 = bench_now_ns();
		if (t1 - t0 < BENCH_BATCH_NS && batch < (1ull << 30))
			batch *= 2;
		if (warm) {
			if (t1 >= warm_end) {
				warm = false;
				end = t1 + (uint64_t)ms * 1000000ull;
			}
		} else {
			r.ops += batch;
			r.ns += t1 - t0;
			if (t1 >= end)
				break;
		}
		t0 = bench_now_ns();
	}
	return r;
}

static inline double bench_ns_per_op(const struct bench_run *r)
{
	return r->ops ? (double)r->ns / (double)r->ops : 0.0;
}

/* The best (fastest) of reps runs: the one least disturbed by the rest of
 * the machine. */
static inline struct bench_run bench_best_of(unsigned reps, unsigned ms, int (*op)(void *),
					     void *arg)
{
	struct bench_run best = {0};

	for (unsigned i = 0; i < reps; i++) {
		struct bench_run r = bench_for_ms(ms, op, arg);
		if (r.err)
			return r;
		if (!best.ops || bench_ns_per_op(&r) < bench_ns_per_op(&best))
			best = r;
	}
	return best;
}

/* ---------------------------------------------------------------------
 * Percentiles
 * ------------------------------------------------------------------- */

static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static inline void bench_sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_u64);
}

/* Nearest-rank percentile p (0..100) of v[0..n), which must be sorted. */
static inline uint64_t bench_pct(const uint64_t *v, size_t n, double p)
{
	size_t k;

	if (!n)
		return 0;
	k = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/* ---------------------------------------------------------------------
 * Tables
 *
 *   name                                   ns/op        ops/s  vs flock  note
 *
 * "vs flock" is this row's ns/op divided by flock(2)'s in the same run and
 * the same setting: below 1 is faster than flock.
 * ------------------------------------------------------------------- */

#define BENCH_NAME_W 44

static inline void bench_title(const char *fmt, ...)
{
	va_list ap;

	putchar('\n');
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static inline void bench_table_head(const char *note_head)
{
	printf("  %-*s %12s %14s %9s  %s\n", BENCH_NAME_W, "name", "ns/op", "ops/s", "vs flock",
	       note_head ? note_head : "");
	printf("  %.*s %.12s %.14s %.9s  %s\n", BENCH_NAME_W,
	       "----------------------------------------------------------------", "--------------",
	       "--------------", "---------", note_head ? "-----------------------------" : "");
}

/* Human-readable rate: "12.34 M". */
static inline const char *bench_rate(char *buf, size_t len, double per_s)
{
	if (per_s >= 1e9)
		snprintf(buf, len, "%.2f G", per_s / 1e9);
	else if (per_s >= 1e6)
		snprintf(buf, len, "%.2f M", per_s / 1e6);
	else if (per_s >= 1e3)
		snprintf(buf, len, "%.2f k", per_s / 1e3);
	else
		snprintf(buf, len, "%.1f  ", per_s);
	return buf;
}

/* One row.  ref_ns: flock's ns/op for the ratio (0: no ratio printed).
 * note may be NULL. */
static inline void bench_row(const char *name, double ns_per_op, double ref_ns, const char *fmt,
			     ...)
{
	char rate[32], ratio[32], note[256] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(note, sizeof(note), fmt, ap);
		va_end(ap);
	}
	if (ref_ns > 0 && ns_per_op > 0)
		snprintf(ratio, sizeof(ratio), "%.3fx", ns_per_op / ref_ns);
	else
		snprintf(ratio, sizeof(ratio), "-");
	printf("  %-*s %12.1f %14s %9s  %s\n", BENCH_NAME_W, name, ns_per_op,
	       ns_per_op > 0 ? bench_rate(rate, sizeof(rate), 1e9 / ns_per_op) : "-", ratio, note);
	fflush(stdout);
}

/* A row that is not a measurement (an error, or a figure not measured). */
static inline void bench_row_text(const char *name, const char *fmt, ...)
{
	char note[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	printf("  %-*s %12s %14s %9s  %s\n", BENCH_NAME_W, name, "-", "-", "-", note);
	fflush(stdout);
}

/* Latency tables: percentiles of a sample array, in microseconds.
 *
 *   name                                  p50 us     p99 us     max us  samples  vs flock  note
 *
 * "vs flock" compares the p50s. */
static inline void bench_lat_head(void)
{
	printf("  %-*s %10s %10s %10s %8s %9s  %s\n", BENCH_NAME_W, "name", "p50 us", "p99 us",
	       "max us", "samples", "vs flock", "note");
	printf("  %.*s %.10s %.10s %.10s %.8s %.9s  %s\n", BENCH_NAME_W,
	       "----------------------------------------------------------------", "----------",
	       "----------", "----------", "--------", "---------",
	       "-----------------------------");
}

/* sorted: n samples in ns, ascending.  ref_p50_ns: flock's p50, 0 none. */
static inline void bench_lat_row(const char *name, const uint64_t *sorted, size_t n,
				 double ref_p50_ns, const char *fmt, ...)
{
	char ratio[32] = "-", note[256] = "";
	va_list ap;
	double p50 = (double)bench_pct(sorted, n, 50);

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(note, sizeof(note), fmt, ap);
		va_end(ap);
	}
	if (ref_p50_ns > 0 && n)
		snprintf(ratio, sizeof(ratio), "%.3fx", p50 / ref_p50_ns);
	printf("  %-*s %10.1f %10.1f %10.1f %8zu %9s  %s\n", BENCH_NAME_W, name, p50 / 1e3,
	       (double)bench_pct(sorted, n, 99) / 1e3, n ? (double)sorted[n - 1] / 1e3 : 0.0, n,
	       ratio, note);
	fflush(stdout);
}

/* ---------------------------------------------------------------------
 * Memory shared with forked children
 * ------------------------------------------------------------------- */

static inline void *bench_shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap %zu shared bytes: %s", len, strerror(errno));
	return p; /* zero-filled */
}

static inline void bench_shared_free(void *p, size_t len)
{
	munmap(p, len);
}

static inline void bench_futex_wait(_Atomic uint32_t *w, uint32_t val, uint64_t timeout_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000ull),
			      .tv_nsec = (long)(timeout_ns % 1000000000ull)};

	syscall(SYS_futex, w, FUTEX_WAIT, val, &ts, NULL, 0);
}

static inline void bench_futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* ---------------------------------------------------------------------
 * Worker pools
 *
 * The parent forks n children; each calls fn(pool, idx, arg), which sets
 * itself up (opens its file, registers its agent), calls
 * bench_pool_wait_go() and then works until bench_pool_stopping(), stores
 * its count in pool->w[idx].ops and returns 0 (or an errno, reported).
 * The parent opens the barrier once every child is ready, lets them run for
 * the window, raises stop and collects them.  bench_pool_loop() is the
 * whole of a simple worker's life after its setup.
 * ------------------------------------------------------------------- */

#define BENCH_MAX_WORKERS 128

struct bench_worker_rec {
	uint64_t ops;
	uint64_t aux;	/* worker-defined: handoffs, errors, ... */
	uint64_t t_end; /* when it saw stop */
	int32_t err;
	uint32_t pad;
} __attribute__((aligned(64)));

struct bench_pool {
	_Atomic uint32_t ready;
	_Atomic uint32_t go;
	_Atomic uint32_t stop __attribute__((aligned(64)));
	uint64_t t_go __attribute__((aligned(64)));
	struct bench_worker_rec w[BENCH_MAX_WORKERS];
};

struct bench_pool_result {
	uint64_t ops;	  /* sum over workers */
	uint64_t aux;	  /* sum over workers */
	uint64_t ns;	  /* from go to the last worker seeing stop */
	double ops_per_s; /* sum over workers of ops / (its own time from go to stop) */
	int err;	  /* first worker error (positive errno), 0 if none */
};

typedef int (*bench_worker_fn)(struct bench_pool *p, unsigned idx, void *arg);

static inline struct bench_pool *bench_pool_new(void)
{
	return bench_shared_alloc(sizeof(struct bench_pool));
}

static inline void bench_pool_wait_go(struct bench_pool *p)
{
	atomic_fetch_add(&p->ready, 1);
	bench_futex_wake(&p->ready);
	while (!atomic_load(&p->go))
		bench_futex_wait(&p->go, 0, 1000000000ull);
}

static inline bool bench_pool_stopping(struct bench_pool *p)
{
	return atomic_load_explicit(&p->stop, memory_order_relaxed) != 0;
}

/* After setup: wait for go, run op(arg) until stop (checked every 8 ops),
 * record the count.  Returns op's error (positive errno) or 0. */
static inline int bench_pool_loop(struct bench_pool *p, unsigned idx, int (*op)(void *), void *arg)
{
	uint64_t n = 0;
	int rc = 0;

	bench_pool_wait_go(p);
	while (!bench_pool_stopping(p)) {
		for (int i = 0; i < 8; i++) {
			rc = op(arg);
			if (rc)
				goto out;
		}
		n += 8;
	}
out:
	p->w[idx].ops = n;
	p->w[idx].t_end = bench_now_ns();
	return rc < 0 ? -rc : rc;
}

/* Runs n workers for ms milliseconds.  Never returns with a child left. */
static inline struct bench_pool_result bench_pool_run(struct bench_pool *p, unsigned n, unsigned ms,
						      bench_worker_fn fn, void *arg)
{
	struct bench_pool_result res = {0};
	int perr = 0;
	pid_t pids[BENCH_MAX_WORKERS];
	unsigned started = 0, exited = 0;
	uint64_t t_stop, deadline;

	if (n > BENCH_MAX_WORKERS)
		bench_die("%u workers: at most %d", n, BENCH_MAX_WORKERS);
	memset(p, 0, sizeof(*p));
	fflush(NULL);
	for (; started < n; started++) {
		pid_t pid = fork();
		if (pid < 0) {
			perr = errno;
			break;
		}
		if (pid == 0) {
			int rc = fn(p, started, arg);
			p->w[started].err = rc;
			if (!p->w[started].t_end)
				p->w[started].t_end = bench_now_ns();
			_exit(rc ? 1 : 0);
		}
		pids[started] = pid;
	}
	/* Barrier: every child ready, or one gone (failed setup). */
	deadline = bench_now_ns() + 30000000000ull;
	while (!perr) {
		uint32_t r = atomic_load(&p->ready);
		int st;
		if (r >= started)
			break;
		if (waitpid(-1, &st, WNOHANG) > 0) {
			exited++;
			perr = ECHILD; /* a worker failed its setup: its err says why */
			break;
		}
		if (bench_now_ns() > deadline) {
			perr = ETIMEDOUT;
			break;
		}
		bench_futex_wait(&p->ready, r, 1000000ull);
	}
	p->t_go = bench_now_ns();
	atomic_store(&p->go, 1);
	bench_futex_wake(&p->go);
	if (!perr)
		bench_sleep_ns((uint64_t)ms * 1000000ull);
	t_stop = bench_now_ns();
	atomic_store(&p->stop, 1);
	/* Collect; a worker stuck past 30 s is killed (and reported). */
	deadline = t_stop + 30000000000ull;
	while (exited < started) {
		int st;
		pid_t w = waitpid(-1, &st, WNOHANG);
		if (w > 0) {
			exited++;
			continue;
		}
		if (w < 0)
			break;
		if (bench_now_ns() > deadline) {
			for (unsigned i = 0; i < started; i++)
				kill(pids[i], SIGKILL);
			if (!perr)
				perr = ETIMEDOUT;
			deadline = UINT64_MAX;
		}
		bench_sleep_ns(200000);
	}
	/* A worker's rate is over its own time: one that slept past stop
	 * (a backoff) does not stretch the others' window. */
	for (unsigned i = 0; i < started; i++) {
		uint64_t ns = p->w[i].t_end > p->t_go ? p->w[i].t_end - p->t_go : 0;
		res.ops += p->w[i].ops;
		res.aux += p->w[i].aux;
		if (ns > res.ns)
			res.ns = ns;
		if (ns)
			res.ops_per_s += (double)p->w[i].ops * 1e9 / (double)ns;
		if (p->w[i].err && !res.err)
			res.err = p->w[i].err;
	}
	if (!res.err)
		res.err = perr;
	if (!res.ns)
		res.ns = t_stop - p->t_go;
	return res;
}

#endif /* BUMBA_BENCH_H */
