/* SPDX-License-Identifier: MIT */
/*
 * ops.c - configuration into options, start and stop of the operations
 * side, the sweep cadence, inactive agents, and the guard's hooks into
 * /health and /metrics (see ops.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "ops.h"

const char *const bumbad_violation_op_names[VOP_N] = {
	"write",     "truncate", "open", "create",   "rename", "unlink",
	"fallocate", "copy",	 "mmap", "io_uring", "other",
};

static void report_stderr(void *ctx, bool error, const char *msg)
{
	(void)ctx;
	(void)error;
	fprintf(stderr, "bumbad: %s\n", msg);
}

static void report_log(void *ctx, bool error, const char *msg)
{
	(void)ctx;
	bumbad_log(error ? LOG_ERR : LOG_NOTICE, "config: %s", msg);
}

int ops_configure(struct bumbad *d)
{
	struct bumbad_opts *o = &d->o;
	struct bumbad_ops *x;
	struct bumba_config *c;
	int errs;

	x = calloc(1, sizeof(*x));
	if (!x) {
		fprintf(stderr, "bumbad: out of memory\n");
		return 71;
	}
	d->ops = x;
	c = &x->cfg;
	pthread_mutex_init(&x->guard_mu, NULL);
	pthread_mutex_init(&x->audit_mu, NULL);
	x->audit_fd = -1;
	x->keeper_fd = -1;

	errs = bumba_config_load(c, o->config_path, report_stderr, NULL);
	if (errs) {
		fprintf(stderr,
			"bumbad: %d configuration error%s; not starting (check with "
			"'bumbactl config validate')\n",
			errs, errs == 1 ? "" : "s");
		return 78; /* EX_CONFIG */
	}

	/* What the command line did not say, the configuration does. */
	if (!o->socket_path && c->socket[0])
		o->socket_path = c->socket;
	if (!o->n_roots) {
		for (uint32_t i = 0; i < c->n_workspaces; i++)
			o->roots[o->n_roots++] = c->workspaces[i];
	}
	if (!o->caps.max_agents)
		o->caps.max_agents = c->max_agents;
	if (!o->caps.max_locks)
		o->caps.max_locks = c->max_active_locks;
	if (!o->caps.max_waiters)
		o->caps.max_waiters = c->max_waiters;
	if (!o->caps.holds_per_agent)
		o->caps.holds_per_agent = c->holds_per_agent;
	if (!o->caps.max_territories)
		o->caps.max_territories = c->max_territories;
	if (!o->caps.max_tpaths)
		o->caps.max_tpaths = c->max_territory_paths;
	if (o->default_timeout_ms < 0)
		o->default_timeout_ms = (int)c->lock_default_timeout_ms;
	if (o->max_timeout_ms < 0)
		o->max_timeout_ms = (int)c->lock_max_timeout_ms;
	if (!o->keeper_linger_s)
		o->keeper_linger_s = (int)c->keeper_linger_s;
	if (!o->cleanup_interval_ms)
		o->cleanup_interval_ms = c->cleanup_interval_ms;
	if (o->no_guard)
		c->guard_enabled = false;
	bumbad_log_level = (int)c->log_level;

	if (o->http) {
		x->http_explicit = true;
		x->http_on = strcmp(o->http, "off") != 0;
		if (x->http_on)
			bumba_config_parse_listen(o->http, x->http_addr, sizeof(x->http_addr),
						  &x->http_port); /* checked by parse_args */
	} else {
		x->http_on = c->web;
		snprintf(x->http_addr, sizeof(x->http_addr), "%s", c->listen_address);
		x->http_port = c->web_port;
		x->http_explicit =
			bumba_config_source_of(c, "dashboard.webPort") != BUMBA_CFG_DEFAULT ||
			bumba_config_source_of(c, "dashboard.listenAddress") != BUMBA_CFG_DEFAULT;
	}

	bumba_dash_thresholds_default(&x->thr);
	x->thr.conflict_rate = c->thr_conflict_rate;
	x->thr.lock_wait_ms = c->thr_lock_wait_ms;
	x->thr.terr_failures = c->thr_terr_failures;
	x->thr.inactive_timeout_ms = c->inactive_timeout_ms;

	/* Until the guard reports (bumbad_guard_health). */
	if (c->guard_enabled)
		snprintf(x->guard_status, sizeof(x->guard_status), "starting");
	else
		snprintf(x->guard_status, sizeof(x->guard_status), "disabled");
	snprintf(x->guard_detail, sizeof(x->guard_detail), "%s",
		 c->guard_enabled ? "the guard has not reported yet"
				  : (o->no_guard ? "--no-guard" : "guard.enabled = false"));

	if (c->path[0])
		bumbad_log(LOG_INFO, "configuration: %s", c->path);
	bumba_config_pending(c, report_log, NULL);
	return 0;
}

int ops_start(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;

	x->start_wall_ms = bumba_wall_ms();
	x->keeper_fd = d->keeper_fd;
	x->n_inactive_gen = d->seg.hdr->caps.max_agents;
	x->inactive_gen = calloc(x->n_inactive_gen, sizeof(uint32_t));
	if (!x->inactive_gen)
		x->n_inactive_gen = 0;
	if (x->cfg.audit_log[0] && audit_open(d) < 0)
		return 1;
	audit_supervisor(d, "supervisor.started");
	return 0;
}

int ops_start_http(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;
	int rc;

	if (!x->http_on) {
		bumbad_log(LOG_INFO, "http: off");
		return 0;
	}
	rc = http_start(d);
	if (rc < 0) {
		if (x->http_explicit) {
			bumbad_log(LOG_ERR, "http: cannot serve on %s port %u: %s", x->http_addr,
				   x->http_port, strerror(-rc));
			return 1;
		}
		bumbad_log(LOG_WARNING,
			   "http: cannot serve on the default %s port %u (%s): running without "
			   "/metrics and /health; set dashboard.webPort or --http",
			   x->http_addr, x->http_port, strerror(-rc));
	}
	return 0;
}

void ops_stop(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;

	if (!x)
		return;
	http_stop(d);
	audit_supervisor(d, "supervisor.stopped");
	audit_close(d);
}

bool ops_sweep_due(struct bumbad *d, uint64_t now_ns)
{
	struct bumbad_ops *x = d->ops;
	uint64_t every = (uint64_t)d->o.cleanup_interval_ms * 1000000ull;

	/* A tick may come a little early: allow half a heartbeat. */
	if (now_ns - x->last_sweep_ns + 50000000ull >= every || now_ns < x->last_sweep_ns) {
		x->last_sweep_ns = now_ns;
		return true;
	}
	atomic_store(&d->seg.hdr->heartbeat_ns, now_ns);
	return false;
}

void ops_tick(struct bumbad *d, uint64_t now_ns)
{
	struct bumbad_ops *x = d->ops;
	uint64_t wall;

	/* Inactive agents, once a second: reported once per agent, never
	 * unregistered (a live process keeps its locks; leases bound hung
	 * holders). */
	if (!x->cfg.cleanup_inactive || !x->inactive_gen ||
	    now_ns - x->last_tick_ns < 1000000000ull)
		return;
	x->last_tick_ns = now_ns;
	wall = bumba_wall_ms();
	for (uint32_t i = 0; i < x->n_inactive_gen; i++) {
		const struct agent_slot *a = &d->seg.agents[i];
		uint64_t last;
		uint32_t gen;

		if (atomic_load_explicit(&a->state, memory_order_relaxed) != AGENT_LIVE)
			continue;
		gen = atomic_load(&a->gen);
		last = atomic_load(&a->last_activity_ms);
		if (wall <= last || wall - last <= x->cfg.inactive_timeout_ms) {
			if (x->inactive_gen[i] == gen + 1)
				x->inactive_gen[i] = 0; /* active again */
			continue;
		}
		if (x->inactive_gen[i] == gen + 1)
			continue;
		x->inactive_gen[i] = gen + 1;
		bumbad_log(LOG_WARNING, "agent %.*s (pid %d): no activity for %llu s", BUMBA_ID_MAX,
			   a->id, (int)a->pid, (unsigned long long)(wall - last) / 1000);
		audit_agent(d, "agent.inactive", i, 0);
	}
}

void ops_sighup(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;

	if (!x->cfg.audit_log[0])
		return;
	audit_close(d);
	if (audit_open(d) == 0)
		bumbad_log(LOG_NOTICE, "SIGHUP: reopened the audit log %s", x->cfg.audit_log);
}

void bumbad_guard_health(struct bumbad *d, const char *status, const char *detail)
{
	struct bumbad_ops *x = d->ops;

	pthread_mutex_lock(&x->guard_mu);
	snprintf(x->guard_status, sizeof(x->guard_status), "%s", status);
	snprintf(x->guard_detail, sizeof(x->guard_detail), "%s", detail ? detail : "");
	pthread_mutex_unlock(&x->guard_mu);
}

uint64_t ops_violations(struct bumbad *d)
{
	uint64_t v = 0;

	for (int op = 0; op < VOP_N; op++)
		v += atomic_load_explicit(&d->ops->violations[op], memory_order_relaxed);
	return v;
}

void ops_dashboard(struct bumbad *d, struct bumba_dash *dash)
{
	bumba_dash_collect(&d->seg, &d->ops->thr, dash);
	bumba_dash_set_violations(dash, ops_violations(d), &d->ops->thr);
}

void bumbad_count_violation(struct bumbad *d, enum bumbad_violation_op op)
{
	if ((unsigned)op >= VOP_N)
		op = VOP_OTHER;
	atomic_fetch_add_explicit(&d->ops->violations[op], 1, memory_order_relaxed);
	/* For the tools that read the segment (bumbactl status, watch). */
	atomic_fetch_add_explicit(&d->seg.hdr->violations, 1, memory_order_relaxed);
}
