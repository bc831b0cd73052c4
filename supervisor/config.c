/* SPDX-License-Identifier: MIT */
/*
 * config.c - the configuration file, the environment overrides and the
 * built-in defaults (see config.h, docs/configuration.md, bumba.conf(5)).
 *
 * The INI syntax is libinih's.  inih reports no line numbers to its
 * handler in Debian's build and stops at nothing, so the file is fed to it
 * through our own line reader: the reader counts lines, refuses lines that
 * are too long or malformed (reporting each one, instead of inih's "first
 * error line"), and passes the good ones on; the handler then knows the
 * line of every key it sees.
 *
 * One table describes every key: its section and name, type, range,
 * default, and, for keys whose feature is not built yet, what they wait
 * for.  Parsing, the environment names, `bumbactl config show` and the
 * tests all read this table.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

enum ktype {
	K_U32,
	K_BOOL,
	K_DOUBLE,
	K_CHOICE,   /* one of choices[], stored as a string */
	K_LOGLEVEL, /* one of the level names, stored as a syslog priority */
	K_PATH,	    /* absolute path or empty */
	K_PATHLIST, /* absolute paths separated by ':'; repeated lines accumulate */
	K_ADDR,	    /* numeric IPv4 or IPv6 address */
	K_USER,	    /* a user name: [a-z_][a-z0-9_.-]*, at most 32 bytes */
};

struct key {
	const char *section, *name;
	enum ktype type;
	size_t off;	 /* of the value in struct bumba_config */
	size_t size;	 /* strings: buffer size; lists: offset of the count */
	uint64_t lo, hi; /* K_U32 */
	double dlo, dhi; /* K_DOUBLE */
	const char *const *choices;
	const char *unit;    /* for messages: "milliseconds", ... */
	const char *pending; /* non-NULL: stored, but no effect until ... */
};

static const char *const strategies[] = {"priority", "fifo", "manual", NULL};
static const char *const checksums[] = {"sha256", "xxh3", "xxh128", NULL};
static const char *const levels[] = {"error", "warning", "notice", "info", "debug", NULL};
static const uint32_t level_prio[] = {BUMBA_LOG_ERROR, BUMBA_LOG_WARNING, BUMBA_LOG_NOTICE,
				      BUMBA_LOG_INFO, BUMBA_LOG_DEBUG};

#define OFF(f) offsetof(struct bumba_config, f)
#define SZ(f)  sizeof(((struct bumba_config *)0)->f)
#define U32(sec, nm, f, l, h, u, p)                                                                \
	{                                                                                          \
		sec, nm, K_U32, OFF(f), 0, l, h, 0, 0, NULL, u, p                                  \
	}
#define BOOL(sec, nm, f, p)                                                                        \
	{                                                                                          \
		sec, nm, K_BOOL, OFF(f), 0, 0, 0, 0, 0, NULL, NULL, p                              \
	}
#define DBL(sec, nm, f, l, h, u, p)                                                                \
	{                                                                                          \
		sec, nm, K_DOUBLE, OFF(f), 0, 0, 0, l, h, NULL, u, p                               \
	}
#define CHOICE(sec, nm, f, ch, p)                                                                  \
	{                                                                                          \
		sec, nm, K_CHOICE, OFF(f), SZ(f), 0, 0, 0, 0, ch, NULL, p                          \
	}
#define PATHK(sec, nm, f, p)                                                                       \
	{                                                                                          \
		sec, nm, K_PATH, OFF(f), SZ(f), 0, 0, 0, 0, NULL, NULL, p                          \
	}
#define LIST(sec, nm, f, n, p)                                                                     \
	{                                                                                          \
		sec, nm, K_PATHLIST, OFF(f), OFF(n), 0, 0, 0, 0, NULL, NULL, p                     \
	}

#define NOT_YET_SAFEIO "the safe file operations do not read it yet"

static const struct key keys[] = {
	PATHK("supervisor", "socket", socket, NULL),
	LIST("supervisor", "workspaces", workspaces, n_workspaces, NULL),
	U32("supervisor", "keeperLinger", keeper_linger_s, 1, 86400, "seconds", NULL),
	{"supervisor", "user", K_USER, OFF(user), SZ(user), 0, 0, 0, 0, NULL, NULL, NULL},

	U32("fileLocking", "defaultTimeout", lock_default_timeout_ms, 0, 86400000, "milliseconds",
	    NULL),
	U32("fileLocking", "maxTimeout", lock_max_timeout_ms, 1, 86400000, "milliseconds", NULL),
	U32("fileLocking", "cleanupInterval", cleanup_interval_ms, 100, 60000, "milliseconds",
	    NULL),
	U32("fileLocking", "maxActiveLocks", max_active_locks, 1, 1u << 24, NULL, NULL),
	U32("fileLocking", "maxWaiters", max_waiters, 1, 1u << 24, NULL, NULL),
	U32("fileLocking", "holdsPerAgent", holds_per_agent, 1, 65536, NULL, NULL),
	BOOL("fileLocking", "enablePriorityQueue", priority_queue,
	     "waiters are always served by priority; turning that off is not implemented"),

	U32("territoryManagement", "defaultTimeout", terr_default_timeout_ms, 0, 2147483647u,
	    "milliseconds", NULL),
	U32("territoryManagement", "maxTerritories", max_territories, 1, 1u << 22, NULL, NULL),
	U32("territoryManagement", "maxTerritoryPaths", max_territory_paths, 1, 1u << 22, NULL,
	    NULL),
	BOOL("territoryManagement", "enableHierarchical", hierarchical,
	     "child agents always claim inside their parent's territories"),
	CHOICE("territoryManagement", "conflictResolutionStrategy", conflict_strategy, strategies,
	       "claims are all or nothing and return every conflict to the caller"),

	BOOL("safeFileOps", "enableBackups", backups, NOT_YET_SAFEIO),
	U32("safeFileOps", "backupRetentionHours", backup_retention_hours, 0, 87600, "hours", NULL),
	BOOL("safeFileOps", "enableVerification", verification, NOT_YET_SAFEIO),
	BOOL("safeFileOps", "enableTransactions", transactions, NOT_YET_SAFEIO),
	U32("safeFileOps", "maxTransactionSize", max_transaction_size, 1, 4096, "files", NULL),
	CHOICE("safeFileOps", "checksumAlgorithm", checksum, checksums, NOT_YET_SAFEIO),

	U32("agentIdentity", "maxAgents", max_agents, 1, (1u << 24) - 2, NULL, NULL),
	BOOL("agentIdentity", "cleanupInactiveAgents", cleanup_inactive, NULL),
	U32("agentIdentity", "inactiveTimeout", inactive_timeout_ms, 1000, 2147483647u,
	    "milliseconds", NULL),

	U32("dashboard", "refreshInterval", refresh_interval_ms, 100, 3600000, "milliseconds",
	    NULL),
	BOOL("dashboard", "enableWebInterface", web, NULL),
	{"dashboard", "listenAddress", K_ADDR, OFF(listen_address), SZ(listen_address), 0, 0, 0, 0,
	 NULL, NULL, NULL},
	U32("dashboard", "webPort", web_port, 0, 65535, NULL, NULL),

	{"monitoring", "logLevel", K_LOGLEVEL, OFF(log_level), 0, 0, 0, 0, 0, levels, NULL, NULL},
	PATHK("monitoring", "auditLog", audit_log, NULL),
	BOOL("monitoring", "enablePrometheusMetrics", prometheus, NULL),
	DBL("monitoring", "alertingThresholds.conflictRate", thr_conflict_rate, 0, 1, "a fraction",
	    NULL),
	U32("monitoring", "alertingThresholds.lockWaitTime", thr_lock_wait_ms, 1, 86400000,
	    "milliseconds", NULL),
	DBL("monitoring", "alertingThresholds.territoryAllocationFailures", thr_terr_failures, 0, 1,
	    "a fraction", NULL),
	DBL("monitoring", "alertingThresholds.memoryUsage", thr_memory, 0, 1, "a fraction", NULL),

	BOOL("guard", "enabled", guard_enabled, NULL),
	BOOL("guard", "enforce", guard_enforce, NULL),
	LIST("guard", "roots", guard_roots, n_guard_roots, NULL),
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS <= sizeof(((struct bumba_config *)0)->source), "grow source[]");

void bumba_config_defaults(struct bumba_config *c)
{
	memset(c, 0, sizeof(*c));
	c->keeper_linger_s = 300;
	snprintf(c->user, sizeof(c->user), "bumba");

	c->lock_default_timeout_ms = 30000; /* the seed's values */
	c->lock_max_timeout_ms = 300000;
	c->cleanup_interval_ms = 100; /* every heartbeat: reclaim within milliseconds */
	c->max_active_locks = 10000;
	c->max_waiters = 16384;
	c->holds_per_agent = 128;
	c->priority_queue = true;

	c->terr_default_timeout_ms = 0;
	c->max_territories = 10000;
	c->max_territory_paths = 65536;
	c->hierarchical = true;
	snprintf(c->conflict_strategy, sizeof(c->conflict_strategy), "manual");

	c->backups = true;
	c->backup_retention_hours = 72;
	c->verification = true;
	c->transactions = true;
	c->max_transaction_size = 100;
	snprintf(c->checksum, sizeof(c->checksum), "sha256");

	c->max_agents = 10000;
	c->cleanup_inactive = true;
	c->inactive_timeout_ms = 3600000;

	c->refresh_interval_ms = 5000;
	c->web = true;
	snprintf(c->listen_address, sizeof(c->listen_address), "127.0.0.1");
	c->web_port = 3001;

	c->log_level = BUMBA_LOG_INFO;
	c->prometheus = true;
	c->thr_conflict_rate = 0.05;
	c->thr_lock_wait_ms = 10000;
	c->thr_terr_failures = 0.01;
	c->thr_memory = 0.85;

	c->guard_enabled = true;
	c->guard_enforce = false;
}

/* ------------------------------------------------------------------ */
/* reporting                                                           */

struct ctx {
	struct bumba_config *c;
	bumba_config_report_fn fn;
	void *user;
	const char *where; /* file name, or NULL for the environment */
	const char *env;   /* the variable, for the environment */
	unsigned line;
	int errors;
	bool list_reset[N_KEYS]; /* list key seen in this file already */
	bool skip_section;	 /* after a malformed section header */
};

__attribute__((format(printf, 3, 4))) static void report(struct ctx *x, bool error, const char *fmt,
							 ...)
{
	char msg[1024], full[1400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (x->where)
		snprintf(full, sizeof(full), "%s:%u: %s%s", x->where, x->line,
			 error ? "" : "warning: ", msg);
	else
		snprintf(full, sizeof(full), "environment: %s: %s%s", x->env,
			 error ? "" : "warning: ", msg);
	if (error)
		x->errors++;
	if (x->fn)
		x->fn(x->user, error, full);
}

/* A value quoted for a message: control characters and long tails cut. */
static const char *quote(const char *v, char *buf, size_t len)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)v; *p && o + 4 < len; p++)
		buf[o++] = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
	if (strlen(v) > o)
		snprintf(buf + (o > len - 4 ? len - 4 : o), 4, "...");
	else
		buf[o] = '\0';
	return buf;
}

/* ------------------------------------------------------------------ */
/* the key table                                                        */

size_t bumba_config_n_keys(void)
{
	return N_KEYS;
}

const char *bumba_config_key_name(size_t i, char *buf, size_t len)
{
	if (i >= N_KEYS)
		return NULL;
	snprintf(buf, len, "%s.%s", keys[i].section, keys[i].name);
	return buf;
}

const char *bumba_config_env_name(size_t i, char *buf, size_t len)
{
	size_t o;

	if (i >= N_KEYS || len < 8)
		return NULL;
	o = (size_t)snprintf(buf, len, "BUMBA_%s_%s", keys[i].section, keys[i].name);
	if (o >= len)
		o = len - 1;
	for (size_t k = 0; k < o; k++)
		buf[k] = buf[k] == '.' ? '_' : (char)toupper((unsigned char)buf[k]);
	return buf;
}

static int find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (!strcasecmp(keys[i].section, section) && !strcasecmp(keys[i].name, name))
			return (int)i;
	}
	return -1;
}

static bool known_section(const char *section)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (!strcasecmp(keys[i].section, section))
			return true;
	}
	return false;
}

int bumba_config_source_of(const struct bumba_config *c, const char *section_key)
{
	char buf[128];

	for (size_t i = 0; i < N_KEYS; i++) {
		if (!strcasecmp(bumba_config_key_name(i, buf, sizeof(buf)), section_key))
			return c->source[i];
	}
	return -1;
}

/* Edit distance, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) !=
						    tolower((unsigned char)b[j - 1]));
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, sizeof(size_t) * (lb + 1));
	}
	return prev[lb];
}

static const char *suggest_key(const char *section, const char *name)
{
	const char *best = NULL;
	size_t bd = 4;

	for (size_t i = 0; i < N_KEYS; i++) {
		size_t d;

		if (strcasecmp(keys[i].section, section))
			continue;
		d = distance(keys[i].name, name);
		if (d < bd) {
			bd = d;
			best = keys[i].name;
		}
	}
	return best;
}

static const char *suggest_section(const char *section)
{
	const char *best = NULL;
	size_t bd = 4;

	for (size_t i = 0; i < N_KEYS; i++) {
		size_t d = distance(keys[i].section, section);
		if (d < bd) {
			bd = d;
			best = keys[i].section;
		}
	}
	return best;
}

/* ------------------------------------------------------------------ */
/* values                                                               */

static bool text_ok(const char *v)
{
	return bumba_utf8_valid(v, strlen(v));
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int check_path(struct ctx *x, const char *kname, const char *p, size_t max)
{
	char q[80];

	if (p[0] != '/') {
		report(x, true, "%s: '%s' is not an absolute path", kname, quote(p, q, sizeof(q)));
		return -EINVAL;
	}
	if (strlen(p) >= max) {
		report(x, true, "%s: path too long (%zu bytes, at most %zu)", kname, strlen(p),
		       max - 1);
		return -ENAMETOOLONG;
	}
	if (!text_ok(p)) {
		report(x, true, "%s: path is not UTF-8 or has control characters", kname);
		return -EINVAL;
	}
	return 0;
}

/* Sets key k from text v.  0, or -EINVAL after reporting why. */
static int set_value(struct ctx *x, size_t k, const char *v)
{
	const struct key *K = &keys[k];
	char *base = (char *)x->c + K->off, kname[128], q[80];
	char *end;

	bumba_config_key_name(k, kname, sizeof(kname));
	switch (K->type) {
	case K_U32: {
		unsigned long long n;

		if (!*v) {
			report(x, true, "%s: empty value (want a whole number%s%s)", kname,
			       K->unit ? " of " : "", K->unit ? K->unit : "");
			return -EINVAL;
		}
		errno = 0;
		n = strtoull(v, &end, 10);
		if (!isdigit((unsigned char)v[0]) || *end) {
			report(x, true, "%s: '%s' is not a whole number%s%s", kname,
			       quote(v, q, sizeof(q)), K->unit ? " of " : "",
			       K->unit ? K->unit : "");
			return -EINVAL;
		}
		if (errno == ERANGE || n < K->lo || n > K->hi) {
			report(x, true, "%s: %s is out of range (%llu..%llu%s%s)", kname,
			       quote(v, q, sizeof(q)), (unsigned long long)K->lo,
			       (unsigned long long)K->hi, K->unit ? " " : "",
			       K->unit ? K->unit : "");
			return -EINVAL;
		}
		*(uint32_t *)base = (uint32_t)n;
		return 0;
	}
	case K_BOOL:
		if (parse_bool(v, (bool *)base) < 0) {
			report(x, true,
			       "%s: '%s' is not a boolean (true/false, yes/no, on/off, 1/0)", kname,
			       quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		return 0;
	case K_DOUBLE: {
		double d;

		errno = 0;
		d = *v ? strtod(v, &end) : 0;
		if (!*v || *end || isspace((unsigned char)v[0]) || errno == ERANGE ||
		    !isfinite(d)) {
			report(x, true, "%s: '%s' is not a number", kname, quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		if (d < K->dlo || d > K->dhi) {
			report(x, true, "%s: %s is out of range (%g..%g%s%s)", kname,
			       quote(v, q, sizeof(q)), K->dlo, K->dhi, K->unit ? ", " : "",
			       K->unit ? K->unit : "");
			return -EINVAL;
		}
		*(double *)base = d;
		return 0;
	}
	case K_CHOICE:
	case K_LOGLEVEL:
		for (size_t i = 0; K->choices[i]; i++) {
			if (strcasecmp(v, K->choices[i]))
				continue;
			if (K->type == K_LOGLEVEL)
				*(uint32_t *)base = level_prio[i];
			else
				snprintf(base, K->size, "%s", K->choices[i]);
			return 0;
		}
		{
			char list[128] = "";
			for (size_t i = 0; K->choices[i]; i++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 i ? ", " : "", K->choices[i]);
			report(x, true, "%s: '%s' is not one of %s", kname, quote(v, q, sizeof(q)),
			       list);
		}
		return -EINVAL;
	case K_PATH:
		if (*v && check_path(x, kname, v, K->size) < 0)
			return -EINVAL;
		snprintf(base, K->size, "%s", v);
		return 0;
	case K_PATHLIST: {
		char(*arr)[PATH_MAX] = (char(*)[PATH_MAX])base;
		uint32_t *n = (uint32_t *)((char *)x->c + K->size), add = 0;
		char tmp[BUMBA_MAX_ROOTS][PATH_MAX];
		const char *p = v;

		/* Checked whole before anything is stored. */
		while (*p) {
			const char *e = strchr(p, ':');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			char one[PATH_MAX + 1];

			if (len == 0) {
				p += e ? 1 : 0;
				if (!e)
					break;
				continue;
			}
			if (len > PATH_MAX) {
				report(x, true, "%s: path too long (%zu bytes)", kname, len);
				return -EINVAL;
			}
			memcpy(one, p, len);
			one[len] = '\0';
			if (check_path(x, kname, one, PATH_MAX) < 0)
				return -EINVAL;
			if (add + (x->list_reset[k] ? *n : 0) >= BUMBA_MAX_ROOTS) {
				report(x, true, "%s: more than %d paths", kname, BUMBA_MAX_ROOTS);
				return -EINVAL;
			}
			memcpy(tmp[add++], one, len + 1); /* len < PATH_MAX: checked */
			p += len + (e ? 1 : 0);
		}
		/* The first line in a file (or the environment) replaces the
		 * list; further lines in the same file add to it. */
		if (!x->list_reset[k])
			*n = 0;
		x->list_reset[k] = true;
		for (uint32_t i = 0; i < add; i++)
			memcpy(arr[(*n)++], tmp[i], PATH_MAX);
		return 0;
	}
	case K_USER: {
		size_t n = strlen(v);
		bool ok = n > 0 && n < K->size && (islower((unsigned char)v[0]) || v[0] == '_');

		for (size_t i = 1; ok && i < n; i++)
			ok = islower((unsigned char)v[i]) || isdigit((unsigned char)v[i]) ||
			     strchr("_.-", v[i]) || (i == n - 1 && v[i] == '$');
		if (!ok) {
			report(x, true,
			       "%s: '%s' is not a user name (lower case letters, digits, '_', "
			       "'.', '-'; at most %zu bytes)",
			       kname, quote(v, q, sizeof(q)), K->size - 1);
			return -EINVAL;
		}
		snprintf(base, K->size, "%s", v);
		return 0;
	}
	case K_ADDR: {
		unsigned char sa[16];

		if (strlen(v) >= K->size ||
		    (inet_pton(AF_INET, v, sa) != 1 && inet_pton(AF_INET6, v, sa) != 1)) {
			report(x, true,
			       "%s: '%s' is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, "
			       "::1)",
			       kname, quote(v, q, sizeof(q)));
			return -EINVAL;
		}
		snprintf(base, K->size, "%s", v);
		return 0;
	}
	}
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* the file                                                             */

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct ctx *x = user;
	char q[80], q2[80];
	int k;

	if (x->skip_section)
		return 1;
	if (!*section) {
		report(x, true, "key '%s' outside any section", quote(name, q, sizeof(q)));
		return 1;
	}
	k = find_key(section, name);
	if (k < 0) {
		if (!known_section(section)) {
			const char *s = suggest_section(section);

			report(x, true, "unknown section [%s] (key '%s')%s%s%s",
			       quote(section, q, sizeof(q)), quote(name, q2, sizeof(q2)),
			       s ? "; did you mean [" : "", s ? s : "", s ? "]?" : "");
		} else {
			const char *s = suggest_key(section, name);

			report(x, true, "unknown key '%s' in [%s]%s%s%s", quote(name, q, sizeof(q)),
			       quote(section, q2, sizeof(q2)), s ? "; did you mean '" : "",
			       s ? s : "", s ? "'?" : "");
		}
		return 1;
	}
	if (!text_ok(value)) {
		report(x, true, "%s.%s: value is not UTF-8 or has control characters",
		       keys[k].section, keys[k].name);
		return 1;
	}
	if (x->c->source[k] == BUMBA_CFG_FILE && keys[k].type != K_PATHLIST)
		report(x, false, "%s.%s set again (first at line %u); this value wins",
		       keys[k].section, keys[k].name, x->c->line[k]);
	if (set_value(x, (size_t)k, value) == 0) {
		x->c->source[k] = BUMBA_CFG_FILE;
		x->c->line[k] = x->line;
	}
	return 1;
}

/* What inih would take from a line, checked first so that every bad line
 * is reported with its number; a bad line reaches inih as a blank one. */
static bool line_ok(struct ctx *x, char *s, size_t len)
{
	char *p = s, *e;

	if (memchr(s, '\0', len) != NULL && strlen(s) < len) {
		report(x, true, "NUL byte in line");
		return false;
	}
	if (x->line == 1 && (unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb &&
	    (unsigned char)p[2] == 0xbf)
		p += 3; /* a UTF-8 byte order mark: inih skips it */
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (!*p || *p == ';' || *p == '#')
		return true;
	if (*p == '[') {
		/* Keys under a malformed header are not judged against the
		 * section before it. */
		x->skip_section = true;
		e = strchr(p, ']');
		if (!e) {
			report(x, true, "section header without ']'");
			return false;
		}
		for (char *t = e + 1; *t; t++) {
			if (*t == ';' || *t == '#')
				break;
			if (!isspace((unsigned char)*t)) {
				report(x, true, "text after the section header");
				return false;
			}
		}
		if (e == p + 1) {
			report(x, true, "empty section name");
			return false;
		}
		x->skip_section = false;
		return true;
	}
	e = strpbrk(p, "=:");
	if (!e) {
		report(x, true, "expected 'key = value'");
		return false;
	}
	if (e == p) {
		report(x, true, "missing key name before '%c'", *e);
		return false;
	}
	return true;
}

struct reader {
	FILE *f;
	struct ctx *x;
	char *buf;
	size_t cap;
};

static char *read_line(char *str, int num, void *stream)
{
	struct reader *r = stream;
	ssize_t n = getline(&r->buf, &r->cap, r->f);

	if (n < 0)
		return NULL;
	r->x->line++;
	/* inih's buffer holds num - 1 bytes; it needs the '\n' too.  A longer
	 * line would be cut silently: refuse it instead. */
	if (n > num - 1) {
		report(r->x, true, "line too long (%zd bytes, at most %d)", n, num - 1);
		r->x->skip_section = r->x->skip_section || strchr(r->buf, '[') == r->buf;
		snprintf(str, (size_t)num, "\n");
		return str;
	}
	if (!line_ok(r->x, r->buf, (size_t)n)) {
		snprintf(str, (size_t)num, "\n");
		return str;
	}
	memcpy(str, r->buf, (size_t)n);
	str[n] = '\0';
	return str;
}

int bumba_config_load_file(struct bumba_config *c, const char *path, bumba_config_report_fn fn,
			   void *ctx)
{
	struct ctx *x;
	struct reader r = {0};
	struct stat st;
	int rc;

	r.f = fopen(path, "re");
	if (!r.f)
		return -errno;
	if (fstat(fileno(r.f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(r.f);
		return -EISDIR;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		fclose(r.f);
		return -ENOMEM;
	}
	x->c = c;
	x->fn = fn;
	x->user = ctx;
	x->where = path;
	r.x = x;
	/* Python-configparser continuation lines would make an indented key
	 * part of the previous value: off. */
	ini_allow_multiline = false;
	ini_stop_on_first_error = false;
	rc = ini_parse_stream(read_line, &r, on_key, x);
	if (rc < 0) {
		x->line = 0;
		report(x, true, "cannot parse (inih error %d)", rc);
	} else if (rc > 0 && x->errors == 0) {
		/* A syntax error line_ok() let through: inih knows best. */
		x->line = (unsigned)rc;
		report(x, true, "syntax error");
	}
	if (ferror(r.f)) {
		x->line = 0;
		report(x, true, "read error");
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	rc = x->errors;
	free(r.buf);
	free(x);
	fclose(r.f);
	return rc;
}

/* ------------------------------------------------------------------ */
/* the environment                                                      */

int bumba_config_apply_env(struct bumba_config *c, bumba_config_report_fn fn, void *ctx)
{
	struct ctx x = {.c = c, .fn = fn, .user = ctx};
	char name[128];

	for (size_t k = 0; k < N_KEYS; k++) {
		const char *v = getenv(bumba_config_env_name(k, name, sizeof(name)));

		/* BUMBA_SOCKET is the documented contract of every bumba tool;
		 * BUMBA_SUPERVISOR_SOCKET wins if both are set. */
		if (!v && keys[k].off == OFF(socket) && keys[k].type == K_PATH) {
			v = getenv("BUMBA_SOCKET");
			if (v)
				snprintf(name, sizeof(name), "BUMBA_SOCKET");
			if (v && !*v)
				v = NULL;
		}
		if (!v)
			continue;
		x.env = name;
		if (!text_ok(v)) {
			report(&x, true, "value is not UTF-8 or has control characters");
			continue;
		}
		x.list_reset[k] = false; /* the environment replaces a list */
		if (set_value(&x, k, v) == 0) {
			c->source[k] = BUMBA_CFG_ENV;
			c->line[k] = 0;
		}
	}
	return x.errors;
}

/* ------------------------------------------------------------------ */
/* checks across keys                                                   */

static int key_index(size_t off)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (keys[i].off == off)
			return (int)i;
	}
	return -1;
}

/* Reports msg at the place that set key k (the later of two, for a pair). */
__attribute__((format(printf, 5, 6))) static void
report_at(const struct bumba_config *c, struct ctx *x, int k, bool error, const char *fmt, ...)
{
	char msg[1024], env[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	x->where = NULL;
	x->env = NULL;
	if (c->source[k] == BUMBA_CFG_FILE) {
		x->where = c->path;
		x->line = c->line[k];
	} else if (c->source[k] == BUMBA_CFG_ENV) {
		x->env = bumba_config_env_name((size_t)k, env, sizeof(env));
	} else {
		x->where = c->path[0] ? c->path : "defaults";
		x->line = 0;
	}
	report(x, error, "%s", msg);
}

static int later(const struct bumba_config *c, int a, int b)
{
	if (c->source[a] != c->source[b])
		return c->source[a] > c->source[b] ? a : b;
	return c->line[a] >= c->line[b] ? a : b;
}

int bumba_config_check(const struct bumba_config *c, bumba_config_report_fn fn, void *ctx)
{
	struct ctx x = {.c = (struct bumba_config *)c, .fn = fn, .user = ctx};
	int a, b;

	a = key_index(OFF(lock_default_timeout_ms));
	b = key_index(OFF(lock_max_timeout_ms));
	if (c->lock_default_timeout_ms > c->lock_max_timeout_ms)
		report_at(
			c, &x, later(c, a, b), true,
			"fileLocking.defaultTimeout (%u ms) exceeds fileLocking.maxTimeout (%u ms)",
			c->lock_default_timeout_ms, c->lock_max_timeout_ms);
	a = key_index(OFF(holds_per_agent));
	if (c->holds_per_agent & (c->holds_per_agent - 1))
		report_at(c, &x, a, true, "fileLocking.holdsPerAgent: %u is not a power of two",
			  c->holds_per_agent);
	a = key_index(OFF(guard_enforce));
	b = key_index(OFF(guard_enabled));
	if (c->guard_enforce && !c->guard_enabled)
		report_at(c, &x, later(c, a, b), true,
			  "guard.enforce = true needs guard.enabled = true");
	return x.errors;
}

/* ------------------------------------------------------------------ */

int bumba_config_load(struct bumba_config *c, const char *path, bumba_config_report_fn fn,
		      void *ctx)
{
	const char *file = path;
	int errors = 0, rc;

	bumba_config_defaults(c);
	if (!file) {
		const char *env = getenv("BUMBA_CONFIG");
		file = env && *env ? env : NULL;
		path = file;
	}
	if (!file && access(BUMBA_CONFIG_DEFAULT_PATH, F_OK) == 0)
		file = BUMBA_CONFIG_DEFAULT_PATH;
	if (file) {
		rc = bumba_config_load_file(c, file, fn, ctx);
		if (rc < 0) {
			char msg[PATH_MAX + 128];

			snprintf(msg, sizeof(msg), "%s: cannot read: %s", file, strerror(-rc));
			if (fn)
				fn(ctx, true, msg);
			errors++;
		} else {
			errors += rc;
		}
	}
	errors += bumba_config_apply_env(c, fn, ctx);
	errors += bumba_config_check(c, fn, ctx);
	return errors;
}

/* ------------------------------------------------------------------ */
/* printing                                                             */

const char *bumba_config_log_level_name(uint32_t level)
{
	for (size_t i = 0; levels[i]; i++) {
		if (level_prio[i] == level)
			return levels[i];
	}
	return "info";
}

static void print_value(const struct bumba_config *c, size_t k, FILE *f)
{
	const struct key *K = &keys[k];
	const char *base = (const char *)c + K->off;

	switch (K->type) {
	case K_U32:
		fprintf(f, "%u", *(const uint32_t *)base);
		break;
	case K_BOOL:
		fputs(*(const bool *)base ? "true" : "false", f);
		break;
	case K_DOUBLE:
		fprintf(f, "%g", *(const double *)base);
		break;
	case K_LOGLEVEL:
		fputs(bumba_config_log_level_name(*(const uint32_t *)base), f);
		break;
	case K_CHOICE:
	case K_PATH:
	case K_ADDR:
	case K_USER:
		fputs(base, f);
		break;
	case K_PATHLIST: {
		const char(*arr)[PATH_MAX] = (const char(*)[PATH_MAX])base;
		uint32_t n = *(const uint32_t *)((const char *)c + K->size);

		for (uint32_t i = 0; i < n && i < BUMBA_MAX_ROOTS; i++)
			fprintf(f, "%s%s", i ? ":" : "", arr[i]);
		break;
	}
	}
}

void bumba_config_print(const struct bumba_config *c, FILE *f)
{
	const char *section = "";
	char env[128];

	fprintf(f, "; bumba configuration in effect (file: %s)\n", c->path[0] ? c->path : "none");
	for (size_t k = 0; k < N_KEYS; k++) {
		if (strcmp(section, keys[k].section)) {
			section = keys[k].section;
			fprintf(f, "\n[%s]\n", section);
		}
		fprintf(f, "%s = ", keys[k].name);
		print_value(c, k, f);
		switch (c->source[k]) {
		case BUMBA_CFG_FILE:
			fprintf(f, "  ; %s:%u", c->path, c->line[k]);
			break;
		case BUMBA_CFG_ENV:
			fprintf(f, "  ; %s", bumba_config_env_name(k, env, sizeof(env)));
			break;
		case BUMBA_CFG_CLI:
			fprintf(f, "  ; command line");
			break;
		default:
			fprintf(f, "  ; default");
			break;
		}
		if (keys[k].pending)
			fprintf(f, " (no effect yet: %s)", keys[k].pending);
		fputc('\n', f);
	}
}

int bumba_config_parse_listen(const char *s, char *addr, size_t addr_len, uint32_t *port)
{
	const char *colon;
	unsigned char sa[16];
	char a[BUMBA_CONFIG_ADDR_MAX], *end;
	unsigned long p;
	size_t n;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		n = (size_t)(rb - s - 1);
		if (n >= sizeof(a))
			return -EINVAL;
		memcpy(a, s + 1, n);
		a[n] = '\0';
		colon = rb + 1;
		if (inet_pton(AF_INET6, a, sa) != 1)
			return -EINVAL;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - s);
		if (n >= sizeof(a))
			return -EINVAL;
		memcpy(a, s, n);
		a[n] = '\0';
		if (inet_pton(AF_INET, a, sa) != 1 && inet_pton(AF_INET6, a, sa) != 1)
			return -EINVAL;
	}
	errno = 0;
	if (!isdigit((unsigned char)colon[1]))
		return -EINVAL;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || p > 65535 || n + 1 > addr_len)
		return -EINVAL;
	snprintf(addr, addr_len, "%s", a);
	*port = (uint32_t)p;
	return 0;
}

void bumba_config_pending(const struct bumba_config *c, bumba_config_report_fn fn, void *ctx)
{
	struct ctx x = {.c = (struct bumba_config *)c, .fn = fn, .user = ctx};
	struct bumba_config *def = malloc(sizeof(*def));
	char name[128], *v1 = NULL, *v2 = NULL;
	size_t l1, l2;

	if (!def)
		return;
	bumba_config_defaults(def);
	for (size_t k = 0; k < N_KEYS; k++) {
		FILE *f1, *f2;
		bool same;

		if (!keys[k].pending || c->source[k] == BUMBA_CFG_DEFAULT)
			continue;
		/* Only a value that would change behaviour: the default is
		 * what the code does anyway. */
		f1 = open_memstream(&v1, &l1);
		f2 = open_memstream(&v2, &l2);
		if (!f1 || !f2) {
			if (f1)
				fclose(f1);
			if (f2)
				fclose(f2);
			break;
		}
		print_value(c, k, f1);
		print_value(def, k, f2);
		fclose(f1);
		fclose(f2);
		same = !strcmp(v1, v2);
		free(v1);
		free(v2);
		v1 = v2 = NULL;
		if (same)
			continue;
		report_at(c, &x, (int)k, false, "%s is set but has no effect yet: %s",
			  bumba_config_key_name(k, name, sizeof(name)), keys[k].pending);
	}
	free(def);
}
