/* SPDX-License-Identifier: MIT */
/*
 * recovery.h - bumbad's side of the safe file operations: finishing or
 * rolling back what dead agents left (transactions, temporaries), at their
 * death and at bumbad's own start, and the backup retention sweep.  The
 * mechanics live in libbumba-shm (shm/txn.c, shm/backup.c); this file
 * decides when, and logs.
 */
#ifndef BUMBAD_RECOVERY_H
#define BUMBAD_RECOVERY_H

#include <stdint.h>

#include "bumbad.h"

/* Before the first agent is accepted (after adopting a live segment):
 * manifests of processes that are gone, their journals, then a walk of
 * every workspace for stray temporaries; then a retention sweep. */
void recovery_start(struct bumbad *d);

/* An agent died (or unregistered): its transactions and temporaries, before
 * its locks are handed to anyone else. */
void recovery_agent_died(struct bumbad *d, uint32_t slot);

/* Every heartbeat: once a second, what processes that died unseen left
 * (children of agents, deaths while bumbad was down); every ten minutes the
 * backup retention (safeFileOps.backupRetentionHours). */
void recovery_tick(struct bumbad *d, uint64_t now_ns);

/* Totals since start, for metrics and the dashboard. */
struct recovery_totals {
	uint64_t forward, back, conflicts, temps, bad, backups_expired;
};
void recovery_totals(struct recovery_totals *t);

#endif /* BUMBAD_RECOVERY_H */
