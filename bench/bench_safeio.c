/* SPDX-License-Identifier: MIT */
/*
 * bench_safeio.c - safe file operations against the floor and against
 * BUMBA's published figures.
 *
 * The floor is the same durable replace done by hand with plain system
 * calls: open a temporary (O_CREAT|O_EXCL), write, fdatasync, close, rename
 * over the target, fsync the directory.  Floor and bumba alternate
 * operation by operation on the same filesystem, so both see the same
 * device.  Rows:
 *
 *   durable safe write, 4 KiB and 1 MiB: io_uring, the fallback, with
 *   backup, with verify, with both;  BUMBA_WRITE_NOSYNC 4 KiB (against the
 *   floor without the two syncs);  a 100-file transaction against 100
 *   separate safe writes (and 100 floor replaces).
 *
 * BUMBA (the Node.js original) publishes 2-8 ms per safe write (with backup
 * and verification) and 5-20 ms per transaction; those figures are printed
 * beside ours.
 *
 * Needs a bumbad (bench/run.sh starts one; BUMBA_SOCKET).  Files go under
 * the supervisor's first workspace.  BENCH_SAFEIO_N (default 200) sets the
 * number of 4 KiB samples; 1 MiB and transactions take fewer.
 */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "bench.h"
#include "bumba.h"

static char dir[PATH_MAX];
static int dirfd_;
static char *buf;
static struct bumba *fallback; /* the handle without io_uring */

static char *path_of(const char *name)
{
	static char p[4][PATH_MAX + 64];
	static int k;
	char *out = p[k++ & 3];

	if (snprintf(out, sizeof(p[0]), "%s/%s", dir, name) >= (int)sizeof(p[0]))
		bench_die("path too long");
	return out;
}

/* The floor: what a careful program does by hand. */
static int floor_write(const char *name, size_t len, bool sync)
{
	char tmp[NAME_MAX + 1];
	int fd;

	snprintf(tmp, sizeof(tmp), ".%s.floor.tmp", name);
	fd = openat(dirfd_, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	for (size_t done = 0; done < len;) {
		ssize_t k = write(fd, buf + done, len - done);
		if (k < 0) {
			close(fd);
			return -errno;
		}
		done += (size_t)k;
	}
	if (sync && fdatasync(fd) < 0) {
		close(fd);
		return -errno;
	}
	close(fd);
	if (renameat(dirfd_, tmp, dirfd_, name) < 0)
		return -errno;
	if (sync && fsync(dirfd_) < 0)
		return -errno;
	return 0;
}

struct series {
	const char *name;
	uint64_t *ns;
	size_t n;
};

static void series_init(struct series *s, const char *name, size_t n)
{
	s->name = name;
	s->ns = calloc(n, sizeof(uint64_t));
	s->n = 0;
	if (!s->ns)
		bench_die("out of memory");
}

static double mean_ms(const struct series *s)
{
	double sum = 0;

	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->ns[i];
	return s->n ? sum / (double)s->n / 1e6 : 0;
}

static void head(void)
{
	printf("  %-44s %9s %9s %9s %8s  %s\n", "operation", "p50 ms", "mean ms", "p99 ms",
	       "vs floor", "note");
}

/* Prints s; ref: the floor series it is compared with (mean / mean). */
static void row(struct series *s, const struct series *ref, const char *note)
{
	char ratio[16] = "";

	bench_sort_u64(s->ns, s->n);
	if (ref && ref->n)
		snprintf(ratio, sizeof(ratio), "%.2fx", mean_ms(s) / mean_ms(ref));
	printf("  %-44s %9.3f %9.3f %9.3f %8s  %s\n", s->name,
	       (double)bench_pct(s->ns, s->n, 50) / 1e6, mean_ms(s),
	       (double)bench_pct(s->ns, s->n, 99) / 1e6, ratio, note ? note : "");
}

static void anchor(const char *name, const char *figure)
{
	printf("  %-44s %29s %8s  %s\n", name, figure, "", "published, not measured here");
}

typedef int (*op_fn)(struct bumba *b, const char *path, size_t len, unsigned flags);

static int op_write(struct bumba *b, const char *path, size_t len, unsigned flags)
{
	buf[0]++;
	return bumba_safe_write(b, path, buf, len, flags);
}

/* n rounds: the floor, then each bumba variant, one after the other. */
static void alternate(size_t n, size_t len, struct series *fl, bool fl_sync, struct series *v,
		      struct bumba **hs, const unsigned *flags, size_t nv)
{
	char fname[64];

	snprintf(fname, sizeof(fname), "floor-%zu", len);
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = bench_now_ns();
		int rc = floor_write(fname, len, fl_sync);
		if (rc)
			bench_die("floor write: %s", strerror(-rc));
		fl->ns[fl->n++] = bench_now_ns() - t0;
		for (size_t k = 0; k < nv; k++) {
			char name[64];
			snprintf(name, sizeof(name), "%s/safe-%zu-%zu",
				 hs[k] == fallback ? "f" : "b", len, k);
			t0 = bench_now_ns();
			rc = op_write(hs[k], path_of(name), len, flags[k]);
			if (rc)
				bench_die("%s: %s", v[k].name, strerror(-rc));
			v[k].ns[v[k].n++] = bench_now_ns() - t0;
		}
	}
}

int main(void)
{
	struct bumba *b, *f;
	const char *root;
	size_t n4 = (size_t)strtoul(getenv("BENCH_SAFEIO_N") ? getenv("BENCH_SAFEIO_N") : "200",
				    NULL, 10);
	size_t n1 = n4 / 4 ? n4 / 4 : 1, nt = n4 / 10 ? n4 / 10 : 1;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	unsetenv("BUMBA_NO_IO_URING");
	rc = bumba_open(NULL, NULL, &b);
	if (rc)
		bench_die("bumba_open: %s (is bumbad running? BUMBA_SOCKET)", strerror(-rc));
	setenv("BUMBA_NO_IO_URING", "1", 1);
	rc = bumba_open(NULL, NULL, &f);
	if (rc)
		bench_die("bumba_open: %s", strerror(-rc));
	fallback = f;
	if (bumba_workspace_root(b, 0, &root))
		bench_die("no workspace");
	if (snprintf(dir, sizeof(dir), "%s/bench-safeio", root) >= (int)sizeof(dir))
		bench_die("workspace path too long");
	mkdir(dir, 0755);
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	buf = malloc(1u << 20);
	if (dirfd_ < 0 || !buf)
		bench_die("setup: %s", strerror(errno));
	memset(buf, 'b', 1u << 20);
	/* Make the fallback handle's state while the switch is on. */
	{
		size_t n;
		char c;
		bumba_safe_read(f, "bench-safeio/none", &c, 1, &n);
	}
	unsetenv("BUMBA_NO_IO_URING");

	struct stat st;
	fstat(dirfd_, &st);
	printf("safe file operations in %s (io_uring here: %s)\n", dir,
	       bumba_io_uring_available() == 1 ? "yes" : "no");

	/* Authority: an EXCLUSIVE territory per handle (b/ and f/). */
	for (int k = 0; k < 2; k++) {
		uint64_t tid;
		const char *d = path_of(k ? "f" : "b");
		mkdir(d, 0755);
		rc = bumba_territory_claim(k ? f : b, "bench", &d, 1, BUMBA_TERRITORY_EXCLUSIVE,
					   &tid, NULL, 0, NULL);
		if (rc)
			bench_die("territory %s: %s", d, strerror(-rc));
	}
	/* Warm-up: directories, the ring, the state directory. */
	for (int i = 0; i < 5; i++) {
		op_write(b, path_of("b/warm"), 4096, BUMBA_WRITE_BACKUP);
		op_write(f, path_of("f/warm"), 4096, BUMBA_WRITE_BACKUP);
		floor_write("floor-4096", 4096, true);
	}

	/* ---- 4 KiB ---- */
	struct series fl, v[6];
	struct bumba *hs[6] = {b, f, b, b, b, b};
	const unsigned flags[6] = {0,
				   0,
				   BUMBA_WRITE_BACKUP,
				   BUMBA_WRITE_VERIFY,
				   BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY,
				   BUMBA_WRITE_NOSYNC};
	const char *names4[6] = {
		"safe write 4 KiB (io_uring)",	      "safe write 4 KiB (fallback, plain syscalls)",
		"safe write 4 KiB + backup",	      "safe write 4 KiB + verify",
		"safe write 4 KiB + backup + verify", "safe write 4 KiB NOSYNC"};
	series_init(&fl, "floor: tmp+write+fdatasync+rename+fsync dir", n4);
	for (int k = 0; k < 6; k++)
		series_init(&v[k], names4[k], n4);
	alternate(n4, 4096, &fl, true, v, hs, flags, 5);
	struct series fln;
	series_init(&fln, "floor without syncs: tmp+write+rename", n4);
	struct series vnf;
	series_init(&vnf, "safe write 4 KiB NOSYNC (fallback)", n4);
	{
		struct series two[2] = {v[5], vnf};
		struct bumba *h2[2] = {b, f};
		const unsigned f2[2] = {BUMBA_WRITE_NOSYNC, BUMBA_WRITE_NOSYNC};
		alternate(n4, 4096, &fln, false, two, h2, f2, 2);
		v[5] = two[0];
		vnf = two[1];
	}

	bench_title("durable safe write, 4 KiB (%zu samples each, alternating with the floor)", n4);
	head();
	row(&fl, NULL, "the target: <= 1.15x");
	for (int k = 0; k < 5; k++)
		row(&v[k], &fl, k < 2 ? "target <= 1.15x" : NULL);
	row(&fln, NULL, NULL);
	row(&v[5], &fln, "atomic, not durable");
	row(&vnf, &fln, NULL);
	anchor("BUMBA safeWrite (backup + verify)", "2 - 8 ms");

	/* ---- 1 MiB ---- */
	struct series fl1m, w[4];
	struct bumba *hs1[4] = {b, f, b, b};
	const unsigned flags1[4] = {0, 0, BUMBA_WRITE_BACKUP, BUMBA_WRITE_VERIFY};
	const char *names1[4] = {"safe write 1 MiB (io_uring)", "safe write 1 MiB (fallback)",
				 "safe write 1 MiB + backup", "safe write 1 MiB + verify"};
	series_init(&fl1m, "floor 1 MiB", n1);
	for (int k = 0; k < 4; k++)
		series_init(&w[k], names1[k], n1);
	alternate(n1, 1u << 20, &fl1m, true, w, hs1, flags1, 4);
	bench_title("durable safe write, 1 MiB (%zu samples each)", n1);
	head();
	row(&fl1m, NULL, NULL);
	for (int k = 0; k < 4; k++)
		row(&w[k], &fl1m, k < 2 ? "target <= 1.15x" : NULL);
	anchor("BUMBA safeWrite (backup + verify)", "2 - 8 ms");

	/* ---- 100 files: one transaction against 100 safe writes ---- */
	struct series tx, sep, flx;
	series_init(&tx, "transaction of 100 x 4 KiB (io_uring)", nt);
	series_init(&sep, "100 separate safe writes of 4 KiB", nt);
	series_init(&flx, "floor: 100 replaces by hand", nt);
	for (size_t r = 0; r < nt; r++) {
		char name[64];
		uint64_t t0 = bench_now_ns();
		for (int i = 0; i < 100; i++) {
			snprintf(name, sizeof(name), "floor-sep-%d", i);
			if ((rc = floor_write(name, 4096, true)))
				bench_die("floor: %s", strerror(-rc));
		}
		flx.ns[flx.n++] = bench_now_ns() - t0;

		t0 = bench_now_ns();
		for (int i = 0; i < 100; i++) {
			snprintf(name, sizeof(name), "b/sep-%d", i);
			if ((rc = op_write(b, path_of(name), 4096, 0)))
				bench_die("safe write: %s", strerror(-rc));
		}
		sep.ns[sep.n++] = bench_now_ns() - t0;

		struct bumba_txn *t;
		t0 = bench_now_ns();
		if ((rc = bumba_txn_begin(b, 0, &t)))
			bench_die("txn: %s", strerror(-rc));
		for (int i = 0; i < 100; i++) {
			snprintf(name, sizeof(name), "b/txn-%d", i);
			buf[0]++;
			if ((rc = bumba_txn_write(t, path_of(name), buf, 4096)))
				bench_die("txn write: %s", strerror(-rc));
		}
		if ((rc = bumba_txn_commit(t)))
			bench_die("commit: %s", strerror(-rc));
		tx.ns[tx.n++] = bench_now_ns() - t0;
	}
	bench_title("100 files of 4 KiB, durable (%zu rounds)", nt);
	head();
	row(&flx, NULL, NULL);
	row(&sep, &flx, NULL);
	row(&tx, &flx, "all or nothing, one commit point");
	printf("  %-44s %9.3f ms per file in the transaction, %.3f ms per separate write\n", "",
	       mean_ms(&tx) / 100, mean_ms(&sep) / 100);
	anchor("BUMBA transaction", "5 - 20 ms");

	bench_title("closing note");
	printf("  floor 4 KiB %.3f ms; bumba %.3f ms (io_uring, %.2fx), %.3f ms (fallback, "
	       "%.2fx);\n"
	       "  with backup+verify %.3f ms (BUMBA: 2-8 ms); 100-file transaction %.2f ms, %.2fx\n"
	       "  faster than 100 safe writes (BUMBA: 5-20 ms per transaction).\n",
	       mean_ms(&fl), mean_ms(&v[0]), mean_ms(&v[0]) / mean_ms(&fl), mean_ms(&v[1]),
	       mean_ms(&v[1]) / mean_ms(&fl), mean_ms(&v[4]), mean_ms(&tx),
	       mean_ms(&sep) / mean_ms(&tx));

	bumba_close(f);
	bumba_close(b);
	return 0;
}
