/* SPDX-License-Identifier: MIT */
/*
 * http.c - bumbad's HTTP endpoints, served by libmicrohttpd in its own
 * thread (the event loop never waits for a client):
 *
 *   /metrics            Prometheus text format (metrics.c)
 *   /health             200 when every component is healthy, else 503;
 *                       JSON with a status per component
 *   /ready              200 when a new agent can register now, else 503
 *   /dashboard/status   the dashboard as JSON (= bumbactl status --json)
 *   /dashboard/safety   its SAFETY STATUS section as JSON
 *
 * Only GET and HEAD; anything else is 405, an unknown path 404, and what
 * libmicrohttpd refuses (oversized headers, malformed requests) gets its
 * 4xx.  Connections are limited in number and time.  The handlers only
 * read: the segment through atomics, the immutable configuration, and the
 * guard's status under its mutex.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "ops.h"
#include "recovery.h"

#define CT_JSON	   "application/json"
#define CT_TEXT	   "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* ------------------------------------------------------------------ */
/* components                                                           */

/* Probes io_uring the way liburing's io_uring_queue_init would start:
 * io_uring_setup(2) with one entry.  At most every 10 s. */
static void probe_uring(struct bumbad_ops *x)
{
	struct io_uring_params p;
	uint64_t now = bumba_now_ns();
	int fd;

	if (x->uring_probed_ns && now - x->uring_probed_ns < 10000000000ull)
		return;
	x->uring_probed_ns = now;
	memset(&p, 0, sizeof(p));
	fd = (int)syscall(__NR_io_uring_setup, 1, &p);
	if (fd >= 0) {
		close(fd);
		x->uring_ok = true;
		snprintf(x->uring_detail, sizeof(x->uring_detail), "io_uring_setup works");
		return;
	}
	x->uring_ok = false;
	snprintf(x->uring_detail, sizeof(x->uring_detail),
		 "io_uring_setup: %s; safe file operations use synchronous I/O", strerror(errno));
}

/* The keeper holds the segment for a restarted bumbad; its connection
 * hangs up when it dies. */
static const char *keeper_state(const struct bumbad_ops *x)
{
	struct pollfd p = {.fd = x->keeper_fd, .events = POLLRDHUP};

	if (x->keeper_fd < 0)
		return "none";
	if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
		return "gone";
	return "alive";
}

static void cpu_usage(struct bumbad_ops *x, const struct ops_memory *m)
{
	struct timespec ts;
	double wall;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	if (x->cpu_last_wall_s == 0) {
		x->cpu_last_wall_s = wall;
		x->cpu_last_s = m->cpu_seconds;
		return;
	}
	if (wall - x->cpu_last_wall_s >= 1.0) {
		x->cpu_pct = 100.0 * (m->cpu_seconds - x->cpu_last_s) / (wall - x->cpu_last_wall_s);
		x->cpu_last_wall_s = wall;
		x->cpu_last_s = m->cpu_seconds;
	}
}

static int rank(const char *status)
{
	if (!strcmp(status, "unhealthy") || !strcmp(status, "failed"))
		return 2;
	if (!strcmp(status, "degraded"))
		return 1;
	return 0; /* healthy, and the neutral disabled / not_built / unavailable */
}

static cJSON *component(cJSON *comps, const char *name, const char *status, const char *detail,
			int *worst)
{
	cJSON *c = cJSON_AddObjectToObject(comps, name);

	cJSON_AddStringToObject(c, "status", status);
	if (detail && *detail)
		cJSON_AddStringToObject(c, "detail", detail);
	if (rank(status) > *worst)
		*worst = rank(status);
	return c;
}

static char *iso_now(char *buf, size_t len)
{
	uint64_t ms = bumba_wall_ms();
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), len - strlen(buf), ".%03uZ", (unsigned)(ms % 1000));
	return buf;
}

static char *json_finish(cJSON *root)
{
	char *s = cJSON_PrintUnformatted(root), *out = NULL;

	cJSON_Delete(root);
	if (s && asprintf(&out, "%s\n", s) < 0)
		out = NULL;
	cJSON_free(s);
	return out;
}

/* /health and /ready share the checks; ready asks only "can an agent
 * register now?". */
static char *health(struct bumbad *d, bool ready_only, unsigned *code)
{
	struct bumbad_ops *x = d->ops;
	const struct seg_header *h = d->seg.hdr;
	struct bumba_dash dash;
	struct ops_memory mem;
	cJSON *root = cJSON_CreateObject(), *comps, *c, *m;
	int worst = 0;
	char buf[512], ts[64];
	bool seg_ok, beat_ok, agents_room, locks_room;
	const char *keeper;

	if (!root)
		return NULL;
	seg_ok = h->magic == BUMBA_SEG_MAGIC && h->abi_version == BUMBA_ABI_VERSION &&
		 h->format == bumba_seg_format() && h->total_size == d->seg.size;
	ops_dashboard(d, &dash);
	beat_ok = dash.heartbeat_age_ms < 50ull * h->heartbeat_ms;
	agents_room = dash.agents_active < dash.agents_max;
	locks_room = atomic_load(&h->live_keys) < h->caps.max_locks;

	if (ready_only) {
		const char *why = !seg_ok	 ? "the segment's header is damaged"
				  : d->stop	 ? "bumbad is stopping"
				  : !beat_ok	 ? "the event loop is not beating"
				  : !agents_room ? "the agent table is full"
						 : NULL;
		cJSON_AddBoolToObject(root, "ready", why == NULL);
		if (why)
			cJSON_AddStringToObject(root, "reason", why);
		cJSON_AddNumberToObject(root, "activeAgents", dash.agents_active);
		cJSON_AddNumberToObject(root, "maxAgents", dash.agents_max);
		*code = why ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK;
		bumba_dash_free(&dash);
		return json_finish(root);
	}

	ops_memory(&mem);
	cpu_usage(x, &mem);
	probe_uring(x);
	keeper = keeper_state(x);

	cJSON_AddStringToObject(root, "timestamp", iso_now(ts, sizeof(ts)));
	snprintf(buf, sizeof(buf), "%d.%d.%d", BUMBA_VERSION_MAJOR, BUMBA_VERSION_MINOR,
		 BUMBA_VERSION_PATCH);
	cJSON_AddStringToObject(root, "version", buf);
	comps = cJSON_AddObjectToObject(root, "components");

	c = component(comps, "segment", seg_ok ? "healthy" : "unhealthy",
		      seg_ok ? NULL : "magic, ABI, format word or size no longer match", &worst);
	cJSON_AddNumberToObject(c, "bytes", (double)d->seg.size);
	cJSON_AddNumberToObject(c, "abi", h->abi_version);

	if (!beat_ok)
		snprintf(buf, sizeof(buf), "the event loop has not beaten for %llu ms",
			 (unsigned long long)dash.heartbeat_age_ms);
	else if (strcmp(keeper, "alive"))
		snprintf(buf, sizeof(buf),
			 "the segment keeper is %s: a crash of bumbad would lose every lock",
			 keeper);
	else
		buf[0] = '\0';
	c = component(comps, "supervisor",
		      !beat_ok			? "unhealthy"
		      : strcmp(keeper, "alive") ? "degraded"
						: "healthy",
		      buf, &worst);
	cJSON_AddNumberToObject(c, "pid", dash.sup_pid);
	cJSON_AddNumberToObject(c, "generation", dash.generation);
	cJSON_AddNumberToObject(c, "heartbeatAgeMs", (double)dash.heartbeat_age_ms);
	cJSON_AddStringToObject(c, "keeper", keeper);
	cJSON_AddNumberToObject(c, "uptimeSeconds",
				(double)(bumba_wall_ms() - x->start_wall_ms) / 1000.0);

	snprintf(buf, sizeof(buf), "the lock table is full (%u entries): new locks are refused",
		 h->caps.max_locks);
	c = component(comps, "fileLocking", locks_room ? "healthy" : "unhealthy",
		      locks_room ? NULL : buf, &worst);
	cJSON_AddNumberToObject(c, "active", dash.t.locks_active);
	cJSON_AddNumberToObject(c, "waiting", dash.t.locks_waiting);
	cJSON_AddNumberToObject(c, "max", dash.max_locks);

	snprintf(buf, sizeof(buf), "the agent table is full (%u/%u): new agents are refused",
		 dash.agents_active, dash.agents_max);
	c = component(comps, "agentIdentity", agents_room ? "healthy" : "unhealthy",
		      agents_room ? NULL : buf, &worst);
	cJSON_AddNumberToObject(c, "active", dash.agents_active);
	cJSON_AddNumberToObject(c, "max", dash.agents_max);
	cJSON_AddNumberToObject(c, "inactive", dash.agents_inactive);

	if (dash.have_territories) {
		bool room = dash.terr.active < h->caps.max_territories;
		snprintf(buf, sizeof(buf), "the territory table is full (%u)",
			 h->caps.max_territories);
		c = component(comps, "territoryManager", room ? "healthy" : "unhealthy",
			      room ? NULL : buf, &worst);
		cJSON_AddNumberToObject(c, "active", dash.terr.active);
		cJSON_AddNumberToObject(c, "max", h->caps.max_territories);
	} else {
		component(comps, "territoryManager", "not_built",
			  "this build's library keeps no territories", &worst);
	}
	{
		/* The operations run in the agents; bumbad finishes or rolls
		 * back what dead ones left.  A conflict there is a file to
		 * look at, not a failure of bumba. */
		struct recovery_totals r;

		recovery_totals(&r);
		if (r.conflicts || r.bad)
			snprintf(buf, sizeof(buf),
				 "recovery left %llu operation(s) unapplied (file changed since) "
				 "and "
				 "%llu unreadable manifest(s) aside: see the log",
				 (unsigned long long)r.conflicts, (unsigned long long)r.bad);
		else
			buf[0] = '\0';
		c = component(comps, "safeFileOps", "healthy", buf, &worst);
		cJSON_AddNumberToObject(c, "recoveredForward", (double)r.forward);
		cJSON_AddNumberToObject(c, "recoveredBack", (double)r.back);
		cJSON_AddNumberToObject(c, "recoveryConflicts", (double)r.conflicts);
		cJSON_AddNumberToObject(c, "temporariesRemoved", (double)r.temps);
		cJSON_AddNumberToObject(c, "backupsExpired", (double)r.backups_expired);
	}

	{
		char st[16], det[256];
		pthread_mutex_lock(&x->guard_mu);
		snprintf(st, sizeof(st), "%s", x->guard_status);
		snprintf(det, sizeof(det), "%s", x->guard_detail);
		pthread_mutex_unlock(&x->guard_mu);
		c = component(comps, "guard", st, det, &worst);
		cJSON_AddNumberToObject(c, "violations", (double)dash.violations);
	}
	component(comps, "io_uring", x->uring_ok ? "available" : "unavailable", x->uring_detail,
		  &worst);
	component(comps, "dashboard", "healthy", NULL, &worst);

	m = cJSON_AddObjectToObject(root, "metrics");
	cJSON_AddNumberToObject(m, "activeAgents", dash.agents_active);
	cJSON_AddNumberToObject(m, "activeLocks", dash.t.locks_active);
	cJSON_AddNumberToObject(m, "memoryUsage", (double)mem.resident);
	cJSON_AddNumberToObject(m, "memoryLimit", (double)mem.limit);
	cJSON_AddNumberToObject(m, "segmentBytes", (double)d->seg.size);
	cJSON_AddNumberToObject(m, "cpuUsage", (double)(long)(x->cpu_pct * 100) / 100.0);

	cJSON_AddStringToObject(root, "status",
				worst == 0   ? "healthy"
				: worst == 1 ? "degraded"
					     : "unhealthy");
	*code = worst == 0 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	bumba_dash_free(&dash);
	return json_finish(root);
}

/* ------------------------------------------------------------------ */
/* requests                                                             */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
			     char *body /* malloc'd, taken */, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!body) {
		body = strdup("internal error\n");
		code = MHD_HTTP_INTERNAL_SERVER_ERROR;
		type = CT_TEXT;
		if (!body)
			return MHD_NO;
	}
	r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static char *error_json(const char *msg, const char *path)
{
	cJSON *o = cJSON_CreateObject();
	char clean[256];

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "error", msg);
	if (path) {
		bumba_dash_clean(path, clean, sizeof(clean), '?');
		cJSON_AddStringToObject(o, "path", clean);
	}
	return json_finish(o);
}

static char *metrics_text(struct bumbad *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	metrics_write(d, f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct bumbad *d = cls;
	struct bumba_dash dash;
	unsigned code = MHD_HTTP_OK;
	char *body;

	(void)version;
	(void)upload;
	(void)state;
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
		/* Any request body is not read: the connection closes after. */
		*upload_size = 0;
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, CT_JSON,
			     error_json("method not allowed: GET or HEAD only", NULL), "GET, HEAD");
	}
	if (*upload_size) {
		*upload_size = 0;
		return reply(conn, MHD_HTTP_BAD_REQUEST, CT_JSON,
			     error_json("GET with a body", NULL), NULL);
	}
	if (!strcmp(url, "/metrics")) {
		if (!d->ops->cfg.prometheus)
			return reply(conn, MHD_HTTP_NOT_FOUND, CT_JSON,
				     error_json("metrics export is off "
						"(monitoring.enablePrometheusMetrics)",
						url),
				     NULL);
		return reply(conn, MHD_HTTP_OK, CT_METRICS, metrics_text(d), NULL);
	}
	if (!strcmp(url, "/health")) {
		body = health(d, false, &code);
		return reply(conn, code, CT_JSON, body, NULL);
	}
	if (!strcmp(url, "/ready")) {
		body = health(d, true, &code);
		return reply(conn, code, CT_JSON, body, NULL);
	}
	if (!strcmp(url, "/dashboard/status") || !strcmp(url, "/dashboard/safety")) {
		ops_dashboard(d, &dash);
		body = !strcmp(url, "/dashboard/status") ? bumba_dash_status_json(&dash)
							 : bumba_dash_safety_json(&dash);
		bumba_dash_free(&dash);
		return reply(conn, MHD_HTTP_OK, CT_JSON, body, NULL);
	}
	if (!strcmp(url, "/")) {
		body = strdup(
			"bumbad: /metrics /health /ready /dashboard/status /dashboard/safety\n");
		return reply(conn, MHD_HTTP_OK, CT_TEXT, body, NULL);
	}
	return reply(conn, MHD_HTTP_NOT_FOUND, CT_JSON, error_json("not found", url), NULL);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	bumbad_log(LOG_DEBUG, "http: %s", buf);
}

int http_start(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *mhd;
	const union MHD_DaemonInfo *info;
	char shown[BUMBA_CONFIG_ADDR_MAX + 16];

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, x->http_addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)x->http_port);
		snprintf(shown, sizeof(shown), "%s", x->http_addr);
	} else if (inet_pton(AF_INET6, x->http_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) ==
		   1) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)x->http_port);
		flags |= MHD_USE_IPv6;
		snprintf(shown, sizeof(shown), "[%s]", x->http_addr);
	} else {
		return -EINVAL;
	}
	errno = 0;
	mhd = MHD_start_daemon(
		flags, (uint16_t)x->http_port, NULL, NULL, on_request, d, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
		MHD_OPTION_CONNECTION_LIMIT, 256, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 128,
		MHD_OPTION_CONNECTION_TIMEOUT, 10, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)32768, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!mhd)
		return errno ? -errno : -EADDRINUSE;
	info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
	x->http_bound = info ? info->port : x->http_port;
	x->mhd = mhd;
	bumbad_log(LOG_NOTICE, "http: serving http://%s:%u/ (/metrics /health /ready /dashboard/*)",
		   shown, x->http_bound);
	return 0;
}

void http_stop(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;

	if (x->mhd)
		MHD_stop_daemon(x->mhd);
	x->mhd = NULL;
}
