/* SPDX-License-Identifier: MIT */
/*
 * access.c - write authority: may this agent change this file now (the safe
 * file operations ask), and was a write seen by the kernel at some instant
 * sanctioned (the guard's classifier asks)?
 *
 * Both answers come from the segment alone: the lock table and the agent's
 * hold table for locks, each agent's short history of released exclusive
 * locks for "just before a release", and the territory table with its ring
 * of recently ended territory paths for the same reason.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "handle.h"

/* The agent's ACTIVE exclusive hold on lock idx, or NULL. */
static const struct hold *excl_hold(const struct bumba_seg *s, uint32_t slot, uint32_t idx)
{
	const struct hold *hs = bumba_seg_holds_of(s, slot);
	const uint32_t mask = s->hdr->caps.holds_per_agent - 1;

	for (uint32_t n = 0; n <= mask; n++) {
		const struct hold *h = &hs[(idx + n) & mask];
		uint32_t l = atomic_load(&h->lock1);
		if (l == idx + 1) {
			if ((atomic_load(&h->state) & 0xff) == HOLD_ACTIVE &&
			    h->mode == BUMBA_EXCLUSIVE)
				return h;
			return NULL;
		}
		if (l == 0)
			return NULL;
	}
	return NULL;
}

struct cover {
	uint64_t at_ns; /* the instant judged; 0: now */
	uint32_t slot;	/* writer, UINT32_MAX: none */
	bool own_excl, own_mon, in_mon;
	uint64_t own_tid, mon_tid;
	uint32_t other1; /* an EXCLUSIVE/SHARED owner in the way */
	uint8_t other_type;
	uint64_t other_tid;
};

/* A territory (owner, type, id) covering the file: what does it say? */
static void consider_fields(const struct bumba_seg *s, uint32_t owner1, uint8_t type, uint64_t id,
			    struct cover *c)
{
	bool mine = c->slot != UINT32_MAX && owner1 && bumba_agent_in_line(s, owner1 - 1, c->slot);
	if (type == BUMBA_TERRITORY_MONITORED) {
		c->in_mon = true;
		c->mon_tid = id;
		if (mine)
			c->own_mon = true;
	} else if (type == BUMBA_TERRITORY_EXCLUSIVE && mine) {
		c->own_excl = true;
		c->own_tid = id;
	} else if (!c->other1 || type == BUMBA_TERRITORY_EXCLUSIVE) {
		c->other1 = owner1;
		c->other_type = type;
		c->other_tid = id;
	}
}

/* A live territory path covering the file (st: its state, read by
 * bumba_terr_state_of). */
static void consider(const struct bumba_seg *s, const struct territory *t, uint32_t st,
		     struct cover *c)
{
	if (st != TERR_LIVE)
		return;
	/* At a past instant: it must have existed then. */
	if (c->at_ns && t->created_ns > c->at_ns)
		return;
	consider_fields(s, t->owner1, t->type, atomic_load(&t->id), c);
}

/* Territories that ended after the instant judged, newest first: the ring
 * is appended in the order they ended. */
static void consider_ended(const struct bumba_seg *s, const uint64_t *keys, int depth,
			   struct cover *c)
{
	const uint64_t top = atomic_load(&s->hdr->ended_seq);

	for (uint64_t n = 0; n < ENDED_RING && n < top; n++) {
		const uint64_t pos = top - 1 - n;
		const struct ended_path *e = &s->ended[pos % ENDED_RING];
		if (atomic_load_explicit(&e->seq, memory_order_acquire) != pos + 1)
			continue;
		const uint64_t key = e->key, created = e->created_ns, ended = e->ended_ns;
		const uint32_t owner1 = e->owner1;
		const uint16_t d = e->depth;
		const uint8_t type = e->type;
		const uint64_t tid = e->tid;
		if (atomic_load_explicit(&e->seq, memory_order_acquire) != pos + 1)
			continue; /* overwritten while we read it */
		if (ended < c->at_ns)
			break;
		if (d <= depth && keys[d] == key && created <= c->at_ns &&
		    owner1 <= s->hdr->caps.max_agents)
			consider_fields(s, owner1, type, tid, c);
	}
}

static void territories_over(const struct bumba_seg *s, const char *norm, size_t len,
			     struct cover *c)
{
	uint64_t keys[TERR_MAX_DEPTH + 1];
	const uint32_t mask = s->hdr->tkey_slots - 1;
	int depth = bumba_path_prefix_keys(norm, len, keys);

	if (depth < 0)
		return;
	for (int d = 0; d <= depth; d++) {
		uint32_t i = (uint32_t)keys[d] & mask;
		for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
			const struct tkey *e = &s->tkeys[i];
			uint64_t k = atomic_load_explicit(&e->key, memory_order_acquire);
			uint32_t rec, ti;
			uint64_t tid;
			if (k == TP_EMPTY)
				break;
			/* The record must carry the key and its territory the
			 * record's id: slots and records are reused. */
			if (k != keys[d] || !bumba_tp_read(s, e, k, &rec, &tid, &ti))
				continue;
			const struct territory *t = &s->terrs[ti];
			consider(s, t, bumba_terr_state_of(t, tid), c);
		}
	}
	if (c->at_ns)
		consider_ended(s, keys, depth, c);
}

uint64_t bumba_monitored_by(const struct bumba_seg *s, const char *norm, size_t len)
{
	struct cover c = {.slot = UINT32_MAX};

	if (!atomic_load(&s->hdr->terr_live))
		return 0;
	territories_over(s, norm, len, &c);
	return c.in_mon ? c.mon_tid : 0;
}

int bumba_may_write(const struct bumba_seg *s, uint32_t slot, const char *norm, size_t len)
{
	struct cover c = {.slot = slot};
	int64_t idx;

	if (slot >= s->hdr->caps.max_agents)
		return -EPERM;
	idx = bumba_locks_find(s, bumba_lock_key(norm, len));
	if (idx >= 0 && excl_hold(s, slot, (uint32_t)idx))
		return 0;
	if (!atomic_load(&s->hdr->terr_live))
		return -EPERM;
	territories_over(s, norm, len, &c);
	/* SHARED means nobody writes, even the owner of an enclosing claim. */
	if (c.own_excl && !(c.other1 && c.other_type == BUMBA_TERRITORY_SHARED))
		return 0;
	return -EPERM;
}

void bumba_classify_write(const struct bumba_seg *s, uint32_t slot, const char *norm, size_t len,
			  uint64_t event_ns, struct bumba_verdict *v)
{
	const uint64_t key = bumba_lock_key(norm, len);
	struct cover c = {.slot = slot, .at_ns = event_ns ? event_ns : 1};
	bool locked = false;
	uint32_t lock_owner1 = 0;
	int64_t idx = bumba_locks_find(s, key);

	memset(v, 0, sizeof(*v));
	if (idx >= 0) {
		uint64_t st = atomic_load(&s->locks[idx].state);
		lock_owner1 = (uint32_t)(st & LK_OWNER_MASK);
	}
	if (slot < s->hdr->caps.max_agents) {
		const struct agent_slot *a = &s->agents[slot];
		if (idx >= 0) {
			const struct hold *h = excl_hold(s, slot, (uint32_t)idx);
			locked = h && h->since_ns <= event_ns;
		}
		for (int k = 0; k < AGENT_HIST && !locked; k++) {
			if (atomic_load_explicit(&a->hist[k].key, memory_order_acquire) != key)
				continue;
			uint64_t since = atomic_load(&a->hist[k].since_ns);
			uint64_t until = atomic_load(&a->hist[k].until_ns);
			locked = since <= event_ns && event_ns <= until;
		}
	}
	territories_over(s, norm, len, &c);

	if (c.in_mon && (locked || c.own_mon || c.own_excl)) {
		v->kind = BUMBA_VERDICT_MONITORED;
		v->territory_id = c.mon_tid;
		return;
	}
	if (locked) {
		v->kind = BUMBA_VERDICT_LOCK;
		return;
	}
	if (c.own_excl && !(c.other1 && c.other_type == BUMBA_TERRITORY_SHARED)) {
		v->kind = BUMBA_VERDICT_TERRITORY;
		v->territory_id = c.own_tid;
		return;
	}
	v->kind = BUMBA_VERDICT_VIOLATION;
	if (lock_owner1 && lock_owner1 <= s->hdr->caps.max_agents && lock_owner1 - 1 != slot) {
		snprintf(v->holder_id, sizeof(v->holder_id), "%s", s->agents[lock_owner1 - 1].id);
		snprintf(v->holder_kind, sizeof(v->holder_kind), "lock");
	} else if (c.other1 && c.other1 <= s->hdr->caps.max_agents) {
		snprintf(v->holder_id, sizeof(v->holder_id), "%s", s->agents[c.other1 - 1].id);
		snprintf(v->holder_kind, sizeof(v->holder_kind), "%s",
			 c.other_type == BUMBA_TERRITORY_SHARED ? "shared" : "exclusive");
		v->territory_id = c.other_tid;
	}
}
