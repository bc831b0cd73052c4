/* SPDX-License-Identifier: MIT */
/*
 * bench_guard.c - what the eBPF guard costs, and how fast it reports.
 *
 *   A. write(2) of 64 bytes in a loop (an lseek back every 1024 writes), to
 *      a file outside the workspace and to one inside, with no supervisor
 *      at all and then with bumbad's guard loaded: the overhead for files
 *      the guard does not watch (target <= 5%), and the cost of a watched
 *      write, by the lock holder (sanctioned) and by a process that holds
 *      nothing (every write a violation).
 *   B. Event-to-report latency: a violating write, then the time until its
 *      line is in the audit log (watched with inotify), p50/p99 (target
 *      p99 <= 50 ms); beside it bumbad's own figure (kernel timestamp to
 *      the line written, the latency_us of each line).
 *
 * Standalone: it starts its own bumbad (with the guard, a private socket,
 * workspace and audit log), so bench/run.sh's shared --no-guard bumbad is
 * not involved.  Needs root; without it, or without the guard, it says so
 * and exits 0.
 *
 * Environment: BUMBAD (default: bumbad next to this binary's directory),
 * BENCH_MS (default 300) per cell, BENCH_GUARD_SAMPLES (default 300)
 * latency samples, BENCH_DIR (default a new directory under /tmp).
 * Usage: bench_guard [--quick]   (--quick: 100 ms cells, 100 samples)
 */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "bench.h"
#include "bumba.h"

static char dir[PATH_MAX], ws[PATH_MAX + 8], out[PATH_MAX + 8], audit[PATH_MAX + 16],
	sock[PATH_MAX + 16], logpath[PATH_MAX + 16];
static pid_t bumbad_pid;
static int *lat_fd; /* opened before the guard: the write is the only event */
static char buf[64] = "bumba bench_guard write loop .........................\n";

static char big[4096];

struct wctx {
	int fd;
	unsigned n;
	size_t len;
};

static int op_write(void *arg)
{
	struct wctx *c = arg;
	const char *p = c->len > sizeof(buf) ? big : buf;

	if (write(c->fd, p, c->len) != (ssize_t)c->len)
		return errno ? errno : EIO;
	if (++c->n % (c->len > sizeof(buf) ? 16 : 1024) == 0)
		lseek(c->fd, 0, SEEK_SET);
	return 0;
}

/* Best of 5: the run least disturbed by the rest of the machine. */
static double loop_len(const char *path, unsigned ms, size_t len)
{
	struct wctx c = {.fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644), .len = len};
	struct bench_run r;

	if (c.fd < 0)
		bench_die("open %s: %s", path, strerror(errno));
	r = bench_best_of(5, ms, op_write, &c);
	close(c.fd);
	if (r.err)
		bench_die("write %s: %s", path, strerror(r.err));
	return bench_ns_per_op(&r);
}

static double loop_ns(const char *path, unsigned ms)
{
	return loop_len(path, ms, sizeof(buf));
}

static double min2(double a, double b)
{
	return a < b ? a : b;
}

static bool log_has(const char *what)
{
	char line[1024];
	FILE *f = fopen(logpath, "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	fclose(f);
	return found;
}

static int start_bumbad(const char *bumbad, char *why, size_t cap)
{
	unlink(logpath);
	bumbad_pid = fork();
	if (bumbad_pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (bumbad_pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		setenv("BUMBA_MONITORING_AUDITLOG", audit, 1);
		execl(bumbad, bumbad, "--foreground", "--socket", sock, "--workspace", ws, "--http",
		      "off", "--keeper-linger", "1", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 400; i++) {
		if (log_has("ready:"))
			break;
		if (waitpid(bumbad_pid, NULL, WNOHANG) == bumbad_pid) {
			snprintf(why, cap, "bumbad exited at start (see %.300s)", logpath);
			bumbad_pid = 0;
			return -1;
		}
		bench_sleep_ns(25000000);
	}
	if (!log_has("guard active")) {
		snprintf(why, cap, "the guard did not load (see %.300s)", logpath);
		return -1;
	}
	return 0;
}

static void stop_bumbad(void)
{
	if (bumbad_pid <= 0)
		return;
	kill(bumbad_pid, SIGTERM);
	waitpid(bumbad_pid, NULL, 0);
	bumbad_pid = 0;
}

/* B: one violating write to a new file per sample, and the wait for its
 * line; returns the samples taken. */
static size_t latency(size_t want, uint64_t *e2e, uint64_t *inner)
{
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	int afd = open(audit, O_RDONLY | O_CLOEXEC);
	static char chunk[1 << 16];
	char *acc = NULL;
	size_t acc_len = 0, got = 0, ni = 0;

	if (in < 0 || afd < 0 || inotify_add_watch(in, audit, IN_MODIFY) < 0)
		bench_die("inotify on %s: %s", audit, strerror(errno));
	lseek(afd, 0, SEEK_END);
	for (size_t i = 0; i < want; i++) {
		char key[96];
		uint64_t t0, deadline;
		int fd = lat_fd[i];

		snprintf(key, sizeof(key), "\"path\":\"lat/%zu\"", i);
		t0 = bench_now_ns();
		if (write(fd, "x", 1) != 1)
			bench_die("write: %s", strerror(errno));
		deadline = t0 + 2000000000ull;
		for (bool seen = false; !seen;) {
			struct pollfd p = {.fd = in, .events = POLLIN};
			char ev[4096];
			ssize_t n;

			if (bench_now_ns() > deadline) {
				fprintf(stderr, "bench: no audit line for lat/%zu within 2 s\n", i);
				break;
			}
			poll(&p, 1, 100);
			while (read(in, ev, sizeof(ev)) > 0)
				;
			while ((n = read(afd, chunk, sizeof(chunk))) > 0) {
				acc = realloc(acc, acc_len + (size_t)n + 1);
				memcpy(acc + acc_len, chunk, (size_t)n);
				acc_len += (size_t)n;
				acc[acc_len] = '\0';
			}
			char *hit = acc ? strstr(acc, key) : NULL;
			if (hit) {
				uint64_t now = bench_now_ns();
				char *line = hit, *lu;
				while (line > acc && line[-1] != '\n')
					line--;
				e2e[got++] = now - t0;
				lu = strstr(line, "\"latency_us\":");
				if (lu)
					inner[ni++] = (uint64_t)(strtod(lu + 13, NULL) * 1000.0);
				seen = true;
				acc_len = 0; /* one file per sample: the rest is not needed */
			}
		}
		close(fd);
		bench_sleep_ns(2000000); /* 2 ms apart: independent samples */
	}
	free(acc);
	close(in);
	close(afd);
	bench_sort_u64(e2e, got);
	bench_sort_u64(inner, ni);
	return got < ni ? got : ni;
}

static void lost_events(char *note, size_t cap)
{
	char line[1024];
	FILE *f = fopen(logpath, "re");

	snprintf(note, cap, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "guard: stopped (");
		if (p) {
			p[strcspn(p, "\n")] = '\0';
			snprintf(note, cap, "%s", p + 15);
		}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	char bumbad[PATH_MAX], why[512], self[PATH_MAX], p_out[PATH_MAX + 32], p_in[PATH_MAX + 32],
		p_held[PATH_MAX + 32];
	unsigned ms = getenv("BENCH_MS") ? (unsigned)atoi(getenv("BENCH_MS")) : 300;
	size_t samples =
		getenv("BENCH_GUARD_SAMPLES") ? (size_t)atoi(getenv("BENCH_GUARD_SAMPLES")) : 300;
	double base_out, base_in, base_4k, g_out, g_4k, g_in_viol, g_in_held;

	if (argc > 1 && !strcmp(argv[1], "--quick")) {
		ms = 100;
		samples = 100;
	}
	if (!ms)
		ms = 300;
	bench_title("The eBPF guard: write(2) overhead and event-to-report latency");
	if (geteuid() != 0) {
		bench_row_text("guard", "skipped: loading the guard needs root");
		return 0;
	}
	if (getenv("BUMBAD")) {
		snprintf(bumbad, sizeof(bumbad), "%s", getenv("BUMBAD"));
	} else {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			bench_die("readlink /proc/self/exe");
		self[n] = '\0';
		snprintf(bumbad, sizeof(bumbad), "%s/../bumbad", dirname(self));
	}
	if (access(bumbad, X_OK) < 0) {
		bench_row_text("guard", "skipped: %s not found (set BUMBAD)", bumbad);
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/guard.XXXXXX",
		 getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp");
	if (getenv("BENCH_DIR"))
		mkdir(getenv("BENCH_DIR"), 0755);
	if (!mkdtemp(dir))
		bench_die("mkdtemp %s: %s", dir, strerror(errno));
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(audit, sizeof(audit), "%s/audit.log", dir);
	snprintf(sock, sizeof(sock), "%s/bumba.sock", dir);
	snprintf(logpath, sizeof(logpath), "%s/bumbad.log", dir);
	snprintf(p_out, sizeof(p_out), "%s/file", out);
	snprintf(p_in, sizeof(p_in), "%s/deep/er/file", ws);
	snprintf(p_held, sizeof(p_held), "%s/deep/er/held", ws);
	mkdir(ws, 0755);
	mkdir(out, 0755);
	{
		char d[PATH_MAX + 32];
		snprintf(d, sizeof(d), "%s/deep", ws);
		mkdir(d, 0755);
		snprintf(d, sizeof(d), "%s/deep/er", ws);
		mkdir(d, 0755);
		snprintf(d, sizeof(d), "%s/lat", ws);
		mkdir(d, 0755);
		for (size_t i = 0; i < samples; i++) {
			char f[PATH_MAX + 48];
			snprintf(f, sizeof(f), "%s/lat/%zu", ws, i);
			if (!lat_fd)
				lat_fd = calloc(samples, sizeof(int));
			lat_fd[i] = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (lat_fd[i] < 0)
				bench_die("open %s: %s", f, strerror(errno));
		}
	}
	printf("  files: %s (outside) and %s (inside, 3 levels down), same filesystem\n", out, ws);

	/* A. without any supervisor */
	memset(big, 'b', sizeof(big));
	base_out = loop_ns(p_out, ms);
	base_4k = loop_len(p_out, ms, sizeof(big));
	base_in = loop_ns(p_in, ms);
	loop_ns(p_held, 20);

	if (start_bumbad(bumbad, why, sizeof(why)) < 0) {
		bench_table_head("note");
		bench_row("write(2) 64 B, no guard", base_out, 0, NULL);
		bench_row_text("guard", "skipped: %s", why);
		stop_bumbad();
		return 0;
	}
	g_out = loop_ns(p_out, ms);
	g_4k = loop_len(p_out, ms, sizeof(big));
	g_in_viol = loop_ns(p_in, ms);

	/* The holder: a registered agent with an exclusive lock. */
	struct bumba *b = NULL;
	struct bumba_lock lk;
	int rc = bumba_open(sock, NULL, &b);
	if (rc == 0)
		rc = bumba_lock_acquire(b, p_held, BUMBA_EXCLUSIVE, 5000, BUMBA_PRIO_NORMAL, &lk);
	if (rc < 0)
		bench_die("agent and lock: %s", strerror(-rc));
	g_in_held = loop_ns(p_held, ms);
	bumba_lock_release(b, &lk);
	bumba_close(b);

	/* B. latency (after the flood has been drained) */
	bench_sleep_ns(300000000);
	uint64_t *e2e = calloc(samples, sizeof(uint64_t)),
		 *inner = calloc(samples, sizeof(uint64_t));
	size_t n = latency(samples, e2e, inner);
	stop_bumbad();

	char lost[256];
	lost_events(lost, sizeof(lost));

	/* The baselines again, now that the guard is gone: the better of the
	 * two runs (the machine may have been busier during one). */
	base_out = min2(base_out, loop_ns(p_out, ms));
	base_4k = min2(base_4k, loop_len(p_out, ms, sizeof(big)));
	base_in = min2(base_in, loop_ns(p_in, ms));

	bench_title("A. write(2), 64 bytes unless said (best of 5 x %u ms; baselines: the better "
		    "of before and after)",
		    ms);
	bench_table_head("note");
	bench_row("outside the workspace, no guard", base_out, 0, "baseline");
	bench_row("outside the workspace, guard loaded", g_out, 0, "%+.1f%% (target <= 5%%)",
		  100.0 * (g_out - base_out) / base_out);
	bench_row("outside, 4 KiB writes, no guard", base_4k, 0, "baseline");
	bench_row("outside, 4 KiB writes, guard loaded", g_4k, 0, "%+.1f%%",
		  100.0 * (g_4k - base_4k) / base_4k);
	bench_row("inside, no guard", base_in, 0, "baseline");
	bench_row("inside, guard, lock holder (sanctioned)", g_in_held, 0, "%+.1f%%",
		  100.0 * (g_in_held - base_in) / base_in);
	bench_row("inside, guard, no lock (all violations)", g_in_viol, 0, "%+.1f%%",
		  100.0 * (g_in_viol - base_in) / base_in);
	printf("  guard totals: %s\n", lost);

	bench_title("B. Event-to-report latency (%zu violating writes, 2 ms apart)", n);
	bench_lat_head();
	bench_lat_row("write(2) -> line in the audit log", e2e, n, 0, "target p99 <= 50 ms");
	bench_lat_row("kernel timestamp -> line written (bumbad)", inner, n, 0, "latency_us");

	bench_title("Targets");
	printf("  unmanaged write overhead %+.1f%% for 64 B, %+.1f%% for 4 KiB (target <= 5%%): "
	       "%s\n",
	       100.0 * (g_out - base_out) / base_out, 100.0 * (g_4k - base_4k) / base_4k,
	       g_out <= base_out * 1.05 ? "met" : "NOT met");
	printf("  event-to-report p99 %.2f ms (target <= 50 ms): %s\n",
	       (double)bench_pct(e2e, n, 99) / 1e6,
	       n && bench_pct(e2e, n, 99) <= 50000000ull ? "met" : "NOT met");
	free(e2e);
	free(inner);
	if (!getenv("BENCH_KEEP")) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench: could not remove %s\n", dir);
	}
	return 0;
}
