/* SPDX-License-Identifier: MIT */
/*
 * contend.c - an example agent that fights other agents for the same files.
 *
 *   contend [--socket PATH] [--type T] [--name N] [--department D]
 *           [--rounds N] [--priority low|normal|high] [--timeout MS]
 *           [--seed N] [--verbose] [--no-lock] FILE...
 *
 * It registers with bumbad as one agent, then for every round picks one of
 * FILEs at random, takes an exclusive bumba lock on it and does a
 * read-modify-write of the whole file:
 *
 *   counter 41                               <- line 1: incremented
 *   ...whatever else the file held...        <- kept as it is
 *   Engineer-Ada-1718000000000-1a2b3c4d round 7 fence 118   <- one appended
 *
 * The write is bumba_safe_write() under the lock (a temporary file renamed
 * over the target, which the kernel guard sees as sanctioned); with
 * --no-lock it is a plain temporary file and rename.  Either way bumba's
 * lock is the only thing that keeps two agents from interleaving: a safe
 * write is atomic, not exclusive.  If exclusion ever failed, two agents
 * would read the same file, and the second write would throw away the
 * first one's update: its counter increment and its line both.  So on every read the agent checks that
 *   - every line it appended to this file earlier is still there (a lost
 *     update shows up here);
 *   - the counter equals the number of appended lines (a torn or mixed
 *     write shows up here);
 *   - the fencing token of the last line is older than its own (tokens
 *     strictly grow per lock: an older holder never writes after a newer).
 * Whoever counts the lines of all files at the end can also compare them
 * with the updates the agents report (agents/demo.sh does).
 *
 * Between reading and writing it sleeps 0-2 ms, lock held, to give the
 * others something to wait for - and, without the lock, every chance to
 * interleave: try --no-lock, which skips bumba altogether, to watch the
 * checks catch lost updates.  It publishes its status as it goes (blocked
 * while waiting, busy while holding, idle in between), so `bumbactl agents`
 * shows it working.
 *
 * FILEs are workspace paths: absolute inside a root, or relative to the
 * first root (the API's rule).  When the previous holder of a lock died
 * holding it (bumbad reclaimed it), the acquire says so: the agent counts
 * it and checks the file before using it, as a real agent should.
 *
 * At the end it prints one line:
 *   contend: <agent id>: prio=high rounds=50 acquires=50 updates=50
 *            wait_total_ms=12.3 wait_max_ms=1.2 owner_died=0 timeouts=0
 *
 * Exit status: 0 when every round updated its file, 2 when some acquires
 * timed out (the rest went through), 1 on any error (printed with its
 * errno name), 64 on bad usage.
 *
 * Build (the demo does this):
 *   cc -O2 -o contend contend.c $(pkg-config --cflags --libs bumba-shm)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerrorname_np */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bumba.h"

#define LOCK_TIMEOUT_MS 10000

struct opts {
	const char *socket;
	struct bumba_agent_info info;
	long rounds;
	int timeout_ms;
	enum bumba_priority prio;
	uint64_t seed;
	bool seeded, verbose, no_lock;
};

struct stats {
	long acquires, updates, timeouts, owner_died;
	uint64_t wait_total_ns, wait_max_ns;
};

/* One file the agent contends for: its workspace name and its real path. */
struct target {
	const char *name;
	char path[PATH_MAX];
	long mine; /* lines this agent appended to it */
};

static const char *prio_names[] = {"low", "normal", "high"};

static void usage(FILE *f)
{
	fprintf(f, "usage: contend [--socket PATH] [--type T] [--name N] [--department D]\n"
		   "               [--rounds N] [--priority low|normal|high] [--timeout MS]\n"
		   "               [--seed N] [--verbose] [--no-lock] FILE...\n");
}

/* strerrorname_np() is glibc >= 2.32; "EINTR (Interrupted system call)". */
static const char *err_str(int err, char *buf, size_t len)
{
	const char *name = strerrorname_np(err);

	snprintf(buf, len, "%s (%s)", name ? name : "?", strerror(err));
	return buf;
}

static void fail(const char *what, const char *path, int err)
{
	char e[128];

	fprintf(stderr, "contend: %s%s%s: %s\n", what, path ? " " : "", path ? path : "",
		err_str(err, e, sizeof(e)));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: plenty for picking files and sleep times. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum {
		O_SOCKET = 1000,
		O_TYPE,
		O_NAME,
		O_DEPT,
		O_ROUNDS,
		O_PRIO,
		O_TIMEOUT,
		O_SEED,
		O_VERBOSE,
		O_NOLOCK,
		O_HELP
	};
	static const struct option lo[] = {
		{"socket", required_argument, 0, O_SOCKET},
		{"type", required_argument, 0, O_TYPE},
		{"name", required_argument, 0, O_NAME},
		{"department", required_argument, 0, O_DEPT},
		{"rounds", required_argument, 0, O_ROUNDS},
		{"priority", required_argument, 0, O_PRIO},
		{"timeout", required_argument, 0, O_TIMEOUT},
		{"seed", required_argument, 0, O_SEED},
		{"verbose", no_argument, 0, O_VERBOSE},
		{"no-lock", no_argument, 0, O_NOLOCK},
		{"help", no_argument, 0, O_HELP},
		{0, 0, 0, 0},
	};
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o->socket = optarg;
			break;
		case O_TYPE:
			o->info.type = optarg;
			break;
		case O_NAME:
			o->info.name = optarg;
			break;
		case O_DEPT:
			o->info.department = optarg;
			break;
		case O_ROUNDS:
		case O_TIMEOUT:
			if (parse_long(optarg, c == O_ROUNDS ? 0 : -1, INT_MAX, &v) < 0) {
				fprintf(stderr, "contend: bad number '%s'\n", optarg);
				return -EINVAL;
			}
			if (c == O_ROUNDS)
				o->rounds = v;
			else
				o->timeout_ms = (int)v;
			break;
		case O_PRIO:
			if (!strcmp(optarg, "low")) {
				o->prio = BUMBA_PRIO_LOW;
			} else if (!strcmp(optarg, "normal")) {
				o->prio = BUMBA_PRIO_NORMAL;
			} else if (!strcmp(optarg, "high")) {
				o->prio = BUMBA_PRIO_HIGH;
			} else {
				fprintf(stderr, "contend: bad priority '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case O_SEED:
			if (parse_long(optarg, 0, LONG_MAX, &v) < 0) {
				fprintf(stderr, "contend: bad seed '%s'\n", optarg);
				return -EINVAL;
			}
			o->seed = (uint64_t)v;
			o->seeded = true;
			break;
		case O_VERBOSE:
			o->verbose = true;
			break;
		case O_NOLOCK:
			o->no_lock = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* Reads the whole file into a NUL-terminated buffer.  A missing file reads
 * as empty: the first writer creates it. */
static int read_all(const char *path, char **out, size_t *out_len)
{
	struct stat st;
	size_t cap, len = 0;
	char *buf;
	int fd, rc = 0;

	*out = NULL;
	*out_len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT)
		return -errno;
	cap = fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
	buf = malloc(cap + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (fd >= 0) {
		ssize_t n;

		if (len == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void sleep_us(long us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Is line [p, p+n) one that contend appended?  "<id> round <k> fence <t>";
 * stores <t> in *fence and whether <id> is self in *mine. */
static bool ledger_line(const char *p, size_t n, const char *self, uint64_t *fence, bool *mine)
{
	char line[512], id[256];
	unsigned long long k, t;
	int used = 0;

	if (n >= sizeof(line))
		return false;
	memcpy(line, p, n);
	line[n] = '\0';
	if (sscanf(line, "%255s round %llu fence %llu%n", id, &k, &t, &used) != 3 ||
	    (size_t)used != n)
		return false;
	*fence = t;
	*mine = !strcmp(id, self);
	return true;
}

/*
 * The read-modify-write, with the lock held.  Checks what the file says
 * before changing it, and returns -EUCLEAN if it is wrong:
 *   - the counter disagrees with the number of appended lines: the file is
 *     not the result of whole read-modify-writes (a torn or mixed write);
 *   - fewer of our own lines than we appended: someone rewrote the file
 *     from a copy read before our last update, which is the lost update
 *     that the lock is there to prevent;
 *   - the last line's fencing token is not older than ours: a holder with
 *     an older token wrote after a newer one.
 */
static int update_file(struct bumba *b, struct target *t, long round, uint64_t fence, long think_us)
{
	char tmp[PATH_MAX + 64], head[64], tail[512];
	const char *self = bumba_agent_id(b), *body, *end, *p;
	unsigned long long counter = 0;
	uint64_t last_fence = 0, f;
	long lines = 0, mine = 0;
	size_t len;
	char *buf;
	bool me;
	int fd, rc, n, m;

	rc = read_all(t->path, &buf, &len);
	if (rc)
		return rc;
	end = buf + len;
	body = buf;
	if (len && sscanf(buf, "counter %llu%n", &counter, &n) == 1 && buf[n] == '\n')
		body = buf + n + 1;
	for (p = body; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (ledger_line(p, ll, self, &f, &me)) {
			lines++;
			mine += me;
			last_fence = f;
		}
		p += ll + 1;
	}
	rc = -EUCLEAN;
	if ((unsigned long long)lines != counter)
		fprintf(stderr,
			"contend: %s: counter says %llu updates but the file has %ld lines: "
			"torn or mixed write\n",
			t->name, counter, lines);
	else if (mine != t->mine)
		fprintf(stderr,
			"contend: %s: %ld of the %ld lines we appended are gone: "
			"lost update\n",
			t->name, t->mine - mine, t->mine);
	else if (fence && lines && last_fence >= fence) /* fence 0: --no-lock */
		fprintf(stderr,
			"contend: %s: last write carries fence %" PRIu64 ", ours is %" PRIu64
			": tokens went backwards (or the file was written under another "
			"bumbad)\n",
			t->name, last_fence, fence);
	else
		rc = 0;
	if (rc) {
		free(buf);
		return rc;
	}

	/* The window in which an agent that ignored the lock would read the
	 * same counter as we did. */
	sleep_us(think_us);

	n = snprintf(head, sizeof(head), "counter %llu\n", counter + 1);
	m = snprintf(tail, sizeof(tail), "%s round %ld fence %" PRIu64 "\n", self, round, fence);
	if (fence) {
		/* Under the lock: bumba_safe_write (temporary file, rename), so
		 * that the kernel guard sees a sanctioned write.  NOSYNC: this
		 * is about exclusion, not durability. */
		size_t blen = (size_t)(end - body), total = (size_t)n + blen + 1 + (size_t)m;
		char *out = malloc(total);
		if (!out) {
			free(buf);
			return -ENOMEM;
		}
		size_t o = 0;
		memcpy(out + o, head, (size_t)n);
		o += (size_t)n;
		memcpy(out + o, body, blen);
		o += blen;
		if (end > body && end[-1] != '\n')
			out[o++] = '\n';
		memcpy(out + o, tail, (size_t)m);
		o += (size_t)m;
		rc = bumba_safe_write(b, t->path, out, o, BUMBA_WRITE_NOSYNC);
		free(out);
		if (!rc)
			t->mine++;
		free(buf);
		return rc;
	}
	snprintf(tmp, sizeof(tmp), "%s.contend-%d.tmp", t->path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		free(buf);
		return rc;
	}
	/* A body without its final newline gets one, so our line stays a line. */
	rc = write_all(fd, head, (size_t)n);
	if (!rc)
		rc = write_all(fd, body, (size_t)(end - body));
	if (!rc && end > body && end[-1] != '\n')
		rc = write_all(fd, "\n", 1);
	if (!rc)
		rc = write_all(fd, tail, (size_t)m);
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, t->path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	else
		t->mine++;
	free(buf);
	return rc;
}

static int set_status(struct bumba *b, enum bumba_agent_status s)
{
	int rc = bumba_set_status(b, s);

	if (rc < 0)
		fail("set status", NULL, -rc);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = {.rounds = 50, .timeout_ms = LOCK_TIMEOUT_MS, .prio = BUMBA_PRIO_NORMAL};
	struct stats st = {0};
	struct target *targets;
	struct bumba *b = NULL;
	size_t n_targets;
	int rc, status = 1;

	if (parse_args(argc, argv, &o) < 0)
		return 64;
	n_targets = (size_t)(argc - optind);

	rc = bumba_open(o.socket, &o.info, &b);
	if (rc < 0) {
		const char *where = o.socket ? o.socket : getenv("BUMBA_SOCKET");

		fail("cannot register with bumbad at", where ? where : "the default socket", -rc);
		return 1;
	}
	targets = calloc(n_targets, sizeof(*targets));
	if (!targets) {
		fail("out of memory", NULL, ENOMEM);
		goto out;
	}
	for (size_t i = 0; i < n_targets; i++) {
		targets[i].name = argv[optind + (int)i];
		rc = bumba_path_normalize(b, targets[i].name, targets[i].path,
					  sizeof(targets[i].path));
		if (rc < 0) {
			fail("not a workspace path:", targets[i].name, -rc);
			goto out;
		}
	}
	if (!o.seeded && getrandom(&o.seed, sizeof(o.seed), 0) != sizeof(o.seed))
		o.seed = now_ns() ^ ((uint64_t)getpid() << 32);
	o.seed |= 1; /* xorshift must not start at 0 */

	rc = set_status(b, BUMBA_STATUS_ACTIVE);
	for (long round = 1; rc == 0 && round <= o.rounds; round++) {
		struct target *t = &targets[rnd(&o.seed) % n_targets];
		struct bumba_lock lk;
		uint64_t t0, waited;

		if ((rc = set_status(b, BUMBA_STATUS_BLOCKED)) < 0)
			break;
		t0 = now_ns();
		memset(&lk, 0, sizeof(lk));
		rc = o.no_lock ? 0
			       : bumba_lock_acquire(b, t->name, BUMBA_EXCLUSIVE, o.timeout_ms,
						    o.prio, &lk);
		waited = now_ns() - t0;
		st.wait_total_ns += waited;
		if (waited > st.wait_max_ns)
			st.wait_max_ns = waited;
		if (rc == -ETIMEDOUT) {
			/* Someone held it for over timeout_ms: give up this
			 * round, say so, carry on. */
			st.timeouts++;
			fprintf(stderr, "contend: %s: round %ld: no lock after %d ms\n", t->name,
				round, o.timeout_ms);
			rc = set_status(b, BUMBA_STATUS_IDLE);
			continue;
		}
		if (rc < 0) {
			fail("lock", t->name, -rc);
			break;
		}
		st.acquires++;
		if (!o.no_lock && bumba_lock_owner_died(&lk)) {
			/* The previous holder was killed with the lock held.
			 * Whatever it was doing to the file either happened
			 * completely (rename is atomic) or not at all; the
			 * checks in update_file() tell us which. */
			st.owner_died++;
			fprintf(stderr,
				"contend: %s: previous holder died holding it; lock reclaimed, "
				"fence %" PRIu64 "\n",
				t->name, lk.fence);
		}
		if ((rc = set_status(b, BUMBA_STATUS_BUSY)) < 0)
			break;

		rc = update_file(b, t, round, lk.fence, (long)(rnd(&o.seed) % 2001));
		if (rc == 0) {
			st.updates++;
			if (o.verbose)
				printf("round %ld: %s fence %" PRIu64 " waited %.3f ms\n", round,
				       t->name, lk.fence, (double)waited / 1e6);
		} else {
			fail("update", t->name, -rc);
		}

		int rel = o.no_lock ? 0 : bumba_lock_release(b, &lk);

		if (rel < 0) {
			fail("release", t->name, -rel);
			rc = rc ? rc : rel;
		}
		if (!rc)
			rc = set_status(b, BUMBA_STATUS_IDLE);
	}
	if (rc < 0)
		goto out;

	printf("contend: %s: prio=%s rounds=%ld acquires=%ld updates=%ld wait_total_ms=%.1f "
	       "wait_max_ms=%.1f owner_died=%ld timeouts=%ld\n",
	       bumba_agent_id(b), prio_names[o.prio], o.rounds, st.acquires, st.updates,
	       (double)st.wait_total_ns / 1e6, (double)st.wait_max_ns / 1e6, st.owner_died,
	       st.timeouts);
	fflush(stdout);
	status = st.timeouts ? 2 : 0;
out:
	free(targets);
	bumba_close(b);
	return status;
}
