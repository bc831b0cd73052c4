/* SPDX-License-Identifier: MIT */
/*
 * bumbactl.c - the operator's command line.
 *
 *   bumbactl lock ... PATH -- COMMAND...   run COMMAND holding a bumba lock,
 *                                          the way flock(1) does with a file
 *   bumbactl claim ... PATH... -- COMMAND  the same for a territory
 *   bumbactl territories                   the live territories and their paths
 *   bumbactl status | agents | locks       the live state of the segment
 *   bumbactl watch                         the dashboard, redrawn in place
 *   bumbactl config validate | show        check or print bumba.conf
 *
 * lock registers a short-lived agent (type "Command", name "bumbactl",
 * department "operations"), so its lock is an ordinary bumba lock: other
 * agents see it, wait for it and get its fencing tokens, and bumbad reclaims
 * it if bumbactl dies.
 *
 * The views connect as an observer: the segment is mapped read-only and no
 * agent is registered, so looking never changes what is looked at and never
 * blocks an agent.  What they read is being changed while they read it, by
 * processes we do not trust to be bug free, so: atomics are read with
 * atomic_load, strings are copied into local buffers and terminated here,
 * every count and index is clamped to the capacities in the header, and an
 * agent slot is reported only if its generation and state did not change
 * while it was copied (a slot freed and reused under us is skipped rather
 * than shown half old, half new).
 *
 * Exit codes follow sysexits(3), see docs/man/bumbactl.1.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../supervisor/config.h"
#include "../supervisor/dashboard.h"
#include "bumba.h"
#include "ctl_guard.h"
#include "ctl_safeio.h"
#include "internal.h"
#include "run_common.h"

#define PROG "bumbactl"

/* Options every subcommand accepts. */
struct ctl {
	const char *socket; /* --socket; NULL: BUMBA_SOCKET, then the default */
	const char *config; /* --config; NULL: $BUMBA_CONFIG, then /etc/bumba/bumba.conf */
	bool json;
};

static int ctl_socket(struct ctl *ctl);

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */

static void die_oom(void)
{
	fprintf(stderr, PROG ": out of memory\n");
	exit(EX_OSERR);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die_oom();
	return p;
}

/* Returns arr grown (realloc) to hold at least need elements of size
 * bytes; *cap is the capacity in elements. */
static void *grow(void *arr, size_t *cap, size_t need, size_t size)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return arr;
	ncap = *cap ? *cap : 16;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / size)
			die_oom();
		ncap *= 2;
	}
	p = realloc(arr, ncap * size);
	if (!p)
		die_oom();
	*cap = ncap;
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die_oom();
	return p;
}

/*
 * Copies a fixed-size string field out of the segment.  The source may be
 * rewritten while we copy and need not be terminated: the copy always is.
 */
static void copy_field(char *dst, const char *src, size_t size)
{
	memcpy(dst, src, size);
	dst[size - 1] = '\0';
}

/*
 * Writes s as a JSON string, quotes included.  Valid UTF-8 passes through;
 * '"', '\' and the control characters (C0, DEL, C1) are escaped, the latter
 * as \u00XX; a byte that does not start a valid sequence becomes U+FFFD, so the
 * output is valid JSON whatever garbage the segment holds.
 */
static void json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		size_t n = bumba_utf8_seq(p, SIZE_MAX);

		if (n == 0) {
			fputs("\\ufffd", f);
			p++;
		} else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
			/* C1 controls are valid JSON, but not what a terminal
			 * showing the JSON should be sent raw. */
			fprintf(f, "\\u%04x", p[1]);
			p += 2;
		} else if (n > 1) {
			fwrite(p, 1, n, f);
			p += n;
		} else if (*p == '"' || *p == '\\') {
			fputc('\\', f);
			fputc(*p++, f);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p++);
		} else {
			fputc(*p++, f);
		}
	}
	fputc('"', f);
}

/*
 * Copies s into a fresh string that is safe to print on a terminal: control
 * characters (C0, DEL and the C1 range, which some terminals take as escape
 * sequences) and invalid UTF-8 become '?'.
 */
static char *term_safe(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = xcalloc(strlen(s) + 1, 1), *o = out;

	while (*p) {
		size_t n = bumba_utf8_seq(p, SIZE_MAX);

		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f)) ||
		    (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			*o++ = '?';
			p += n ? n : 1;
			continue;
		}
		memcpy(o, p, n);
		o += n;
		p += n;
	}
	*o = '\0';
	return out;
}

/* Columns a string takes: one per code point (the strings are term_safe). */
static size_t display_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	}
	return w;
}

/* An age or duration for humans: 850ms, 12.3s, 4m05s, 2h07m, 3d04h. */
static const char *fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	else if (ms < 60000)
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "s", ms / 1000, ms % 1000 / 100);
	else if (ms < 3600000)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", ms / 60000, ms % 60000 / 1000);
	else if (ms < 86400000)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", ms / 3600000,
			 ms % 3600000 / 60000);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", ms / 86400000,
			 ms % 86400000 / 3600000);
	return buf;
}

/* Unix ms -> ISO 8601 UTC, with milliseconds when with_ms. */
static const char *fmt_iso(uint64_t ms, bool with_ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	if (!gmtime_r(&t, &tm) || !(n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm))) {
		snprintf(buf, len, "?");
		return buf;
	}
	if (with_ms)
		snprintf(buf + n, len - n, ".%03uZ", (unsigned)(ms % 1000));
	else
		snprintf(buf + n, len - n, "Z");
	return buf;
}

static uint64_t age(uint64_t now, uint64_t then)
{
	/* Clocks read in two processes, or a value torn by a writer: never
	 * print a negative age as a huge one. */
	return now > then ? now - then : 0;
}

static const char *status_name(uint32_t s)
{
	switch (s) {
	case BUMBA_STATUS_IDLE:
		return "idle";
	case BUMBA_STATUS_ACTIVE:
		return "active";
	case BUMBA_STATUS_BUSY:
		return "busy";
	case BUMBA_STATUS_BLOCKED:
		return "blocked";
	}
	return "unknown";
}

/* ---------------------------------------------------------------------
 * Human tables: rows of cells, columns as wide as their widest cell
 * ------------------------------------------------------------------- */

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* nrows * ncols, term_safe copies */
};

static void table_row(struct table *t, ...)
{
	va_list ap;

	t->cells = grow(t->cells, &t->cap, (t->nrows + 1) * t->ncols, sizeof(char *));
	va_start(ap, t);
	for (size_t c = 0; c < t->ncols; c++) {
		const char *s = va_arg(ap, const char *);

		t->cells[t->nrows * t->ncols + c] = term_safe(s ? s : "-");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t, FILE *f)
{
	size_t *w = xcalloc(t->ncols, sizeof(*w));

	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			size_t cw = display_width(t->cells[r * t->ncols + c]);

			if (cw > w[c])
				w[c] = cw;
		}
	}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];

			fputs(s, f);
			if (c + 1 < t->ncols) {
				for (size_t pad = display_width(s); pad < w[c] + 2; pad++)
					fputc(' ', f);
			}
		}
		fputc('\n', f);
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(w);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* ---------------------------------------------------------------------
 * Usage
 * ------------------------------------------------------------------- */

#define LOCK_USAGE                                                                                 \
	"bumbactl lock [--shared] [--timeout MS] [--priority low|normal|high] PATH -- COMMAND..."

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bumbactl [--socket PATH] [--json] COMMAND [ARGS...]\n"
		"\n"
		"Commands:\n"
		"  lock [--shared] [--timeout MS] [--priority low|normal|high] PATH -- COMMAND...\n"
		"              run COMMAND while holding a bumba lock on PATH (like flock(1))\n"
		"  claim [--exclusive|--shared|--monitored] [--title T] PATH... -- COMMAND...\n"
		"              run COMMAND while holding PATHs as one territory (exit 73 and\n"
		"              every conflict on stderr if another agent holds any of them)\n"
		"  status      the dashboard: agents, locks, safety status, supervisor\n"
		"  watch [--interval MS] [--count N]\n"
		"              the dashboard redrawn in place (q or Ctrl-C quits)\n"
		"  agents      one line per registered agent\n"
		"  locks       one line per held or awaited lock\n"
		"  territories one line per live territory, with its paths\n"
		"  audit [--since T] [--file PATH]\n"
		"              the guard's violations: audit log and pinned map (root)\n"
		"  doctor      probe every kernel feature bumba uses\n"
		"  backups [PATH]\n"
		"              the versions safe file operations kept (of PATH, or all)\n"
		"  restore [--at TIME] [--timeout MS] PATH\n"
		"              put back the version PATH had at TIME (default: undo the\n"
		"              last change), itself as a safe write\n"
		"  config validate|show [FILE]\n"
		"              check bumba.conf (FILE:LINE: message per problem), or print\n"
		"              the configuration in effect\n"
		"  help        this text\n"
		"\n"
		"Options (before or after COMMAND):\n"
		"  --socket PATH  the supervisor's socket (default: $BUMBA_SOCKET, then\n"
		"                 $XDG_RUNTIME_DIR/bumba/bumba.sock or /run/bumba/bumba.sock)\n"
		"  --json         machine-readable output\n"
		"  --config FILE  the configuration (default: $BUMBA_CONFIG, then\n"
		"                 /etc/bumba/bumba.conf if it exists)\n"
		"  -h, --help     show this help\n"
		"  -V, --version  show the version\n"
		"\n"
		"Exit status: COMMAND's for lock and claim; 64 usage, 65 bad path or\n"
		"configuration, 69 no supervisor, 73 claim conflict, 78 unusable --config file,\n"
		"75 lock timed out, 126/127 COMMAND not executable/not found.  See bumbactl(1).\n");
}

/* Bad usage: a one-line reason, then a short hint. */
static int usage_error(const char *synopsis, const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (synopsis)
		fprintf(stderr, "Usage: %s\n", synopsis);
	fprintf(stderr, "Try '" PROG " --help' for more information.\n");
	return EX_USAGE;
}

static void version(void)
{
	printf(PROG " %d.%d.%d (segment ABI %d, protocol %d)\n", BUMBA_VERSION_MAJOR,
	       BUMBA_VERSION_MINOR, BUMBA_VERSION_PATCH, BUMBA_ABI_VERSION, BUMBA_PROTO_VERSION);
}

/*
 * The options every subcommand accepts.  Returns 1 if argv[*i] was one, 0
 * if not, or an exit code (> 1) for a bad one.  --help and --version print
 * and exit here: they win over everything else on the line.
 */
static int common_option(struct ctl *ctl, int argc, char **argv, int *i, const char *synopsis)
{
	const char *a = argv[*i], *v;
	int r;

	if (!strcmp(a, "--json")) {
		ctl->json = true;
		return 1;
	}
	if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
		if (synopsis)
			printf("Usage: %s\n", synopsis);
		else
			usage(stdout);
		exit(EX_OK);
	}
	if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
		version();
		exit(EX_OK);
	}
	r = run_opt_value(argc, argv, i, "--socket", &v);
	if (r < 0)
		return usage_error(synopsis, "option '--socket' needs a PATH");
	if (r > 0) {
		if (!*v)
			return usage_error(synopsis, "option '--socket' needs a non-empty PATH");
		ctl->socket = v;
		return 1;
	}
	r = run_opt_value(argc, argv, i, "--config", &v);
	if (r < 0)
		return usage_error(synopsis, "option '--config' needs a FILE");
	if (r > 0) {
		if (!*v)
			return usage_error(synopsis, "option '--config' needs a non-empty FILE");
		ctl->config = v;
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------- */

/* The socket we would talk to, for messages. */
static const char *socket_name(const struct ctl *ctl, char *buf, size_t len)
{
	return run_socket_name(ctl->socket, buf, len);
}

/* Reports a failed bumba_open (which may have tried to join the agent of
 * the environment); returns the exit code. */
static int connect_failed(const struct ctl *ctl, int err)
{
	return run_connect_failed(PROG, ctl->socket, true, err);
}

/* stdout is our output: a write error (full disk, closed pipe) must not
 * pass as success. */
static int finish_output(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": write error: %s\n", strerror(errno));
		return rc ? rc : EX_IOERR;
	}
	return rc;
}

/* ---------------------------------------------------------------------
 * lock
 * ------------------------------------------------------------------- */

/* Says why path is not a lock path: the API folds every reason into
 * -EINVAL, and "outside the workspace" is only useful with the roots. */
static void bad_path(struct bumba *b, const char *path, int err)
{
	const char *root;

	if (err == -ENAMETOOLONG) {
		fprintf(stderr, PROG ": bad lock path %s: too long\n", path);
		return;
	}
	if (!bumba_utf8_valid(path, strlen(path))) {
		char *safe = term_safe(path);

		fprintf(stderr, PROG ": bad lock path %s: not UTF-8 or has control characters\n",
			safe);
		free(safe);
		return;
	}
	fprintf(stderr, PROG ": bad lock path %s: not inside the workspace (", path);
	for (size_t r = 0; bumba_workspace_root(b, r, &root) == 0; r++)
		fprintf(stderr, "%s%s", r ? ", " : "", root);
	fprintf(stderr, ")\n");
}

/* Reports a failed acquire; returns the exit code. */
static int acquire_failed(struct bumba *b, const char *path, int err)
{
	switch (-err) {
	case ETIMEDOUT:
	case EBUSY:
		fprintf(stderr, PROG ": timed out waiting for lock on %s\n", path);
		return EX_TEMPFAIL;
	case EDEADLK:
		fprintf(stderr, PROG ": waiting for the lock on %s would deadlock\n", path);
		return EX_TEMPFAIL;
	case EINVAL:
	case ENAMETOOLONG:
		bad_path(b, path, err);
		return EX_DATAERR;
	case EACCES:
		fprintf(stderr, PROG ": %s lies in another agent's exclusive territory\n", path);
		return EX_NOPERM;
	case ENOSPC:
		fprintf(stderr, PROG ": cannot lock %s: the lock table is full\n", path);
		return EX_TEMPFAIL;
	default:
		fprintf(stderr, PROG ": cannot lock %s: %s\n", path, strerror(-err));
		return EX_SOFTWARE;
	}
}

/* COMMAND of lock and claim (run_common.c): SIGINT, SIGTERM, SIGHUP and
 * SIGQUIT passed on; if bumbactl dies, bumbad reclaims what it held and
 * COMMAND gets SIGTERM. */
static int ctl_run_command(char **cmd)
{
	const struct run_opts o = {
		.prog = PROG,
		.signals = run_signals_basic,
		.n_signals = run_signals_basic_n,
		.pdeathsig = SIGTERM,
	};

	return run_command(&o, cmd);
}

static int cmd_lock(struct ctl *ctl, int argc, char **argv)
{
	struct bumba_agent_info info = {
		.type = "Command",
		.name = "bumbactl",
		.department = "operations",
	};
	enum bumba_mode mode = BUMBA_EXCLUSIVE;
	enum bumba_priority prio = BUMBA_PRIO_NORMAL;
	int timeout_ms = -1, i, rc, status;
	const char *path, *lockpath, *v;
	char abs[PATH_MAX], norm[PATH_MAX], num[32];
	struct bumba_lock lk;
	struct bumba *b;
	char **cmd;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			/* "lock -- PATH -- COMMAND": PATH may start with '-'. */
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		rc = common_option(ctl, argc, argv, &i, LOCK_USAGE);
		if (rc > 1)
			return rc;
		if (rc == 1)
			continue;
		if (!strcmp(a, "--shared")) {
			mode = BUMBA_SHARED;
		} else if (!strcmp(a, "--exclusive")) {
			mode = BUMBA_EXCLUSIVE;
		} else if ((rc = run_opt_value(argc, argv, &i, "--timeout", &v)) != 0) {
			char *end;
			long t;

			if (rc < 0)
				return usage_error(LOCK_USAGE, "option '--timeout' needs MS");
			errno = 0;
			t = strtol(v, &end, 10);
			if (errno || end == v || *end || t < -1 || t > INT_MAX)
				return usage_error(LOCK_USAGE,
						   "bad --timeout '%s': want milliseconds, -1 "
						   "(the supervisor's default) or more",
						   v);
			timeout_ms = (int)t;
		} else if ((rc = run_opt_value(argc, argv, &i, "--priority", &v)) != 0) {
			if (rc < 0)
				return usage_error(LOCK_USAGE, "option '--priority' needs a value");
			if (!strcmp(v, "low"))
				prio = BUMBA_PRIO_LOW;
			else if (!strcmp(v, "normal"))
				prio = BUMBA_PRIO_NORMAL;
			else if (!strcmp(v, "high"))
				prio = BUMBA_PRIO_HIGH;
			else
				return usage_error(LOCK_USAGE,
						   "bad --priority '%s': want low, normal or high",
						   v);
		} else {
			return usage_error(LOCK_USAGE, "unknown option '%s' for lock", a);
		}
	}
	if (i >= argc)
		return usage_error(LOCK_USAGE, "lock: missing PATH");
	path = argv[i++];
	if (!*path)
		return usage_error(LOCK_USAGE, "lock: PATH is empty");
	if (i >= argc || strcmp(argv[i], "--") != 0)
		return usage_error(LOCK_USAGE, "lock: missing '--' between PATH and COMMAND");
	if (++i >= argc)
		return usage_error(LOCK_USAGE, "lock: missing COMMAND after '--'");
	cmd = argv + i;

	rc = ctl_socket(ctl);
	if (rc)
		return rc;
	rc = bumba_open(ctl->socket, &info, &b);
	if (rc < 0)
		return connect_failed(ctl, rc);
	lockpath = run_resolve_path(b, path, abs, sizeof(abs));
	rc = lockpath ? bumba_lock_acquire(b, lockpath, mode, timeout_ms, prio, &lk)
		      : -ENAMETOOLONG;
	if (rc < 0) {
		status = acquire_failed(b, path, rc);
		bumba_close(b);
		return status;
	}
	if (bumba_lock_owner_died(&lk))
		fprintf(stderr, PROG ": warning: the previous holder of %s died holding it\n",
			path);

	/* What COMMAND may want to know: the fencing token to hand to a
	 * storage layer, and whether to check for a half-done job. */
	if (bumba_path_normalize(b, lockpath, norm, sizeof(norm)) >= 0)
		setenv("BUMBA_LOCK_PATH", norm, 1);
	snprintf(num, sizeof(num), "%" PRIu64, lk.fence);
	setenv("BUMBA_LOCK_FENCE", num, 1);
	setenv("BUMBA_LOCK_OWNER_DIED", bumba_lock_owner_died(&lk) ? "1" : "0", 1);
	/* A nested bumbactl or agent in COMMAND talks to the same supervisor. */
	if (ctl->socket)
		setenv("BUMBA_SOCKET", ctl->socket, 1);
	bumba_set_status(b, BUMBA_STATUS_BUSY);

	status = ctl_run_command(cmd);

	rc = bumba_lock_release(b, &lk);
	if (rc < 0)
		/* -ENOLCK: reclaimed while COMMAND ran (we were taken for dead
		 * or hung).  COMMAND's status still goes out, but say that the
		 * exclusion may have been broken. */
		fprintf(stderr, PROG ": warning: releasing the lock on %s: %s\n", path,
			strerror(-rc));
	bumba_close(b);
	return status;
}

/* ---------------------------------------------------------------------
 * claim: lock's twin for a territory
 * ------------------------------------------------------------------- */

#define CLAIM_USAGE                                                                                \
	"bumbactl claim [--exclusive|--shared|--monitored] [--title T] PATH... -- COMMAND..."
#define CLAIM_MAX_CONFLICTS 64

/* Says why path cannot be claimed: the API folds the reasons into -EINVAL
 * and -ENAMETOOLONG without saying which path. */
static void bad_claim_path(struct bumba *b, const char *path, int err)
{
	char *safe = term_safe(path);
	const char *root;

	if (err == -ENAMETOOLONG) {
		fprintf(stderr,
			PROG ": bad claim path %s: too long, or deeper than %d components\n", safe,
			TERR_MAX_DEPTH);
	} else if (!bumba_utf8_valid(path, strlen(path))) {
		fprintf(stderr, PROG ": bad claim path %s: not UTF-8 or has control characters\n",
			safe);
	} else {
		fprintf(stderr, PROG ": bad claim path %s: not inside the workspace (", safe);
		for (size_t r = 0; bumba_workspace_root(b, r, &root) == 0; r++)
			fprintf(stderr, "%s%s", r ? ", " : "", root);
		fprintf(stderr, ")\n");
	}
	free(safe);
}

static bool same_conflict(const struct bumba_conflict *a, const struct bumba_conflict *b)
{
	return a->type == b->type && !strcmp(a->path, b->path) &&
	       !strcmp(a->holder_id, b->holder_id);
}

/*
 * Every conflict on stderr, one a line (the same conflict met through two
 * of our paths is said once); with --json also the list on stdout.
 */
static void print_conflicts(const struct ctl *ctl, struct bumba_conflict *c, size_t total)
{
	size_t got = total < CLAIM_MAX_CONFLICTS ? total : CLAIM_MAX_CONFLICTS, listed = 0;

	for (size_t i = 0; i < got; i++) {
		c[i].path[sizeof(c[i].path) - 1] = '\0';
		c[i].holder_id[sizeof(c[i].holder_id) - 1] = '\0';
	}
	if (ctl->json)
		printf("{\"claimed\":false,\"conflicts\":[");
	for (size_t i = 0; i < got; i++) {
		bool dup = false;

		for (size_t j = 0; j < i && !dup; j++)
			dup = same_conflict(&c[i], &c[j]);
		if (dup)
			continue;
		char *path = term_safe(c[i].path), *holder = term_safe(c[i].holder_id);

		fprintf(stderr, PROG ": conflict: %s held by %s (%s)\n", path,
			holder[0] ? holder : "?", run_territory_type_name(c[i].type));
		free(path);
		free(holder);
		if (ctl->json) {
			printf("%s\n{\"path\":", listed ? "," : "");
			json_str(stdout, c[i].path);
			printf(",\"holder\":");
			json_str(stdout, c[i].holder_id);
			printf(",\"type\":\"%s\"}", run_territory_type_name(c[i].type));
		}
		listed++;
	}
	if (total > got)
		fprintf(stderr, PROG ": \xe2\x80\xa6 and %zu more\n", total - got);
	if (ctl->json)
		printf("%s],\"total\":%zu,\"listed\":%zu}\n", listed ? "\n" : "", total, listed);
}

static int cmd_claim(struct ctl *ctl, int argc, char **argv)
{
	struct bumba_agent_info info = {
		.type = "Command",
		.name = "bumbactl",
		.department = "operations",
	};
	enum bumba_territory_type type = BUMBA_TERRITORY_EXCLUSIVE;
	const char *title = NULL, *v, **paths = NULL;
	char titlebuf[TERR_TITLE], num[32], *abs = NULL;
	struct bumba_conflict *conflicts = NULL;
	size_t n_conflicts = 0;
	uint64_t tid = 0;
	int i, rc, status, first, n_paths;
	struct bumba *b;
	char **cmd;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			/* "claim -- PATH... -- COMMAND": a PATH may start with '-'. */
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		rc = common_option(ctl, argc, argv, &i, CLAIM_USAGE);
		if (rc > 1)
			return rc;
		if (rc == 1)
			continue;
		if (!strcmp(a, "--exclusive")) {
			type = BUMBA_TERRITORY_EXCLUSIVE;
		} else if (!strcmp(a, "--shared")) {
			type = BUMBA_TERRITORY_SHARED;
		} else if (!strcmp(a, "--monitored")) {
			type = BUMBA_TERRITORY_MONITORED;
		} else if ((rc = run_opt_value(argc, argv, &i, "--title", &v)) != 0) {
			if (rc < 0)
				return usage_error(CLAIM_USAGE, "option '--title' needs a value");
			if (strlen(v) >= TERR_TITLE)
				return usage_error(CLAIM_USAGE, "--title is longer than %d bytes",
						   TERR_TITLE - 1);
			if (!bumba_utf8_valid(v, strlen(v)))
				return usage_error(CLAIM_USAGE, "--title must be UTF-8 without "
								"control characters");
			title = v;
		} else {
			return usage_error(CLAIM_USAGE, "unknown option '%s' for claim", a);
		}
	}
	for (first = i; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (!*argv[i])
			return usage_error(CLAIM_USAGE, "claim: a PATH is empty");
	}
	n_paths = i - first;
	if (n_paths == 0)
		return usage_error(CLAIM_USAGE, "claim: missing PATH");
	if (i >= argc)
		return usage_error(CLAIM_USAGE, "claim: missing '--' between PATH and COMMAND");
	if (++i >= argc)
		return usage_error(CLAIM_USAGE, "claim: missing COMMAND after '--'");
	cmd = argv + i;
	if (!title)
		title = run_command_name(cmd[0], titlebuf, sizeof(titlebuf), false);

	rc = ctl_socket(ctl);
	if (rc)
		return rc;
	rc = bumba_open(ctl->socket, &info, &b);
	if (rc < 0)
		return connect_failed(ctl, rc);

	/* Each path as lock reads it; a bad one is named before anything is
	 * claimed. */
	abs = xcalloc((size_t)n_paths, PATH_MAX);
	paths = xcalloc((size_t)n_paths, sizeof(*paths));
	for (int k = 0; k < n_paths; k++) {
		const char *p = argv[first + k];
		uint64_t keys[TERR_MAX_DEPTH + 1];
		char norm[PATH_MAX];
		int len;

		paths[k] = run_resolve_path(b, p, abs + (size_t)k * PATH_MAX, PATH_MAX);
		len = paths[k] ? bumba_path_normalize(b, paths[k], norm, sizeof(norm))
			       : -ENAMETOOLONG;
		if (len >= 0 && bumba_path_prefix_keys(norm, (size_t)len, keys) < 0)
			len = -ENAMETOOLONG;
		if (len < 0) {
			bad_claim_path(b, p, len);
			status = EX_DATAERR;
			goto out;
		}
	}

	conflicts = xcalloc(CLAIM_MAX_CONFLICTS, sizeof(*conflicts));
	rc = bumba_territory_claim(b, title, paths, (size_t)n_paths, type, &tid, conflicts,
				   CLAIM_MAX_CONFLICTS, &n_conflicts);
	switch (-rc) {
	case 0:
		break;
	case EBUSY:
		print_conflicts(ctl, conflicts, n_conflicts);
		status = finish_output(EX_CANTCREAT);
		goto out;
	case EINVAL:
	case ENAMETOOLONG:
		fprintf(stderr, PROG ": cannot claim: %s\n", strerror(-rc));
		status = EX_DATAERR;
		goto out;
	case EACCES:
		fprintf(stderr, PROG ": cannot claim: outside the parent agent's territories\n");
		status = EX_NOPERM;
		goto out;
	case ENOSPC:
		fprintf(stderr, PROG ": cannot claim: the territory table is full\n");
		status = EX_TEMPFAIL;
		goto out;
	default:
		fprintf(stderr, PROG ": cannot claim: %s\n", strerror(-rc));
		status = EX_SOFTWARE;
		goto out;
	}

	/* What COMMAND may want to know. */
	snprintf(num, sizeof(num), "%" PRIu64, tid);
	setenv("BUMBA_TERRITORY_ID", num, 1);
	setenv("BUMBA_TERRITORY_TYPE", run_territory_type_name(type), 1);
	setenv("BUMBA_TERRITORY_OWNER", bumba_agent_id(b), 1);
	if (ctl->socket)
		setenv("BUMBA_SOCKET", ctl->socket, 1);
	bumba_set_status(b, BUMBA_STATUS_BUSY);

	status = ctl_run_command(cmd);

	rc = bumba_territory_release(b, tid);
	if (rc < 0)
		/* -ENOENT: ended while COMMAND ran (timed out, or our agent
		 * was reclaimed): say that the exclusion may have lapsed. */
		fprintf(stderr, PROG ": warning: releasing territory %" PRIu64 ": %s\n", tid,
			strerror(-rc));
out:
	free(conflicts);
	free(paths);
	free(abs);
	bumba_close(b);
	return status;
}

/* ---------------------------------------------------------------------
 * Reading the segment
 * ------------------------------------------------------------------- */

/* Capacities, copied from the header once and checked against the mapping,
 * so that a header rewritten after bumba_seg_map validated it cannot send
 * our loops outside the segment. */
struct limits {
	uint32_t max_agents, holds_per_agent, lock_slots;
};

static bool inside(const struct bumba_seg *seg, const void *begin, uint64_t bytes)
{
	uintptr_t b = (uintptr_t)seg->base, p = (uintptr_t)begin;

	return p >= b && p - b <= seg->size && bytes <= seg->size - (p - b);
}

static int limits_get(const struct bumba_seg *seg, struct limits *l)
{
	const struct seg_header *h = seg->hdr;

	l->max_agents = h->caps.max_agents;
	l->holds_per_agent = h->caps.holds_per_agent;
	l->lock_slots = h->lock_slots;
	if (l->max_agents == 0 || l->max_agents >= LK_OWNER_MASK ||
	    !inside(seg, seg->agents, (uint64_t)l->max_agents * sizeof(struct agent_slot)) ||
	    !inside(seg, seg->holds,
		    (uint64_t)l->max_agents * l->holds_per_agent * sizeof(struct hold)) ||
	    !inside(seg, seg->locks, (uint64_t)l->lock_slots * sizeof(struct lock_entry)) ||
	    !inside(seg, seg->names, (uint64_t)l->lock_slots * BUMBA_LOCK_NAME)) {
		fprintf(stderr, PROG ": the segment's header disagrees with its size\n");
		return EX_PROTOCOL;
	}
	return 0;
}

/* One live agent, copied out of its slot. */
struct agent_row {
	uint32_t slot;
	int32_t pid;
	uint32_t uid, status, parent1, n_caps, waiting, locks_held;
	uint64_t registered_ms, last_activity_ms;
	char id[BUMBA_ID_MAX];
	char type[BUMBA_FIELD_MAX];
	char name[BUMBA_FIELD_MAX];
	char department[BUMBA_FIELD_MAX];
	char caps[BUMBA_MAX_CAPS][BUMBA_FIELD_MAX];
};

/* One active hold: agent slot `agent` holds lock index `lock`. */
struct hold_ref {
	uint32_t lock, agent, count;
	uint8_t mode;
};

struct snapshot {
	struct agent_row *agents; /* by slot, ascending */
	size_t n_agents, cap_agents;
	struct hold_ref *holds; /* sorted by lock, then agent */
	size_t n_holds, cap_holds;
};

/*
 * Copies slot into r and appends its active holds to s->holds.  Returns
 * false, leaving s->n_holds as it was, if the slot is not a live agent or
 * was freed or reused while we copied it.
 */
static bool read_agent(const struct bumba_seg *seg, const struct limits *l, uint32_t slot,
		       struct agent_row *r, struct snapshot *s)
{
	const struct agent_slot *a = &seg->agents[slot];
	const struct hold *h = &seg->holds[(size_t)slot * l->holds_per_agent];
	size_t mark = s->n_holds;
	uint32_t gen;

	gen = atomic_load_explicit(&a->gen, memory_order_acquire);
	if (atomic_load_explicit(&a->state, memory_order_acquire) != AGENT_LIVE)
		return false;
	r->slot = slot;
	r->pid = a->pid;
	r->uid = a->uid;
	r->registered_ms = a->registered_ms;
	r->parent1 = a->parent1;
	r->n_caps = a->n_caps < BUMBA_MAX_CAPS ? a->n_caps : BUMBA_MAX_CAPS;
	r->last_activity_ms = atomic_load_explicit(&a->last_activity_ms, memory_order_relaxed);
	r->status = atomic_load_explicit(&a->status, memory_order_relaxed);
	r->waiting = atomic_load_explicit(&a->n_waiting, memory_order_relaxed);
	if (r->waiting > BUMBA_AGENT_WAITS)
		r->waiting = BUMBA_AGENT_WAITS;
	copy_field(r->id, a->id, sizeof(r->id));
	copy_field(r->type, a->type, sizeof(r->type));
	copy_field(r->name, a->name, sizeof(r->name));
	copy_field(r->department, a->department, sizeof(r->department));
	for (uint32_t c = 0; c < r->n_caps; c++)
		copy_field(r->caps[c], a->caps[c], sizeof(r->caps[c]));

	r->locks_held = 0;
	for (uint32_t j = 0; j < l->holds_per_agent; j++) {
		uint32_t lock1 = atomic_load_explicit(&h[j].lock1, memory_order_acquire);

		if (lock1 == 0 || lock1 > l->lock_slots ||
		    atomic_load_explicit(&h[j].state, memory_order_acquire) != HOLD_ACTIVE)
			continue;
		s->holds = grow(s->holds, &s->cap_holds, s->n_holds + 1, sizeof(*s->holds));
		s->holds[s->n_holds++] = (struct hold_ref){
			.lock = lock1 - 1,
			.agent = slot,
			.count = atomic_load_explicit(&h[j].count, memory_order_relaxed),
			.mode = h[j].mode,
		};
		r->locks_held++;
	}

	/* Seqlock-style check: a slot reclaimed (generation bumped) or closing
	 * while we read it is skipped, holds included. */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&a->state, memory_order_relaxed) != AGENT_LIVE ||
	    atomic_load_explicit(&a->gen, memory_order_relaxed) != gen || !r->id[0]) {
		s->n_holds = mark;
		return false;
	}
	return true;
}

static int hold_cmp(const void *pa, const void *pb)
{
	const struct hold_ref *a = pa, *b = pb;

	if (a->lock != b->lock)
		return a->lock < b->lock ? -1 : 1;
	return a->agent < b->agent ? -1 : a->agent > b->agent;
}

static void snapshot_take(const struct bumba_seg *seg, const struct limits *l, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (uint32_t slot = 0; slot < l->max_agents; slot++) {
		/* Cheap test first: most slots of a large table are free. */
		if (atomic_load_explicit(&seg->agents[slot].state, memory_order_relaxed) !=
		    AGENT_LIVE)
			continue;
		s->agents = grow(s->agents, &s->cap_agents, s->n_agents + 1, sizeof(*s->agents));
		if (read_agent(seg, l, slot, &s->agents[s->n_agents], s))
			s->n_agents++;
	}
	if (s->n_holds > 1)
		qsort(s->holds, s->n_holds, sizeof(*s->holds), hold_cmp);
}

static void snapshot_free(struct snapshot *s)
{
	free(s->agents);
	free(s->holds);
	memset(s, 0, sizeof(*s));
}

static const struct agent_row *snapshot_agent(const struct snapshot *s, uint32_t slot)
{
	size_t lo = 0, hi = s->n_agents;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->agents[mid].slot == slot)
			return &s->agents[mid];
		if (s->agents[mid].slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* First hold on lock, or s->n_holds. */
static size_t snapshot_holds_of(const struct snapshot *s, uint32_t lock)
{
	size_t lo = 0, hi = s->n_holds;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->holds[mid].lock < lock)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Connects as an observer; returns 0 or an exit code. */
static int observe(struct ctl *ctl, struct bumba_seg *seg, struct limits *l)
{
	int rc = ctl_socket(ctl);

	if (rc)
		return rc;
	rc = bumba_observe(ctl->socket, seg);
	if (rc < 0)
		return run_connect_failed(PROG, ctl->socket, false, rc); /* never joins */
	rc = limits_get(seg, l);
	if (rc)
		bumba_seg_unmap(seg);
	return rc;
}

/* Options of the views: only the common ones. */
static int view_options(struct ctl *ctl, int argc, char **argv, const char *synopsis)
{
	for (int i = 1; i < argc; i++) {
		int rc = common_option(ctl, argc, argv, &i, synopsis);

		if (rc > 1)
			return rc;
		if (rc == 0) {
			if (argv[i][0] == '-')
				return usage_error(synopsis, "unknown option '%s' for %s", argv[i],
						   argv[0]);
			return usage_error(synopsis, "%s takes no argument ('%s')", argv[0],
					   argv[i]);
		}
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * Configuration: bumba.conf gives the dashboard its thresholds and
 * refresh interval, and the socket when neither --socket nor BUMBA_SOCKET
 * does.
 * ------------------------------------------------------------------- */

struct config_tally {
	FILE *out; /* NULL: count only */
	int errors, warnings;
};

static void config_report(void *ctx, bool error, const char *msg)
{
	struct config_tally *t = ctx;

	if (error)
		t->errors++;
	else
		t->warnings++;
	if (t->out)
		fprintf(t->out, "%s\n", msg);
}

/*
 * The configuration bumbactl reads: --config FILE, else $BUMBA_CONFIG,
 * else /etc/bumba/bumba.conf if it exists, with the environment on top.
 * A file named by --config must be good (EX_CONFIG otherwise, with the
 * reasons); a bad default file only earns one warning, and the built-in
 * defaults stand in for its bad keys.  Loaded once.
 */
static int ctl_config(struct ctl *ctl, const struct bumba_config **out)
{
	static struct bumba_config cfg;
	static bool loaded;
	static int rc;

	if (!loaded) {
		struct config_tally t = {.out = ctl->config ? stderr : NULL};

		loaded = true;
		bumba_config_load(&cfg, ctl->config, config_report, &t);
		if (t.errors && ctl->config) {
			fprintf(stderr, PROG ": %s: %d configuration error%s\n", ctl->config,
				t.errors, t.errors == 1 ? "" : "s");
			rc = EX_CONFIG;
		} else if (t.errors) {
			fprintf(stderr,
				PROG ": warning: the configuration (%s) has %d error%s; see '" PROG
				     " config validate'\n",
				cfg.path[0] ? cfg.path : "environment", t.errors,
				t.errors == 1 ? "" : "s");
		}
	}
	*out = &cfg;
	return rc;
}

/* --socket, else BUMBA_SOCKET or supervisor.socket (the configuration has
 * the environment on top), else the library's default. */
static int ctl_socket(struct ctl *ctl)
{
	const struct bumba_config *c;
	int rc;

	if (ctl->socket)
		return 0;
	rc = ctl_config(ctl, &c);
	if (rc == 0 && c->socket[0])
		ctl->socket = c->socket;
	return rc;
}

static int ctl_thresholds(struct ctl *ctl, struct bumba_dash_thresholds *t)
{
	const struct bumba_config *c;
	int rc = ctl_config(ctl, &c);

	bumba_dash_thresholds_default(t);
	t->conflict_rate = c->thr_conflict_rate;
	t->lock_wait_ms = c->thr_lock_wait_ms;
	t->terr_failures = c->thr_terr_failures;
	t->inactive_timeout_ms = c->inactive_timeout_ms;
	return rc;
}

/* ---------------------------------------------------------------------
 * status: the seed's dashboard (dashboard.c, shared with bumbad's
 * /dashboard/status, so both always say the same)
 * ------------------------------------------------------------------- */

static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	const char *synopsis = "bumbactl status [--json]";
	struct bumba_dash_thresholds thr;
	struct bumba_dash dash;
	struct bumba_seg seg;
	struct limits l;
	int rc;

	if ((rc = view_options(ctl, argc, argv, synopsis)) || (rc = ctl_thresholds(ctl, &thr)) ||
	    (rc = observe(ctl, &seg, &l)))
		return rc;
	if (bumba_dash_collect(&seg, &thr, &dash) < 0)
		die_oom();
	if (ctl->json) {
		char *j = bumba_dash_status_json(&dash);

		if (!j)
			die_oom();
		fputs(j, stdout);
		free(j);
	} else {
		bumba_dash_print(&dash, stdout);
	}
	bumba_dash_free(&dash);
	bumba_seg_unmap(&seg);
	return finish_output(0);
}

/* ---------------------------------------------------------------------
 * watch: the dashboard redrawn in place
 * ------------------------------------------------------------------- */

#define WATCH_USAGE "bumbactl watch [--interval MS] [--count N] [--json]"

static volatile sig_atomic_t watch_stop;
static struct termios watch_saved;
static bool watch_raw;

static void watch_signal(int sig)
{
	(void)sig;
	watch_stop = 1;
}

static void watch_restore(void)
{
	if (watch_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &watch_saved);
		watch_raw = false;
	}
}

/* One frame into a string: the dashboard, or why there is none. */
static char *watch_frame(struct ctl *ctl, const struct bumba_dash_thresholds *thr, long interval,
			 bool human)
{
	char *buf = NULL, sockbuf[PATH_MAX], when[64];
	size_t len = 0;
	struct bumba_seg seg;
	struct bumba_dash dash;
	FILE *f = open_memstream(&buf, &len);
	int rc;

	if (!f)
		die_oom();
	rc = bumba_observe(ctl->socket, &seg);
	if (human)
		fprintf(f, "bumba dashboard - every %.1fs - %s - q to quit\n\n",
			(double)interval / 1000.0,
			fmt_iso(bumba_wall_ms(), false, when, sizeof(when)));
	if (rc < 0) {
		const char *sock = socket_name(ctl, sockbuf, sizeof(sockbuf));

		if (human) {
			char *safe = term_safe(sock);

			fprintf(f, "no supervisor answers on %s: %s\n(retrying)\n", safe,
				strerror(-rc));
			free(safe);
		} else {
			fprintf(f, "{\"error\":");
			json_str(f, strerror(-rc));
			fprintf(f, ",\"socket\":");
			json_str(f, sock);
			fprintf(f, "}\n");
		}
	} else {
		if (bumba_dash_collect(&seg, thr, &dash) < 0)
			die_oom();
		if (human) {
			bumba_dash_print(&dash, f);
		} else {
			char *j = bumba_dash_status_json(&dash);

			if (!j)
				die_oom();
			fputs(j, f);
			free(j);
		}
		bumba_dash_free(&dash);
		bumba_seg_unmap(&seg);
	}
	if (fclose(f) != 0)
		die_oom();
	return buf;
}

/* Draws frame over the previous one: home, each line then clear to its
 * end, then clear below. */
static void watch_draw(const char *frame)
{
	fputs("\033[H", stdout);
	for (const char *p = frame; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		fwrite(p, 1, n, stdout);
		fputs("\033[K\n", stdout);
		p += n + (nl ? 1 : 0);
	}
	fputs("\033[J", stdout);
}

static int cmd_watch(struct ctl *ctl, int argc, char **argv)
{
	struct bumba_dash_thresholds thr;
	struct sigaction sa, old_int, old_term, old_hup;
	const struct bumba_config *c;
	long interval = -1, count = -1;
	bool tty, keys;
	const char *v;
	int rc;

	for (int i = 1; i < argc; i++) {
		char *end;
		long *dst;

		rc = common_option(ctl, argc, argv, &i, WATCH_USAGE);
		if (rc > 1)
			return rc;
		if (rc == 1)
			continue;
		if ((rc = run_opt_value(argc, argv, &i, "--interval", &v)) != 0)
			dst = &interval;
		else if ((rc = run_opt_value(argc, argv, &i, "--count", &v)) != 0)
			dst = &count;
		else
			return usage_error(WATCH_USAGE, "unknown argument '%s' for watch", argv[i]);
		if (rc < 0)
			return usage_error(WATCH_USAGE, "option '%s' needs a number", argv[i]);
		errno = 0;
		*dst = strtol(v, &end, 10);
		if (errno || end == v || *end || *dst < (dst == &interval ? 100 : 1) ||
		    *dst > 3600000)
			return usage_error(WATCH_USAGE,
					   "bad number '%s' (--interval: 100..3600000 ms, "
					   "--count: 1 or more)",
					   v);
	}
	if ((rc = ctl_thresholds(ctl, &thr)) || (rc = ctl_socket(ctl)) ||
	    (rc = ctl_config(ctl, &c)))
		return rc;
	if (interval < 0)
		interval = (long)c->refresh_interval_ms;

	tty = !ctl->json && isatty(STDOUT_FILENO);
	keys = tty && isatty(STDIN_FILENO);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = watch_signal; /* no SA_RESTART: poll returns at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	if (keys && tcgetattr(STDIN_FILENO, &watch_saved) == 0) {
		struct termios raw = watch_saved;

		/* Keys one at a time, not echoed; Ctrl-C still signals. */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
			watch_raw = true;
			atexit(watch_restore);
		}
	}
	if (tty)
		fputs("\033[?25l\033[H\033[2J", stdout); /* hide the cursor, clear */

	for (long n = 0; !watch_stop; n++) {
		char *frame = watch_frame(ctl, &thr, interval, !ctl->json);
		uint64_t end;

		if (tty)
			watch_draw(frame);
		else
			fputs(frame, stdout);
		if (!tty && !ctl->json)
			fputc('\n', stdout);
		free(frame);
		if (fflush(stdout) != 0)
			break;
		if (count > 0 && n + 1 >= count)
			break;
		end = bumba_now_ns() + (uint64_t)interval * 1000000ull;
		while (!watch_stop) {
			uint64_t now = bumba_now_ns();
			struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
			char ch[64];
			ssize_t got;

			if (now >= end)
				break;
			if (poll(&p, keys ? 1 : 0, (int)((end - now + 999999) / 1000000)) <= 0)
				continue;
			got = read(STDIN_FILENO, ch, sizeof(ch));
			if (got <= 0) {
				keys = false; /* end of input: only the clock and signals */
				continue;
			}
			for (ssize_t k = 0; k < got; k++) {
				if (ch[k] == 'q' || ch[k] == 'Q' || ch[k] == 3 /* ^C, raw */)
					watch_stop = 1;
			}
		}
	}
	if (tty)
		fputs("\033[?25h", stdout); /* the cursor back, below the frame */
	watch_restore();
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	return finish_output(0);
}

/* ---------------------------------------------------------------------
 * config validate | show
 * ------------------------------------------------------------------- */

#define CONFIG_USAGE "bumbactl config validate|show [FILE]"

static int cmd_config(struct ctl *ctl, int argc, char **argv)
{
	struct config_tally t = {.out = stdout};
	struct bumba_config *cfg;
	const char *sub = NULL, *file = NULL, *env;
	bool show;
	int rc;

	for (int i = 1; i < argc; i++) {
		rc = common_option(ctl, argc, argv, &i, CONFIG_USAGE);
		if (rc > 1)
			return rc;
		if (rc == 1)
			continue;
		if (argv[i][0] == '-' && argv[i][1])
			return usage_error(CONFIG_USAGE, "unknown option '%s' for config", argv[i]);
		if (!sub)
			sub = argv[i];
		else if (!file)
			file = argv[i];
		else
			return usage_error(CONFIG_USAGE, "config takes one FILE ('%s')", argv[i]);
	}
	if (!sub)
		return usage_error(CONFIG_USAGE, "config: missing 'validate' or 'show'");
	if (strcmp(sub, "validate") && strcmp(sub, "show"))
		return usage_error(CONFIG_USAGE, "config: unknown subcommand '%s'", sub);
	show = !strcmp(sub, "show");
	if (!file)
		file = ctl->config;
	env = getenv("BUMBA_CONFIG");
	if (!file && env && *env)
		file = env;
	if (!file && access(BUMBA_CONFIG_DEFAULT_PATH, F_OK) == 0)
		file = BUMBA_CONFIG_DEFAULT_PATH;

	cfg = xcalloc(1, sizeof(*cfg));
	bumba_config_defaults(cfg);
	if (show)
		t.out = stderr; /* the configuration is the output */
	if (file) {
		rc = bumba_config_load_file(cfg, file, config_report, &t);
		if (rc < 0) {
			fprintf(stderr, PROG ": %s: %s\n", file, strerror(-rc));
			free(cfg);
			return EX_NOINPUT;
		}
	}
	bumba_config_apply_env(cfg, config_report, &t);
	bumba_config_check(cfg, config_report, &t);
	if (!show)
		bumba_config_pending(cfg, config_report, &t);
	if (show)
		bumba_config_print(cfg, stdout);
	else if (!t.errors)
		printf("%s: ok\n", file ? file : "built-in defaults (no configuration file)");
	else
		printf("%s: %d error%s\n", file ? file : "environment", t.errors,
		       t.errors == 1 ? "" : "s");
	free(cfg);
	rc = finish_output(t.errors ? EX_DATAERR : EX_OK);
	return rc;
}

/* ---------------------------------------------------------------------
 * agents
 * ------------------------------------------------------------------- */

static int row_cmp(const void *pa, const void *pb)
{
	const struct agent_row *a = pa, *b = pb;

	if (a->registered_ms != b->registered_ms)
		return a->registered_ms < b->registered_ms ? -1 : 1;
	return a->slot < b->slot ? -1 : a->slot > b->slot;
}

static int cmd_agents(struct ctl *ctl, int argc, char **argv)
{
	const char *synopsis = "bumbactl agents [--json]";
	struct agent_row *sorted;
	struct bumba_seg seg;
	struct snapshot s;
	struct limits l;
	uint64_t wall;
	int rc;

	if ((rc = view_options(ctl, argc, argv, synopsis)) || (rc = observe(ctl, &seg, &l)))
		return rc;
	snapshot_take(&seg, &l, &s);
	wall = bumba_wall_ms();

	/* Parents are resolved by slot, so sort a copy for display. */
	sorted = xcalloc(s.n_agents, sizeof(*sorted));
	if (s.n_agents)
		memcpy(sorted, s.agents, s.n_agents * sizeof(*sorted));
	qsort(sorted, s.n_agents, sizeof(*sorted), row_cmp);

	if (ctl->json) {
		printf("[");
		for (size_t i = 0; i < s.n_agents; i++) {
			const struct agent_row *r = &sorted[i];
			const struct agent_row *p =
				r->parent1 ? snapshot_agent(&s, r->parent1 - 1) : NULL;
			char iso[64];

			printf("%s\n{\"id\":", i ? "," : "");
			json_str(stdout, r->id);
			printf(",\"type\":");
			json_str(stdout, r->type);
			printf(",\"name\":");
			json_str(stdout, r->name);
			printf(",\"department\":");
			json_str(stdout, r->department);
			printf(",\"status\":\"%s\",\"pid\":%" PRId32 ",\"uid\":%" PRIu32,
			       status_name(r->status), r->pid, r->uid);
			printf(",\"registered_at\":\"%s\",\"registered_ms\":%" PRIu64,
			       fmt_iso(r->registered_ms, true, iso, sizeof(iso)), r->registered_ms);
			printf(",\"last_activity_ms\":%" PRIu64 ",\"idle_ms\":%" PRIu64,
			       r->last_activity_ms, age(wall, r->last_activity_ms));
			printf(",\"locks_held\":%" PRIu32 ",\"waiting\":%" PRIu32, r->locks_held,
			       r->waiting);
			printf(",\"capabilities\":[");
			for (uint32_t c = 0; c < r->n_caps; c++) {
				if (c)
					putchar(',');
				json_str(stdout, r->caps[c]);
			}
			printf("],\"parent\":");
			if (p)
				json_str(stdout, p->id);
			else
				printf("null");
			printf("}");
		}
		printf("%s]\n", s.n_agents ? "\n" : "");
	} else {
		struct table t = {.ncols = 9};

		table_row(&t, "ID", "TYPE", "DEPARTMENT", "STATUS", "PID", "UID", "REGISTERED",
			  "IDLE", "LOCKS");
		for (size_t i = 0; i < s.n_agents; i++) {
			const struct agent_row *r = &sorted[i];
			char pid[16], uid[16], iso[64], idle[32], locks[16];

			snprintf(pid, sizeof(pid), "%" PRId32, r->pid);
			snprintf(uid, sizeof(uid), "%" PRIu32, r->uid);
			snprintf(locks, sizeof(locks), "%" PRIu32, r->locks_held);
			table_row(&t, r->id, r->type, r->department, status_name(r->status), pid,
				  uid, fmt_iso(r->registered_ms, false, iso, sizeof(iso)),
				  fmt_ms(age(wall, r->last_activity_ms), idle, sizeof(idle)),
				  locks);
		}
		table_print(&t, stdout);
	}
	free(sorted);
	snapshot_free(&s);
	bumba_seg_unmap(&seg);
	return finish_output(0);
}

/* ---------------------------------------------------------------------
 * locks
 * ------------------------------------------------------------------- */

struct lock_row {
	struct bumba_lock_view v;
	char owner[BUMBA_ID_MAX]; /* exclusive owner's id, "" if none */
	const char *mode;	  /* NULL: not held (only waited for) */
	uint64_t held_ms;
	bool held;
};

static int lock_row_cmp(const void *pa, const void *pb)
{
	const struct lock_row *a = pa, *b = pb;

	return strcmp(a->v.path, b->v.path);
}

/* The holder of r, or the number of sharers and those found in the hold
 * tables, ", "-joined. */
static char *holders_text(const struct snapshot *s, const struct lock_row *r)
{
	size_t len = 32, k, o = 0;
	const char *sep = "";
	char *out;

	if (r->owner[0])
		return xstrdup(r->owner);
	for (k = snapshot_holds_of(s, r->v.index); k < s->n_holds && s->holds[k].lock == r->v.index;
	     k++) {
		const struct agent_row *a = snapshot_agent(s, s->holds[k].agent);

		if (a)
			len += strlen(a->id) + 2;
	}
	out = xcalloc(len, 1);
	if (r->v.shared)
		o = (size_t)snprintf(out, 32, "%" PRIu32 ": ", r->v.shared);
	for (k = snapshot_holds_of(s, r->v.index); k < s->n_holds && s->holds[k].lock == r->v.index;
	     k++) {
		const struct agent_row *a = snapshot_agent(s, s->holds[k].agent);

		if (!a)
			continue;
		o += (size_t)snprintf(out + o, len - o, "%s%s", sep, a->id);
		sep = ", ";
	}
	return out;
}

static int cmd_locks(struct ctl *ctl, int argc, char **argv)
{
	const char *synopsis = "bumbactl locks [--json]";
	struct lock_row *rows = NULL;
	size_t n = 0, cap = 0;
	struct bumba_seg seg;
	struct snapshot s;
	struct limits l;
	uint64_t now;
	int rc;

	if ((rc = view_options(ctl, argc, argv, synopsis)) || (rc = observe(ctl, &seg, &l)))
		return rc;
	/* Agents and holds first, so sharers can be named; a lock taken after
	 * this shows its count but may miss a name. */
	snapshot_take(&seg, &l, &s);
	for (uint32_t i = 0; i < l.lock_slots; i++) {
		struct lock_row *r;

		rows = grow(rows, &cap, n + 1, sizeof(*rows));
		r = &rows[n];
		memset(r, 0, sizeof(*r));
		if (!bumba_locks_view(&seg, i, &r->v))
			continue;
		r->v.index = i;
		r->v.path[sizeof(r->v.path) - 1] = '\0';
		if (r->v.shared > l.max_agents)
			r->v.shared = l.max_agents;
		if (r->v.owner1 > l.max_agents)
			r->v.owner1 = 0;
		if (r->v.owner1) {
			r->mode = "exclusive";
			copy_field(r->owner, seg.agents[r->v.owner1 - 1].id, sizeof(r->owner));
			if (!r->owner[0])
				snprintf(r->owner, sizeof(r->owner), "?");
		} else if (r->v.shared) {
			r->mode = "shared";
		}
		r->held = r->mode != NULL;
		n++;
	}
	now = bumba_now_ns();
	for (size_t i = 0; i < n; i++) {
		struct lock_row *r = &rows[i];

		if (r->held && r->v.acquired_ns)
			r->held_ms = age(now, r->v.acquired_ns) / 1000000;
	}
	if (n > 1)
		qsort(rows, n, sizeof(*rows), lock_row_cmp);

	if (ctl->json) {
		printf("[");
		for (size_t i = 0; i < n; i++) {
			const struct lock_row *r = &rows[i];
			size_t k, listed = 0;

			printf("%s\n{\"path\":", i ? "," : "");
			json_str(stdout, r->v.path);
			printf(",\"mode\":");
			if (r->mode)
				printf("\"%s\"", r->mode);
			else
				printf("null");
			printf(",\"holders\":[");
			if (r->owner[0]) {
				json_str(stdout, r->owner);
				listed = 1;
			} else {
				for (k = snapshot_holds_of(&s, r->v.index);
				     k < s.n_holds && s.holds[k].lock == r->v.index; k++) {
					const struct agent_row *a =
						snapshot_agent(&s, s.holds[k].agent);

					if (!a)
						continue;
					if (listed++)
						putchar(',');
					json_str(stdout, a->id);
				}
			}
			printf("],\"holder_count\":%" PRIu32,
			       r->owner[0]
				       ? 1
				       : (r->v.shared > listed ? r->v.shared : (uint32_t)listed));
			printf(",\"fence\":%" PRIu64 ",\"waiters\":%" PRIu32 ",\"held_ms\":",
			       r->v.fence, r->v.nwaiters);
			if (r->held)
				printf("%" PRIu64, r->held_ms);
			else
				printf("null");
			printf(",\"owner_died\":%s}", r->v.owner_died ? "true" : "false");
		}
		printf("%s]\n", n ? "\n" : "");
	} else {
		struct table t = {.ncols = 7};

		table_row(&t, "PATH", "MODE", "FENCE", "WAITERS", "HELD", "OWNER-DIED", "HOLDERS");
		for (size_t i = 0; i < n; i++) {
			const struct lock_row *r = &rows[i];
			char fence[32], waiters[16], held[32];
			char *holders = holders_text(&s, r);

			snprintf(fence, sizeof(fence), "%" PRIu64, r->v.fence);
			snprintf(waiters, sizeof(waiters), "%" PRIu32, r->v.nwaiters);
			table_row(&t, r->v.path, r->mode ? r->mode : "-", fence, waiters,
				  r->held ? fmt_ms(r->held_ms, held, sizeof(held)) : "-",
				  r->v.owner_died ? "yes" : "no", holders[0] ? holders : "-");
			free(holders);
		}
		table_print(&t, stdout);
	}
	free(rows);
	snapshot_free(&s);
	bumba_seg_unmap(&seg);
	return finish_output(0);
}

/* ---------------------------------------------------------------------
 * territories
 * ------------------------------------------------------------------- */

/* One LIVE territory, copied out of its record, with its claimed paths. */
struct terr_row {
	uint32_t index, n_paths;
	uint8_t type;
	uint64_t id, created_ms, created_ns, expires_ns, claim_ns, conflicts, writes;
	char owner[BUMBA_ID_MAX];
	char title[TERR_TITLE];
	char **paths;
	size_t np, cap;
};

static int terr_row_cmp(const void *pa, const void *pb)
{
	const struct terr_row *a = pa, *b = pb;

	return a->id < b->id ? -1 : a->id > b->id;
}

static int str_cmp(const void *pa, const void *pb)
{
	return strcmp(*(char *const *)pa, *(char *const *)pb);
}

/*
 * Copies territory record ti into r.  false if it is not LIVE, or was
 * ended, freed or reused while we copied it (its id changes with every
 * reuse and it leaves LIVE before it is touched).
 */
static bool read_territory(const struct bumba_seg *seg, const struct limits *l, uint32_t ti,
			   struct terr_row *r)
{
	const struct territory *t = &seg->terrs[ti];
	uint32_t owner1;

	r->id = atomic_load_explicit(&t->id, memory_order_acquire);
	if (atomic_load_explicit(&t->state, memory_order_acquire) != TERR_LIVE || !r->id)
		return false;
	r->index = ti;
	r->type = t->type;
	r->created_ms = t->created_ms;
	r->created_ns = t->created_ns;
	r->claim_ns = t->claim_ns;
	r->expires_ns = atomic_load_explicit(&t->expires_ns, memory_order_relaxed);
	r->n_paths = atomic_load_explicit(&t->n_paths, memory_order_relaxed);
	r->conflicts = atomic_load_explicit(&t->conflicts_met, memory_order_relaxed);
	r->writes = atomic_load_explicit(&t->writes_seen, memory_order_relaxed);
	copy_field(r->title, t->title, sizeof(r->title));
	owner1 = t->owner1;
	if (owner1 && owner1 <= l->max_agents)
		copy_field(r->owner, seg->agents[owner1 - 1].id, sizeof(r->owner));
	if (!r->owner[0])
		snprintf(r->owner, sizeof(r->owner), "?");
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&t->state, memory_order_relaxed) == TERR_LIVE &&
	       atomic_load_explicit(&t->id, memory_order_relaxed) == r->id;
}

static int cmd_territories(struct ctl *ctl, int argc, char **argv)
{
	const char *synopsis = "bumbactl territories [--json]";
	struct terr_row *rows = NULL;
	size_t n = 0, cap = 0;
	uint32_t max_t, hwm, slots, tlong;
	int32_t *row_of = NULL;
	struct bumba_seg seg;
	struct limits l;
	uint64_t now;
	char buf[PATH_MAX];
	int rc;

	if ((rc = view_options(ctl, argc, argv, synopsis)) || (rc = observe(ctl, &seg, &l)))
		return rc;
	max_t = seg.hdr->caps.max_territories;
	hwm = seg.hdr->terr_hwm;
	slots = seg.hdr->tpath_slots;
	tlong = seg.hdr->tlong_slots;
	if (hwm > max_t)
		hwm = max_t;
	if (!inside(&seg, seg.terrs, (uint64_t)max_t * sizeof(struct territory)) ||
	    !inside(&seg, seg.tpaths, (uint64_t)slots * sizeof(struct tpath)) ||
	    !inside(&seg, seg.tlong, (uint64_t)tlong * PATH_MAX)) {
		fprintf(stderr, PROG ": the segment's header disagrees with its size\n");
		bumba_seg_unmap(&seg);
		return EX_PROTOCOL;
	}

	row_of = xcalloc(hwm ? hwm : 1, sizeof(*row_of));
	for (uint32_t ti = 0; ti < hwm; ti++) {
		row_of[ti] = -1;
		if (atomic_load_explicit(&seg.terrs[ti].state, memory_order_relaxed) != TERR_LIVE)
			continue;
		rows = grow(rows, &cap, n + 1, sizeof(*rows));
		memset(&rows[n], 0, sizeof(rows[n]));
		if (read_territory(&seg, &l, ti, &rows[n]))
			row_of[ti] = (int32_t)n++;
	}
	/* The paths: every path record naming a territory we copied, by index
	 * and id (a free record has tid 0, one of an earlier territory in that
	 * record another id), and still the same record after its path was
	 * read (its tid is re-read: 0 while it is freed or refilled). */
	if (slots > seg.hdr->tpath_hwm)
		slots = seg.hdr->tpath_hwm;
	for (uint32_t i = 0; i < slots && n; i++) {
		const struct tpath *tp = &seg.tpaths[i];
		uint64_t tid = atomic_load_explicit(&tp->tid, memory_order_acquire);
		uint32_t ti = atomic_load_explicit(&tp->terr, memory_order_relaxed);
		struct terr_row *r;

		if (!tid || ti >= hwm || row_of[ti] < 0)
			continue;
		r = &rows[row_of[ti]];
		if (tid != r->id)
			continue;
		bumba_tpath_string(&seg, i, buf, sizeof(buf));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&tp->tid, memory_order_relaxed) != tid)
			continue;
		r->paths = grow(r->paths, &r->cap, r->np + 1, sizeof(*r->paths));
		r->paths[r->np++] = xstrdup(buf);
	}
	now = bumba_now_ns();
	if (n > 1)
		qsort(rows, n, sizeof(*rows), terr_row_cmp);
	for (size_t k = 0; k < n; k++) {
		if (rows[k].np > 1)
			qsort(rows[k].paths, rows[k].np, sizeof(char *), str_cmp);
	}

	if (ctl->json) {
		printf("[");
		for (size_t k = 0; k < n; k++) {
			const struct terr_row *r = &rows[k];
			char iso[64];

			printf("%s\n{\"id\":%" PRIu64 ",\"type\":\"%s\",\"owner\":", k ? "," : "",
			       r->id, run_territory_type_name(r->type));
			json_str(stdout, r->owner);
			printf(",\"title\":");
			json_str(stdout, r->title);
			printf(",\"n_paths\":%" PRIu32 ",\"paths\":[", r->n_paths);
			for (size_t p = 0; p < r->np; p++) {
				if (p)
					putchar(',');
				json_str(stdout, r->paths[p]);
			}
			printf("],\"created_at\":\"%s\",\"created_ms\":%" PRIu64,
			       fmt_iso(r->created_ms, true, iso, sizeof(iso)), r->created_ms);
			printf(",\"age_ms\":%" PRIu64 ",\"claim_ns\":%" PRIu64,
			       age(now, r->created_ns) / 1000000, r->claim_ns);
			printf(",\"conflicts_met\":%" PRIu64 ",\"writes_seen\":%" PRIu64,
			       r->conflicts, r->writes);
			printf(",\"expires_in_ms\":");
			if (r->expires_ns)
				printf("%" PRIu64, age(r->expires_ns, now) / 1000000);
			else
				printf("null");
			printf("}");
		}
		printf("%s]\n", n ? "\n" : "");
	} else {
		struct table t = {.ncols = 9};

		table_row(&t, "ID", "TYPE", "OWNER", "TITLE", "PATHS", "AGE", "CONFLICTS", "WRITES",
			  "CLAIMED");
		for (size_t k = 0; k < n; k++) {
			const struct terr_row *r = &rows[k];
			char id[32], np[16], ag[32], conf[32], wr[32];
			size_t len = 1;
			char *list, *o;

			for (size_t p = 0; p < r->np; p++)
				len += strlen(r->paths[p]) + 1;
			list = o = xcalloc(len, 1);
			for (size_t p = 0; p < r->np; p++)
				o += sprintf(o, "%s%s", p ? "," : "", r->paths[p]);
			snprintf(id, sizeof(id), "%" PRIu64, r->id);
			snprintf(np, sizeof(np), "%" PRIu32, r->n_paths);
			snprintf(conf, sizeof(conf), "%" PRIu64, r->conflicts);
			snprintf(wr, sizeof(wr), "%" PRIu64, r->writes);
			table_row(&t, id, run_territory_type_name(r->type), r->owner,
				  r->title[0] ? r->title : NULL, np,
				  fmt_ms(age(now, r->created_ns) / 1000000, ag, sizeof(ag)), conf,
				  wr, list[0] ? list : NULL);
			free(list);
		}
		table_print(&t, stdout);
	}
	for (size_t k = 0; k < n; k++) {
		for (size_t p = 0; p < rows[k].np; p++)
			free(rows[k].paths[p]);
		free(rows[k].paths);
	}
	free(rows);
	free(row_of);
	bumba_seg_unmap(&seg);
	return finish_output(0);
}

/* ---------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct ctl ctl = {.socket = NULL, .config = NULL, .json = false};
	const char *cmd;
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		rc = common_option(&ctl, argc, argv, &i, NULL);
		if (rc > 1)
			return rc;
		if (rc == 0)
			return usage_error(NULL, "unknown option '%s'", argv[i]);
	}
	if (i >= argc)
		return usage_error(NULL, "missing COMMAND");
	cmd = argv[i];
	argc -= i;
	argv += i;
	if (!strcmp(cmd, "lock"))
		return cmd_lock(&ctl, argc, argv);
	if (!strcmp(cmd, "claim"))
		return cmd_claim(&ctl, argc, argv);
	if (!strcmp(cmd, "territories"))
		return cmd_territories(&ctl, argc, argv);
	if (!strcmp(cmd, "status"))
		return cmd_status(&ctl, argc, argv);
	if (!strcmp(cmd, "watch"))
		return cmd_watch(&ctl, argc, argv);
	if (!strcmp(cmd, "config"))
		return cmd_config(&ctl, argc, argv);
	if (!strcmp(cmd, "agents"))
		return cmd_agents(&ctl, argc, argv);
	if (!strcmp(cmd, "audit"))
		return bumba_ctl_audit(ctl.json, ctl.config, argc, argv);
	if (!strcmp(cmd, "doctor"))
		return bumba_ctl_doctor(ctl.json, ctl.config, argc, argv);
	if (!strcmp(cmd, "backups") || !strcmp(cmd, "restore")) {
		rc = ctl_socket(&ctl); /* --socket given after COMMAND wins inside */
		if (rc)
			return rc;
		return (!strcmp(cmd, "backups") ? bumba_ctl_backups : bumba_ctl_restore)(
			ctl.json, ctl.socket, argc, argv);
	}
	if (!strcmp(cmd, "locks"))
		return cmd_locks(&ctl, argc, argv);
	if (!strcmp(cmd, "help")) {
		usage(stdout);
		return finish_output(EX_OK);
	}
	return usage_error(NULL, "unknown command '%s'", cmd);
}
