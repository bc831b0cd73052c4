/* SPDX-License-Identifier: MIT */
/*
 * config.h - bumba's configuration: /etc/bumba/bumba.conf (INI, parsed
 * with libinih), BUMBA_* environment overrides, and built-in defaults, so
 * that nothing at all needs to be configured.  Shared by bumbad (which uses
 * it) and bumbactl (config validate/show, the dashboard's refresh interval
 * and alerting thresholds).
 *
 * Precedence, highest first: command-line options (bumbad's own), the
 * environment, the file, the defaults.  Every key, its default and its
 * range are in docs/configuration.md and bumba.conf(5); the table in
 * config.c is the one source both are checked against.
 */
#ifndef BUMBA_CONFIG_H
#define BUMBA_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "internal.h"

#define BUMBA_CONFIG_DEFAULT_PATH "/etc/bumba/bumba.conf"
#define BUMBA_CONFIG_SOCKET_MAX	  100 /* room for ".keeper" in sockaddr_un */
#define BUMBA_CONFIG_ADDR_MAX	  64
#define BUMBA_CONFIG_USER_MAX	  33 /* a user name, as useradd allows */

/* Where a value came from. */
enum bumba_config_source {
	BUMBA_CFG_DEFAULT = 0,
	BUMBA_CFG_FILE,
	BUMBA_CFG_ENV,
	BUMBA_CFG_CLI, /* set by bumbad's options after loading */
};

enum bumba_log_level { /* syslog priorities */
		       BUMBA_LOG_ERROR = 3,
		       BUMBA_LOG_WARNING = 4,
		       BUMBA_LOG_NOTICE = 5,
		       BUMBA_LOG_INFO = 6,
		       BUMBA_LOG_DEBUG = 7,
};

struct bumba_config {
	/* [supervisor] */
	char socket[BUMBA_CONFIG_SOCKET_MAX]; /* "": BUMBA_SOCKET, then the default */
	char workspaces[BUMBA_MAX_ROOTS][PATH_MAX];
	uint32_t n_workspaces; /* 0: the current directory */
	uint32_t keeper_linger_s;
	char user[BUMBA_CONFIG_USER_MAX]; /* a root-started bumbad switches to it; "root": stays */

	/* [fileLocking] */
	uint32_t lock_default_timeout_ms;
	uint32_t lock_max_timeout_ms;
	uint32_t cleanup_interval_ms;
	uint32_t max_active_locks;
	uint32_t max_waiters;
	uint32_t holds_per_agent;
	bool priority_queue;

	/* [territoryManagement] */
	uint32_t terr_default_timeout_ms; /* 0: territories never expire */
	uint32_t max_territories;
	uint32_t max_territory_paths;
	bool hierarchical;
	char conflict_strategy[16]; /* priority | fifo | manual */

	/* [safeFileOps] */
	bool backups;
	uint32_t backup_retention_hours;
	bool verification;
	bool transactions;
	uint32_t max_transaction_size;
	char checksum[16]; /* sha256 | xxh3 | xxh128 */

	/* [agentIdentity] */
	uint32_t max_agents;
	bool cleanup_inactive;
	uint32_t inactive_timeout_ms;

	/* [dashboard] */
	uint32_t refresh_interval_ms;
	bool web;
	char listen_address[BUMBA_CONFIG_ADDR_MAX]; /* numeric IPv4 or IPv6 */
	uint32_t web_port;			    /* 0: any free port */

	/* [monitoring] */
	uint32_t log_level;	  /* enum bumba_log_level */
	char audit_log[PATH_MAX]; /* "": no audit log */
	bool prometheus;
	double thr_conflict_rate;  /* conflicts per acquisition, 0..1 */
	uint32_t thr_lock_wait_ms; /* mean lock wait */
	double thr_terr_failures;  /* failed claims per claim, 0..1 */
	double thr_memory;	   /* fraction of bumba_memory_limit_bytes */

	/* [guard] */
	bool guard_enabled;
	bool guard_enforce;
	char guard_roots[BUMBA_MAX_ROOTS][PATH_MAX];
	uint32_t n_guard_roots; /* 0: the workspaces */

	/* Provenance of each key, by index in the key table. */
	uint8_t source[64];
	uint32_t line[64];   /* file line that set it, 0 if none */
	char path[PATH_MAX]; /* file loaded, "" if none */
};

/* Diagnostics: every message is complete ("FILE:LINE: ..." or
 * "environment: BUMBA_X: ..."); error is false for a warning. */
typedef void (*bumba_config_report_fn)(void *ctx, bool error, const char *msg);

/* The built-in defaults. */
void bumba_config_defaults(struct bumba_config *c);

/* Reads path into c (on top of what c holds).  Returns the number of
 * errors reported (0: all good), or -errno if the file cannot be read
 * (nothing is reported then).  Unknown sections and keys, malformed lines,
 * bad or out-of-range values and lines too long are errors, each reported
 * with its line; a key set twice is a warning (the last one wins, except
 * list keys, which accumulate). */
int bumba_config_load_file(struct bumba_config *c, const char *path, bumba_config_report_fn fn,
			   void *ctx);

/* Applies the BUMBA_<SECTION>_<KEY> environment variables (and BUMBA_SOCKET
 * for supervisor.socket).  Returns the number of errors reported. */
int bumba_config_apply_env(struct bumba_config *c, bumba_config_report_fn fn, void *ctx);

/* Checks what no single key can: defaultTimeout <= maxTimeout, etc.
 * Returns the number of errors reported. */
int bumba_config_check(const struct bumba_config *c, bumba_config_report_fn fn, void *ctx);

/*
 * The usual sequence: defaults, then the file (path, or the default path
 * if it exists when path is NULL; an explicitly given file that is missing
 * is an error), then the environment, then the checks.  Returns the number
 * of errors (a missing explicit file counts as one).
 */
int bumba_config_load(struct bumba_config *c, const char *path, bumba_config_report_fn fn,
		      void *ctx);

/* Writes the effective configuration as an INI file, with a comment per
 * key saying where the value came from. */
void bumba_config_print(const struct bumba_config *c, FILE *f);

/* For tests and docs: the number of keys, and key i as "section.key"
 * together with its environment variable name. */
size_t bumba_config_n_keys(void);
const char *bumba_config_key_name(size_t i, char *buf, size_t len);
const char *bumba_config_env_name(size_t i, char *buf, size_t len);

/* Where key "section.key" came from; -1 if there is no such key. */
int bumba_config_source_of(const struct bumba_config *c, const char *section_key);

/* Parses "ADDR:PORT", "[V6ADDR]:PORT" into addr/port; 0 or -EINVAL. */
int bumba_config_parse_listen(const char *s, char *addr, size_t addr_len, uint32_t *port);

/* Reports (as warnings) every key set away from its default whose feature
 * is not built yet, saying what it waits for. */
void bumba_config_pending(const struct bumba_config *c, bumba_config_report_fn fn, void *ctx);

/* "debug" ... "error" for a log level. */
const char *bumba_config_log_level_name(uint32_t level);

#endif /* BUMBA_CONFIG_H */
