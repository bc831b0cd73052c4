/* SPDX-License-Identifier: MIT */
/*
 * dashboard.c - the coordination dashboard (see dashboard.h): collect from
 * the segment, render as text or JSON (cJSON).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard.h"

void bumba_dash_thresholds_default(struct bumba_dash_thresholds *t)
{
	t->conflict_rate = 0.05;
	t->lock_wait_ms = 10000;
	t->terr_failures = 0.01;
	t->inactive_timeout_ms = 3600000;
	t->agents_full_pct = 90;
}

/* ------------------------------------------------------------------ */
/* strings from the segment                                             */

void bumba_dash_clean(const char *s, char *out, size_t out_len, char repl)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	if (!out_len)
		return;
	while (*p && o + 1 < out_len) {
		size_t n = bumba_utf8_seq(p, SIZE_MAX);

		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f)) ||
		    (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			out[o++] = repl;
			p += n ? n : 1;
			continue;
		}
		if (o + n >= out_len)
			break;
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
}

/* ------------------------------------------------------------------ */
/* collecting                                                           */

static int dept_cmp(const void *pa, const void *pb)
{
	const struct bumba_dash_dept *a = pa, *b = pb;

	if (a->n != b->n)
		return a->n > b->n ? -1 : 1;
	return strcmp(a->name, b->name);
}

static void add_dept(struct bumba_dash *d, size_t *cap, const char *name)
{
	size_t k;

	for (k = 0; k < d->n_depts; k++) {
		if (!strcmp(d->depts[k].name, name)) {
			d->depts[k].n++;
			return;
		}
	}
	if (d->n_depts == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct bumba_dash_dept *p = realloc(d->depts, ncap * sizeof(*p));
		if (!p)
			return; /* counted in agents_active, not by department */
		d->depts = p;
		*cap = ncap;
	}
	snprintf(d->depts[d->n_depts].name, sizeof(d->depts[0].name), "%s", name);
	d->depts[d->n_depts++].n = 1;
}

static void issue(struct bumba_dash *d, const char *kind, uint64_t count, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void issue(struct bumba_dash *d, const char *kind, uint64_t count, const char *fmt, ...)
{
	va_list ap;

	if (d->n_issue == BUMBA_DASH_MAX_NOTES)
		return;
	d->issue[d->n_issue].kind = kind;
	d->issue[d->n_issue].count = count;
	va_start(ap, fmt);
	vsnprintf(d->issue[d->n_issue].text, sizeof(d->issue[0].text), fmt, ap);
	va_end(ap);
	d->n_issue++;
}

static void recommend(struct bumba_dash *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void recommend(struct bumba_dash *d, const char *fmt, ...)
{
	va_list ap;

	if (d->n_rec == BUMBA_DASH_MAX_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(d->rec[d->n_rec++], sizeof(d->rec[0]), fmt, ap);
	va_end(ap);
}

/* The verdict and what to do, from the numbers just read. */
static void judge(struct bumba_dash *d, const struct bumba_dash_thresholds *thr)
{
	const struct bumba_totals *t = &d->t;

	d->conflicts_handled = t->contended;
	d->issues = t->timeouts + t->deadlocks + t->table_full + d->violations + !d->alive;
	if (!d->alive)
		issue(d, "supervisor", 1,
		      "supervisor not responding (pid %" PRId32 ", heartbeat %" PRIu64
		      " ms old): dead agents are not reclaimed",
		      d->sup_pid, d->heartbeat_age_ms);
	if (d->violations)
		issue(d, "violations", d->violations,
		      "%" PRIu64 " writes by agents holding neither a lock nor a territory",
		      d->violations);
	if (t->timeouts)
		issue(d, "timeouts", t->timeouts, "%" PRIu64 " lock acquisitions timed out",
		      t->timeouts);
	if (t->deadlocks)
		issue(d, "deadlocks", t->deadlocks,
		      "%" PRIu64 " deadlocks detected (refused with EDEADLK)", t->deadlocks);
	if (t->table_full)
		issue(d, "table_full", t->table_full,
		      "%" PRIu64 " lock requests refused: lock table full", t->table_full);

	if (!d->alive || d->violations)
		d->verdict = "UNSAFE";
	else if (d->issues)
		d->verdict = "WARNING";
	else
		d->verdict = "SAFE";
	d->safe = d->alive && d->violations == 0;

	if (!d->alive)
		recommend(d, "Restart bumbad: it adopts the live segment from its keeper and "
			     "reclaims dead agents");
	if (t->acquired >= 20 && d->conflict_rate > thr->conflict_rate)
		recommend(d,
			  "Lock conflict rate %.1f%% is above %.1f%%: reduce file overlap between "
			  "agents, or give each agent its own territory",
			  100.0 * d->conflict_rate, 100.0 * thr->conflict_rate);
	if (d->waits && d->mean_wait_ms > thr->lock_wait_ms)
		recommend(d,
			  "Mean lock wait %.0f ms exceeds %" PRIu32
			  " ms: hold locks for shorter critical sections",
			  d->mean_wait_ms, thr->lock_wait_ms);
	if (t->timeouts)
		recommend(d,
			  "%" PRIu64 " lock waits timed out: raise fileLocking.defaultTimeout (now "
			  "%" PRId32 " ms) or shorten critical sections",
			  t->timeouts, d->default_timeout_ms);
	if (t->deadlocks)
		recommend(d,
			  "Take locks in one global order (e.g. sorted by path): %" PRIu64
			  " acquisitions would have deadlocked",
			  t->deadlocks);
	if (t->table_full)
		recommend(d,
			  "Raise fileLocking.maxActiveLocks (now %" PRIu32 "): the lock table "
			  "filled up %" PRIu64 " times",
			  d->max_locks, t->table_full);
	if (d->agents_max &&
	    (uint64_t)d->agents_active * 100 >= (uint64_t)d->agents_max * thr->agents_full_pct)
		recommend(d,
			  "The agent table is %" PRIu64 "%% full (%" PRIu32 "/%" PRIu32
			  "): raise agentIdentity.maxAgents",
			  (uint64_t)d->agents_active * 100 / d->agents_max, d->agents_active,
			  d->agents_max);
	if (t->owner_died)
		recommend(d,
			  "%" PRIu64 " locks passed on from holders that died: check what "
			  "they protected (BUMBA_LOCK_OWNER_DIED)",
			  t->owner_died);
	if (t->leases_expired)
		recommend(d,
			  "%" PRIu64 " agents were killed for an expired lease: renew leases "
			  "more often or make them longer",
			  t->leases_expired);
	if (d->agents_inactive)
		recommend(d,
			  "%" PRIu32 " agents show no activity for over %" PRIu32
			  " s: check that they are not hung",
			  d->agents_inactive, thr->inactive_timeout_ms / 1000);
	if (d->have_territories && d->terr.claims >= 20 &&
	    (double)d->terr.failures / (double)d->terr.claims > thr->terr_failures)
		recommend(d,
			  "Territory claim failure rate %.1f%% is above %.1f%%: review how "
			  "work is split between agents",
			  100.0 * (double)d->terr.failures / (double)d->terr.claims,
			  100.0 * thr->terr_failures);
}

int bumba_dash_collect(const struct bumba_seg *seg, const struct bumba_dash_thresholds *thr,
		       struct bumba_dash *d)
{
	const struct seg_header *h = seg->hdr;
	struct bumba_dash_thresholds def;
	uint64_t now = bumba_now_ns(), wall = bumba_wall_ms();
	size_t cap = 0;
	uint32_t max_agents = h->caps.max_agents;

	if (!thr) {
		bumba_dash_thresholds_default(&def);
		thr = &def;
	}
	memset(d, 0, sizeof(*d));
	/* The agent table must lie inside the mapping, whatever the header
	 * says now (the segment is writable by agents). */
	if ((uint64_t)max_agents * sizeof(struct agent_slot) >
	    seg->size - ((uintptr_t)seg->agents - (uintptr_t)seg->base))
		max_agents = 0;
	d->agents_max = h->caps.max_agents;
	d->max_locks = h->caps.max_locks;
	for (uint32_t i = 0; i < max_agents; i++) {
		const struct agent_slot *a = &seg->agents[i];
		char dep[BUMBA_FIELD_MAX];
		uint32_t gen;
		uint64_t last;

		if (atomic_load_explicit(&a->state, memory_order_relaxed) != AGENT_LIVE)
			continue;
		gen = atomic_load_explicit(&a->gen, memory_order_acquire);
		if (atomic_load_explicit(&a->state, memory_order_acquire) != AGENT_LIVE)
			continue;
		memcpy(dep, a->department, sizeof(dep));
		dep[sizeof(dep) - 1] = '\0';
		last = atomic_load_explicit(&a->last_activity_ms, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&a->state, memory_order_relaxed) != AGENT_LIVE ||
		    atomic_load_explicit(&a->gen, memory_order_relaxed) != gen)
			continue;
		d->agents_active++;
		if (wall > last && wall - last > thr->inactive_timeout_ms)
			d->agents_inactive++;
		add_dept(d, &cap, dep[0] ? dep : "general");
	}
	if (d->n_depts > 1)
		qsort(d->depts, d->n_depts, sizeof(*d->depts), dept_cmp);

	bumba_seg_totals(seg, &d->t);
	{
		uint64_t ops = d->t.acquired + d->t.timeouts + d->t.deadlocks;
		double rate = ops ? 100.0 * (double)d->t.acquired / (double)ops : 100.0;

		d->success_rate = round(rate * 10.0) / 10.0;
		d->conflict_rate =
			d->t.acquired ? (double)d->t.contended / (double)d->t.acquired : 0;
		for (int i = 0; i < WAIT_HIST_BUCKETS; i++)
			d->waits += d->t.wait_hist[i];
		d->mean_wait_ms = d->waits ? (double)d->t.wait_ns_sum / 1e6 / (double)d->waits : 0;
	}
	/* The territory counters (territory.c).  have_territories stays in
	 * the data so that a reader can tell "none" from "not kept". */
	bumba_territory_totals(seg, &d->terr);
	d->have_territories = true;

	d->sup_pid = atomic_load(&h->sup_pid);
	d->generation = atomic_load(&h->sup_generation);
	{
		uint64_t beat = atomic_load(&h->heartbeat_ns);
		d->heartbeat_age_ms = now > beat ? (now - beat) / 1000000 : 0;
	}
	d->alive = bumba_seg_supervisor_alive(seg);
	d->segment_bytes = seg->size;
	d->abi = h->abi_version;
	d->default_timeout_ms = h->default_timeout_ms;
	/* The guard's count, published in the segment by bumbad. */
	if (atomic_load(&h->guard_active)) {
		d->have_guard = true;
		d->violations = atomic_load(&h->violations);
	}
	judge(d, thr);
	return 0;
}

void bumba_dash_set_violations(struct bumba_dash *d, uint64_t violations,
			       const struct bumba_dash_thresholds *thr)
{
	struct bumba_dash_thresholds def;

	if (!thr) {
		bumba_dash_thresholds_default(&def);
		thr = &def;
	}
	d->have_guard = true;
	d->violations = violations;
	d->n_issue = 0;
	d->n_rec = 0;
	judge(d, thr);
}

void bumba_dash_free(struct bumba_dash *d)
{
	free(d->depts);
	d->depts = NULL;
	d->n_depts = 0;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                 */

static void add_u64(cJSON *o, const char *k, uint64_t v)
{
	cJSON_AddNumberToObject(o, k, (double)v);
}

static cJSON *safety_obj(const struct bumba_dash *d)
{
	cJSON *s = cJSON_CreateObject(), *arr;

	cJSON_AddBoolToObject(s, "safe", d->safe);
	cJSON_AddStringToObject(s, "overall", d->verdict);
	add_u64(s, "conflicts_handled", d->conflicts_handled);
	add_u64(s, "issue_count", d->issues);
	arr = cJSON_AddArrayToObject(s, "issues");
	for (size_t i = 0; i < d->n_issue; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "kind", d->issue[i].kind);
		add_u64(o, "count", d->issue[i].count);
		cJSON_AddStringToObject(o, "message", d->issue[i].text);
		cJSON_AddItemToArray(arr, o);
	}
	add_u64(s, "recommendation_count", d->n_rec);
	arr = cJSON_AddArrayToObject(s, "recommendations");
	for (size_t i = 0; i < d->n_rec; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(d->rec[i]));
	/* Counted by bumbad (the guard's classifier): unknown (null) to a
	 * reader of the segment alone. */
	if (d->have_guard)
		add_u64(s, "violations", d->violations);
	else
		cJSON_AddNullToObject(s, "violations");
	return s;
}

static char *finish(cJSON *root)
{
	char *s = root ? cJSON_PrintUnformatted(root) : NULL, *out = NULL;

	cJSON_Delete(root);
	if (!s)
		return NULL;
	if (asprintf(&out, "%s\n", s) < 0)
		out = NULL;
	cJSON_free(s);
	return out;
}

char *bumba_dash_status_json(const struct bumba_dash *d)
{
	cJSON *root = cJSON_CreateObject(), *a, *dep, *l, *s;

	if (!root)
		return NULL;
	cJSON_AddBoolToObject(root, "safe", d->safe);
	a = cJSON_AddObjectToObject(root, "agents");
	add_u64(a, "active", d->agents_active);
	add_u64(a, "max", d->agents_max);
	add_u64(a, "inactive", d->agents_inactive);
	dep = cJSON_AddObjectToObject(a, "by_department");
	for (size_t k = 0; k < d->n_depts; k++) {
		char name[BUMBA_FIELD_MAX * 3];
		/* Valid UTF-8 for the JSON; cJSON escapes the rest. */
		bumba_dash_clean(d->depts[k].name, name, sizeof(name), '?');
		if (!cJSON_GetObjectItemCaseSensitive(dep, name))
			add_u64(dep, name, d->depts[k].n);
	}
	l = cJSON_AddObjectToObject(root, "locks");
	add_u64(l, "active", d->t.locks_active);
	add_u64(l, "waiting", d->t.locks_waiting);
	add_u64(l, "total", d->t.acquired);
	add_u64(l, "conflicts", d->t.contended);
	add_u64(l, "timeouts", d->t.timeouts);
	add_u64(l, "deadlocks", d->t.deadlocks);
	add_u64(l, "table_full", d->t.table_full);
	add_u64(l, "owner_died", d->t.owner_died);
	add_u64(l, "leases_expired", d->t.leases_expired);
	cJSON_AddNumberToObject(l, "success_rate", d->success_rate);
	cJSON_AddNumberToObject(l, "mean_wait_ms", round(d->mean_wait_ms * 1000.0) / 1000.0);
	add_u64(l, "max", d->max_locks);
	if (d->have_territories) {
		cJSON *t = cJSON_AddObjectToObject(root, "territories");
		add_u64(t, "active", d->terr.active);
		add_u64(t, "files", d->terr.paths);
		add_u64(t, "exclusive", d->terr.exclusive);
		add_u64(t, "shared", d->terr.shared);
		add_u64(t, "monitored", d->terr.monitored);
		add_u64(t, "claims", d->terr.claims);
		add_u64(t, "conflicts", d->terr.conflicts);
		add_u64(t, "failures", d->terr.failures);
		add_u64(t, "expired", d->terr.expired);
	} else {
		cJSON_AddNullToObject(root, "territories");
	}
	cJSON_AddItemToObject(root, "safety", safety_obj(d));
	s = cJSON_AddObjectToObject(root, "supervisor");
	cJSON_AddNumberToObject(s, "pid", d->sup_pid);
	add_u64(s, "generation", d->generation);
	add_u64(s, "heartbeat_age_ms", d->heartbeat_age_ms);
	cJSON_AddBoolToObject(s, "alive", d->alive);
	add_u64(s, "segment_bytes", d->segment_bytes);
	add_u64(s, "abi", d->abi);
	return finish(root);
}

char *bumba_dash_safety_json(const struct bumba_dash *d)
{
	return finish(safety_obj(d));
}

/* ------------------------------------------------------------------ */
/* text                                                                 */

/* 1234567 -> "1,234,567", as the seed's dashboard prints counts. */
static const char *count(uint64_t v, char *buf, size_t len)
{
	char digits[32];
	int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
	size_t o = 0;

	for (int i = 0; i < n && o + 2 < len; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

static const char *dur(uint64_t ms, char *buf, size_t len)
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

static const char *bytes(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double x = (double)v;
	int u = -1;

	if (v < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", v);
		return buf;
	}
	while (x >= 1024 && u < 3) {
		x /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", x, units[u]);
	return buf;
}

void bumba_dash_print(const struct bumba_dash *d, FILE *f)
{
	char b1[48], b2[48];

	fprintf(f, "AGENTS\n");
	fprintf(f, "  Active: %s/%s\n", count(d->agents_active, b1, sizeof(b1)),
		count(d->agents_max, b2, sizeof(b2)));
	if (d->agents_inactive)
		fprintf(f, "  Inactive: %s\n", count(d->agents_inactive, b1, sizeof(b1)));
	fprintf(f, "  By Department:\n");
	for (size_t k = 0; k < d->n_depts; k++) {
		char name[BUMBA_FIELD_MAX];

		bumba_dash_clean(d->depts[k].name, name, sizeof(name), '?');
		fprintf(f, "    %s: %s\n", name, count(d->depts[k].n, b1, sizeof(b1)));
	}

	fprintf(f, "\nFILE LOCKS\n");
	fprintf(f, "  Active Locks: %s\n", count(d->t.locks_active, b1, sizeof(b1)));
	fprintf(f, "  Waiting: %s\n", count(d->t.locks_waiting, b1, sizeof(b1)));
	fprintf(f, "  Total Operations: %s\n", count(d->t.acquired, b1, sizeof(b1)));
	fprintf(f, "  Conflicts: %s\n", count(d->t.contended, b1, sizeof(b1)));
	fprintf(f, "  Timeouts: %s\n", count(d->t.timeouts, b1, sizeof(b1)));
	fprintf(f, "  Deadlocks Detected: %s\n", count(d->t.deadlocks, b1, sizeof(b1)));
	fprintf(f, "  Success Rate: %.1f%%\n", d->success_rate);

	if (d->have_territories) {
		fprintf(f, "\nTERRITORIES\n");
		fprintf(f, "  Active: %s\n", count(d->terr.active, b1, sizeof(b1)));
		fprintf(f, "  Files Managed: %s\n", count(d->terr.paths, b1, sizeof(b1)));
		fprintf(f, "  Exclusive: %s\n", count(d->terr.exclusive, b1, sizeof(b1)));
		fprintf(f, "  Shared: %s\n", count(d->terr.shared, b1, sizeof(b1)));
		fprintf(f, "  Monitored: %s\n", count(d->terr.monitored, b1, sizeof(b1)));
		fprintf(f, "  Conflicts: %s\n", count(d->terr.conflicts, b1, sizeof(b1)));
		fprintf(f, "  Claims: %s\n", count(d->terr.claims, b1, sizeof(b1)));
	}

	fprintf(f, "\nSAFETY STATUS\n");
	fprintf(f, "  Overall: %s\n", d->verdict);
	fprintf(f, "  Conflicts Handled: %s\n", count(d->conflicts_handled, b1, sizeof(b1)));
	if (d->have_guard)
		fprintf(f, "  Violations: %s\n", count(d->violations, b1, sizeof(b1)));
	fprintf(f, "  Issues: %s\n", count(d->issues, b1, sizeof(b1)));
	for (size_t i = 0; i < d->n_issue; i++)
		fprintf(f, "    - %s\n", d->issue[i].text);
	fprintf(f, "  Recommendations: %zu\n", d->n_rec);
	for (size_t i = 0; i < d->n_rec; i++)
		fprintf(f, "    - %s\n", d->rec[i]);

	fprintf(f, "\nSUPERVISOR\n");
	fprintf(f, "  PID: %" PRId32 "%s\n", d->sup_pid, d->alive ? "" : " (not responding)");
	fprintf(f, "  Generation: %" PRIu32 "\n", d->generation);
	fprintf(f, "  Heartbeat Age: %s\n", dur(d->heartbeat_age_ms, b1, sizeof(b1)));
	fprintf(f, "  Segment Size: %s (%s bytes)\n", bytes(d->segment_bytes, b1, sizeof(b1)),
		count(d->segment_bytes, b2, sizeof(b2)));
	fprintf(f, "  ABI: %" PRIu32 "\n", d->abi);
}
