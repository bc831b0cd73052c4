/* SPDX-License-Identifier: MIT */
/*
 * recovery.c - bumbad finishes what dead agents' safe file operations left
 * half done (see recovery.h, and docs/safe-file-ops.md for the on-disk
 * layout and the rules).
 *
 *   at start      every manifest whose process is gone is rolled forward
 *                 (.commit) or back (.prep); the temporary-file journals of
 *                 gone processes are replayed; then each workspace is walked
 *                 for stray ".<name>.bumba-<token>.tmp" files whose owner
 *                 (agent tag + pid) is not alive.  Agents wait in the
 *                 listen backlog meanwhile.
 *   at a death    the agent's manifests and journals, before its locks go
 *                 (registry.c calls us first), so nobody can take a lock on
 *                 a file a dead transaction still has to finish.
 *   every second  the same for any process that died unseen.
 *   every 10 min  backups older than safeFileOps.backupRetentionHours.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"
#include "recovery.h"
#include "safeio.h"

#define ORPHAN_EVERY_NS	   1000000000ull
#define RETENTION_EVERY_NS (600ull * 1000000000ull)

static struct {
	_Atomic uint64_t forward, back, conflicts, temps, bad, backups_expired;
} totals;
static uint64_t last_orphans_ns, last_retention_ns;

static void rlog(void *ctx, int prio, const char *msg)
{
	(void)ctx;
	bumbad_log(prio, "recovery: %s", msg);
}

static void add(const struct bumba_recovery_report *r)
{
	atomic_fetch_add(&totals.forward, r->forward);
	atomic_fetch_add(&totals.back, r->back);
	atomic_fetch_add(&totals.conflicts, r->conflicts);
	atomic_fetch_add(&totals.temps, r->temps);
	atomic_fetch_add(&totals.bad, r->bad);
}

void recovery_totals(struct recovery_totals *t)
{
	t->forward = atomic_load(&totals.forward);
	t->back = atomic_load(&totals.back);
	t->conflicts = atomic_load(&totals.conflicts);
	t->temps = atomic_load(&totals.temps);
	t->bad = atomic_load(&totals.bad);
	t->backups_expired = atomic_load(&totals.backups_expired);
}

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t retention_ns(const struct bumbad *d)
{
	uint64_t h = d->ops ? d->ops->cfg.backup_retention_hours : 72;

	return (h ? h : 72) * 3600ull * 1000000000ull;
}

static void retention(struct bumbad *d)
{
	for (size_t i = 0; i < d->seg.hdr->n_roots; i++) {
		long n = bumba_backup_sweep(d->seg.root_ptrs[i], wall_ns(), retention_ns(d));
		if (n > 0) {
			atomic_fetch_add(&totals.backups_expired, (uint64_t)n);
			bumbad_log(LOG_INFO,
				   "recovery: %ld backup version(s) past retention removed "
				   "under %s",
				   n, d->seg.root_ptrs[i]);
		} else if (n < 0) {
			bumbad_log(LOG_WARNING, "recovery: backup retention under %s: %s",
				   d->seg.root_ptrs[i], strerror((int)-n));
		}
	}
}

static void summary(const char *what, const struct bumba_recovery_report *r, uint64_t t0)
{
	if (!r->forward && !r->back && !r->conflicts && !r->temps && !r->bad)
		return;
	bumbad_log(r->conflicts || r->bad ? LOG_WARNING : LOG_NOTICE,
		   "recovery (%s): %u transaction(s) rolled forward, %u rolled back, %u "
		   "conflict(s), %u stray temporar%s removed, %u unreadable manifest(s); %.1f ms",
		   what, r->forward, r->back, r->conflicts, r->temps, r->temps == 1 ? "y" : "ies",
		   r->bad, (double)(bumba_now_ns() - t0) / 1e6);
}

/* At start: a temporary is alive if its agent is live in the (adopted)
 * segment and its process still runs. */
static bool live_at_start(void *ctx, const char *tag, pid_t pid, uint64_t start_time)
{
	struct bumbad *d = ctx;

	if (!bumba_recover_pid_alive(NULL, tag, pid, start_time))
		return false;
	for (uint32_t i = 0; i < d->seg.hdr->caps.max_agents; i++) {
		const struct agent_slot *a = &d->seg.agents[i];
		char t[SIO_TAG_HEX + 1];
		if (atomic_load(&a->state) != AGENT_LIVE)
			continue;
		bumba_sio_agent_tag(a->id, t);
		if (!strcmp(t, tag))
			return true;
	}
	return false;
}

void recovery_start(struct bumbad *d)
{
	struct bumba_recovery_report r = {0};
	uint64_t t0 = bumba_now_ns();

	for (size_t i = 0; i < d->seg.hdr->n_roots; i++) {
		const char *root = d->seg.root_ptrs[i];
		int rc = bumba_recover_root(root, NULL, false, NULL, NULL, rlog, NULL, &r);
		if (rc)
			bumbad_log(LOG_WARNING, "recovery: %s: %s (left for the next pass)", root,
				   strerror(-rc));
		bumba_recover_scan(root, live_at_start, d, rlog, NULL, &r);
	}
	add(&r);
	summary("start", &r, t0);
	retention(d);
	last_orphans_ns = last_retention_ns = bumba_now_ns();
}

/* At an agent's death: its registering process counts as gone even while
 * the kernel is still tearing it down (the connection can close before the
 * pid turns zombie; by then its io_uring requests are cancelled and its
 * files closed: it can do nothing more).  Other processes of the agent
 * (forked children with the handle) are judged by /proc. */
static bool live_but(void *ctx, const char *tag, pid_t pid, uint64_t start_time)
{
	if (pid == *(const pid_t *)ctx)
		return false;
	return bumba_recover_pid_alive(NULL, tag, pid, start_time);
}

void recovery_agent_died(struct bumbad *d, uint32_t slot)
{
	struct bumba_recovery_report r = {0};
	const struct agent_slot *a = &d->seg.agents[slot];
	char tag[SIO_TAG_HEX + 1];
	uint64_t t0 = bumba_now_ns();
	pid_t gone = a->pid;

	if (atomic_load(&a->state) == AGENT_FREE)
		return;
	bumba_sio_agent_tag(a->id, tag);
	for (size_t i = 0; i < d->seg.hdr->n_roots; i++) {
		int rc = bumba_recover_root(d->seg.root_ptrs[i], tag, false, live_but, &gone, rlog,
					    NULL, &r);
		if (rc)
			bumbad_log(LOG_WARNING,
				   "recovery: agent %.*s under %s: %s (retried every second)",
				   BUMBA_ID_MAX, a->id, d->seg.root_ptrs[i], strerror(-rc));
	}
	add(&r);
	summary(a->id, &r, t0);
}

void recovery_tick(struct bumbad *d, uint64_t now_ns)
{
	if (now_ns - last_orphans_ns >= ORPHAN_EVERY_NS) {
		struct bumba_recovery_report r = {0};
		uint64_t t0 = bumba_now_ns();
		last_orphans_ns = now_ns;
		for (size_t i = 0; i < d->seg.hdr->n_roots; i++)
			bumba_recover_root(d->seg.root_ptrs[i], NULL, false, NULL, NULL, rlog, NULL,
					   &r);
		add(&r);
		summary("sweep", &r, t0);
	}
	if (now_ns - last_retention_ns >= RETENTION_EVERY_NS) {
		last_retention_ns = now_ns;
		retention(d);
	}
}
