/* SPDX-License-Identifier: MIT */
/*
 * ops.h - bumbad's operations side: configuration (config.c), the HTTP
 * endpoints (http.c: /metrics, /health, /ready, /dashboard/...), the
 * Prometheus exposition (metrics.c) and the audit log (audit.c).
 *
 * Threads: everything here runs in bumbad's event loop, except the HTTP
 * server, which runs in libmicrohttpd's own thread so that a slow or
 * hostile client can never stall the loop.  That thread only reads the
 * segment (atomics), this struct's immutable configuration, and the few
 * fields below marked "any thread".
 */
#ifndef BUMBAD_OPS_H
#define BUMBAD_OPS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bumbad.h"
#include "config.h"
#include "dashboard.h"

/* Operations the guard reports a violation for (label op of
 * bumba_violations_total). */
enum bumbad_violation_op {
	VOP_WRITE,     /* write, pwrite, writev, pwritev */
	VOP_TRUNCATE,  /* truncate, ftruncate, O_TRUNC */
	VOP_OPEN,      /* open for writing */
	VOP_CREATE,    /* creat, O_CREAT, mknod, link, symlink */
	VOP_RENAME,    /* rename, renameat2 */
	VOP_UNLINK,    /* unlink, rmdir */
	VOP_FALLOCATE, /* fallocate */
	VOP_COPY,      /* copy_file_range, sendfile, splice, FICLONE */
	VOP_MMAP,      /* shared writable mapping */
	VOP_IO_URING,  /* a write submitted through io_uring */
	VOP_OTHER,
	VOP_N,
};
extern const char *const bumbad_violation_op_names[VOP_N];

struct bumbad_ops {
	struct bumba_config cfg; /* immutable once bumbad is running */
	struct bumba_dash_thresholds thr;

	/* HTTP */
	bool http_on;
	bool http_explicit; /* from the command line, the file or the environment */
	char http_addr[BUMBA_CONFIG_ADDR_MAX];
	uint32_t http_port;  /* as asked (0: any free port) */
	uint32_t http_bound; /* as bound */
	void *mhd;	     /* struct MHD_Daemon */
	int keeper_fd;	     /* copy, to see the keeper die (POLLHUP) */
	uint64_t start_wall_ms;

	/* io_uring probe (HTTP thread only) */
	uint64_t uring_probed_ns;
	bool uring_ok;
	char uring_detail[160];
	double cpu_last_s, cpu_last_wall_s, cpu_pct; /* HTTP thread only */

	/* the guard's state, any thread */
	pthread_mutex_t guard_mu;
	char guard_status[16]; /* healthy | degraded | failed | disabled | not_built | starting */
	char guard_detail[256];
	_Atomic uint64_t violations[VOP_N];

	/* audit log (event loop) */
	pthread_mutex_t audit_mu;
	int audit_fd;
	uint64_t audit_errors;

	/* sweeps (event loop) */
	uint64_t last_sweep_ns, last_tick_ns;
	uint32_t *inactive_gen; /* per slot: generation + 1 already reported inactive */
	uint32_t n_inactive_gen;
};

/* config + options: loads the configuration (d->o.config_path, else the
 * default file if it exists), applies the environment, and fills every
 * option the command line left unset.  Returns 0, or an exit status (78:
 * configuration error) after saying why on stderr. */
int ops_configure(struct bumbad *d);

/* After the segment exists and the loop is set up: the audit log.
 * Returns 0, or an exit status. */
int ops_start(struct bumbad *d);
/* After the privileges are dropped (privilege.h; its thread must start
 * with the final credentials): HTTP.  Returns 0, or an exit status (an
 * HTTP address given explicitly that cannot be bound is fatal; the
 * default one only warns). */
int ops_start_http(struct bumbad *d);
void ops_stop(struct bumbad *d);

/* Every heartbeat: true when the lock sweep (fileLocking.cleanupInterval)
 * is due.  When it is not, ops_tick has published the heartbeat. */
bool ops_sweep_due(struct bumbad *d, uint64_t now_ns);
/* Every heartbeat: inactive agents. */
void ops_tick(struct bumbad *d, uint64_t now_ns);
/* SIGHUP: reopen the audit log (after logrotate). */
void ops_sighup(struct bumbad *d);

/* audit.c: one JSON line per event. */
int audit_open(struct bumbad *d);
void audit_close(struct bumbad *d);
void audit_agent(struct bumbad *d, const char *event, uint32_t slot, unsigned locks_held);
void audit_supervisor(struct bumbad *d, const char *event);
/* For the guard: a complete JSON object (no newline), written as a line. */
void audit_raw(struct bumbad *d, const char *json);

/* For the guard: its state in /health (status as above, detail free text),
 * and one violation. */
void bumbad_guard_health(struct bumbad *d, const char *status, const char *detail);
void bumbad_count_violation(struct bumbad *d, enum bumbad_violation_op op);

/* The dashboard as bumbad serves it: the segment's data plus the
 * violations only bumbad counts. */
void ops_dashboard(struct bumbad *d, struct bumba_dash *dash);
uint64_t ops_violations(struct bumbad *d);

/* http.c */
int http_start(struct bumbad *d);
void http_stop(struct bumbad *d);

/* metrics.c: the Prometheus text exposition into f. */
void metrics_write(struct bumbad *d, FILE *f);
/* Memory figures shared by /metrics and /health. */
struct ops_memory {
	uint64_t allocated, active, resident, mapped; /* jemalloc stats, 0 if unknown */
	uint64_t limit;				      /* cgroup memory.max, else MemTotal */
	uint64_t rss, vsize;			      /* the process */
	double cpu_seconds;
	double start_time_s; /* unix time */
};
void ops_memory(struct ops_memory *m);

#endif /* BUMBAD_OPS_H */
