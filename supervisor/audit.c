/* SPDX-License-Identifier: MIT */
/*
 * audit.c - the audit log: one JSON object per line, appended to
 * monitoring.auditLog, reopened on SIGHUP so logrotate can move it away.
 *
 * Each line is one write(2) on an O_APPEND descriptor, so lines from
 * several writers never interleave.  Today it carries the supervisor's
 * start and stop and every agent's registration, exit (with the locks it
 * still held) and inactivity; the guard adds its violations through
 * audit_raw().
 *
 * {"ts":"2026-01-02T03:04:05.678Z","event":"agent.registered","agent":"...",
 *  "pid":123,"uid":1000,"type":"...","name":"...","department":"...","slot":0}
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"

int audit_open(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;
	int fd;

	fd = open(x->cfg.audit_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		int e = errno;
		bumbad_log(LOG_ERR, "audit log %s: %s", x->cfg.audit_log, strerror(e));
		return -e;
	}
	pthread_mutex_lock(&x->audit_mu);
	x->audit_fd = fd;
	pthread_mutex_unlock(&x->audit_mu);
	return 0;
}

void audit_close(struct bumbad *d)
{
	struct bumbad_ops *x = d->ops;

	pthread_mutex_lock(&x->audit_mu);
	if (x->audit_fd >= 0)
		close(x->audit_fd);
	x->audit_fd = -1;
	pthread_mutex_unlock(&x->audit_mu);
}

static void write_line(struct bumbad *d, const char *s)
{
	struct bumbad_ops *x = d->ops;
	size_t len = strlen(s);
	char *line = malloc(len + 2);

	if (!line)
		return;
	memcpy(line, s, len);
	line[len] = '\n';
	pthread_mutex_lock(&x->audit_mu);
	if (x->audit_fd >= 0 && write(x->audit_fd, line, len + 1) != (ssize_t)(len + 1)) {
		/* Full disk or the like: say so once per hundred. */
		if (x->audit_errors++ % 100 == 0)
			bumbad_log(LOG_ERR, "audit log %s: write failed: %s", x->cfg.audit_log,
				   strerror(errno));
	}
	pthread_mutex_unlock(&x->audit_mu);
	free(line);
}

void audit_raw(struct bumbad *d, const char *json)
{
	if (d->ops && d->ops->audit_fd >= 0)
		write_line(d, json);
}

static cJSON *event_obj(const char *event)
{
	cJSON *o = cJSON_CreateObject();
	uint64_t ms = bumba_wall_ms();
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char ts[64];

	if (!o)
		return NULL;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03uZ", (unsigned)(ms % 1000));
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "event", event);
	return o;
}

static void emit(struct bumbad *d, cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;

	if (s)
		write_line(d, s);
	cJSON_free(s);
	cJSON_Delete(o);
}

/* A string field of the segment, as valid UTF-8. */
static void add_field(cJSON *o, const char *k, const char *field, size_t size)
{
	char raw[BUMBA_ID_MAX], clean[BUMBA_ID_MAX * 3];

	if (size > sizeof(raw))
		size = sizeof(raw);
	memcpy(raw, field, size);
	raw[size - 1] = '\0';
	bumba_dash_clean(raw, clean, sizeof(clean), '?');
	cJSON_AddStringToObject(o, k, clean);
}

void audit_agent(struct bumbad *d, const char *event, uint32_t slot, unsigned locks_held)
{
	const struct agent_slot *a;
	cJSON *o;

	if (!d->ops || d->ops->audit_fd < 0 || slot >= d->seg.hdr->caps.max_agents)
		return;
	a = &d->seg.agents[slot];
	if (atomic_load(&a->state) == AGENT_FREE)
		return; /* already reclaimed: reported then */
	o = event_obj(event);
	if (!o)
		return;
	add_field(o, "agent", a->id, sizeof(a->id));
	cJSON_AddNumberToObject(o, "pid", a->pid);
	cJSON_AddNumberToObject(o, "uid", a->uid);
	add_field(o, "type", a->type, sizeof(a->type));
	add_field(o, "name", a->name, sizeof(a->name));
	add_field(o, "department", a->department, sizeof(a->department));
	cJSON_AddNumberToObject(o, "slot", slot);
	if (strcmp(event, "agent.registered") != 0)
		cJSON_AddNumberToObject(o, "locks_held", locks_held);
	if (!strcmp(event, "agent.inactive"))
		cJSON_AddNumberToObject(
			o, "idle_ms",
			(double)(bumba_wall_ms() - atomic_load(&a->last_activity_ms)));
	emit(d, o);
}

void audit_supervisor(struct bumbad *d, const char *event)
{
	cJSON *o;

	if (!d->ops || d->ops->audit_fd < 0)
		return;
	o = event_obj(event);
	if (!o)
		return;
	cJSON_AddNumberToObject(o, "pid", getpid());
	cJSON_AddNumberToObject(o, "generation", atomic_load(&d->seg.hdr->sup_generation));
	cJSON_AddStringToObject(o, "socket", d->socket_path);
	if (d->ops->cfg.path[0])
		cJSON_AddStringToObject(o, "config", d->ops->cfg.path);
	emit(d, o);
}
