/* SPDX-License-Identifier: MIT */
/*
 * mp_stress.c - 64 processes hammering 16 paths with random SIGKILLs of
 * holders and waiters, against a real bumbad.
 *
 * Each worker registers its own agent and loops over random acquires
 * (mostly exclusive, some shared, random priority, 2-5 s timeouts).  An
 * independent checker in a MAP_SHARED page (see harness.h) verifies mutual
 * exclusion and that fencing tokens strictly increase per path.  Every few
 * milliseconds the parent SIGKILLs a worker - a holder, a waiter, or anyone
 * - and forks a replacement.  At the end half of the workers are SIGKILLed
 * and the others close cleanly; then the segment must hold no live agent,
 * no held or waited-for lock, no waiter or hold record.
 *
 * Environment: STRESS_SECONDS (default 8) run length, STRESS_KILL_MS
 * (default 10) mean interval between SIGKILLs, STRESS_WORKERS (64),
 * STRESS_PATHS (16), STRESS_SHARED_PCT (33) share of shared-mode acquires,
 * BUILD (build) where bumbad is, HARNESS_KEEP=1 keeps the temporary
 * directory.
 */
#include "harness.h"

int main(void)
{
	const long seconds = h_env_long("STRESS_SECONDS", 8);
	const long kill_ms = h_env_long("STRESS_KILL_MS", 10);
	const long workers = h_env_long("STRESS_WORKERS", 64);
	const long paths = h_env_long("STRESS_PATHS", 16);
	const long shared_pct = h_env_long("STRESS_SHARED_PCT", 33);
	struct h_sup sup;
	struct hammer hm;
	struct bumba_totals t;
	char name[160];

	h_init();
	if (h_sup_start(&sup) < 0) {
		h_report("bumbad starts");
		return h_finish();
	}
	h_note("%ld workers on %ld paths (%ld%% shared) for %ld s, a SIGKILL every ~%ld ms",
	       workers, paths, shared_pct, seconds, kill_ms);
	if (hm_start(&hm, (int)workers, (int)paths, (unsigned)kill_ms, (unsigned)shared_pct) < 0) {
		h_report("workers start");
		return h_finish();
	}
	hm_run(&hm, (unsigned)(seconds * 1000));
	hm_stop(&hm);
	hm_print(&hm);

	snprintf(name, sizeof(name),
		 "%d processes on %d paths with random SIGKILLs: mutual exclusion holds "
		 "(independent checker)",
		 hm.n_workers, hm.n_paths);
	hm_verdict_exclusion(&hm);
	hm_verdict_kills(&hm);
	h_report(name);

	hm_verdict_fencing(&hm);
	h_report("fencing tokens strictly increase per path; a dead exclusive holder is "
		 "reported as owner-died");

	hm_verdict_served(&hm);
	h_report("every waiter is eventually served (timeouts < 5%, no starved worker)");

	/* The reclaim of the last SIGKILLed workers is asynchronous: give it
	 * 200 ms, then look (and keep looking up to 2 s to tell slow from
	 * leaked). */
	h_check_clean(&sup, 200, 2000, &t);
	h_note("segment totals: acquired %llu, released %llu, contended %llu, timeouts %llu, "
	       "deadlocks %llu, owner-died %llu, agents spawned %llu, reclaimed %llu, lock keys "
	       "%u",
	       (unsigned long long)t.acquired, (unsigned long long)t.released,
	       (unsigned long long)t.contended, (unsigned long long)t.timeouts,
	       (unsigned long long)t.deadlocks, (unsigned long long)t.owner_died,
	       (unsigned long long)t.agents_spawned, (unsigned long long)t.agents_reclaimed,
	       t.lock_keys);
	h_check(t.deadlocks == 0, "%llu -EDEADLK with one lock per agent",
		(unsigned long long)t.deadlocks);
	h_check(t.acquired >= hm.sh->acquires, "segment counts %llu acquires, workers %llu",
		(unsigned long long)t.acquired, (unsigned long long)hm.sh->acquires);
	h_report("no slot leaks once all workers are gone (agents, locks, waiters, holds)");

	int st = h_sup_stop(&sup);
	h_check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"bumbad did not stop cleanly on SIGTERM (wait status %d)", st);
	h_report("bumbad stops cleanly on SIGTERM after the run");
	if (h_failed)
		h_sup_log_tail(&sup, 30);
	hm_end(&hm);
	return h_finish();
}
