/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - /metrics in the Prometheus text exposition format (0.0.4).
 *
 * Names follow DESIGN.md decision 9 (the seed's): bumba_file_locks_*,
 * bumba_file_lock_wait_time_seconds, bumba_agents_*, bumba_memory_usage_bytes,
 * bumba_violations_total, bumba_territor*; every one is documented in
 * docs/metrics.md.  Everything comes from the segment (atomics; read while
 * agents run) or from the process itself; nothing is estimated.  Counters
 * are cumulative over the segment's life: they survive a supervisor
 * restart that adopts the segment (see bumba_supervisor_generation).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"
#include "recovery.h"

#define MAX_DEPT_SERIES 50 /* label values of bumba_agents_by_department */

/* ------------------------------------------------------------------ */
/* the process                                                          */

static uint64_t read_u64_file(const char *path, bool *unlimited)
{
	char buf[64];
	FILE *f = fopen(path, "re");
	uint64_t v = 0;

	*unlimited = false;
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f)) {
		if (!strncmp(buf, "max", 3))
			*unlimited = true;
		else
			v = strtoull(buf, NULL, 10);
	}
	fclose(f);
	return v;
}

/* The cgroup v2 memory.max of this process, else the host's MemTotal. */
static uint64_t memory_limit(void)
{
	char line[PATH_MAX + 16], path[PATH_MAX + 64];
	uint64_t limit = 0;
	bool unl = true;
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (f) {
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "0::", 3))
				continue;
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
			limit = read_u64_file(path, &unl);
		}
		fclose(f);
	}
	if (limit && !unl)
		return limit;
	f = fopen("/proc/meminfo", "re");
	if (f) {
		unsigned long long kb;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
				limit = kb * 1024;
				break;
			}
		}
		fclose(f);
	}
	return limit;
}

void ops_memory(struct ops_memory *m)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), v;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	char buf[1024];
	FILE *f;

	memset(m, 0, sizeof(*m));
	/* jemalloc's statistics are refreshed by writing the epoch. */
	if (mallctl("epoch", &epoch, &sz, &epoch, sz) == 0) {
		sz = sizeof(v);
		if (mallctl("stats.allocated", &v, &sz, NULL, 0) == 0)
			m->allocated = v;
		if (mallctl("stats.active", &v, &sz, NULL, 0) == 0)
			m->active = v;
		if (mallctl("stats.resident", &v, &sz, NULL, 0) == 0)
			m->resident = v;
		if (mallctl("stats.mapped", &v, &sz, NULL, 0) == 0)
			m->mapped = v;
	}
	m->limit = memory_limit();

	f = fopen("/proc/self/stat", "re");
	if (f) {
		if (fgets(buf, sizeof(buf), f)) {
			/* Fields after the command name, which may hold spaces. */
			char *p = strrchr(buf, ')');
			unsigned long long ut = 0, st = 0, start = 0, vsize = 0, rss = 0;
			if (p &&
			    sscanf(p + 2,
				   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
				   "%*d %*d %*d %*d %llu %llu %llu",
				   &ut, &st, &start, &vsize, &rss) == 5) {
				m->cpu_seconds = (double)(ut + st) / (double)tick;
				m->vsize = vsize;
				m->rss = rss * (uint64_t)page;
				/* start is in ticks since boot. */
				FILE *s = fopen("/proc/stat", "re");
				if (s) {
					unsigned long long btime;
					while (fgets(buf, sizeof(buf), s)) {
						if (sscanf(buf, "btime %llu", &btime) == 1) {
							m->start_time_s =
								(double)btime +
								(double)start / (double)tick;
							break;
						}
					}
					fclose(s);
				}
			}
		}
		fclose(f);
	}
}

static unsigned open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned n = 0;

	if (!dir)
		return 0;
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n ? n - 1 : 0; /* the directory's own descriptor */
}

/* ------------------------------------------------------------------ */
/* exposition                                                           */

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_u64(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	head(f, name, type, help);
	fprintf(f, "%s %" PRIu64 "\n", name, v);
}

/* The shortest text that reads back as v. */
static void put_double(FILE *f, double v)
{
	char buf[40];

	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, f);
}

static void metric_dbl(FILE *f, const char *name, const char *type, const char *help, double v)
{
	head(f, name, type, help);
	fprintf(f, "%s ", name);
	put_double(f, v);
	fputc('\n', f);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void bound(FILE *f, double b)
{
	if (b >= 1e300)
		fputs("+Inf", f);
	else
		fprintf(f, "%g", b);
}

static void histogram(FILE *f, const char *name, const char *help, const double *bounds,
		      const uint64_t *hist, int n, double sum_seconds)
{
	uint64_t cum = 0;

	head(f, name, "histogram", help);
	for (int i = 0; i < n; i++) {
		cum += hist[i];
		fprintf(f, "%s_bucket{le=\"", name);
		bound(f, bounds[i]);
		fprintf(f, "\"} %" PRIu64 "\n", cum);
	}
	if (bounds[n - 1] < 1e300)
		fprintf(f, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	fprintf(f, "%s_sum ", name);
	put_double(f, sum_seconds);
	fprintf(f, "\n%s_count %" PRIu64 "\n", name, cum);
}

void metrics_write(struct bumbad *d, FILE *f)
{
	struct bumbad_ops *x = d->ops;
	const struct seg_header *h = d->seg.hdr;
	struct bumba_dash dash;
	struct ops_memory mem;
	struct rlimit rl;
	uint64_t beat, now = bumba_now_ns();

	ops_dashboard(d, &dash);
	ops_memory(&mem);

	metric_u64(f, "bumba_up", "gauge",
		   "1 while this bumbad serves; a scrape that fails means it is down.", 1);
	head(f, "bumba_build_info", "gauge", "Version of bumbad and of the segment ABI.");
	fprintf(f, "bumba_build_info{version=\"%d.%d.%d\",abi=\"%d\"} 1\n", BUMBA_VERSION_MAJOR,
		BUMBA_VERSION_MINOR, BUMBA_VERSION_PATCH, BUMBA_ABI_VERSION);

	/* Supervisor. */
	metric_u64(f, "bumba_supervisor_generation", "gauge",
		   "Supervisors that have served this segment (1 + restarts that adopted it).",
		   atomic_load(&h->sup_generation));
	beat = atomic_load(&h->heartbeat_ns);
	metric_dbl(f, "bumba_supervisor_heartbeat_age_seconds", "gauge",
		   "Age of the supervisor's heartbeat in the segment (published every 100 ms).",
		   now > beat ? (double)(now - beat) / 1e9 : 0);
	metric_dbl(f, "bumba_segment_created_timestamp_seconds", "gauge",
		   "When the shared segment was created (unix time).",
		   (double)h->created_ms / 1000.0);

	/* Agents. */
	metric_u64(f, "bumba_agents_active", "gauge", "Registered agents alive now.",
		   dash.agents_active);
	metric_u64(f, "bumba_agents_max", "gauge",
		   "Capacity of the agent table (agentIdentity.maxAgents).", dash.agents_max);
	metric_u64(f, "bumba_agents_inactive", "gauge",
		   "Live agents without activity for longer than agentIdentity.inactiveTimeout.",
		   dash.agents_inactive);
	metric_u64(f, "bumba_agents_spawned_total", "counter", "Agents registered.",
		   dash.t.agents_spawned);
	metric_u64(f, "bumba_agents_reclaimed_total", "counter",
		   "Agents whose slot was reclaimed after they exited, died or unregistered.",
		   dash.t.agents_reclaimed);
	head(f, "bumba_agents_by_department", "gauge",
	     "Live agents per department (the 50 largest; the rest under department=\"~other\").");
	{
		uint64_t other = 0;
		for (size_t k = 0; k < dash.n_depts; k++) {
			char name[BUMBA_FIELD_MAX];
			if (k >= MAX_DEPT_SERIES) {
				other += dash.depts[k].n;
				continue;
			}
			bumba_dash_clean(dash.depts[k].name, name, sizeof(name), '?');
			fputs("bumba_agents_by_department{department=\"", f);
			label_value(f, name);
			fprintf(f, "\"} %" PRIu32 "\n", dash.depts[k].n);
		}
		if (other)
			fprintf(f,
				"bumba_agents_by_department{department=\"~other\"} %" PRIu64 "\n",
				other);
	}

	/* File locks. */
	metric_u64(f, "bumba_file_locks_active", "gauge", "Locks held now (exclusive or shared).",
		   dash.t.locks_active);
	metric_u64(f, "bumba_file_locks_waiting", "gauge", "Acquisitions queued for a lock now.",
		   dash.t.locks_waiting);
	metric_u64(f, "bumba_file_lock_entries", "gauge",
		   "Lock table entries in use (held, awaited or being removed).", dash.t.lock_keys);
	metric_u64(f, "bumba_file_locks_max", "gauge",
		   "Capacity of the lock table (fileLocking.maxActiveLocks).", dash.max_locks);
	metric_u64(f, "bumba_file_locks_acquired_total", "counter", "Lock acquisitions granted.",
		   dash.t.acquired);
	metric_u64(f, "bumba_file_locks_released_total", "counter", "Lock releases.",
		   dash.t.released);
	metric_u64(f, "bumba_file_locks_conflicts_total", "counter",
		   "Acquisitions that found the lock taken and had to wait.", dash.t.contended);
	metric_u64(f, "bumba_file_lock_timeouts_total", "counter",
		   "Acquisitions that gave up: timeout, or busy with timeout 0.", dash.t.timeouts);
	metric_u64(f, "bumba_file_lock_deadlocks_total", "counter",
		   "Acquisitions refused with EDEADLK: waiting would have closed a cycle.",
		   dash.t.deadlocks);
	metric_u64(f, "bumba_file_lock_table_full_total", "counter",
		   "Acquisitions refused because the lock table was full.", dash.t.table_full);
	metric_u64(f, "bumba_file_lock_owner_died_total", "counter",
		   "Locks handed on from a holder that died holding them.", dash.t.owner_died);
	metric_u64(f, "bumba_file_lock_leases_expired_total", "counter",
		   "Agents killed because a lock lease expired.", dash.t.leases_expired);
	histogram(f, "bumba_file_lock_wait_time_seconds",
		  "Time from asking for a lock to getting it, per granted acquisition.",
		  bumba_wait_bounds, dash.t.wait_hist, WAIT_HIST_BUCKETS,
		  (double)dash.t.wait_ns_sum / 1e9);

	/* Territories: only when the library keeps them. */
	if (dash.have_territories) {
		metric_u64(f, "bumba_territories_active", "gauge", "Territories claimed now.",
			   dash.terr.active);
		head(f, "bumba_territories_by_type", "gauge", "Territories claimed now, per type.");
		fprintf(f,
			"bumba_territories_by_type{type=\"exclusive\"} %" PRIu32 "\n"
			"bumba_territories_by_type{type=\"shared\"} %" PRIu32 "\n"
			"bumba_territories_by_type{type=\"monitored\"} %" PRIu32 "\n",
			dash.terr.exclusive, dash.terr.shared, dash.terr.monitored);
		metric_u64(f, "bumba_territory_paths", "gauge",
			   "Paths (files and directories) covered by live territories.",
			   dash.terr.paths);
		metric_u64(f, "bumba_territory_claims_total", "counter", "Territory claims made.",
			   dash.terr.claims);
		metric_u64(f, "bumba_territory_conflicts_total", "counter",
			   "Conflicts met by territory claims.", dash.terr.conflicts);
		metric_u64(f, "bumba_territory_allocation_failures_total", "counter",
			   "Territory claims that failed (conflict or full table).",
			   dash.terr.failures);
		metric_u64(f, "bumba_territories_expired_total", "counter",
			   "Territories ended by territoryManagement.defaultTimeout.",
			   dash.terr.expired);
		histogram(f, "bumba_territory_allocation_duration_seconds",
			  "Time a territory claim took.", bumba_claim_bounds, dash.terr.claim_hist,
			  TERR_HIST_BUCKETS, (double)dash.terr.claim_ns_sum / 1e9);
	}

	/* Safe file operations: what bumbad's recovery did for dead agents. */
	{
		struct recovery_totals r;

		recovery_totals(&r);
		head(f, "bumba_safe_file_transactions_recovered_total", "counter",
		     "Transactions of dead agents finished (forward) or rolled back (back).");
		fprintf(f,
			"bumba_safe_file_transactions_recovered_total{action=\"forward\"} %" PRIu64
			"\n"
			"bumba_safe_file_transactions_recovered_total{action=\"back\"} %" PRIu64
			"\n",
			r.forward, r.back);
		metric_u64(f, "bumba_safe_file_recovery_conflicts_total", "counter",
			   "Recovered operations not applied: the file changed since (check it).",
			   r.conflicts);
		metric_u64(f, "bumba_safe_file_recovery_bad_manifests_total", "counter",
			   "Unreadable transaction manifests set aside during recovery.", r.bad);
		metric_u64(f, "bumba_safe_file_temporaries_removed_total", "counter",
			   "Stray temporary files of dead agents removed.", r.temps);
		metric_u64(f, "bumba_safe_file_backups_expired_total", "counter",
			   "Backups removed after safeFileOps.backupRetentionHours.",
			   r.backups_expired);
	}

	/* The guard. */
	head(f, "bumba_violations_total", "counter",
	     "Writes to a managed file by a process holding neither an exclusive lock nor an "
	     "EXCLUSIVE/MONITORED territory over it, per operation (0 while no guard runs).");
	for (int op = 0; op < VOP_N; op++)
		fprintf(f, "bumba_violations_total{op=\"%s\"} %" PRIu64 "\n",
			bumbad_violation_op_names[op], atomic_load(&x->violations[op]));
	{
		char st[16];
		pthread_mutex_lock(&x->guard_mu);
		snprintf(st, sizeof(st), "%s", x->guard_status);
		pthread_mutex_unlock(&x->guard_mu);
		metric_u64(f, "bumba_guard_active", "gauge",
			   "1 while the kernel guard watches the workspaces.",
			   !strcmp(st, "healthy") || !strcmp(st, "degraded"));
	}

	/* Memory. */
	metric_u64(f, "bumba_memory_usage_bytes", "gauge",
		   "bumbad's heap: bytes in physically resident pages of its allocator (jemalloc "
		   "stats.resident).",
		   mem.resident);
	metric_u64(f, "bumba_memory_allocated_bytes", "gauge",
		   "bumbad's heap: bytes allocated (jemalloc stats.allocated).", mem.allocated);
	metric_u64(f, "bumba_segment_size_bytes", "gauge",
		   "Size of the shared segment every agent maps.", d->seg.size);
	metric_u64(f, "bumba_memory_limit_bytes", "gauge",
		   "Memory bumbad may use: its cgroup's memory.max, else the host's MemTotal.",
		   mem.limit);

	/* The usual process metrics, for the usual dashboards. */
	metric_dbl(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent.",
		   mem.cpu_seconds);
	metric_u64(f, "process_resident_memory_bytes", "gauge", "Resident memory size.", mem.rss);
	metric_u64(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size.", mem.vsize);
	metric_dbl(f, "process_start_time_seconds", "gauge",
		   "Start time of the process since unix epoch.", mem.start_time_s);
	metric_u64(f, "process_open_fds", "gauge", "Open file descriptors.", open_fds());
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		metric_u64(f, "process_max_fds", "gauge",
			   "Maximum number of open file descriptors.",
			   rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur);
	bumba_dash_free(&dash);
}
