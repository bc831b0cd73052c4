/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - bumba.conf: every key parsed, every kind of bad value
 * reported with its line, the environment over the file over the defaults,
 * the checks across keys, and what `bumbactl config show` prints reading
 * back as the same configuration.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

/* ------------------------------------------------------------------ */

#define MAX_MSGS 64

struct msgs {
	char m[MAX_MSGS][1600];
	bool err[MAX_MSGS];
	int n, errors, warnings;
};

static void collect(void *ctx, bool error, const char *msg)
{
	struct msgs *s = ctx;

	if (s->n < MAX_MSGS) {
		snprintf(s->m[s->n], sizeof(s->m[0]), "%s", msg);
		s->err[s->n++] = error;
	}
	if (error)
		s->errors++;
	else
		s->warnings++;
}

/* true if some message starts with prefix and contains needle. */
static bool has(const struct msgs *s, const char *prefix, const char *needle)
{
	for (int i = 0; i < s->n; i++) {
		if (!strncmp(s->m[i], prefix, strlen(prefix)) && strstr(s->m[i], needle))
			return true;
	}
	return false;
}

static void dump(const struct msgs *s)
{
	for (int i = 0; i < s->n; i++)
		fprintf(stderr, "  msg: %s\n", s->m[i]);
}

#define assert_msg(s, prefix, needle)                                                              \
	do {                                                                                       \
		if (!has(s, prefix, needle)) {                                                     \
			dump(s);                                                                   \
			fail_msg("no message '%s...%s'", prefix, needle);                          \
		}                                                                                  \
	} while (0)

static char tmpdir[64];

static const char *write_file(const char *name, const char *text, size_t len)
{
	static char path[160];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	return path;
}

static const char *write_text(const char *name, const char *text)
{
	return write_file(name, text, strlen(text));
}

/* Every environment variable a key can have, cleared. */
static void clear_env(void)
{
	char name[128];

	for (size_t i = 0; i < bumba_config_n_keys(); i++)
		unsetenv(bumba_config_env_name(i, name, sizeof(name)));
	unsetenv("BUMBA_SOCKET");
	unsetenv("BUMBA_CONFIG");
}

static int setup(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

/* ------------------------------------------------------------------ */

static void test_defaults(void **state)
{
	struct bumba_config c;
	struct msgs s = {0};

	(void)state;
	bumba_config_defaults(&c);
	assert_int_equal(bumba_config_check(&c, collect, &s), 0);
	assert_int_equal(c.lock_default_timeout_ms, 30000);
	assert_int_equal(c.lock_max_timeout_ms, 300000);
	assert_int_equal(c.cleanup_interval_ms, 100);
	assert_int_equal(c.max_active_locks, 10000);
	assert_true(c.priority_queue);
	assert_int_equal(c.max_agents, 10000);
	assert_true(c.cleanup_inactive);
	assert_int_equal(c.inactive_timeout_ms, 3600000);
	assert_int_equal(c.refresh_interval_ms, 5000);
	assert_true(c.web);
	assert_string_equal(c.listen_address, "127.0.0.1");
	assert_int_equal(c.web_port, 3001);
	assert_int_equal(c.log_level, BUMBA_LOG_INFO);
	assert_string_equal(c.audit_log, "");
	assert_true(c.thr_conflict_rate == 0.05);
	assert_int_equal(c.thr_lock_wait_ms, 10000);
	assert_true(c.guard_enabled);
	assert_false(c.guard_enforce);
	assert_string_equal(c.checksum, "sha256");
	assert_int_equal(c.max_transaction_size, 100);
	for (size_t i = 0; i < bumba_config_n_keys(); i++)
		assert_int_equal(c.source[i], BUMBA_CFG_DEFAULT);
}

/* A value away from its default for every key. */
static const char every_key[] = "; every key of bumba.conf(5)\n"
				"[supervisor]\n"
				"socket = /run/test/bumba.sock\n"
				"workspaces = /srv/a:/srv/b\n"
				"keeperLinger = 42\n"
				"\n"
				"[fileLocking]\n"
				"defaultTimeout = 1234\n"
				"maxTimeout = 56789\n"
				"cleanupInterval = 250\n"
				"maxActiveLocks = 777\n"
				"maxWaiters = 888\n"
				"holdsPerAgent = 64\n"
				"enablePriorityQueue = false\n"
				"\n"
				"[territoryManagement]\n"
				"defaultTimeout = 9000\n"
				"maxTerritories = 99\n"
				"maxTerritoryPaths = 999\n"
				"enableHierarchical = no\n"
				"conflictResolutionStrategy = FIFO\n"
				"\n"
				"[safeFileOps]\n"
				"enableBackups = off\n"
				"backupRetentionHours = 5\n"
				"enableVerification = 0\n"
				"enableTransactions = false\n"
				"maxTransactionSize = 7\n"
				"checksumAlgorithm = xxh3\n"
				"\n"
				"[agentIdentity]\n"
				"maxAgents = 321\n"
				"cleanupInactiveAgents = false\n"
				"inactiveTimeout = 60000\n"
				"\n"
				"[dashboard]\n"
				"refreshInterval = 750\n"
				"enableWebInterface = false\n"
				"listenAddress = ::1\n"
				"webPort = 9464\n"
				"\n"
				"[monitoring]\n"
				"logLevel = debug\n"
				"auditLog = /var/log/bumba/audit.jsonl ; inline comment\n"
				"enablePrometheusMetrics = false\n"
				"alertingThresholds.conflictRate = 0.2\n"
				"alertingThresholds.lockWaitTime = 2500\n"
				"alertingThresholds.territoryAllocationFailures = 0.3\n"
				"alertingThresholds.memoryUsage = 0.5\n"
				"\n"
				"[guard]\n"
				"enabled = yes\n"
				"enforce = on\n"
				"roots = /srv/a\n"
				"roots = /srv/c\n"
				"\n"
				"[supervisor]\n"
				"user = agents\n";

static void check_every_key(const struct bumba_config *c)
{
	assert_string_equal(c->socket, "/run/test/bumba.sock");
	assert_int_equal(c->n_workspaces, 2);
	assert_string_equal(c->workspaces[0], "/srv/a");
	assert_string_equal(c->workspaces[1], "/srv/b");
	assert_int_equal(c->keeper_linger_s, 42);
	assert_int_equal(c->lock_default_timeout_ms, 1234);
	assert_int_equal(c->lock_max_timeout_ms, 56789);
	assert_int_equal(c->cleanup_interval_ms, 250);
	assert_int_equal(c->max_active_locks, 777);
	assert_int_equal(c->max_waiters, 888);
	assert_int_equal(c->holds_per_agent, 64);
	assert_false(c->priority_queue);
	assert_int_equal(c->terr_default_timeout_ms, 9000);
	assert_int_equal(c->max_territories, 99);
	assert_int_equal(c->max_territory_paths, 999);
	assert_false(c->hierarchical);
	assert_string_equal(c->conflict_strategy, "fifo");
	assert_false(c->backups);
	assert_int_equal(c->backup_retention_hours, 5);
	assert_false(c->verification);
	assert_false(c->transactions);
	assert_int_equal(c->max_transaction_size, 7);
	assert_string_equal(c->checksum, "xxh3");
	assert_int_equal(c->max_agents, 321);
	assert_false(c->cleanup_inactive);
	assert_int_equal(c->inactive_timeout_ms, 60000);
	assert_int_equal(c->refresh_interval_ms, 750);
	assert_false(c->web);
	assert_string_equal(c->listen_address, "::1");
	assert_int_equal(c->web_port, 9464);
	assert_int_equal(c->log_level, BUMBA_LOG_DEBUG);
	assert_string_equal(c->audit_log, "/var/log/bumba/audit.jsonl");
	assert_false(c->prometheus);
	assert_true(c->thr_conflict_rate == 0.2);
	assert_int_equal(c->thr_lock_wait_ms, 2500);
	assert_true(c->thr_terr_failures == 0.3);
	assert_true(c->thr_memory == 0.5);
	assert_true(c->guard_enabled);
	assert_true(c->guard_enforce);
	assert_int_equal(c->n_guard_roots, 2);
	assert_string_equal(c->guard_roots[0], "/srv/a");
	assert_string_equal(c->guard_roots[1], "/srv/c");
	assert_string_equal(c->user, "agents");
}

static void test_every_key(void **state)
{
	struct bumba_config c;
	struct msgs s = {0};
	const char *path = write_text("every.conf", every_key);
	int n;

	(void)state;
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, path, collect, &s);
	if (n)
		dump(&s);
	assert_int_equal(n, 0);
	assert_int_equal(s.warnings, 0);
	check_every_key(&c);
	/* Every key of the table came from the file: the test covers them
	 * all (a new key must be added above). */
	for (size_t i = 0; i < bumba_config_n_keys(); i++) {
		char name[128];
		if (c.source[i] != BUMBA_CFG_FILE)
			fail_msg("key %s not set by the test file",
				 bumba_config_key_name(i, name, sizeof(name)));
		assert_true(c.line[i] > 0);
	}
	assert_int_equal(bumba_config_source_of(&c, "fileLocking.defaultTimeout"), BUMBA_CFG_FILE);
	assert_int_equal(bumba_config_check(&c, collect, &s), 0);
	assert_string_equal(c.path, path);
	/* Line numbers: defaultTimeout of [fileLocking] is on line 8. */
	for (size_t i = 0; i < bumba_config_n_keys(); i++) {
		char name[128];
		if (!strcmp(bumba_config_key_name(i, name, sizeof(name)),
			    "fileLocking.defaultTimeout"))
			assert_int_equal(c.line[i], 8);
	}
}

static void test_bad_values(void **state)
{
	static const char text[] =
		"[fileLocking]\n"			  /* 1 */
		"defaultTimeout = 30s\n"		  /* 2: not a number */
		"maxTimeout = 99999999999\n"		  /* 3: out of range */
		"maxActiveLocks = 0\n"			  /* 4: below range */
		"enablePriorityQueue = maybe\n"		  /* 5: not a boolean */
		"defaultTimeot = 5\n"			  /* 6: unknown key, suggestion */
		"maxWaiters = -3\n"			  /* 7: negative */
		"maxWaiters =\n"			  /* 8: empty */
		"[nosuch]\n"				  /* 9 */
		"x = 1\n"				  /* 10: unknown section */
		"[dashboard\n"				  /* 11: bad header */
		"webPort = 3001\n"			  /* 12: skipped */
		"[dashboard]\n"				  /* 13 */
		"listenAddress = localhost\n"		  /* 14: not numeric */
		"webPort = 70000\n"			  /* 15: out of range */
		"just a line\n"				  /* 16: no '=' */
		"= 5\n"					  /* 17: no key */
		"[monitoring]\n"			  /* 18 */
		"alertingThresholds.conflictRate = 1.5\n" /* 19: double out of range */
		"alertingThresholds.memoryUsage = nan\n"  /* 20: not a number */
		"logLevel = loud\n"			  /* 21: not a choice */
		"auditLog = relative/path\n"		  /* 22: not absolute */
		"[guard]\n"				  /* 23 */
		"roots = /a:b\n"			  /* 24: one bad path in a list */
		"[safeFileOps]\n"			  /* 25 */
		"checksumAlgorithm = md5\n"		  /* 26 */
		"[]\n"					  /* 27: empty section name */
		"[supervisor] junk\n"			  /* 28: text after header */
		"[agentIdentity]\n"			  /* 29 */
		"maxAgents = 10\n"			  /* 30: fine */
		"maxAgents = 12\n";			  /* 31: set twice: warning */
	struct bumba_config c;
	struct msgs s = {0};
	const char *p = write_text("bad.conf", text);
	char pre[200];
	int n;

	(void)state;
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, p, collect, &s);
#define AT(line) (snprintf(pre, sizeof(pre), "%s:%d: ", p, line), pre)
	assert_msg(&s, AT(2), "'30s' is not a whole number of milliseconds");
	assert_msg(&s, AT(3), "out of range (1..86400000 milliseconds)");
	assert_msg(&s, AT(4), "maxActiveLocks: 0 is out of range");
	assert_msg(&s, AT(5), "'maybe' is not a boolean");
	assert_msg(&s, AT(6), "did you mean 'defaultTimeout'");
	assert_msg(&s, AT(7), "'-3' is not a whole number");
	assert_msg(&s, AT(8), "empty value");
	assert_msg(&s, AT(10), "unknown section [nosuch]");
	assert_msg(&s, AT(11), "section header without ']'");
	assert_false(has(&s, AT(12), ""));
	assert_msg(&s, AT(14), "'localhost' is not a numeric IPv4 or IPv6 address");
	assert_msg(&s, AT(15), "70000 is out of range (0..65535)");
	assert_msg(&s, AT(16), "expected 'key = value'");
	assert_msg(&s, AT(17), "missing key name");
	assert_msg(&s, AT(19), "1.5 is out of range");
	assert_msg(&s, AT(20), "'nan' is not a number");
	assert_msg(&s, AT(21), "'loud' is not one of error, warning, notice, info, debug");
	assert_msg(&s, AT(22), "'relative/path' is not an absolute path");
	assert_msg(&s, AT(24), "'b' is not an absolute path");
	assert_msg(&s, AT(26), "'md5' is not one of sha256, xxh3, xxh128");
	assert_msg(&s, AT(27), "empty section name");
	assert_msg(&s, AT(28), "text after the section header");
	assert_msg(&s, AT(31), "warning: agentIdentity.maxAgents set again (first at line 30)");
	assert_int_equal(n, 21);
	assert_int_equal(s.errors, 21);
	assert_int_equal(s.warnings, 1);
	/* Bad values leave the defaults; the last good one wins. */
	assert_int_equal(c.lock_default_timeout_ms, 30000);
	assert_int_equal(c.max_active_locks, 10000);
	assert_int_equal(c.n_guard_roots, 0);
	assert_int_equal(c.max_agents, 12);
	assert_int_equal(c.web_port, 3001);
}

static void test_lines(void **state)
{
	char long_line[400];
	struct bumba_config c;
	struct msgs s = {0};
	const char *p;
	int n;

	(void)state;
	/* A line longer than inih's buffer is refused, not cut. */
	memset(long_line, 0, sizeof(long_line));
	snprintf(long_line, sizeof(long_line), "[monitoring]\nauditLog = /");
	memset(long_line + strlen(long_line), 'x', 250);
	strcat(long_line, "\nlogLevel = debug\n");
	p = write_text("long.conf", long_line);
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, p, collect, &s);
	assert_int_equal(n, 1);
	assert_true(has(&s, p, ":2: line too long"));
	assert_string_equal(c.audit_log, "");
	assert_int_equal(c.log_level, BUMBA_LOG_DEBUG);

	/* CRLF, a byte order mark, comments of both kinds, ':' as separator. */
	static const char crlf[] = "\xef\xbb\xbf; comment\r\n# comment\r\n[dashboard]\r\n"
				   "webPort: 8080\r\n  refreshInterval = 200   \r\n";
	memset(&s, 0, sizeof(s));
	p = write_text("crlf.conf", crlf);
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, p, collect, &s);
	if (n)
		dump(&s);
	assert_int_equal(n, 0);
	assert_int_equal(c.web_port, 8080);
	assert_int_equal(c.refresh_interval_ms, 200);

	/* A NUL byte inside a line. */
	static const char nul[] = "[dashboard]\nwebPort = 80\0 80\nrefreshInterval = 300\n";
	memset(&s, 0, sizeof(s));
	p = write_file("nul.conf", nul, sizeof(nul) - 1);
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, p, collect, &s);
	assert_int_equal(n, 1);
	assert_true(has(&s, p, ":2: NUL byte"));
	assert_int_equal(c.refresh_interval_ms, 300);

	/* Invalid UTF-8 in a value. */
	memset(&s, 0, sizeof(s));
	p = write_text("utf8.conf", "[monitoring]\nauditLog = /tmp/\xff\xfe\n");
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, p, collect, &s);
	assert_int_equal(n, 1);
	assert_true(has(&s, p, ":2: monitoring.auditLog: value is not UTF-8"));

	/* An empty file, and a directory. */
	memset(&s, 0, sizeof(s));
	p = write_text("empty.conf", "");
	bumba_config_defaults(&c);
	assert_int_equal(bumba_config_load_file(&c, p, collect, &s), 0);
	assert_int_equal(bumba_config_load_file(&c, tmpdir, collect, &s), -EISDIR);
	assert_int_equal(bumba_config_load_file(&c, "/nonexistent/bumba.conf", collect, &s),
			 -ENOENT);
}

static void test_lists(void **state)
{
	struct bumba_config c;
	struct msgs s = {0};
	const char *p;
	int n;

	(void)state;
	/* Repeated lines accumulate; empty parts are skipped; too many is an
	 * error and leaves the list as it was. */
	p = write_text("lists.conf", "[supervisor]\nworkspaces = /a::/b:\nworkspaces = /c\n"
				     "workspaces = /d:/e:/f:/g:/h:/i\n");
	bumba_config_defaults(&c);
	n = bumba_config_load_file(&c, p, collect, &s);
	assert_int_equal(n, 1);
	assert_true(has(&s, p, ":4: supervisor.workspaces: more than 8 paths"));
	assert_int_equal(c.n_workspaces, 3);
	assert_string_equal(c.workspaces[2], "/c");

	/* The environment replaces the file's list. */
	setenv("BUMBA_SUPERVISOR_WORKSPACES", "/x:/y", 1);
	memset(&s, 0, sizeof(s));
	assert_int_equal(bumba_config_apply_env(&c, collect, &s), 0);
	assert_int_equal(c.n_workspaces, 2);
	assert_string_equal(c.workspaces[0], "/x");
	assert_string_equal(c.workspaces[1], "/y");
	unsetenv("BUMBA_SUPERVISOR_WORKSPACES");
}

static void test_env(void **state)
{
	struct bumba_config c;
	struct msgs s = {0};
	const char *p = write_text("env.conf", "[fileLocking]\ndefaultTimeout = 1000\n"
					       "maxTimeout = 2000\n[dashboard]\nwebPort = 1111\n");
	char name[128];
	int n;

	(void)state;
	/* Names: BUMBA_<SECTION>_<KEY>, upper case, '.' as '_'. */
	for (size_t i = 0; i < bumba_config_n_keys(); i++) {
		if (!strcmp(bumba_config_key_name(i, name, sizeof(name)),
			    "monitoring.alertingThresholds.conflictRate"))
			assert_string_equal(bumba_config_env_name(i, name, sizeof(name)),
					    "BUMBA_MONITORING_ALERTINGTHRESHOLDS_CONFLICTRATE");
		if (!strcmp(bumba_config_key_name(i, name, sizeof(name)),
			    "fileLocking.defaultTimeout"))
			assert_string_equal(bumba_config_env_name(i, name, sizeof(name)),
					    "BUMBA_FILELOCKING_DEFAULTTIMEOUT");
	}

	setenv("BUMBA_FILELOCKING_DEFAULTTIMEOUT", "1500", 1);
	setenv("BUMBA_DASHBOARD_WEBPORT", "2222", 1);
	setenv("BUMBA_MONITORING_ALERTINGTHRESHOLDS_CONFLICTRATE", "0.25", 1);
	setenv("BUMBA_SOCKET", "/run/env/bumba.sock", 1);
	n = bumba_config_load(&c, p, collect, &s);
	if (n)
		dump(&s);
	assert_int_equal(n, 0);
	assert_int_equal(c.lock_default_timeout_ms, 1500); /* env over file */
	assert_int_equal(c.lock_max_timeout_ms, 2000);	   /* file over default */
	assert_int_equal(c.web_port, 2222);
	assert_true(c.thr_conflict_rate == 0.25);
	assert_string_equal(c.socket, "/run/env/bumba.sock");
	assert_int_equal(bumba_config_source_of(&c, "fileLocking.defaultTimeout"), BUMBA_CFG_ENV);
	assert_int_equal(bumba_config_source_of(&c, "fileLocking.maxTimeout"), BUMBA_CFG_FILE);
	assert_int_equal(bumba_config_source_of(&c, "fileLocking.cleanupInterval"),
			 BUMBA_CFG_DEFAULT);
	assert_int_equal(bumba_config_source_of(&c, "no.such"), -1);

	/* BUMBA_SUPERVISOR_SOCKET wins over BUMBA_SOCKET. */
	setenv("BUMBA_SUPERVISOR_SOCKET", "/run/sup/bumba.sock", 1);
	n = bumba_config_load(&c, p, collect, &s);
	assert_int_equal(n, 0);
	assert_string_equal(c.socket, "/run/sup/bumba.sock");

	/* A bad value in the environment is named, and the file's stays. */
	setenv("BUMBA_FILELOCKING_DEFAULTTIMEOUT", "soon", 1);
	memset(&s, 0, sizeof(s));
	n = bumba_config_load(&c, p, collect, &s);
	assert_int_equal(n, 1);
	assert_msg(&s, "environment: BUMBA_FILELOCKING_DEFAULTTIMEOUT: ", "'soon' is not a whole");
	assert_int_equal(c.lock_default_timeout_ms, 1000);

	/* A check across keys is reported where the later value was set. */
	setenv("BUMBA_FILELOCKING_DEFAULTTIMEOUT", "5000", 1);
	memset(&s, 0, sizeof(s));
	n = bumba_config_load(&c, p, collect, &s);
	assert_int_equal(n, 1);
	assert_msg(&s, "environment: BUMBA_FILELOCKING_DEFAULTTIMEOUT: ",
		   "defaultTimeout (5000 ms) exceeds fileLocking.maxTimeout (2000 ms)");
	clear_env();
}

static void test_checks(void **state)
{
	struct bumba_config c;
	struct msgs s = {0};
	const char *p = write_text("checks.conf", "[fileLocking]\nmaxTimeout = 100\n"
						  "defaultTimeout = 200\nholdsPerAgent = 100\n"
						  "[guard]\nenforce = true\nenabled = false\n");
	int n;

	(void)state;
	n = bumba_config_load(&c, p, collect, &s);
	assert_int_equal(n, 3);
	assert_msg(&s, "", ":3: fileLocking.defaultTimeout (200 ms) exceeds");
	assert_msg(&s, "", ":4: fileLocking.holdsPerAgent: 100 is not a power of two");
	assert_msg(&s, "", ":7: guard.enforce = true needs guard.enabled = true");

	/* Keys whose feature is not built yet: a warning with the line. */
	memset(&s, 0, sizeof(s));
	p = write_text("pending.conf", "[safeFileOps]\nenableBackups = false\n");
	n = bumba_config_load(&c, p, collect, &s);
	assert_int_equal(n, 0);
	bumba_config_pending(&c, collect, &s);
	assert_int_equal(s.errors, 0);
	assert_msg(&s, p, ":2: warning: safeFileOps.enableBackups is set but has no effect yet");

	/* A missing file given explicitly is an error. */
	memset(&s, 0, sizeof(s));
	n = bumba_config_load(&c, "/nonexistent/bumba.conf", collect, &s);
	assert_int_equal(n, 1);
	assert_msg(&s, "/nonexistent/bumba.conf: cannot read", "No such file");
}

static void test_print_round_trip(void **state)
{
	struct bumba_config a, b;
	struct msgs s = {0};
	char path[160];
	FILE *f;

	(void)state;
	bumba_config_defaults(&a);
	assert_int_equal(bumba_config_load_file(&a, write_text("rt.conf", every_key), collect, &s),
			 0);
	snprintf(path, sizeof(path), "%s/printed.conf", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	bumba_config_print(&a, f);
	fclose(f);
	bumba_config_defaults(&b);
	if (bumba_config_load_file(&b, path, collect, &s) != 0)
		dump(&s);
	assert_int_equal(s.errors, 0);
	check_every_key(&b);

	/* The defaults print and read back too. */
	bumba_config_defaults(&a);
	f = fopen(path, "w");
	bumba_config_print(&a, f);
	fclose(f);
	memset(&s, 0, sizeof(s));
	bumba_config_defaults(&b);
	assert_int_equal(bumba_config_load_file(&b, path, collect, &s), 0);
	assert_int_equal(b.web_port, 3001);
	assert_int_equal(b.n_workspaces, 0);
	assert_string_equal(b.socket, "");
}

static void test_listen(void **state)
{
	char a[64];
	uint32_t port;

	(void)state;
	assert_int_equal(bumba_config_parse_listen("127.0.0.1:3001", a, sizeof(a), &port), 0);
	assert_string_equal(a, "127.0.0.1");
	assert_int_equal(port, 3001);
	assert_int_equal(bumba_config_parse_listen("[::1]:0", a, sizeof(a), &port), 0);
	assert_string_equal(a, "::1");
	assert_int_equal(port, 0);
	assert_int_equal(bumba_config_parse_listen("0.0.0.0:65535", a, sizeof(a), &port), 0);
	static const char *const bad[] = {
		"",	 "off",	    "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "localhost:80",
		"[::1]", "[::1]80", "::1:80x",	 "1.2.3.4:-1", "1.2.3.4: 80",	  "[1.2.3.4]:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bumba_config_parse_listen(bad[i], a, sizeof(a), &port) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	}
}

/* supervisor.user: a user name (bumbad looks it up), never a path or
 * anything a shell would mind. */
static void test_user(void **state)
{
	static const char *const good[] = {"bumba", "root", "_svc", "a.b-c_9", "machine$"};
	static const char *const bad[] = {"",	    "Bumba", "-x",
					  "9lives", "a b",   "a/b",
					  "$x",	    "a$b",   "abcdefghijklmnopqrstuvwxyz0123456"};
	struct bumba_config c;
	char text[128];

	(void)state;
	assert_string_equal((bumba_config_defaults(&c), c.user), "bumba");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct msgs s = {0};
		snprintf(text, sizeof(text), "[supervisor]\nuser = %s\n", good[i]);
		bumba_config_defaults(&c);
		if (bumba_config_load_file(&c, write_text("user.conf", text), collect, &s) != 0) {
			dump(&s);
			fail_msg("user '%s' refused", good[i]);
		}
		assert_string_equal(c.user, good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct msgs s = {0};
		snprintf(text, sizeof(text), "[supervisor]\nuser = %s\n", bad[i]);
		bumba_config_defaults(&c);
		if (bumba_config_load_file(&c, write_text("user.conf", text), collect, &s) != 1)
			fail_msg("user '%s' accepted", bad[i]);
		assert_string_equal(c.user, "bumba");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_user, setup),
		cmocka_unit_test_setup(test_defaults, setup),
		cmocka_unit_test_setup(test_every_key, setup),
		cmocka_unit_test_setup(test_bad_values, setup),
		cmocka_unit_test_setup(test_lines, setup),
		cmocka_unit_test_setup(test_lists, setup),
		cmocka_unit_test_setup(test_env, setup),
		cmocka_unit_test_setup(test_checks, setup),
		cmocka_unit_test_setup(test_print_round_trip, setup),
		cmocka_unit_test_setup(test_listen, setup),
	};
	char cmd[128];
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/bumba-config.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return rc;
}
