/* SPDX-License-Identifier: MIT */
/*
 * dashboard.h - the coordination dashboard's data, read from a live segment:
 * the seed's four sections (AGENTS, FILE LOCKS, TERRITORIES, SAFETY STATUS)
 * plus the supervisor's liveness.  One collector, three renderings: the
 * human text of `bumbactl status` / `watch`, and the JSON that both
 * `bumbactl status --json` and bumbad's /dashboard/status and
 * /dashboard/safety serve, so the two can never disagree.
 *
 * Reading never blocks a writer: atomics only, strings copied and checked
 * against the slot's generation (a slot reused while it is read is skipped).
 */
#ifndef BUMBA_DASHBOARD_H
#define BUMBA_DASHBOARD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "internal.h"

struct bumba_dash_thresholds {
	double conflict_rate;	      /* conflicts per acquisition */
	uint32_t lock_wait_ms;	      /* mean wait of a contended acquisition */
	double terr_failures;	      /* failed claims per claim */
	uint32_t inactive_timeout_ms; /* an agent idle longer is "inactive" */
	uint32_t agents_full_pct;     /* agent table this full: recommend more */
};

/* Defaults: the seed's alertingThresholds. */
void bumba_dash_thresholds_default(struct bumba_dash_thresholds *t);

struct bumba_dash_dept {
	char name[BUMBA_FIELD_MAX];
	uint32_t n;
};

#define BUMBA_DASH_MAX_NOTES 12

struct bumba_dash_issue {
	const char *kind; /* "timeouts", "deadlocks", "table_full", ... */
	uint64_t count;
	char text[192];
};

struct bumba_dash {
	/* AGENTS */
	uint32_t agents_active, agents_max, agents_inactive;
	struct bumba_dash_dept *depts; /* most populated first */
	size_t n_depts;
	/* FILE LOCKS */
	struct bumba_totals t;
	uint32_t max_locks;
	double success_rate;  /* percent, one decimal */
	double conflict_rate; /* conflicts per acquisition */
	double mean_wait_ms;  /* of contended acquisitions */
	uint64_t waits;	      /* contended acquisitions measured */
	/* TERRITORIES: only when this build's library keeps their counters */
	bool have_territories;
	struct bumba_terr_totals terr;
	/* the guard's violations: known to bumbad only (see
	 * bumba_dash_set_violations) */
	bool have_guard;
	uint64_t violations;
	/* SUPERVISOR */
	int32_t sup_pid;
	uint32_t generation;
	uint64_t heartbeat_age_ms;
	bool alive;
	uint64_t segment_bytes;
	uint32_t abi;
	int32_t default_timeout_ms;
	/* SAFETY STATUS */
	const char *verdict; /* "SAFE", "WARNING", "UNSAFE" */
	bool safe;
	uint64_t conflicts_handled;
	uint64_t issues; /* timeouts + deadlocks + table full (+ violations) */
	struct bumba_dash_issue issue[BUMBA_DASH_MAX_NOTES];
	size_t n_issue;
	char rec[BUMBA_DASH_MAX_NOTES][256];
	size_t n_rec;
};

/* Reads the segment into d.  0, or -ENOMEM. */
int bumba_dash_collect(const struct bumba_seg *seg, const struct bumba_dash_thresholds *thr,
		       struct bumba_dash *d);
void bumba_dash_free(struct bumba_dash *d);

/* bumbad only: the guard's violation count (kept in bumbad, not in the
 * segment), and the verdict judged again with it.  Without this call the
 * count is unknown: null in the JSON, absent from the text. */
void bumba_dash_set_violations(struct bumba_dash *d, uint64_t violations,
			       const struct bumba_dash_thresholds *thr);

/* JSON documents, malloc'd strings (NULL: out of memory), newline-ended.
 * status: every section plus "safe" at the top; safety: SAFETY STATUS. */
char *bumba_dash_status_json(const struct bumba_dash *d);
char *bumba_dash_safety_json(const struct bumba_dash *d);

/* The human dashboard. */
void bumba_dash_print(const struct bumba_dash *d, FILE *f);

/* s as valid UTF-8 without control characters: each bad byte becomes
 * repl ('?' for a terminal).  out has room for out_len bytes. */
void bumba_dash_clean(const char *s, char *out, size_t out_len, char repl);

#endif /* BUMBA_DASHBOARD_H */
