/* SPDX-License-Identifier: MIT */
/*
 * mp_crash_safeio.c - safe file operations across real crashes, against a
 * real bumbad.
 *
 *   1. random kills: a child registers an agent, locks a set of files and
 *      loops doing safe writes (every flag mix), transactions (writes, a
 *      delete/create toggle and a move back and forth, all of one
 *      generation), deletes and restores, on io_uring or on the fallback,
 *      until the parent SIGKILLs it at a random instant.  The parent then
 *      takes the same locks (granted once bumbad has recovered the dead
 *      agent's work and reclaimed its locks) and checks: every file holds
 *      exactly one complete version (self-checking content), the
 *      transaction's files all carry the same generation, no temporary and
 *      no manifest is left.  Half the rounds run on a tmpfs mounted inside
 *      the workspace when we are root (the backups then cross filesystems).
 *   2. fault injection: the same checks after a kill at every fault point
 *      (BUMBA_FAULT_STEP semantics through bumba_fault_arm) of a
 *      transaction, a safe write with backup and verification, a delete
 *      and a move, on both engines.
 *   3. concurrent readers: writers on overlapping files under locks, and
 *      readers that never lock; no reader ever sees a torn file.
 *
 * At least 1,000 kills per run (MP_SAFEIO_KILLS, default 1000, counts the
 * random kills; the fault-injection kills come on top).
 * Environment: BUILD, HARNESS_KEEP as in harness.h.
 */
#include <dirent.h>
#include <sys/mount.h>
#include <xxhash.h>

#include "harness.h"
#include "safeio.h"

static struct h_sup sup;
static char area[PATH_MAX]; /* where the files of a round live */

#define NT   5 /* transaction files t0..t4 */
#define NS   4 /* single-write files s0..s3 */
#define MAXC (16u << 10)

static const char *tnames[NT] = {"t0", "t1", "t2", "t3", "t4"};
static const char *snames[NS] = {"s0", "s1", "s2", "s3"};

static const char *F(const char *name)
{
	static char buf[8][PATH_MAX];
	static int k;
	char *out = buf[k++ & 7];

	if (snprintf(out, PATH_MAX, "%s/%s", area, name) >= PATH_MAX)
		abort();
	return out;
}

/* ------------------------------------------------------------------ */
/* self-checking content                                               */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* "<name> G<gen> L<len>\n" then len bytes of a stream seeded by both. */
static size_t content(char *buf, const char *name, uint64_t gen)
{
	uint64_t seed = XXH3_64bits(name, strlen(name)) ^ mix(gen + 1);
	size_t body = 100 + mix(seed) % (MAXC - 200);
	int h = snprintf(buf, 128, "%s G%llu L%zu\n", name, (unsigned long long)gen, body);
	uint64_t x = seed;

	for (size_t i = 0; i < body; i++) {
		if (i % 8 == 0)
			x = mix(x + i);
		buf[h + i] = (char)('a' + (x >> (8 * (i % 8))) % 26);
	}
	return (size_t)h + body;
}

/* The generation a file's content is a complete version of; -1: torn,
 * foreign or unreadable; -2: absent. */
static long long check_content(const char *path, const char *name)
{
	static char got[MAXC + 256], want[MAXC + 256];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	unsigned long long g;
	char nm[32];

	if (fd < 0)
		return errno == ENOENT ? -2 : -1;
	n = read(fd, got, sizeof(got) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	got[n] = '\0';
	if (sscanf(got, "%31s G%llu", nm, &g) != 2 || strcmp(nm, name) != 0)
		return -1;
	size_t len = content(want, name, g);
	return (size_t)n == len && memcmp(got, want, len) == 0 ? (long long)g : -1;
}

static int put_plain(const char *path, const char *name, uint64_t gen)
{
	static char buf[MAXC + 256];
	size_t n = content(buf, name, gen);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, buf, n);
	close(fd);
	return w == (ssize_t)n ? 0 : -EIO;
}

/* ------------------------------------------------------------------ */
/* the files of a round                                                */

/* Generation g of the transaction group: t_i hold g; "tdel" exists (with
 * g) iff g is even; "mover" sits at ma when g is even, at mb when odd. */
static int tgroup_init(void)
{
	for (int i = 0; i < NT; i++)
		if (put_plain(F(tnames[i]), tnames[i], 0))
			return -1;
	for (int i = 0; i < NS; i++)
		if (put_plain(F(snames[i]), snames[i], 0))
			return -1;
	unlink(F("mb"));
	return put_plain(F("tdel"), "tdel", 0) || put_plain(F("ma"), "mover", 7) ? -1 : 0;
}

static const char *all_paths[] = {"t0", "t1", "t2", "t3", "t4", "tdel",
				  "ma", "mb", "s0", "s1", "s2", "s3"};
#define NPATHS 12

static int lock_all(struct bumba *b, struct bumba_lock *lk, int timeout_ms)
{
	for (int i = 0; i < NPATHS; i++) {
		int rc = bumba_lock_acquire(b, F(all_paths[i]), BUMBA_EXCLUSIVE, timeout_ms,
					    BUMBA_PRIO_NORMAL, &lk[i]);
		if (rc) {
			while (i--)
				bumba_lock_release(b, &lk[i]);
			return rc;
		}
	}
	return 0;
}

static void unlock_all(struct bumba *b, struct bumba_lock *lk)
{
	for (int i = 0; i < NPATHS; i++)
		bumba_lock_release(b, &lk[i]);
}

/* One transaction from generation g to g + 1. */
static int txn_step(struct bumba *b, uint64_t g, unsigned flags)
{
	static char buf[MAXC + 256];
	struct bumba_txn *t;
	uint64_t n = g + 1;
	int rc = bumba_txn_begin(b, flags, &t);

	for (int i = 0; i < NT && !rc; i++) {
		size_t len = content(buf, tnames[i], n);
		rc = bumba_txn_write(t, F(tnames[i]), buf, len);
	}
	if (!rc) {
		if (n % 2) {
			rc = bumba_txn_delete(t, F("tdel"));
		} else {
			size_t len = content(buf, "tdel", n);
			rc = bumba_txn_write(t, F("tdel"), buf, len);
		}
	}
	if (!rc)
		rc = n % 2 ? bumba_txn_move(t, F("ma"), F("mb"))
			   : bumba_txn_move(t, F("mb"), F("ma"));
	if (rc) {
		bumba_txn_abort(t);
		return rc;
	}
	return bumba_txn_commit(t);
}

/* Checks the invariants; the transaction group's generation, or -1 (with
 * the reason recorded). */
static bool relax_tdel, relax_move; /* a lone delete / move of the group's files */

static long long check_round(const char *when)
{
	long long g = check_content(F("t0"), "t0");

	if (!h_check(g >= 0, "%s: t0 is not a complete version (%lld)", when, g))
		return -1;
	for (int i = 1; i < NT; i++) {
		long long gi = check_content(F(tnames[i]), tnames[i]);
		if (!h_check(gi == g, "%s: transaction torn: t0 at generation %lld, %s at %lld",
			     when, g, tnames[i], gi))
			return -1;
	}
	long long d = check_content(F("tdel"), "tdel");
	if (!h_check(relax_tdel ? (d == -2 || d == g)
		     : g % 2	? d == -2
				: d == g,
		     "%s: transaction torn: generation %lld but tdel is %lld", when, g, d))
		return -1;
	long long ma = check_content(F("ma"), "mover"), mb = check_content(F("mb"), "mover");
	bool at_a = ma == 7 && mb == -2, at_b = ma == -2 && mb == 7;
	if (!h_check(relax_move ? (at_a || at_b)
		     : g % 2	? at_b
				: at_a,
		     "%s: transaction torn: generation %lld, ma %lld, mb %lld", when, g, ma, mb))
		return -1;
	for (int i = 0; i < NS; i++) {
		long long s = check_content(F(snames[i]), snames[i]);
		if (!h_check(s >= 0, "%s: %s is torn or missing (%lld)", when, snames[i], s))
			return -1;
	}
	return g;
}

static int count_leftovers(const char *d, bool manifests)
{
	DIR *dd = opendir(d);
	struct dirent *e;
	int n = 0;

	if (!dd)
		return 0;
	while ((e = readdir(dd))) {
		size_t l = strlen(e->d_name);
		if (manifests)
			n += (l > 5 && !strcmp(e->d_name + l - 5, ".prep")) ||
			     (l > 7 && !strcmp(e->d_name + l - 7, ".commit"));
		else
			n += bumba_sio_parse_tmp(e->d_name, NULL, NULL);
	}
	closedir(dd);
	return n;
}

static bool clean_after(const char *when)
{
	char txn[PATH_MAX];

	if (snprintf(txn, sizeof(txn), "%s/.bumba/txn", sup.ws_real) >= (int)sizeof(txn))
		abort();
	int t = count_leftovers(area, false), m = count_leftovers(txn, true);
	return h_check(t == 0 && m == 0, "%s: %d temporaries and %d manifests left after recovery",
		       when, t, m);
}

/* ------------------------------------------------------------------ */
/* 1. random kills                                                     */

static _Noreturn void worker(int ready_fd, bool sync_engine, uint64_t seed)
{
	static char buf[MAXC + 256];
	struct bumba *b;
	struct bumba_lock lk[NPATHS];
	const unsigned fl[] = {0, BUMBA_WRITE_BACKUP, BUMBA_WRITE_VERIFY, BUMBA_WRITE_NOSYNC,
			       BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY};

	if (sync_engine)
		setenv("BUMBA_NO_IO_URING", "1", 1);
	h_srand(seed);
	if (bumba_open(sup.sock, NULL, &b) || lock_all(b, lk, 5000))
		_exit(2);
	(void)!write(ready_fd, "r", 1);
	long long g = check_content(F("t0"), "t0");
	if (g < 0)
		_exit(3);
	for (;;) {
		unsigned r = h_rand(10);
		unsigned flags = fl[h_rand(5)];
		int rc;
		if (r < 4) {
			rc = txn_step(b, (uint64_t)g, flags);
			if (rc == 0)
				g++;
		} else if (r < 9) {
			int i = (int)h_rand(NS);
			long long cur = check_content(F(snames[i]), snames[i]);
			size_t len = content(buf, snames[i], (uint64_t)(cur < 0 ? 0 : cur) + 1);
			rc = bumba_safe_write(b, F(snames[i]), buf, len, flags);
		} else {
			/* Undo the last change of a single file: itself a
			 * safe write. */
			int i = (int)h_rand(NS);
			rc = bumba_safe_restore(b, F(snames[i]), -1, flags & BUMBA_WRITE_NOSYNC);
			if (rc == -ENOENT)
				rc = 0;
		}
		if (rc)
			_exit(10 + (-rc & 0xff));
	}
}

static int kills_done;

static void run_random(int rounds, const char *label)
{
	struct bumba *me;
	struct bumba_lock lk[NPATHS];
	int rc = bumba_open(sup.sock, NULL, &me);
	long long gmax = 0;
	int exits = 0, kills0 = kills_done;

	if (!h_check(rc == 0, "bumba_open: %s", h_err(rc)))
		return;
	if (!h_check(tgroup_init() == 0, "cannot create the files in %s", area))
		goto out;
	for (int round = 0; round < rounds && !h_why[0]; round++) {
		int p[2];
		if (pipe(p) < 0) {
			h_fail("pipe: %s", strerror(errno));
			break;
		}
		pid_t pid = h_fork(SIGKILL);
		if (pid == 0) {
			close(p[0]);
			worker(p[1], round % 3 == 2, h_now_ns() ^ (uint64_t)round << 32);
		}
		close(p[1]);
		char c;
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		if (poll(&pf, 1, 5000) == 1 && read(p[0], &c, 1) == 1)
			h_sleep_us(h_rand(12000)); /* somewhere in its work */
		close(p[0]);
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
		if (WIFEXITED(st)) {
			exits++;
			h_check(false, "%s round %d: the worker exited by itself with %d", label,
				round, WEXITSTATUS(st));
			break;
		}
		kills_done++;
		/* Granted once bumbad has recovered and reclaimed. */
		rc = lock_all(me, lk, 5000);
		if (!h_check(rc == 0, "%s round %d: locks after the kill: %s", label, round,
			     h_err(rc)))
			break;
		char when[64];
		snprintf(when, sizeof(when), "%s round %d", label, round);
		long long g = check_round(when);
		clean_after(when);
		unlock_all(me, lk);
		if (g > gmax)
			gmax = g;
	}
	h_note("%s: %d kills, transaction group at generation %lld, %d worker exits", label,
	       kills_done - kills0, gmax, exits);
	h_check(gmax > 0, "%s: no transaction ever committed", label);
out:
	bumba_close(me);
}

static void test_random_kills(void)
{
	int total = (int)h_env_long("MP_SAFEIO_KILLS", 1000);
	bool tmpfs = false;

	if (snprintf(area, sizeof(area), "%s/crash", sup.ws_real) >= (int)sizeof(area))
		abort();
	mkdir(area, 0755);
	run_random(geteuid() == 0 ? total / 2 : total, "ext4");
	if (geteuid() == 0 && !h_why[0]) {
		if (snprintf(area, sizeof(area), "%s/tmpfs", sup.ws_real) >= (int)sizeof(area))
			abort();
		mkdir(area, 0755);
		tmpfs = mount("tmpfs", area, "tmpfs", 0, "size=64m") == 0;
		if (tmpfs)
			run_random(total - total / 2, "tmpfs");
		else
			run_random(total - total / 2, "ext4 (no tmpfs)");
		if (tmpfs)
			umount2(area, MNT_DETACH);
	}
	h_check(kills_done >= total, "only %d kills (wanted %d)", kills_done, total);
}

/* ------------------------------------------------------------------ */
/* 2. a kill at every fault point                                      */

static int fault_kills;

static void run_faults(bool sync_engine, int op)
{
	static char buf[MAXC + 256];
	struct bumba *me;
	struct bumba_lock lk[NPATHS];
	int rc;
	const char *opname[] = {"transaction", "write+backup+verify", "delete", "move"};

	if (snprintf(area, sizeof(area), "%s/faults", sup.ws_real) >= (int)sizeof(area))
		abort();
	mkdir(area, 0755);
	rc = bumba_open(sup.sock, NULL, &me);
	if (!h_check(rc == 0, "bumba_open: %s", h_err(rc)))
		return;
	long step;
	for (step = 1; step < 400 && !h_why[0]; step++) {
		char when[96];
		snprintf(when, sizeof(when), "%s %s, killed at step %ld",
			 sync_engine ? "fallback" : "io_uring", opname[op], step);
		if (lock_all(me, lk, 5000)) {
			h_fail("%s: cannot take the locks", when);
			break;
		}
		tgroup_init();
		unlock_all(me, lk);
		pid_t pid = h_fork(SIGKILL);
		if (pid == 0) {
			struct bumba *b;
			struct bumba_lock clk[NPATHS];
			if (sync_engine)
				setenv("BUMBA_NO_IO_URING", "1", 1);
			if (bumba_open(sup.sock, NULL, &b) || lock_all(b, clk, 5000))
				_exit(2);
			bumba_fault_arm(step);
			switch (op) {
			case 0:
				rc = txn_step(b, 0, 0);
				break;
			case 1:
				rc = bumba_safe_write(b, F("s1"), buf, content(buf, "s1", 1),
						      BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY);
				break;
			case 2:
				rc = bumba_safe_delete(b, F("tdel"), 0);
				break;
			default:
				rc = bumba_safe_move(b, F("ma"), F("mb"), 0);
				break;
			}
			_exit(rc ? 3 : 0);
		}
		int st;
		waitpid(pid, &st, 0);
		if (lock_all(me, lk, 5000)) {
			h_fail("%s: locks not granted after the kill", when);
			break;
		}
		relax_tdel = op == 2;
		relax_move = op == 3;
		long long g = check_round(when);
		relax_tdel = relax_move = false;
		bool tdel = access(F("tdel"), F_OK) == 0, mb = access(F("mb"), F_OK) == 0;
		long long s1 = check_content(F("s1"), "s1");
		clean_after(when);
		unlock_all(me, lk);
		if (op == 2)
			h_check(g == 0, "%s: generation %lld", when, g);
		if (op == 1)
			h_check(s1 == 0 || s1 == 1, "%s: s1 at %lld", when, s1);
		if (WIFEXITED(st)) {
			h_check(WEXITSTATUS(st) == 0, "%s: the operation failed (%d)", when,
				WEXITSTATUS(st));
			/* Done: the finished operation is visible. */
			if (op == 0)
				h_check(g == 1, "%s: completed but generation %lld", when, g);
			if (op == 1)
				h_check(s1 == 1, "%s: completed but s1 at %lld", when, s1);
			if (op == 2)
				h_check(!tdel, "%s: completed but tdel is still there", when);
			if (op == 3)
				h_check(mb, "%s: completed but mb is not there", when);
			break;
		}
		fault_kills++;
	}
	h_note("%s %s: %ld fault points", sync_engine ? "fallback" : "io_uring", opname[op],
	       step - 1);
	bumba_close(me);
}

static void test_fault_steps(void)
{
	for (int e = 0; e < 2; e++)
		for (int op = 0; op < 4; op++)
			run_faults(e == 1, op);
	h_note("%d kills by fault injection", fault_kills);
	h_check(fault_kills >= 40, "only %d fault-injection kills", fault_kills);
}

/* ------------------------------------------------------------------ */
/* 3. readers never see a torn file                                    */

#define NR_FILES 4
static const char *rnames[NR_FILES] = {"r0", "r1", "r2", "r3"};

static _Noreturn void rw_writer(int id, uint64_t until)
{
	static char buf[MAXC + 256];
	struct bumba *b;
	struct bumba_lock lk[NR_FILES];

	if (id % 2)
		setenv("BUMBA_NO_IO_URING", "1", 1);
	h_srand(h_now_ns() ^ (uint64_t)id << 40);
	if (bumba_open(sup.sock, NULL, &b))
		_exit(2);
	while (h_now_ns() < until) {
		/* Two overlapping files, locked in index order. */
		int a = (int)h_rand(NR_FILES), c = (a + 1 + (int)h_rand(NR_FILES - 1)) % NR_FILES;
		int lo = a < c ? a : c, hi = a < c ? c : a;
		if (bumba_lock_acquire(b, F(rnames[lo]), BUMBA_EXCLUSIVE, 5000, BUMBA_PRIO_NORMAL,
				       &lk[lo]) ||
		    bumba_lock_acquire(b, F(rnames[hi]), BUMBA_EXCLUSIVE, 5000, BUMBA_PRIO_NORMAL,
				       &lk[hi]))
			_exit(3);
		long long g = check_content(F(rnames[lo]), rnames[lo]);
		if (g < 0)
			_exit(4);
		if (h_rand(2)) {
			if (bumba_safe_write(b, F(rnames[lo]), buf,
					     content(buf, rnames[lo], (uint64_t)g + 1),
					     h_rand(2) ? BUMBA_WRITE_NOSYNC : 0))
				_exit(5);
		} else {
			struct bumba_txn *t;
			long long g2 = check_content(F(rnames[hi]), rnames[hi]);
			if (g2 < 0 || bumba_txn_begin(b, BUMBA_WRITE_NOSYNC, &t) ||
			    bumba_txn_write(t, F(rnames[lo]), buf,
					    content(buf, rnames[lo], (uint64_t)g + 1)) ||
			    bumba_txn_write(t, F(rnames[hi]), buf,
					    content(buf, rnames[hi], (uint64_t)g2 + 1)) ||
			    bumba_txn_commit(t))
				_exit(6);
		}
		bumba_lock_release(b, &lk[hi]);
		bumba_lock_release(b, &lk[lo]);
	}
	bumba_close(b);
	_exit(0);
}

static _Noreturn void rw_reader(uint64_t until, int out_fd)
{
	unsigned long reads = 0, torn = 0;

	while (h_now_ns() < until) {
		for (int i = 0; i < NR_FILES; i++) {
			long long g = check_content(F(rnames[i]), rnames[i]);
			reads++;
			torn += g < 0;
		}
	}
	unsigned long r[2] = {reads, torn};
	(void)!write(out_fd, r, sizeof(r));
	_exit(0);
}

static void test_readers(void)
{
	const int nw = 4, nr = 2;
	pid_t w[4], r[2];
	int p[2];
	uint64_t until = h_now_ns() + 3000000000ull;

	if (snprintf(area, sizeof(area), "%s/readers", sup.ws_real) >= (int)sizeof(area))
		abort();
	mkdir(area, 0755);
	for (int i = 0; i < NR_FILES; i++)
		put_plain(F(rnames[i]), rnames[i], 0);
	if (pipe(p) < 0)
		return;
	for (int i = 0; i < nw; i++)
		if ((w[i] = h_fork(SIGKILL)) == 0)
			rw_writer(i, until);
	for (int i = 0; i < nr; i++)
		if ((r[i] = h_fork(SIGKILL)) == 0)
			rw_reader(until, p[1]);
	close(p[1]);
	for (int i = 0; i < nw; i++) {
		int st;
		waitpid(w[i], &st, 0);
		h_check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d ended with 0x%x", i, st);
	}
	unsigned long reads = 0, torn = 0;
	for (int i = 0; i < nr; i++) {
		unsigned long x[2];
		int st;
		if (read(p[0], x, sizeof(x)) == sizeof(x)) {
			reads += x[0];
			torn += x[1];
		}
		waitpid(r[i], &st, 0);
	}
	close(p[0]);
	long long gens = 0;
	for (int i = 0; i < NR_FILES; i++)
		gens += check_content(F(rnames[i]), rnames[i]);
	h_note("%lu reads by readers that never lock, %lu torn; %lld versions written", reads, torn,
	       gens);
	h_check(torn == 0, "%lu of %lu reads saw a torn file", torn, reads);
	h_check(reads > 1000 && gens > 50, "too little happened: %lu reads, %lld versions", reads,
		gens);
	clean_after("readers");
}

int main(void)
{
	h_init();
	if (h_sup_start(&sup) < 0) {
		h_report("start bumbad");
		return h_finish();
	}
	h_run("concurrent readers never see a torn file", test_readers);
	h_run("a kill at every fault point: all or nothing after recovery", test_fault_steps);
	h_run("random SIGKILLs of agents mid-write: old or new, never torn", test_random_kills);
	int leaks = h_check_clean(&sup, 200, 3000, NULL);
	h_check(leaks == 0, "segment not clean");
	h_report("segment clean at the end");
	h_note("%d kills in all", kills_done + fault_kills);
	return h_finish();
}
