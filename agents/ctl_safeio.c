/* SPDX-License-Identifier: MIT */
/*
 * ctl_safeio.c - `bumbactl backups` and `bumbactl restore` (see
 * ctl_safeio.h and docs/safe-file-ops.md).
 *
 * backups only looks: it observes the segment for the workspace roots and
 * reads <root>/.bumba/backups.  restore registers a short-lived agent
 * (Command-bumbactl), takes an exclusive lock on PATH, calls
 * bumba_safe_restore and lets go.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "ctl_safeio.h"
#include "handle.h"
#include "safeio.h"

#define PROG	      "bumbactl"
#define BACKUPS_USAGE "bumbactl backups [--json] [PATH]"
#define RESTORE_USAGE "bumbactl restore [--at TIME] [--timeout MS] [--json] PATH"

static int usage_err(const char *synopsis, const char *fmt, const char *arg)
{
	fprintf(stderr, PROG ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nUsage: %s\n", synopsis);
	return EX_USAGE;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bumba_ctl_parse_time(const char *s, int64_t now, int64_t *out)
{
	char *end;
	size_t n = strlen(s);

	if (!n)
		return -EINVAL;
	/* An age: "-5m", "5m ago". */
	if (s[0] == '-' || (n > 4 && !strcmp(s + n - 4, " ago"))) {
		const char *p = s[0] == '-' ? s + 1 : s;
		double v = strtod(p, &end);
		int64_t unit;
		if (end == p || v < 0)
			return -EINVAL;
		switch (*end) {
		case 's':
			unit = 1000;
			break;
		case 'm':
			unit = 60 * 1000;
			break;
		case 'h':
			unit = 3600 * 1000;
			break;
		case 'd':
			unit = 86400 * 1000;
			break;
		default:
			return -EINVAL;
		}
		end++;
		if (s[0] == '-' ? *end != '\0' : strcmp(end, " ago") != 0)
			return -EINVAL;
		*out = now - (int64_t)(v * (double)unit);
		return 0;
	}
	/* Seconds since the epoch. */
	if (s[0] == '@' || isdigit((unsigned char)s[0])) {
		const char *p = s[0] == '@' ? s + 1 : s;
		double v = strtod(p, &end);
		if (end != p && *end == '\0' && v >= 0 && (s[0] == '@' || !strchr(p, '-'))) {
			*out = (int64_t)(v * 1000.0);
			return 0;
		}
		if (s[0] == '@')
			return -EINVAL;
	}
	/* An ISO date, local time unless it ends in Z. */
	static const char *const fmts[] = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
					   "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"};
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		struct tm tm = {0};
		char *r = strptime(s, fmts[i], &tm);
		double frac = 0;
		if (!r)
			continue;
		if (*r == '.') {
			frac = strtod(r, &end);
			r = end;
		}
		bool utc = *r == 'Z';
		if (utc)
			r++;
		if (*r)
			continue;
		tm.tm_isdst = -1;
		time_t t = utc ? timegm(&tm) : mktime(&tm);
		if (t == (time_t)-1)
			return -EINVAL;
		*out = (int64_t)t * 1000 + (int64_t)(frac * 1000.0);
		return 0;
	}
	return -EINVAL;
}

static const char *fmt_when(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	char day[40];

	localtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03u", day, (unsigned)(ns / 1000000ull % 1000));
	return buf;
}

static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
	if (v < 1024)
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	else if (v < 1024 * 1024)
		snprintf(buf, len, "%.1f KiB", (double)v / 1024);
	else if (v < 1024ull * 1024 * 1024)
		snprintf(buf, len, "%.1f MiB", (double)v / 1048576);
	else
		snprintf(buf, len, "%.1f GiB", (double)v / 1073741824.0);
	return buf;
}

/* A path as the user means it: relative to the current directory when that
 * lies in a workspace root, else to the first root (the API's rule). */
static int normalise(const struct bumba_seg *seg, const char *path, char *out, size_t len)
{
	char joined[PATH_MAX * 2];
	const char *p = path;
	char *cwd = getcwd(NULL, 0);

	if (path[0] != '/' && cwd) {
		for (size_t r = 0; r < seg->hdr->n_roots; r++) {
			const char *root = seg->root_ptrs[r];
			size_t rl = strlen(root);
			if ((rl == 1 && root[0] == '/') ||
			    (!strncmp(cwd, root, rl) && (cwd[rl] == '\0' || cwd[rl] == '/'))) {
				snprintf(joined, sizeof(joined), "%s/%s", cwd, path);
				p = joined;
				break;
			}
		}
	}
	free(cwd);
	int rc = bumba_path_norm(seg->root_ptrs, seg->hdr->n_roots, p, (size_t)-1, out, len, NULL);
	return rc < 0 ? rc : 0;
}

static void bad_path(const struct bumba_seg *seg, const char *path, int err)
{
	fprintf(stderr, PROG ": bad path %s: %s (workspace: ", path,
		err == -ENAMETOOLONG ? "too long" : "not inside the workspace");
	for (size_t r = 0; r < seg->hdr->n_roots; r++)
		fprintf(stderr, "%s%s", r ? ", " : "", seg->root_ptrs[r]);
	fprintf(stderr, ")\n");
}

struct vl {
	struct bumba_backup_version *v;
	size_t n, cap;
};

static int collect(void *ctx, const struct bumba_backup_version *v)
{
	struct vl *l = ctx;

	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 32;
		void *p = realloc(l->v, nc * sizeof(*l->v));
		if (!p)
			return 1;
		l->v = p;
		l->cap = nc;
	}
	l->v[l->n++] = *v;
	return 0;
}

/* Common options of these two commands; 1 taken, 0 not, > 1 exit code. */
static int common(int argc, char **argv, int *i, bool *json, const char **socket,
		  const char *synopsis)
{
	const char *a = argv[*i];

	if (!strcmp(a, "--json")) {
		*json = true;
		return 1;
	}
	if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
		printf("Usage: %s\n", synopsis);
		exit(EX_OK);
	}
	if (!strcmp(a, "--socket")) {
		if (*i + 1 >= argc || !*argv[*i + 1])
			return usage_err(synopsis, "option '%s' needs a PATH", a);
		*socket = argv[++*i];
		return 1;
	}
	return 0;
}

static int observe_failed(const char *socket, int rc)
{
	char def[PATH_MAX];

	if (!socket)
		socket = bumba_default_socket(def, sizeof(def)) == 0 ? def : "the default socket";
	fprintf(stderr, PROG ": cannot reach the supervisor on %s: %s\n", socket, strerror(-rc));
	return rc == -EACCES || rc == -EPERM ? EX_NOPERM : EX_UNAVAILABLE;
}

int bumba_ctl_backups(bool json, const char *socket, int argc, char **argv)
{
	const char *path = NULL;
	struct bumba_seg seg;
	char norm[PATH_MAX];
	struct vl l = {0};
	int rc;

	for (int i = 1; i < argc; i++) {
		rc = common(argc, argv, &i, &json, &socket, BACKUPS_USAGE);
		if (rc > 1)
			return rc;
		if (rc == 1)
			continue;
		if (argv[i][0] == '-' && argv[i][1])
			return usage_err(BACKUPS_USAGE, "unknown option '%s' for backups", argv[i]);
		if (path)
			return usage_err(BACKUPS_USAGE, "backups takes one PATH ('%s')", argv[i]);
		path = argv[i];
	}
	rc = bumba_observe(socket, &seg);
	if (rc)
		return observe_failed(socket, rc);
	if (path && (rc = normalise(&seg, path, norm, sizeof(norm))) < 0) {
		bad_path(&seg, path, rc);
		bumba_seg_unmap(&seg);
		return EX_DATAERR;
	}
	rc = bumba_backup_list(seg.root_ptrs, seg.hdr->n_roots, path ? norm : NULL, collect, &l);
	bumba_seg_unmap(&seg);
	if (rc) {
		fprintf(stderr, PROG ": cannot read the backups: %s\n", strerror(-rc));
		free(l.v);
		return EX_IOERR;
	}
	if (json) {
		cJSON *arr = cJSON_CreateArray();
		for (size_t i = l.n; i-- > 0;) {
			const struct bumba_backup_version *v = &l.v[i];
			cJSON *o = cJSON_CreateObject();
			char when[48], iso[80];
			time_t t = (time_t)(v->replaced_ns / 1000000000ull);
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
			snprintf(iso, sizeof(iso), "%s.%03uZ", when,
				 (unsigned)(v->replaced_ns / 1000000ull % 1000));
			cJSON_AddStringToObject(o, "path", v->path);
			cJSON_AddStringToObject(o, "replaced", iso);
			cJSON_AddNumberToObject(o, "replaced_ms",
						(double)(v->replaced_ns / 1000000ull));
			cJSON_AddStringToObject(o, "op", v->op);
			cJSON_AddNumberToObject(o, "size", (double)v->size);
			char mode[8];
			snprintf(mode, sizeof(mode), "%04o", v->mode);
			cJSON_AddStringToObject(o, "mode", mode);
			cJSON_AddStringToObject(o, "file", v->file);
			cJSON_AddItemToArray(arr, o);
		}
		char *s = cJSON_Print(arr);
		if (s)
			puts(s);
		free(s);
		cJSON_Delete(arr);
	} else if (!l.n) {
		printf(path ? "no backups of %s\n" : "no backups%s\n", path ? norm : "");
	} else {
		/* Grouped by file, newest version first. */
		for (size_t i = l.n; i-- > 0;) {
			const struct bumba_backup_version *v = &l.v[i];
			char when[64], size[32];
			if (i == l.n - 1 || strcmp(v->path, l.v[i + 1].path) != 0)
				printf("%s%s\n", i == l.n - 1 ? "" : "\n", v->path);
			printf("  %s  %-8s %10s  %04o\n",
			       fmt_when(v->replaced_ns, when, sizeof(when)), v->op,
			       fmt_size(v->size, size, sizeof(size)), v->mode);
		}
		printf("\n%zu version%s; restore one with: bumbactl restore PATH [--at TIME]\n",
		       l.n, l.n == 1 ? "" : "s");
	}
	free(l.v);
	if (fflush(stdout) != 0)
		return EX_IOERR;
	return EX_OK;
}

struct pick {
	int64_t at_ns;
	struct bumba_backup_version v;
	bool found;
};

static int pick(void *ctx, const struct bumba_backup_version *v)
{
	struct pick *p = ctx;

	if (p->at_ns < 0 || v->replaced_ns > (uint64_t)p->at_ns) {
		p->v = *v;
		p->found = true;
		return p->at_ns >= 0; /* the first after the instant; else the newest */
	}
	return 0;
}

int bumba_ctl_restore(bool json, const char *socket, int argc, char **argv)
{
	struct bumba_agent_info info = {
		.type = "Command", .name = "bumbactl", .department = "operations"};
	const char *path = NULL, *at = NULL;
	int64_t at_ms = -1;
	int timeout_ms = -1, rc;
	struct bumba *b;
	struct bumba_lock lk;
	char norm[PATH_MAX];

	for (int i = 1; i < argc; i++) {
		rc = common(argc, argv, &i, &json, &socket, RESTORE_USAGE);
		if (rc > 1)
			return rc;
		if (rc == 1)
			continue;
		const char *a = argv[i];
		if (!strcmp(a, "--at")) {
			if (i + 1 >= argc)
				return usage_err(RESTORE_USAGE, "option '%s' needs a TIME", a);
			at = argv[++i];
			if (bumba_ctl_parse_time(at, now_ms(), &at_ms) < 0)
				return usage_err(RESTORE_USAGE,
						 "bad --at '%s': want unix seconds, an ISO date "
						 "(2025-01-02T03:04:05[Z]) or an age (-5m, 2h ago)",
						 at);
		} else if (!strcmp(a, "--timeout")) {
			char *end;
			if (i + 1 >= argc)
				return usage_err(RESTORE_USAGE, "option '%s' needs MS", a);
			long t = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || t < -1 || t > INT_MAX)
				return usage_err(RESTORE_USAGE, "bad --timeout '%s'", argv[i]);
			timeout_ms = (int)t;
		} else if (a[0] == '-' && a[1]) {
			return usage_err(RESTORE_USAGE, "unknown option '%s' for restore", a);
		} else if (path) {
			return usage_err(RESTORE_USAGE, "restore takes one PATH ('%s')", a);
		} else {
			path = a;
		}
	}
	if (!path)
		return usage_err(RESTORE_USAGE, "restore: missing PATH%s", "");
	rc = bumba_open(socket, &info, &b);
	if (rc)
		return observe_failed(socket, rc);
	const struct bumba_seg *seg = bumba_handle_seg(b);
	if ((rc = normalise(seg, path, norm, sizeof(norm))) < 0) {
		bad_path(seg, path, rc);
		bumba_close(b);
		return EX_DATAERR;
	}
	/* Which version, for the message (the library picks the same). */
	struct pick pk = {.at_ns = at_ms < 0 ? -1 : at_ms * 1000000ll};
	bumba_backup_list(seg->root_ptrs, seg->hdr->n_roots, norm, pick, &pk);

	rc = bumba_lock_acquire(b, norm, BUMBA_EXCLUSIVE, timeout_ms, BUMBA_PRIO_NORMAL, &lk);
	if (rc) {
		fprintf(stderr, PROG ": cannot lock %s: %s\n", norm,
			rc == -ETIMEDOUT || rc == -EBUSY ? "timed out (another agent holds it)"
			: rc == -EACCES ? "it lies in another agent's exclusive territory"
					: strerror(-rc));
		bumba_close(b);
		return rc == -ETIMEDOUT || rc == -EBUSY ? EX_TEMPFAIL
		       : rc == -EACCES			? EX_NOPERM
							: EX_UNAVAILABLE;
	}
	rc = bumba_safe_restore(b, norm, at_ms, 0);
	bumba_lock_release(b, &lk);
	bumba_close(b);
	char when[64], size[32];
	if (rc == 0) {
		if (json) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "path", norm);
			cJSON_AddBoolToObject(o, "restored", 1);
			cJSON_AddNumberToObject(o, "replaced_ms",
						(double)(pk.v.replaced_ns / 1000000ull));
			cJSON_AddStringToObject(o, "op", pk.v.op);
			cJSON_AddNumberToObject(o, "size", (double)pk.v.size);
			char *js = cJSON_PrintUnformatted(o);
			if (js)
				puts(js);
			free(js);
			cJSON_Delete(o);
		} else if (pk.found) {
			printf("restored %s: the version a %s replaced at %s (%s); what it held "
			       "until now is kept as a backup\n",
			       norm, pk.v.op, fmt_when(pk.v.replaced_ns, when, sizeof(when)),
			       fmt_size(pk.v.size, size, sizeof(size)));
		} else {
			printf("restored %s\n", norm);
		}
		return EX_OK;
	}
	if (rc == -EALREADY) {
		if (json) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "path", norm);
			cJSON_AddBoolToObject(o, "restored", 0);
			cJSON_AddStringToObject(o, "reason", "unchanged since then");
			char *js = cJSON_PrintUnformatted(o);
			if (js)
				puts(js);
			free(js);
			cJSON_Delete(o);
		} else {
			printf("%s has not changed since then: nothing to restore\n", norm);
		}
		return EX_OK;
	}
	if (rc == -ENOENT) {
		fprintf(stderr, PROG ": no backup of %s\n", norm);
		return EX_NOINPUT;
	}
	fprintf(stderr, PROG ": restore %s: %s; the file is unchanged\n", norm, strerror(-rc));
	return rc == -EPERM || rc == -EACCES ? EX_NOPERM : EX_IOERR;
}
