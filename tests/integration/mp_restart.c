/* SPDX-License-Identifier: MIT */
/*
 * mp_restart.c - the supervisor dies: bumbad SIGKILLed and restarted on the
 * same socket (it adopts the live segment from its keeper), or SIGKILLed
 * and not restarted at all.
 *
 *   1. a lock held by a live agent across the restart stays held (another
 *      agent's try-acquire gets -EBUSY), is released normally afterwards,
 *      and the restarted bumbad reclaims the holder when it is SIGKILLed;
 *   2. an agent that died while bumbad was down is reclaimed by the
 *      restarted bumbad: its slot is freed, its lock handed on as
 *      owner-died;
 *   3. with no bumbad at all, a waiter whose holder is SIGKILLed detects
 *      the dead owner itself (pid + start time) and gets the lock within
 *      1.5 s;
 *   4. with no bumbad, a shared waiter SIGKILLed while queued must not
 *      wedge the lock for the next exclusive waiter;
 *   5. the hammer of mp_stress with 16 workers, bumbad SIGKILLed in the
 *      middle, the hammering (and the worker SIGKILLs) going on while it is
 *      down and after its restart: mutual exclusion, fencing, every waiter
 *      served, and no slot leak at the end.
 *
 * Environment: RESTART_SECONDS (default 6) length of the hammer run,
 * RESTART_KILL_MS (default 20) mean interval between worker SIGKILLs,
 * BUILD, HARNESS_KEEP as in harness.h.
 */
#include "harness.h"

static struct h_sup sup;

/* State and generation of agent slot, seen by an observer. */
static int slot_state(uint32_t slot, uint32_t *state, uint32_t *gen)
{
	struct bumba_seg seg;
	int rc = bumba_observe(sup.sock, &seg);

	if (rc)
		return rc;
	*state = atomic_load(&seg.agents[slot].state);
	*gen = atomic_load(&seg.agents[slot].gen);
	bumba_seg_unmap(&seg);
	return 0;
}

/* The lock view of rel, false if idle or unknown. */
static bool lock_view(const char *rel, struct bumba_lock_view *v)
{
	struct bumba_seg seg;
	bool found;

	if (bumba_observe(sup.sock, &seg))
		return false;
	found = h_find_lock(&seg, &sup, rel, v);
	bumba_seg_unmap(&seg);
	return found;
}

static uint32_t sup_generation(void)
{
	struct bumba_seg seg;
	uint32_t g;

	if (bumba_observe(sup.sock, &seg))
		return 0;
	g = atomic_load(&seg.hdr->sup_generation);
	bumba_seg_unmap(&seg);
	return g;
}

static void test_held_across_restart(void)
{
	struct h_agent hold = {0}, other = {0};
	struct h_msg m, mx, my;
	struct bumba_lock_view v;
	uint32_t g0, st = 0, gen = 0;
	int rc;

	if (h_agent_start(&hold, "holder") < 0)
		return;
	rc = h_agent_acquire(&hold, "held/x", BUMBA_EXCLUSIVE, 1000, 0, &mx);
	if (!h_check(rc == 0, "holder: acquire held/x: %s", h_err(rc)))
		goto out_hold;
	rc = h_agent_acquire(&hold, "held/y", BUMBA_EXCLUSIVE, 1000, 0, &my);
	if (!h_check(rc == 0, "holder: acquire held/y: %s", h_err(rc)))
		goto out_hold;
	g0 = sup_generation();
	if (h_sup_restart(&sup) < 0)
		goto out_hold;
	h_check(sup_generation() > g0,
		"the restarted bumbad did not adopt the segment "
		"(supervisor generation %u -> %u)",
		g0, sup_generation());
	if (h_agent_start(&other, "other") < 0)
		goto out_hold;

	/* Still held, by the same agent. */
	rc = h_agent_acquire(&other, "held/x", BUMBA_EXCLUSIVE, 0, 0, &m);
	h_check(rc == -EBUSY, "after the restart, try-acquire of held/x gave %d (%s), not -EBUSY",
		rc, h_err(rc));
	rc = h_agent_acquire(&other, "held/y", BUMBA_SHARED, 0, 0, &m);
	h_check(rc == -EBUSY, "after the restart, shared try-acquire of held/y gave %d, not -EBUSY",
		rc);
	h_check(lock_view("held/x", &v) && v.owner1 == hold.slot + 1,
		"held/x: the segment does not show the holder (slot %u) as owner", hold.slot);
	h_check(slot_state(hold.slot, &st, &gen) == 0 && st == AGENT_LIVE,
		"the holder's agent slot is not live after the restart");

	/* A normal release after the restart hands it on, not as owner-died. */
	rc = h_agent_simple(&hold, H_RELEASE, my.lock, 0);
	h_check(rc == 0, "holder: release held/y after the restart: %s", h_err(rc));
	rc = h_agent_acquire(&other, "held/y", BUMBA_EXCLUSIVE, 0, 0, &m);
	h_check(rc == 0 && !m.owner_died,
		"held/y after its release: try-acquire rc %d owner-died %d (want 0, 0)", rc,
		m.owner_died);
	h_check(rc != 0 || m.fence > my.fence, "held/y: fence %llu after %llu",
		(unsigned long long)m.fence, (unsigned long long)my.fence);
	if (rc == 0)
		h_agent_simple(&other, H_RELEASE, m.lock, 0);

	/* The restarted bumbad watches the adopted agent: SIGKILL it while
	 * another waits, and the waiter gets the lock as owner-died. */
	memset(&m, 0, sizeof(m));
	m.cmd = H_ACQUIRE;
	m.mode = BUMBA_EXCLUSIVE;
	m.timeout_ms = 5000;
	snprintf(m.path, sizeof(m.path), "held/x");
	h_agent_send(&other, &m);
	h_sleep_ms(100);
	uint64_t t0 = h_now_ns();
	h_agent_kill(&hold);
	rc = h_agent_wait(&other, &m, 6000);
	double ms = (double)(h_now_ns() - t0) / 1e6;
	if (h_check(rc == 0, "waiter on held/x: no answer (%s)", h_err(rc))) {
		h_check(m.rc == 0 && m.owner_died == 1,
			"waiter on held/x after the adopted holder's SIGKILL: rc %d (%s) "
			"owner-died %d, want 0 and 1",
			m.rc, h_err(m.rc), m.owner_died);
		h_check(ms < 1000, "waiter on held/x served %.0f ms after the holder's SIGKILL",
			ms);
		h_check(m.rc != 0 || m.fence > mx.fence, "held/x: fence %llu after %llu",
			(unsigned long long)m.fence, (unsigned long long)mx.fence);
		h_note("adopted holder SIGKILLed: waiter served after %.1f ms", ms);
	}
	h_agent_close(&other);
out_hold:
	if (hold.pid > 0)
		h_agent_kill(&hold);
}

static void test_died_while_down(void)
{
	struct h_agent doomed = {0}, other = {0};
	struct h_msg m;
	struct bumba_lock_view v;
	uint32_t st = 0, gen0 = 0, gen = 0;
	int rc;

	if (h_agent_start(&doomed, "doomed") < 0)
		return;
	rc = h_agent_acquire(&doomed, "dead/x", BUMBA_EXCLUSIVE, 1000, 0, &m);
	if (!h_check(rc == 0, "doomed: acquire dead/x: %s", h_err(rc))) {
		h_agent_kill(&doomed);
		return;
	}
	uint64_t fence = m.fence;
	if (!h_check(slot_state(doomed.slot, &st, &gen0) == 0, "observe failed"))
		return;
	h_sup_kill9(&sup);
	h_agent_kill(&doomed);
	h_sleep_ms(50);
	if (h_sup_spawn(&sup) < 0)
		return;
	/* Reclaimed during the take-over: the generation moved on (the slot
	 * itself may already serve a new agent). */
	h_check(slot_state(doomed.slot, &st, &gen) == 0 && gen != gen0,
		"the dead agent's slot %u was not reclaimed by the restarted bumbad (state %u, "
		"generation %u -> %u)",
		doomed.slot, st, gen0, gen);
	h_check(!lock_view("dead/x", &v) || v.owner1 != doomed.slot + 1,
		"dead/x is still owned by the dead agent's slot");
	if (h_agent_start(&other, "other") < 0)
		return;
	rc = h_agent_acquire(&other, "dead/x", BUMBA_EXCLUSIVE, 0, 0, &m);
	h_check(rc == 0 && m.owner_died == 1,
		"dead/x after the restart: try-acquire rc %d (%s) owner-died %d, want 0 and 1", rc,
		h_err(rc), m.owner_died);
	h_check(rc != 0 || m.fence > fence, "dead/x: fence %llu after %llu",
		(unsigned long long)m.fence, (unsigned long long)fence);
	h_agent_close(&other);
}

/* Waits for the answer to an acquire sent earlier; checks it got the lock
 * within max_ms of t0. */
static void expect_served(struct h_agent *a, const char *what, uint64_t t0, double max_ms,
			  int want_died)
{
	struct h_msg m;
	int rc = h_agent_wait(a, &m, 6000);
	double ms = (double)(h_now_ns() - t0) / 1e6;

	if (!h_check(rc == 0, "%s: no answer within 6 s (%s)", what, h_err(rc)))
		return;
	h_check(m.rc == 0, "%s: acquire gave %d (%s) after %.0f ms", what, m.rc, h_err(m.rc), ms);
	h_check(m.rc != 0 || want_died < 0 || m.owner_died == want_died,
		"%s: owner-died %d, want %d", what, m.owner_died, want_died);
	h_check(m.rc != 0 || ms <= max_ms, "%s: served after %.0f ms (at most %.0f allowed)", what,
		ms, max_ms);
	if (m.rc == 0) {
		h_note("%s: served %.1f ms after the SIGKILL", what, ms);
		h_agent_simple(a, H_RELEASE, m.lock, 0);
	}
}

static void send_acquire(struct h_agent *a, const char *path, enum bumba_mode mode, int timeout_ms)
{
	struct h_msg m = {.cmd = H_ACQUIRE, .mode = (int32_t)mode, .timeout_ms = timeout_ms};

	snprintf(m.path, sizeof(m.path), "%s", path);
	h_agent_send(a, &m);
}

/* Did the agent answer already (it should still be blocked)? */
static bool still_blocked(struct h_agent *a, const char *what)
{
	struct h_msg m;
	int rc = h_agent_wait(a, &m, 150);

	return h_check(rc == -ETIMEDOUT, "%s: expected to block, got an answer (rc %d, %s)", what,
		       rc == 0 ? m.rc : rc, h_err(rc == 0 ? m.rc : rc));
}

static void test_gone_owner_dead(void)
{
	struct h_agent hold = {0}, wait = {0};
	struct h_msg m;
	int rc;

	if (h_agent_start(&hold, "holder") < 0)
		return;
	if (h_agent_start(&wait, "waiter") < 0) {
		h_agent_kill(&hold);
		return;
	}
	rc = h_agent_acquire(&hold, "gone/x", BUMBA_EXCLUSIVE, 1000, 0, &m);
	if (h_check(rc == 0, "holder: acquire gone/x: %s", h_err(rc))) {
		send_acquire(&wait, "gone/x", BUMBA_EXCLUSIVE, 5000);
		if (still_blocked(&wait, "waiter on gone/x")) {
			h_sup_kill9(&sup);
			h_sleep_ms(100);
			uint64_t t0 = h_now_ns();
			h_agent_kill(&hold);
			expect_served(&wait, "no bumbad: waiter on gone/x", t0, 1500, 1);
		}
	}
	h_agent_close(&wait);
	if (hold.pid > 0)
		h_agent_kill(&hold);
	if (!sup.pid)
		h_sup_spawn(&sup);
}

static void test_gone_dead_shared_waiter(void)
{
	struct h_agent hold = {0}, sharer = {0}, excl = {0};
	struct h_msg m;
	int rc;

	if (h_agent_start(&hold, "holder") < 0)
		return;
	if (h_agent_start(&sharer, "sharer") < 0 || h_agent_start(&excl, "excl") < 0) {
		h_agent_kill(&hold);
		if (sharer.pid > 0)
			h_agent_kill(&sharer);
		return;
	}
	rc = h_agent_acquire(&hold, "gone/y", BUMBA_EXCLUSIVE, 1000, 0, &m);
	if (!h_check(rc == 0, "holder: acquire gone/y: %s", h_err(rc)))
		goto out;
	send_acquire(&sharer, "gone/y", BUMBA_SHARED, 10000);
	if (!still_blocked(&sharer, "shared waiter on gone/y"))
		goto out;
	h_sup_kill9(&sup);
	/* The sharer dies in the queue; then the holder lets go, which hands
	 * the lock to the queue's head: the dead sharer. */
	h_agent_kill(&sharer);
	rc = h_agent_simple(&hold, H_RELEASE, m.lock, 0);
	h_check(rc == 0, "holder: release gone/y: %s", h_err(rc));
	uint64_t t0 = h_now_ns();
	send_acquire(&excl, "gone/y", BUMBA_EXCLUSIVE, 4000);
	expect_served(&excl, "no bumbad: exclusive waiter on gone/y after a dead shared waiter", t0,
		      1500, -1);
out:
	h_agent_close(&excl);
	h_agent_close(&hold);
	if (sharer.pid > 0)
		h_agent_kill(&sharer);
	if (!sup.pid)
		h_sup_spawn(&sup);
}

static void test_hammer_restart(void)
{
	const long seconds = h_env_long("RESTART_SECONDS", 6);
	const long kill_ms = h_env_long("RESTART_KILL_MS", 20);
	const unsigned total = (unsigned)seconds * 1000;
	struct hammer hm;
	uint32_t g0 = sup_generation();

	h_note("16 workers on 16 paths for %ld s, a SIGKILL every ~%ld ms; bumbad SIGKILLed at "
	       "%u ms, restarted %u ms later",
	       seconds, kill_ms, total * 2 / 5, total / 6);
	if (hm_start(&hm, 16, 16, (unsigned)kill_ms, 20) < 0) {
		h_report("hammer: workers start");
		return;
	}
	hm_run(&hm, total * 2 / 5);
	h_sup_kill9(&sup);
	hm_run(&hm, total / 6);
	if (h_sup_spawn(&sup) < 0) {
		hm_stop(&hm);
		h_report("hammer: bumbad restarts mid-run");
		hm_end(&hm);
		return;
	}
	hm_run(&hm, total - total * 2 / 5 - total / 6);
	hm_stop(&hm);
	hm_print(&hm);
	h_check(sup_generation() > g0, "the restarted bumbad did not adopt the live segment");

	hm_verdict_exclusion(&hm);
	hm_verdict_kills(&hm);
	h_report("hammer, bumbad SIGKILLed and restarted mid-run: mutual exclusion holds");
	hm_verdict_fencing(&hm);
	h_report("hammer across the restart: fencing tokens strictly increase, owner-died told");
	hm_verdict_served(&hm);
	h_report("hammer across the restart: every waiter is eventually served");
	h_check_clean(&sup, 200, 2000, NULL);
	h_report("hammer across the restart: no slot leaks once all workers are gone");
	hm_end(&hm);
}

int main(void)
{
	h_init();
	if (h_sup_start(&sup) < 0) {
		h_report("bumbad starts");
		return h_finish();
	}
	h_run("a lock held by a live agent across a bumbad restart stays held, and the "
	      "restarted bumbad reclaims it on the holder's SIGKILL",
	      test_held_across_restart);
	h_run("an agent that died while bumbad was down is reclaimed by the restarted bumbad",
	      test_died_while_down);
	h_run("no bumbad: a waiter whose holder is SIGKILLed gets the lock within 1.5 s",
	      test_gone_owner_dead);
	h_run("no bumbad: a shared waiter SIGKILLed in the queue does not wedge the lock",
	      test_gone_dead_shared_waiter);
	test_hammer_restart();

	int st = h_sup_stop(&sup);
	h_check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"bumbad did not stop cleanly on SIGTERM (wait status %d)", st);
	h_report("the restarted bumbad stops cleanly on SIGTERM");
	if (h_failed)
		h_sup_log_tail(&sup, 40);
	return h_finish();
}
