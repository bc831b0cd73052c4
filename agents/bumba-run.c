/* SPDX-License-Identifier: MIT */
/*
 * bumba-run.c - runs any command as one registered bumba agent.
 *
 *   bumba-run [--type T] [--name N] [--department D] [--capability C]...
 *             [--exclusive PATH]... [--shared PATH]... [--monitored PATH]...
 *             [--title T] [--socket PATH] [--timeout MS] -- COMMAND...
 *
 * Registers one agent, claims its territories all or nothing (one territory
 * per type; on any conflict everything claimed so far is released, every
 * conflict is printed and COMMAND is not run: exit 73), then runs COMMAND
 * with BUMBA_AGENT_ID, BUMBA_AGENT_FD and BUMBA_SOCKET in its environment,
 * so that every process of COMMAND's tree is that agent: the guard charges
 * their writes to it (the kernel's agent map follows fork), and a program
 * linking libbumba-shm joins the agent instead of registering its own (see
 * "Joining" in shm/bumba.h).
 *
 * The agent's liveness is bumba-run's own pid: bumbad watches the process
 * that registered.  So bumba-run stays, waits for COMMAND and exits with its
 * status, releasing everything; if bumba-run is killed (even SIGKILL),
 * bumbad reclaims everything within milliseconds and COMMAND gets SIGTERM
 * (PR_SET_PDEATHSIG): it must not go on believing it holds what it no
 * longer holds.  Descendants that outlive COMMAND or bumba-run are no longer
 * the agent: their joined handles fail cleanly (-ENOLINK).
 *
 * COMMAND stays in bumba-run's process group, so job control and the
 * terminal behave as without bumba-run (an interactive agent CLI can read
 * its terminal); a signal the terminal sent to the group is not passed on a
 * second time.  SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and
 * SIGWINCH sent to bumba-run itself are passed on to COMMAND.
 *
 * Exit codes follow sysexits(3) like bumbactl's; see docs/man/bumba-run.1.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "bumba.h"
#include "internal.h"
#include "run_common.h"

#define PROG "bumba-run"
#define USAGE                                                                                      \
	PROG " [--type T] [--name N] [--department D] [--capability C]...\n"                       \
	     "                 [--exclusive PATH]... [--shared PATH]... [--monitored PATH]...\n"   \
	     "                 [--title T] [--socket PATH] [--timeout MS] -- COMMAND..."
#define MAX_CONFLICTS 64
#define N_TYPES	      3

/* The claims, one territory per type, in the order they are made. */
struct claim {
	enum bumba_territory_type type;
	const char **args;  /* as given */
	const char **paths; /* as claimed (relative ones against the cwd) */
	char *buf;	    /* storage of resolved paths */
	size_t n, cap;
	uint64_t tid; /* 0: not claimed */
};

struct run {
	struct bumba_agent_info info;
	const char *caps[BUMBA_MAX_CAPS];
	struct claim claims[N_TYPES];
	const char *title;
	const char *socket;
	long timeout_ms; /* how long conflicts may take to clear; 0: fail at once */
	char **cmd;
};

static const int run_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " USAGE "\n"
		"\n"
		"Runs COMMAND, and every process it starts, as one registered bumba agent\n"
		"holding the given territories; a program in COMMAND's tree that links\n"
		"libbumba-shm joins that agent.  Everything is released when COMMAND exits.\n"
		"\n"
		"Options:\n"
		"  --type T           agent type (default Agent; no '-')\n"
		"  --name N           agent name (default: COMMAND's name; no '-')\n"
		"  --department D     department (default general)\n"
		"  --capability C     a capability, repeatable (at most %d)\n"
		"  --exclusive PATH   claim PATH (a directory: its subtree) EXCLUSIVE\n"
		"  --shared PATH      claim PATH SHARED (read-only for everyone)\n"
		"  --monitored PATH   claim PATH MONITORED (writes allowed, logged)\n"
		"  --title T          the territories' title (default: COMMAND's name)\n"
		"  --socket PATH      the supervisor's socket (default: $BUMBA_SOCKET, then\n"
		"                     $XDG_RUNTIME_DIR/bumba/bumba.sock or /run/bumba/bumba.sock)\n"
		"  --timeout MS       wait up to MS for conflicting claims to clear (default 0)\n"
		"  -h, --help         show this help\n"
		"  -V, --version      show the version\n"
		"\n"
		"COMMAND's environment: BUMBA_AGENT_ID, BUMBA_AGENT_FD (the descriptor to\n"
		"join with), BUMBA_SOCKET.  BUMBA_NO_JOIN=1 makes its programs register\n"
		"agents of their own.\n"
		"\n"
		"Exit status: COMMAND's (128+N if killed by signal N); 64 usage, 65 bad path,\n"
		"69 no supervisor, 73 claim conflict, 75 agent or territory table full,\n"
		"77 not allowed, 126/127 COMMAND not executable/not found.  See bumba-run(1).\n",
		BUMBA_MAX_CAPS);
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fprintf(stderr, "Usage: " USAGE "\nTry '" PROG " --help' for more information.\n");
	return EX_USAGE;
}

static void die_oom(void)
{
	fprintf(stderr, PROG ": out of memory\n");
	exit(EX_OSERR);
}

static void claim_add(struct claim *c, const char *path)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 4;
		const char **a = realloc(c->args, cap * sizeof(*a));
		if (!a)
			die_oom();
		c->args = a;
		c->cap = cap;
	}
	c->args[c->n++] = path;
}

/* A metadata field as the registry takes it: a bad one is bad usage, said
 * here rather than as an -EINVAL from the supervisor. */
static int check_field(const char *opt, const char *v, bool no_dash)
{
	size_t n = strlen(v);

	if (n == 0 || n >= BUMBA_FIELD_MAX)
		return usage_error("%s must be 1 to %d bytes", opt, BUMBA_FIELD_MAX - 1);
	if (!bumba_utf8_valid(v, n))
		return usage_error("%s must be UTF-8 without control characters", opt);
	if (no_dash && strchr(v, '-'))
		return usage_error(
			"%s may not contain '-' (it separates the parts of the agent id)", opt);
	return 0;
}

static int parse(struct run *r, int argc, char **argv)
{
	const char *v;
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(EX_OK);
		}
		if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf(PROG " %d.%d.%d (segment ABI %d, protocol %d)\n",
			       BUMBA_VERSION_MAJOR, BUMBA_VERSION_MINOR, BUMBA_VERSION_PATCH,
			       BUMBA_ABI_VERSION, BUMBA_PROTO_VERSION);
			exit(EX_OK);
		}
		if ((rc = run_opt_value(argc, argv, &i, "--type", &v)) != 0) {
			if (rc < 0)
				return usage_error("option '--type' needs a value");
			if ((rc = check_field("--type", v, true)))
				return rc;
			r->info.type = v;
		} else if ((rc = run_opt_value(argc, argv, &i, "--name", &v)) != 0) {
			if (rc < 0)
				return usage_error("option '--name' needs a value");
			if ((rc = check_field("--name", v, true)))
				return rc;
			r->info.name = v;
		} else if ((rc = run_opt_value(argc, argv, &i, "--department", &v)) != 0) {
			if (rc < 0)
				return usage_error("option '--department' needs a value");
			if ((rc = check_field("--department", v, false)))
				return rc;
			r->info.department = v;
		} else if ((rc = run_opt_value(argc, argv, &i, "--capability", &v)) != 0) {
			if (rc < 0)
				return usage_error("option '--capability' needs a value");
			if ((rc = check_field("--capability", v, false)))
				return rc;
			if (r->info.n_capabilities >= BUMBA_MAX_CAPS)
				return usage_error("at most %d capabilities", BUMBA_MAX_CAPS);
			r->caps[r->info.n_capabilities++] = v;
		} else if ((rc = run_opt_value(argc, argv, &i, "--exclusive", &v)) != 0 ||
			   (rc = run_opt_value(argc, argv, &i, "--shared", &v)) != 0 ||
			   (rc = run_opt_value(argc, argv, &i, "--monitored", &v)) != 0) {
			enum bumba_territory_type t = a[2] == 'e'   ? BUMBA_TERRITORY_EXCLUSIVE
						      : a[2] == 's' ? BUMBA_TERRITORY_SHARED
								    : BUMBA_TERRITORY_MONITORED;
			if (rc < 0 || !*v)
				return usage_error("option '--%s' needs a PATH",
						   run_territory_type_name(t));
			claim_add(&r->claims[t], v);
		} else if ((rc = run_opt_value(argc, argv, &i, "--title", &v)) != 0) {
			if (rc < 0)
				return usage_error("option '--title' needs a value");
			if (strlen(v) >= TERR_TITLE)
				return usage_error("--title is longer than %d bytes",
						   TERR_TITLE - 1);
			if (!bumba_utf8_valid(v, strlen(v)))
				return usage_error(
					"--title must be UTF-8 without control characters");
			r->title = v;
		} else if ((rc = run_opt_value(argc, argv, &i, "--socket", &v)) != 0) {
			if (rc < 0 || !*v)
				return usage_error("option '--socket' needs a PATH");
			r->socket = v;
		} else if ((rc = run_opt_value(argc, argv, &i, "--timeout", &v)) != 0) {
			char *end;

			if (rc < 0)
				return usage_error("option '--timeout' needs MS");
			errno = 0;
			r->timeout_ms = strtol(v, &end, 10);
			if (errno || end == v || *end || r->timeout_ms < 0 ||
			    r->timeout_ms > INT_MAX)
				return usage_error(
					"bad --timeout '%s': want milliseconds, 0 or more", v);
		} else if (a[0] == '-') {
			return usage_error("unknown option '%s'", a);
		} else {
			return usage_error("missing '--' before COMMAND ('%s')", a);
		}
	}
	if (i >= argc)
		return usage_error("missing COMMAND after '--'");
	r->cmd = argv + i;
	if (r->info.n_capabilities)
		r->info.capabilities = r->caps;
	return 0;
}

/* Terminal-safe copy for messages: control characters as '?'. */
static void say_path(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

/* Resolves and checks every path before anything is claimed, so that a
 * bad one is named (the API folds every reason into -EINVAL).  Returns 0
 * or an exit code. */
static int resolve_claims(struct run *r, struct bumba *b)
{
	for (int t = 0; t < N_TYPES; t++) {
		struct claim *c = &r->claims[t];

		c->type = (enum bumba_territory_type)t;
		if (!c->n)
			continue;
		c->buf = calloc(c->n, PATH_MAX);
		c->paths = calloc(c->n, sizeof(*c->paths));
		if (!c->buf || !c->paths)
			die_oom();
		for (size_t k = 0; k < c->n; k++) {
			uint64_t keys[TERR_MAX_DEPTH + 1];
			char norm[PATH_MAX];
			const char *root;
			int len;

			c->paths[k] =
				run_resolve_path(b, c->args[k], c->buf + k * PATH_MAX, PATH_MAX);
			len = c->paths[k] ? bumba_path_normalize(b, c->paths[k], norm, sizeof(norm))
					  : -ENAMETOOLONG;
			if (len >= 0 && bumba_path_prefix_keys(norm, (size_t)len, keys) < 0)
				len = -ENAMETOOLONG;
			if (len >= 0)
				continue;
			fputs(PROG ": bad claim path ", stderr);
			say_path(stderr, c->args[k]);
			if (len == -ENAMETOOLONG) {
				fprintf(stderr, ": too long, or deeper than %d components\n",
					TERR_MAX_DEPTH);
			} else if (!bumba_utf8_valid(c->args[k], strlen(c->args[k]))) {
				fputs(": not UTF-8 or has control characters\n", stderr);
			} else {
				fputs(": not inside the workspace (", stderr);
				for (size_t i = 0; bumba_workspace_root(b, i, &root) == 0; i++)
					fprintf(stderr, "%s%s", i ? ", " : "", root);
				fputs(")\n", stderr);
			}
			return EX_DATAERR;
		}
	}
	return 0;
}

static void release_claims(struct run *r, struct bumba *b, bool warn)
{
	for (int t = 0; t < N_TYPES; t++) {
		struct claim *c = &r->claims[t];
		int rc;

		if (!c->tid)
			continue;
		rc = bumba_territory_release(b, c->tid);
		/* -ENOENT: ended while COMMAND ran (a territory timeout, or our
		 * agent reclaimed): the exclusion may have lapsed. */
		if (rc < 0 && warn)
			fprintf(stderr,
				PROG ": warning: releasing the %s territory %" PRIu64 ": %s\n",
				run_territory_type_name(c->type), c->tid, strerror(-rc));
		c->tid = 0;
	}
}

static bool same_conflict(const struct bumba_conflict *a, const struct bumba_conflict *b)
{
	return a->type == b->type && !strcmp(a->path, b->path) &&
	       !strcmp(a->holder_id, b->holder_id);
}

/* Every conflict on stderr, one a line: the same one met by two of our
 * types is said once. */
static void print_conflicts(struct bumba_conflict *c, size_t got, size_t more)
{
	for (size_t i = 0; i < got; i++) {
		bool dup = false;

		for (size_t j = 0; j < i && !dup; j++)
			dup = same_conflict(&c[i], &c[j]);
		if (dup)
			continue;
		fputs(PROG ": conflict: ", stderr);
		say_path(stderr, c[i].path);
		fputs(" held by ", stderr);
		say_path(stderr, c[i].holder_id[0] ? c[i].holder_id : "?");
		fprintf(stderr, " (%s)\n", run_territory_type_name(c[i].type));
	}
	if (more)
		fprintf(stderr, PROG ": \xe2\x80\xa6 and %zu more\n", more);
}

/* One attempt at every claim.  0: all claimed.  -EBUSY: conflicts (what was
 * claimed is released again, the conflicts are in c[0..*got), *more beyond
 * that).  Else the first other error, with nothing claimed. */
static int claim_all(struct run *r, struct bumba *b, struct bumba_conflict *c, size_t *got,
		     size_t *more)
{
	int first_err = 0;

	*got = *more = 0;
	for (int t = 0; t < N_TYPES; t++) {
		struct claim *cl = &r->claims[t];
		size_t n = 0;
		int rc;

		if (!cl->n)
			continue;
		rc = bumba_territory_claim(b, r->title, cl->paths, cl->n, cl->type, &cl->tid,
					   c + *got, MAX_CONFLICTS - *got, &n);
		if (rc == -EBUSY) {
			/* Go on with the other types: every conflict is
			 * reported, not just the first type's. */
			size_t kept = n < MAX_CONFLICTS - *got ? n : MAX_CONFLICTS - *got;
			*got += kept;
			*more += n - kept;
			cl->tid = 0;
			if (!first_err)
				first_err = rc;
		} else if (rc < 0) {
			cl->tid = 0;
			first_err = rc;
			break;
		}
	}
	if (first_err)
		release_claims(r, b, false);
	return first_err;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Claims everything, retrying conflicts until --timeout; 0 or an exit
 * code. */
static int claim(struct run *r, struct bumba *b)
{
	struct bumba_conflict *c = calloc(MAX_CONFLICTS, sizeof(*c));
	uint64_t deadline = now_ms() + (uint64_t)r->timeout_ms;
	unsigned pause_ms = 10;
	size_t got, more;
	int rc;

	if (!c)
		die_oom();
	for (;;) {
		rc = claim_all(r, b, c, &got, &more);
		if (rc != -EBUSY || now_ms() >= deadline)
			break;
		/* Nothing held meanwhile (all or nothing): two bumba-runs
		 * waiting for each other's paths cannot deadlock. */
		uint64_t left = deadline - now_ms();
		struct timespec ts = {0, (long)(left < pause_ms ? left : pause_ms) * 1000000L};
		nanosleep(&ts, NULL);
		if (pause_ms < 200)
			pause_ms *= 2;
	}
	switch (-rc) {
	case 0:
		break;
	case EBUSY:
		for (size_t i = 0; i < got; i++) {
			c[i].path[sizeof(c[i].path) - 1] = '\0';
			c[i].holder_id[sizeof(c[i].holder_id) - 1] = '\0';
		}
		print_conflicts(c, got, more);
		rc = EX_CANTCREAT;
		break;
	case EINVAL:
	case ENAMETOOLONG:
		fprintf(stderr, PROG ": cannot claim: %s\n", strerror(-rc));
		rc = EX_DATAERR;
		break;
	case EACCES:
		fprintf(stderr, PROG ": cannot claim: outside the parent agent's territories\n");
		rc = EX_NOPERM;
		break;
	case ENOSPC:
		fprintf(stderr, PROG ": cannot claim: the territory table is full\n");
		rc = EX_TEMPFAIL;
		break;
	default:
		fprintf(stderr, PROG ": cannot claim: %s\n", strerror(-rc));
		rc = EX_SOFTWARE;
		break;
	}
	free(c);
	return rc;
}

/* COMMAND's environment: who it is, how to join, where the supervisor is.
 * Returns the descriptor to close after COMMAND, or an exit code < 0. */
static int export_agent(struct run *r, struct bumba *b)
{
	char num[16], sock[PATH_MAX];
	const char *s = r->socket;
	int fd = bumba_join_fd(b);

	if (fd < 0) {
		fprintf(stderr, PROG ": cannot make the join descriptor: %s\n", strerror(-fd));
		return -EX_OSERR;
	}
	if (!s) {
		/* The one we registered on, so that "socket_path == $BUMBA_SOCKET"
		 * holds for COMMAND's programs whatever they pass. */
		const char *env = getenv("BUMBA_SOCKET");
		if (env && *env)
			s = env;
		else if (bumba_default_socket(sock, sizeof(sock)) == 0)
			s = sock;
	}
	snprintf(num, sizeof(num), "%d", fd);
	if (setenv("BUMBA_AGENT_ID", bumba_agent_id(b), 1) < 0 ||
	    setenv("BUMBA_AGENT_FD", num, 1) < 0 || (s && setenv("BUMBA_SOCKET", s, 1) < 0))
		die_oom();
	return fd;
}

int main(int argc, char **argv)
{
	struct run r = {0};
	char namebuf[BUMBA_FIELD_MAX], titlebuf[TERR_TITLE];
	struct bumba *b;
	int rc, status, fd;

	rc = parse(&r, argc, argv);
	if (rc)
		return rc;
	if (!r.info.name)
		r.info.name = run_command_name(r.cmd[0], namebuf, sizeof(namebuf), true);
	if (!r.title)
		r.title = run_command_name(r.cmd[0], titlebuf, sizeof(titlebuf), false);

	/* Our own agent, never a join: a bumba-run inside another's COMMAND
	 * is another agent (its tree becomes its own). */
	rc = bumba_open_ex(r.socket, &r.info, BUMBA_OPEN_NO_JOIN, &b);
	if (rc == -EINVAL) {
		fprintf(stderr, PROG ": the supervisor refused the agent's metadata\n");
		return EX_USAGE;
	}
	if (rc < 0)
		return run_connect_failed(PROG, r.socket, false, rc);

	rc = resolve_claims(&r, b);
	if (!rc)
		rc = claim(&r, b);
	if (rc) {
		bumba_close(b);
		return rc;
	}
	fd = export_agent(&r, b);
	if (fd < 0) {
		release_claims(&r, b, false);
		bumba_close(b);
		return -fd;
	}
	bumba_set_status(b, BUMBA_STATUS_BUSY);

	const struct run_opts o = {
		.prog = PROG,
		.signals = run_signals,
		.n_signals = sizeof(run_signals) / sizeof(run_signals[0]),
		.pdeathsig = SIGTERM,
	};
	status = run_command(&o, r.cmd);

	close(fd);
	release_claims(&r, b, true);
	/* Unregisters: the locks COMMAND's joined processes left, and
	 * anything else of the agent, go too. */
	bumba_close(b);
	for (int t = 0; t < N_TYPES; t++) {
		free(r.claims[t].args);
		free(r.claims[t].paths);
		free(r.claims[t].buf);
	}
	return status;
}
