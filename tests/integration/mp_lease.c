/* SPDX-License-Identifier: MIT */
/*
 * mp_lease.c - lock leases against a real bumbad.
 *
 *   1. an exclusive lock taken with lease_ms = 200 and never renewed (the
 *      holder is SIGSTOPped, as if hung): the supervisor SIGKILLs the
 *      holder process, reclaims everything it held (a lock without a lease
 *      too), and a waiter gets the lock with bumba_lock_owner_died() == 1;
 *   2. the same lease renewed every 50 ms: the holder is never killed over
 *      1 s, nobody else gets the lock meanwhile, and it releases normally;
 *   3. bumba_lock_renew on a lock taken without a lease is -EINVAL, and on
 *      a released lock -ENOLCK.
 *
 * Environment: BUILD, HARNESS_KEEP as in harness.h.
 */
#include "harness.h"

static struct h_sup sup;

static uint64_t leases_expired(void)
{
	struct bumba_seg seg;
	struct bumba_totals t;

	if (bumba_observe(sup.sock, &seg))
		return UINT64_MAX;
	bumba_seg_totals(&seg, &t);
	bumba_seg_unmap(&seg);
	return t.leases_expired;
}

/* Waits up to ms for pid to end; its wait status, or -1. */
static int wait_end(pid_t pid, unsigned ms)
{
	int st;

	for (unsigned i = 0; i < ms / 5; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		h_sleep_ms(5);
	}
	return -1;
}

static void test_lease_expires(void)
{
	struct h_agent hold = {0}, wait = {0}, other = {0};
	struct h_msg m, ma, mb;
	uint64_t before = leases_expired();
	int rc;

	if (h_agent_start(&hold, "leaser") < 0 || h_agent_start(&wait, "waiter") < 0 ||
	    h_agent_start(&other, "other") < 0)
		goto out;
	rc = h_agent_acquire(&hold, "lease/a", BUMBA_EXCLUSIVE, 1000, 200, &ma);
	if (!h_check(rc == 0, "acquire lease/a with a 200 ms lease: %s", h_err(rc)))
		goto out;
	uint64_t t0 = h_now_ns();
	rc = h_agent_acquire(&hold, "lease/b", BUMBA_EXCLUSIVE, 1000, 0, &mb);
	if (!h_check(rc == 0, "acquire lease/b without a lease: %s", h_err(rc)))
		goto out;
	/* The holder hangs. */
	kill(hold.pid, SIGSTOP);

	/* A waiter queues behind the lease holder. */
	memset(&m, 0, sizeof(m));
	m.cmd = H_ACQUIRE;
	m.mode = BUMBA_EXCLUSIVE;
	m.timeout_ms = 5000;
	snprintf(m.path, sizeof(m.path), "lease/a");
	h_agent_send(&wait, &m);
	rc = h_agent_wait(&wait, &m, 6000);
	double ms = (double)(h_now_ns() - t0) / 1e6;
	if (h_check(rc == 0, "waiter on lease/a: no answer (%s)", h_err(rc))) {
		h_check(m.rc == 0, "waiter on lease/a: acquire gave %d (%s) after %.0f ms", m.rc,
			h_err(m.rc), ms);
		h_check(m.rc != 0 || m.owner_died == 1,
			"waiter on lease/a: owner-died %d after the lease holder was killed",
			m.owner_died);
		h_check(m.rc != 0 || (ms >= 180 && ms <= 1500),
			"waiter on lease/a served %.0f ms after a 200 ms lease began (want 200 ms "
			"to 1.5 s)",
			ms);
		h_check(m.rc != 0 || m.fence > ma.fence, "lease/a: fence %llu after %llu",
			(unsigned long long)m.fence, (unsigned long long)ma.fence);
		h_note("lease of 200 ms not renewed: waiter served after %.1f ms", ms);
	}

	/* The supervisor killed the holder, with SIGKILL. */
	int st = wait_end(hold.pid, 2000);
	if (h_check(st != -1,
		    "the lease holder (pid %d) is still alive 2 s after its lease "
		    "expired",
		    (int)hold.pid)) {
		h_check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
			"the lease holder ended with status 0x%x, not by SIGKILL", st);
		hold.pid = 0;
		close(hold.to);
		close(hold.from);
	}
	/* Everything it held was reclaimed, the lock without a lease too. */
	rc = h_agent_acquire(&other, "lease/b", BUMBA_EXCLUSIVE, 1000, 0, &m);
	h_check(rc == 0 && m.owner_died == 1,
		"lease/b of the killed holder: acquire rc %d (%s) owner-died %d, want 0 and 1", rc,
		h_err(rc), m.owner_died);
	h_check(leases_expired() == before + 1, "leases_expired went from %llu to %llu, not +1",
		(unsigned long long)before, (unsigned long long)leases_expired());
out:
	if (hold.pid > 0)
		h_agent_kill(&hold);
	h_agent_close(&wait);
	h_agent_close(&other);
}

static void test_lease_renewed(void)
{
	struct h_agent hold = {0}, other = {0};
	struct h_msg m, mh, r;
	uint64_t before = leases_expired();
	int rc, busy = 0, tries = 0;

	if (h_agent_start(&hold, "renewer") < 0 || h_agent_start(&other, "other") < 0)
		goto out;
	rc = h_agent_acquire(&hold, "lease/c", BUMBA_EXCLUSIVE, 1000, 200, &mh);
	if (!h_check(rc == 0, "acquire lease/c with a 200 ms lease: %s", h_err(rc)))
		goto out;
	memset(&r, 0, sizeof(r));
	r.cmd = H_RENEW_LOOP;
	r.lock = mh.lock;
	r.lease_ms = 200;
	r.period_ms = 50;
	r.duration_ms = 1000;
	h_agent_send(&hold, &r);
	/* Meanwhile nobody else gets in. */
	uint64_t t0 = h_now_ns();
	while (h_now_ns() - t0 < 900000000ull) {
		rc = h_agent_acquire(&other, "lease/c", BUMBA_EXCLUSIVE, 0, 0, &m);
		tries++;
		busy += rc == -EBUSY;
		if (rc == 0) {
			h_fail("lease/c was granted to another agent %.0f ms into a renewed lease "
			       "(owner-died %d)",
			       (double)(h_now_ns() - t0) / 1e6, m.owner_died);
			h_agent_simple(&other, H_RELEASE, m.lock, 0);
			break;
		}
		h_sleep_ms(100);
	}
	h_check(busy == tries, "try-acquire during the renewed lease: %d of %d were -EBUSY", busy,
		tries);
	rc = h_agent_wait(&hold, &r, 3000);
	if (h_check(rc == 0, "the renewing holder did not answer (%s): killed?", h_err(rc))) {
		h_check(r.rc == 0, "bumba_lock_renew failed during the loop: %s", h_err(r.rc));
		h_check(r.count >= 15, "only %u renewals in 1 s", r.count);
		rc = h_agent_simple(&hold, H_RELEASE, mh.lock, 0);
		h_check(rc == 0, "release of the renewed lock: %s", h_err(rc));
		h_note("renewed %u times in %.0f ms, holder alive", r.count,
		       (double)r.elapsed_ns / 1e6);
	}
	h_check(kill(hold.pid, 0) == 0 && waitpid(hold.pid, NULL, WNOHANG) == 0,
		"the renewing holder is gone");
	rc = h_agent_acquire(&other, "lease/c", BUMBA_EXCLUSIVE, 0, 0, &m);
	h_check(rc == 0 && m.owner_died == 0,
		"lease/c after its release: try-acquire rc %d (%s) owner-died %d, want 0 and 0", rc,
		h_err(rc), m.owner_died);
	h_check(leases_expired() == before, "leases_expired went from %llu to %llu",
		(unsigned long long)before, (unsigned long long)leases_expired());
out:
	h_agent_close(&hold);
	h_agent_close(&other);
}

static void test_renew_errors(void)
{
	struct h_agent a = {0};
	struct h_msg m, ml;
	int rc;

	if (h_agent_start(&a, "renewer") < 0)
		return;
	rc = h_agent_acquire(&a, "lease/d", BUMBA_EXCLUSIVE, 1000, 0, &m);
	if (h_check(rc == 0, "acquire lease/d: %s", h_err(rc))) {
		rc = h_agent_simple(&a, H_RENEW, m.lock, 200);
		h_check(rc == -EINVAL, "renew of a lock without a lease gave %d (%s), want -EINVAL",
			rc, h_err(rc));
		rc = h_agent_simple(&a, H_RELEASE, m.lock, 0);
		h_check(rc == 0, "release lease/d: %s", h_err(rc));
		rc = h_agent_simple(&a, H_RENEW, m.lock, 200);
		h_check(rc == -ENOLCK, "renew of a released lock gave %d (%s), want -ENOLCK", rc,
			h_err(rc));
	}
	rc = h_agent_acquire(&a, "lease/e", BUMBA_EXCLUSIVE, 1000, 5000, &ml);
	if (h_check(rc == 0, "acquire lease/e with a lease: %s", h_err(rc))) {
		rc = h_agent_simple(&a, H_RENEW, ml.lock, 5000);
		h_check(rc == 0, "renew of a leased lock gave %d (%s)", rc, h_err(rc));
		rc = h_agent_simple(&a, H_RELEASE, ml.lock, 0);
		h_check(rc == 0, "release lease/e: %s", h_err(rc));
		rc = h_agent_simple(&a, H_RENEW, ml.lock, 5000);
		h_check(rc == -ENOLCK, "renew of a released leased lock gave %d (%s), want -ENOLCK",
			rc, h_err(rc));
	}
	h_agent_close(&a);
}

int main(void)
{
	h_init();
	if (h_sup_start(&sup) < 0) {
		h_report("bumbad starts");
		return h_finish();
	}
	h_run("a 200 ms lease not renewed (holder hung): the supervisor SIGKILLs the holder and a "
	      "waiter gets the lock as owner-died",
	      test_lease_expires);
	h_run("a 200 ms lease renewed every 50 ms: the holder lives through 1 s and keeps the "
	      "lock",
	      test_lease_renewed);
	h_run("bumba_lock_renew: -EINVAL without a lease, -ENOLCK once released",
	      test_renew_errors);
	h_check_clean(&sup, 200, 2000, NULL);
	h_report("no slot leaks once every agent is gone");
	int st = h_sup_stop(&sup);
	h_check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"bumbad did not stop cleanly on SIGTERM (wait status %d)", st);
	h_report("bumbad stops cleanly on SIGTERM");
	if (h_failed)
		h_sup_log_tail(&sup, 30);
	return h_finish();
}
