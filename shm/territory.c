/* SPDX-License-Identifier: MIT */
/*
 * territory.c - territories: sets of paths an agent claims before working
 * on them (DESIGN decision 5).
 *
 * Owns: the territory records, the table of claimed paths (tpaths), the
 * descendant counts used to find claims below a directory, claims, resizes,
 * releases, timeouts, hierarchy, and the look-up the lock table does on
 * every exclusive acquire.
 *
 * Readers never block: a claimed path is found through the key index by the
 * chained hash of its components, so "which territories cover /ws/src/a.c"
 * is one probe per ancestor depth that has any claim at all
 * (hdr->depth_mask).  The index holds 16-byte slots (key, record) with the
 * open-addressing headroom; the path records behind it are dense and come
 * from a free list, so the headroom costs 32 bytes a path, not a record.  A claim is
 * built invisibly (BUILDING), becomes PENDING — which already stops new
 * exclusive locks — while the lock table is checked for locks in the way,
 * and is published LIVE by one store.  Writers serialise on a robust
 * mutex; a claimer killed inside leaves a BUILDING/PENDING record that the
 * next writer rolls back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "handle.h"

#define KEY_SEED 0x62756d6261ull /* "bumba" */

const double bumba_claim_bounds[TERR_HIST_BUCKETS] = {
	1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 1e300,
};

static inline uint64_t fix_key(uint64_t k)
{
	return k < 2 ? k + 2 : k;
}

int bumba_path_prefix_keys(const char *p, size_t len, uint64_t keys[TERR_MAX_DEPTH + 1])
{
	size_t i = 0;
	int d = 0;

	keys[0] = fix_key(KEY_SEED);
	while (i < len) {
		while (i < len && p[i] == '/')
			i++;
		if (i == len)
			break;
		size_t start = i;
		while (i < len && p[i] != '/')
			i++;
		if (d == TERR_MAX_DEPTH)
			return -ENAMETOOLONG;
		keys[d + 1] = fix_key(XXH3_64bits_withSeed(p + start, i - start, keys[d]));
		d++;
	}
	return d;
}

/* The first keys of bumba_path_prefix_keys, up to depth max. */
static int prefix_keys_upto(const char *p, size_t len, uint64_t *keys, int max)
{
	size_t i = 0;
	int d = 0;

	keys[0] = fix_key(KEY_SEED);
	while (i < len && d < max) {
		while (i < len && p[i] == '/')
			i++;
		if (i == len)
			break;
		size_t start = i;
		while (i < len && p[i] != '/')
			i++;
		keys[d + 1] = fix_key(XXH3_64bits_withSeed(p + start, i - start, keys[d]));
		d++;
	}
	return d;
}

/* ------------------------------------------------------------------ */
/* lock-free look-ups                                                  */

static bool terr_visible(uint32_t st, bool include_pending)
{
	return st == TERR_LIVE || (include_pending && st == TERR_PENDING);
}

bool bumba_agent_in_line(const struct bumba_seg *s, uint32_t a, uint32_t me)
{
	uint32_t cur = me;

	for (int hops = 0; hops < 32 && cur < s->hdr->caps.max_agents; hops++) {
		if (cur == a)
			return true;
		uint32_t p = s->agents[cur].parent1;
		if (!p)
			return false;
		cur = p - 1;
	}
	return false;
}

static bool same_family(const struct bumba_seg *s, uint32_t a, uint32_t b)
{
	return bumba_agent_in_line(s, a, b) || bumba_agent_in_line(s, b, a);
}

/* Calls fn for every visible tpath entry with key k. */
typedef bool (*tp_fn)(const struct bumba_seg *s, uint32_t i, const struct territory *t, void *arg);

static bool tp_each(const struct bumba_seg *s, uint64_t k, bool pending, bool ended, tp_fn fn,
		    void *arg)
{
	const uint32_t mask = s->hdr->tkey_slots - 1;
	uint32_t i = (uint32_t)k & mask;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		const struct tkey *e = &s->tkeys[i];
		uint64_t key = atomic_load_explicit(&e->key, memory_order_acquire);
		if (key == TP_EMPTY)
			return false;
		if (key != k)
			continue;
		uint32_t rec, ti;
		uint64_t tid;
		if (!bumba_tp_read(s, e, k, &rec, &tid, &ti))
			continue;
		const struct territory *t = &s->terrs[ti];
		uint32_t st = bumba_terr_state_of(t, tid);
		if (!terr_visible(st, pending) && !(ended && st == TERR_ENDED))
			continue;
		if (fn(s, rec, t, arg))
			return true;
	}
	return false;
}

struct lock_check {
	uint32_t slot;
};

static bool lock_blocked(const struct bumba_seg *s, uint32_t i, const struct territory *t,
			 void *arg)
{
	const struct lock_check *c = arg;

	if (t->type == BUMBA_TERRITORY_SHARED)
		return true;
	return t->type == BUMBA_TERRITORY_EXCLUSIVE &&
	       !bumba_agent_in_line(s, t->owner1 - 1, c->slot);
}

int bumba_territory_lock_check(const struct bumba_seg *s, uint32_t slot, const char *norm,
			       size_t len)
{
	uint64_t keys[TERR_MAX_DEPTH + 1];
	struct lock_check c = {.slot = slot};

	if (!atomic_load_explicit(&s->hdr->terr_live, memory_order_seq_cst))
		return 0;
	uint64_t mask = atomic_load(&s->hdr->depth_mask);
	if (!mask)
		return 0;
	/* Hash no deeper than the deepest claim. */
	const int deepest = 63 - __builtin_clzll(mask);
	int depth = prefix_keys_upto(norm, len, keys, deepest);
	for (int d = 0; d <= depth; d++) {
		if ((mask >> d) & 1 && tp_each(s, keys[d], true, false, lock_blocked, &c))
			return -EACCES;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* writers (under terr_mu)                                             */

void bumba_tpath_string(const struct bumba_seg *s, uint32_t i, char *out, size_t cap)
{
	const struct tpath *tp = &s->tpaths[i];

	const char *src =
		tp->long1 && tp->long1 <= s->hdr->tlong_slots ? s->tlong[tp->long1 - 1] : tp->path;
	size_t lim = src == tp->path ? TPATH_INLINE - 1 : PATH_MAX - 1;
	size_t n = strnlen(src, lim);

	if (!cap)
		return;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, src, n);
	out[n] = '\0';
}

static struct desc_entry *desc_find(struct bumba_seg *s, uint64_t k, bool create)
{
	const uint32_t mask = s->hdr->desc_slots - 1;
	uint32_t i = (uint32_t)k & mask;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		struct desc_entry *e = &s->desc[i];
		if (e->key == k)
			return e;
		if (!e->key) {
			if (!create)
				return NULL;
			e->key = k;
			e->count = 0;
			s->hdr->desc_used++;
			return e;
		}
	}
	return NULL;
}

/* Empties slot i of the counts.  Only writers read this table (under
 * terr_mu), so instead of a tombstone the entries after it in its probe
 * run shift back (linear probing's backward-shift deletion): the table
 * holds only prefixes that still have claims below them, and stays short
 * however many different paths were ever claimed. */
static void desc_delete(struct bumba_seg *s, uint32_t i)
{
	const uint32_t mask = s->hdr->desc_slots - 1;

	for (uint32_t j = (i + 1) & mask; s->desc[j].key; j = (j + 1) & mask) {
		uint32_t home = (uint32_t)s->desc[j].key & mask;
		/* Entry j stays if its home lies cyclically in (i, j]. */
		bool stays = i < j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			s->desc[i] = s->desc[j];
			i = j;
		}
	}
	s->desc[i].key = 0;
	s->desc[i].count = 0;
	s->hdr->desc_used--;
}

static void desc_adjust(struct bumba_seg *s, const uint64_t *keys, int depth, int delta)
{
	for (int d = 0; d < depth; d++) {
		struct desc_entry *e = desc_find(s, keys[d], delta > 0);
		if (!e)
			continue;
		e->count = (uint32_t)((int)e->count + delta);
		if (!e->count)
			desc_delete(s, (uint32_t)(e - s->desc));
	}
}

/* Rebuilds the descendant counts from the live claims: after a crash
 * inside the mutex.  (Counts that drop to zero are deleted at once, see
 * desc_delete, so dead keys never pile up and need no periodic rebuild.) */
static void desc_rebuild(struct bumba_seg *s)
{
	uint64_t keys[TERR_MAX_DEPTH + 1];
	char path[PATH_MAX];

	memset(s->desc, 0, sizeof(*s->desc) * s->hdr->desc_slots);
	s->hdr->desc_used = 0;
	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		uint32_t st = atomic_load(&s->terrs[ti].state);
		if (st != TERR_LIVE && st != TERR_PENDING)
			continue;
		for (uint32_t l = s->terrs[ti].first1; l; l = s->tpaths[l - 1].next1) {
			bumba_tpath_string(s, l - 1, path, sizeof(path));
			int d = bumba_path_prefix_keys(path, strlen(path), keys);
			if (d > 0)
				desc_adjust(s, keys, d, +1);
		}
	}
}

/* Path records and overflow slots: free lists first (warm pages), then
 * the never-used ones past the high-water mark. */
static int rec_alloc(struct bumba_seg *s)
{
	struct seg_header *h = s->hdr;
	uint32_t i;

	if (h->tpath_free1 && h->tpath_free1 <= h->tpath_slots) {
		i = h->tpath_free1 - 1;
		h->tpath_free1 = s->tpaths[i].next1;
	} else if (h->tpath_hwm < h->tpath_slots) {
		i = h->tpath_hwm++;
	} else {
		return -ENOSPC;
	}
	s->tpaths[i].next1 = 0;
	h->tpaths_live++;
	return (int)i;
}

static void rec_free(struct bumba_seg *s, uint32_t i)
{
	s->tpaths[i].next1 = s->hdr->tpath_free1;
	s->hdr->tpath_free1 = i + 1;
	s->hdr->tpaths_live--;
}

/* A free overflow slot is an empty string; the free list's link follows
 * the NUL. */
static uint32_t tlong_next(const struct bumba_seg *s, uint32_t j)
{
	uint32_t next;

	memcpy(&next, s->tlong[j] + 4, sizeof(next));
	return next;
}

static void tlong_free(struct bumba_seg *s, uint32_t j)
{
	s->tlong[j][0] = '\0';
	memcpy(s->tlong[j] + 4, &s->hdr->tlong_free1, sizeof(uint32_t));
	s->hdr->tlong_free1 = j + 1;
}

static int tlong_alloc(struct bumba_seg *s)
{
	struct seg_header *h = s->hdr;

	if (h->tlong_free1 && h->tlong_free1 <= h->tlong_slots) {
		uint32_t j = h->tlong_free1 - 1;
		h->tlong_free1 = tlong_next(s, j);
		return (int)j;
	}
	if (h->tlong_hwm < h->tlong_slots)
		return (int)h->tlong_hwm++;
	return -ENOSPC;
}

static void tp_trim(struct bumba_seg *s, uint32_t i)
{
	const uint32_t mask = s->hdr->tkey_slots - 1;

	if (atomic_load(&s->tkeys[(i + 1) & mask].key) != TP_EMPTY)
		return;
	while (atomic_load(&s->tkeys[i].key) == TP_TOMBSTONE) {
		atomic_store(&s->tkeys[i].key, TP_EMPTY);
		atomic_fetch_sub(&s->hdr->tpaths_used, 1);
		i = (i - 1) & mask;
	}
}

/* Takes record i out of the index (readers stop finding it), out of its
 * territory's list, and frees it. */
static void tp_remove(struct bumba_seg *s, uint32_t i)
{
	struct tpath *tp = &s->tpaths[i];
	struct territory *t = &s->terrs[atomic_load(&tp->terr)];

	if (tp->slot1 && tp->slot1 <= s->hdr->tkey_slots) {
		struct tkey *e = &s->tkeys[tp->slot1 - 1];
		if (atomic_load(&e->rec1) == i + 1 &&
		    atomic_load(&e->key) == atomic_load(&tp->key)) {
			atomic_store(&e->key, TP_TOMBSTONE);
			tp_trim(s, tp->slot1 - 1);
		}
	}
	tp->slot1 = 0;
	for (uint32_t *link = &t->first1; *link; link = &s->tpaths[*link - 1].next1) {
		if (*link == i + 1) {
			*link = tp->next1;
			break;
		}
	}
	tp->next1 = 0;
	/* A reader that found the index slot before the tombstone and reads
	 * the record now sees tid 0 (or, refilled, a new tid or key): skipped. */
	atomic_store(&tp->tid, 0);
	if (tp->long1 && tp->long1 <= s->hdr->tlong_slots)
		tlong_free(s, tp->long1 - 1);
	tp->long1 = 0;
	rec_free(s, i);
}

static int tp_insert(struct bumba_seg *s, uint32_t terr, uint64_t tid, uint8_t type,
		     uint32_t owner1, uint64_t key, int depth, const char *path, size_t len,
		     uint32_t *out)
{
	struct seg_header *h = s->hdr;
	const uint32_t mask = h->tkey_slots - 1;
	uint32_t i = (uint32_t)key & mask, long1 = 0;

	if (len >= TPATH_INLINE) {
		int j = tlong_alloc(s);
		if (j < 0)
			return j;
		long1 = (uint32_t)j + 1;
		memcpy(s->tlong[j], path, len + 1);
	}
	int r = rec_alloc(s);
	if (r < 0) {
		if (long1)
			tlong_free(s, long1 - 1);
		return r;
	}
	/* Refill under tid 0 (seqlock-like, see struct tpath): the fence keeps
	 * the new key and terr from being seen before the 0. */
	struct tpath *tp = &s->tpaths[r];
	atomic_store_explicit(&tp->tid, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&tp->key, key, memory_order_relaxed);
	atomic_store_explicit(&tp->terr, terr, memory_order_relaxed);
	tp->depth = (uint16_t)depth;
	tp->type = type;
	tp->owner1 = owner1;
	tp->long1 = long1;
	tp->len = (uint16_t)(len < 0xffff ? len : 0xffff);
	size_t inl = len < TPATH_INLINE - 1 ? len : TPATH_INLINE - 1;
	memcpy(tp->path, path, inl);
	tp->path[inl] = '\0';
	tp->slot1 = 0;
	atomic_store_explicit(&tp->tid, tid, memory_order_release);
	tp->next1 = s->terrs[terr].first1;
	s->terrs[terr].first1 = (uint32_t)r + 1;

	for (;; i = (i + 1) & mask) {
		uint64_t k = atomic_load(&s->tkeys[i].key);
		if (k == TP_EMPTY || k == TP_TOMBSTONE) {
			if (k == TP_EMPTY)
				atomic_fetch_add(&h->tpaths_used, 1);
			break;
		}
	}
	/* rec1 before the key: the key's store publishes the slot. */
	atomic_store_explicit(&s->tkeys[i].rec1, (uint32_t)r + 1, memory_order_relaxed);
	tp->slot1 = i + 1;
	atomic_store_explicit(&s->tkeys[i].key, key, memory_order_seq_cst);
	atomic_fetch_or(&h->depth_mask, 1ull << depth);
	*out = (uint32_t)r;
	return 0;
}

/* Removes every tpath of territory t (index ti); fixes the counts. */
static void terr_drop_paths(struct bumba_seg *s, uint32_t ti, bool counted)
{
	uint64_t keys[TERR_MAX_DEPTH + 1];
	char path[PATH_MAX];

	while (s->terrs[ti].first1) {
		uint32_t i = s->terrs[ti].first1 - 1;
		if (counted) {
			bumba_tpath_string(s, i, path, sizeof(path));
			int d = bumba_path_prefix_keys(path, strlen(path), keys);
			if (d > 0)
				desc_adjust(s, keys, d, -1);
		}
		tp_remove(s, i);
	}
}

static void terr_free(struct bumba_seg *s, uint32_t ti)
{
	struct territory *t = &s->terrs[ti];

	atomic_store(&t->id, 0);
	atomic_store(&t->n_paths, 0);
	t->first1 = 0;
	atomic_store(&t->state, TERR_FREE);
}

static void terr_end_locked(struct bumba_seg *s, uint32_t ti);
static bool reap_ended(struct bumba_seg *s);

/* After a writer died inside: a record or overflow slot it had taken but
 * not yet linked (or unlinked but not yet freed) belongs to nobody.  The
 * free lists and the index are rebuilt from the territories' path lists,
 * which are the truth. */
static void free_rebuild(struct bumba_seg *s)
{
	struct seg_header *h = s->hdr;
	uint32_t hwm = h->tpath_hwm <= h->tpath_slots ? h->tpath_hwm : h->tpath_slots;
	uint32_t lhwm = h->tlong_hwm <= h->tlong_slots ? h->tlong_hwm : h->tlong_slots;
	uint8_t *used = calloc(hwm + 1, 1), *lused = calloc(lhwm + 1, 1);

	if (!used || !lused) {
		/* Without memory the lists stay as they are: at worst a
		 * record leaks until the next repair. */
		free(used);
		free(lused);
		return;
	}
	for (uint32_t ti = 0; ti < h->terr_hwm; ti++) {
		if (atomic_load(&s->terrs[ti].state) == TERR_FREE)
			continue;
		uint32_t steps = 0;
		for (uint32_t *l = &s->terrs[ti].first1; *l; l = &s->tpaths[*l - 1].next1) {
			/* A list cut short (a bad link, a cycle) ends here. */
			if (*l > hwm || used[*l - 1] || ++steps > hwm) {
				*l = 0;
				break;
			}
			used[*l - 1] = 1;
			uint32_t l1 = s->tpaths[*l - 1].long1;
			if (l1 && l1 <= lhwm)
				lused[l1 - 1] = 1;
		}
	}
	h->tpath_free1 = 0;
	h->tpaths_live = 0;
	for (uint32_t i = hwm; i-- > 0;) {
		if (used[i]) {
			h->tpaths_live++;
			continue;
		}
		atomic_store(&s->tpaths[i].tid, 0);
		s->tpaths[i].slot1 = 0;
		s->tpaths[i].long1 = 0;
		s->tpaths[i].next1 = h->tpath_free1;
		h->tpath_free1 = i + 1;
	}
	h->tlong_free1 = 0;
	for (uint32_t j = lhwm; j-- > 0;) {
		if (!lused[j])
			tlong_free(s, j);
	}
	/* Index slots naming a record that is not theirs go; the rest are
	 * recounted. */
	uint32_t n_used = 0;
	for (uint32_t i = 0; i < h->tkey_slots; i++) {
		struct tkey *e = &s->tkeys[i];
		uint64_t k = atomic_load(&e->key);
		uint32_t r1 = atomic_load(&e->rec1);
		if (k >= 2 &&
		    (!r1 || r1 > hwm || !used[r1 - 1] || s->tpaths[r1 - 1].slot1 != i + 1))
			atomic_store(&e->key, k = TP_TOMBSTONE);
		n_used += k != TP_EMPTY;
	}
	for (uint32_t i = 0; i < hwm; i++) {
		uint32_t sl = s->tpaths[i].slot1;
		if (used[i] && sl &&
		    (sl > h->tkey_slots || atomic_load(&s->tkeys[sl - 1].rec1) != i + 1 ||
		     atomic_load(&s->tkeys[sl - 1].key) < 2))
			s->tpaths[i].slot1 = 0;
	}
	atomic_store(&h->tpaths_used, n_used);
	free(used);
	free(lused);
}

static void repair_terr(struct bumba_seg *s, uint32_t unused)
{
	/* A writer died inside: roll back half-made claims, recount. */
	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		struct territory *t = &s->terrs[ti];
		uint32_t st = atomic_load(&t->state);
		if (st == TERR_BUILDING || st == TERR_PENDING) {
			if (st == TERR_PENDING)
				atomic_fetch_sub(&s->hdr->terr_live, 1);
			atomic_store(&t->state, TERR_BUILDING);
			terr_drop_paths(s, ti, false);
			terr_free(s, ti);
		}
	}
	uint32_t live = 0;
	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++)
		live += atomic_load(&s->terrs[ti].state) == TERR_LIVE;
	atomic_store(&s->hdr->terr_live, live);
	free_rebuild(s);
	desc_rebuild(s);
}

static void terr_lock(struct bumba_seg *s)
{
	int rc = bumba_robust_lock(&s->hdr->terr_mu);

	if (rc == EOWNERDEAD) {
		repair_terr(s, 0);
		pthread_mutex_consistent(&s->hdr->terr_mu);
	}
}

static void terr_unlock(struct bumba_seg *s)
{
	pthread_mutex_unlock(&s->hdr->terr_mu);
}

/* ------------------------------------------------------------------ */
/* conflicts                                                           */

/* A requested path, normalised, with the keys of its prefixes.  Both live
 * in one arena sized to the paths (see norm_requests), not in PATH_MAX and
 * TERR_MAX_DEPTH arrays: a claim of 100 paths then touches a few KiB
 * instead of ~460 KiB. */
struct req {
	const char *norm;
	const uint64_t *keys; /* keys[0..depth] */
	size_t len;
	int depth;
};

struct conflicts {
	struct bumba_conflict *out;
	size_t max, n;
};

static void add_conflict(const struct bumba_seg *s, struct conflicts *c, const char *path,
			 uint32_t owner1, enum bumba_territory_type type)
{
	if (c->n < c->max) {
		struct bumba_conflict *k = &c->out[c->n];
		snprintf(k->path, sizeof(k->path), "%s", path);
		if (owner1 && owner1 <= s->hdr->caps.max_agents)
			snprintf(k->holder_id, sizeof(k->holder_id), "%s",
				 s->agents[owner1 - 1].id);
		else
			k->holder_id[0] = '\0';
		k->type = type;
	}
	c->n++;
}

static bool compatible(uint8_t want, uint8_t have)
{
	if (want == BUMBA_TERRITORY_EXCLUSIVE || have == BUMBA_TERRITORY_EXCLUSIVE)
		return false;
	return want == have; /* SHARED with SHARED, MONITORED with MONITORED */
}

struct cover_ctx {
	struct conflicts *c;
	uint32_t me;
	uint8_t type;
	uint64_t self_tid; /* growing this territory: ignore it */
};

static bool cover_conflict(const struct bumba_seg *s, uint32_t i, const struct territory *t,
			   void *arg)
{
	struct cover_ctx *x = arg;
	char path[PATH_MAX];

	if (atomic_load(&t->id) == x->self_tid || same_family(s, t->owner1 - 1, x->me) ||
	    compatible(x->type, t->type))
		return false;
	bumba_tpath_string(s, i, path, sizeof(path));
	add_conflict(s, x->c, path, t->owner1, (enum bumba_territory_type)t->type);
	atomic_fetch_add((_Atomic uint64_t *)&t->conflicts_met, 1);
	return false; /* keep looking: report every conflict */
}

/* Territories in the way of claiming r as type. */
static void check_territories(struct bumba_seg *s, const struct req *r, uint32_t me, uint8_t type,
			      uint64_t self_tid, struct conflicts *c)
{
	struct cover_ctx x = {.c = c, .me = me, .type = type, .self_tid = self_tid};
	char path[PATH_MAX];

	/* Claims on r or on a directory above it: only at depths that have
	 * claims at all. */
	const uint64_t mask = atomic_load(&s->hdr->depth_mask);
	for (int d = 0; d <= r->depth; d++) {
		if ((mask >> d) & 1)
			tp_each(s, r->keys[d], true, false, cover_conflict, &x);
	}
	/* Claims strictly below r: only when the counts say there are any. */
	struct desc_entry *e = desc_find(s, r->keys[r->depth], false);
	if (!e || !e->count)
		return;
	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		const struct territory *t = &s->terrs[ti];
		uint32_t st = atomic_load(&t->state);
		if (st != TERR_LIVE && st != TERR_PENDING)
			continue;
		for (uint32_t l = t->first1; l; l = s->tpaths[l - 1].next1) {
			const struct tpath *tp = &s->tpaths[l - 1];
			if (tp->depth <= r->depth)
				continue;
			bumba_tpath_string(s, l - 1, path, sizeof(path));
			if (strncmp(path, r->norm, r->len) != 0 ||
			    (r->len > 1 && path[r->len] != '/'))
				continue;
			cover_conflict(s, l - 1, t, &x);
		}
	}
}

/* Lock slot i, if another agent holds it exclusively, against the
 * request; one conflict per lock. */
static void check_lock_slot(struct bumba_seg *s, uint32_t i, const struct req *reqs, size_t n,
			    uint32_t me, struct conflicts *c)
{
	struct bumba_lock_view v;

	if (!bumba_locks_view(s, i, &v) || !v.owner1 || same_family(s, v.owner1 - 1, me))
		return;
	size_t pl = strlen(v.path);
	for (size_t k = 0; k < n; k++) {
		const struct req *r = &reqs[k];
		bool under = pl >= r->len && strncmp(v.path, r->norm, r->len) == 0 &&
			     (pl == r->len || r->len == 1 || v.path[r->len] == '/');
		if (under) {
			add_conflict(s, c, v.path, v.owner1, BUMBA_TERRITORY_LOCKED);
			return;
		}
	}
}

/* Exclusive file locks of other agents on or below the requested paths.
 * Whichever is smaller is walked: the hold tables of the agents there
 * are (a hold is published before its lock word is taken, so a lock being
 * taken right now is either seen here or sees our PENDING claim), or the
 * whole lock table. */
static void check_locks(struct bumba_seg *s, const struct req *reqs, size_t n, uint32_t me,
			struct conflicts *c)
{
	const struct seg_header *h = s->hdr;
	uint32_t hwm = atomic_load(&h->agent_hwm);

	if (hwm && (uint64_t)hwm * h->caps.holds_per_agent < h->lock_slots) {
		for (uint32_t a = 0; a < hwm; a++) {
			if (atomic_load(&s->agents[a].state) != AGENT_LIVE || same_family(s, a, me))
				continue;
			const struct hold *hs = bumba_seg_holds_of(s, a);
			for (uint32_t j = 0; j < h->caps.holds_per_agent; j++) {
				uint32_t l = atomic_load(&hs[j].lock1);
				if (!l || l == UINT32_MAX || l > h->lock_slots ||
				    hs[j].mode != BUMBA_EXCLUSIVE)
					continue;
				uint64_t st = atomic_load(&s->locks[l - 1].state);
				if ((st & LK_OWNER_MASK) == a + 1)
					check_lock_slot(s, l - 1, reqs, n, me, c);
			}
		}
		return;
	}
	for (uint32_t i = 0; i < h->lock_slots; i++) {
		uint64_t st = atomic_load_explicit(&s->locks[i].state, memory_order_relaxed);
		if ((st & LK_OWNER_MASK) && !(st & LK_DEAD))
			check_lock_slot(s, i, reqs, n, me, c);
	}
}

/* An agent with a parent claims inside its ancestors' territories only. */
struct inside_ctx {
	uint32_t me;
};

static bool ancestor_covers(const struct bumba_seg *s, uint32_t i, const struct territory *t,
			    void *arg)
{
	const struct inside_ctx *x = arg;

	return t->owner1 - 1 != x->me && bumba_agent_in_line(s, t->owner1 - 1, x->me);
}

static bool inside_ancestors(struct bumba_seg *s, const struct req *r, uint32_t me)
{
	struct inside_ctx x = {.me = me};

	for (int d = 0; d <= r->depth; d++) {
		if (tp_each(s, r->keys[d], false, false, ancestor_covers, &x))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* claim / add / remove / release                                      */

/* Normalises the n paths into reqs; their text and keys go to *arena
 * (the caller frees it, also on error). */
static int norm_requests(struct bumba *b, const char *const *paths, size_t n, struct req *reqs,
			 char **arena)
{
	const struct bumba_seg *s = &b->seg;
	uint64_t keys[TERR_MAX_DEPTH + 1];
	char norm[PATH_MAX];
	size_t root, used = 0, cap = n * 128;
	size_t *offs = malloc(n * sizeof(*offs));
	char *a = malloc(cap);

	*arena = a;
	if (!a || !offs) {
		free(offs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (!paths[i]) {
			free(offs);
			return -EINVAL;
		}
		int len = bumba_path_norm(s->root_ptrs, s->hdr->n_roots, paths[i], (size_t)-1, norm,
					  sizeof(norm), &root);
		int depth = len < 0 ? len : bumba_path_prefix_keys(norm, (size_t)len, keys);
		if (depth < 0) {
			free(offs);
			return depth;
		}
		/* Keys first (8-byte aligned), then the text. */
		size_t kb = ((size_t)depth + 1) * sizeof(uint64_t);
		size_t need = kb + (((size_t)len + 1 + 7) & ~(size_t)7);
		if (used + need > cap) {
			while (used + need > cap)
				cap *= 2;
			char *g = realloc(a, cap);
			if (!g) {
				free(offs);
				return -ENOMEM;
			}
			*arena = a = g;
		}
		memcpy(a + used, keys, kb);
		memcpy(a + used + kb, norm, (size_t)len + 1);
		offs[i] = used;
		reqs[i].len = (size_t)len;
		reqs[i].depth = depth;
		used += need;
	}
	/* Pointers only once the arena has stopped moving. */
	for (size_t i = 0; i < n; i++) {
		reqs[i].keys = (const uint64_t *)(void *)(a + offs[i]);
		reqs[i].norm = a + offs[i] + ((size_t)reqs[i].depth + 1) * sizeof(uint64_t);
	}
	free(offs);
	return 0;
}

static void hist_claim(struct seg_header *h, uint64_t ns)
{
	double sec = (double)ns / 1e9;
	unsigned i = 0;

	while (i < TERR_HIST_BUCKETS - 1 && sec > bumba_claim_bounds[i])
		i++;
	atomic_fetch_add(&h->terr_claim_hist[i], 1);
	atomic_fetch_add(&h->terr_claim_ns_sum, ns);
}

/* The body of claim and add: t (index ti) is BUILDING for a claim, LIVE
 * for an add. */
static int grow(struct bumba *b, uint32_t ti, const struct req *reqs, size_t n, struct conflicts *c,
		bool is_new)
{
	struct bumba_seg *s = &b->seg;
	struct seg_header *h = s->hdr;
	struct territory *t = &s->terrs[ti];
	const uint64_t tid = atomic_load(&t->id);
	uint32_t added[n ? n : 1];
	size_t n_added = 0;

	/* Room for n more: records, and index slots below 7/8 full (keys and
	 * tombstones) so probe runs stay short. */
	if (atomic_load(&h->tpaths_used) + n > h->tkey_slots - h->tkey_slots / 8 ||
	    h->tpaths_live + n > h->tpath_slots)
		reap_ended(s);
	if (atomic_load(&h->tpaths_used) + n > h->tkey_slots - h->tkey_slots / 8 ||
	    h->tpaths_live + n > h->tpath_slots)
		return -ENOSPC;
	for (size_t k = 0; k < n; k++)
		check_territories(s, &reqs[k], b->slot, t->type, is_new ? 0 : tid, c);
	if (c->n) {
		/* Report the locks in the way as well: every conflict, once. */
		if (t->type != BUMBA_TERRITORY_MONITORED)
			check_locks(s, reqs, n, b->slot, c);
		return -EBUSY;
	}

	for (size_t k = 0; k < n; k++) {
		int rc = tp_insert(s, ti, tid, t->type, b->slot + 1, reqs[k].keys[reqs[k].depth],
				   reqs[k].depth, reqs[k].norm, reqs[k].len, &added[n_added]);
		if (rc) {
			while (n_added)
				tp_remove(s, added[--n_added]);
			return rc;
		}
		n_added++;
	}
	if (is_new) {
		atomic_store_explicit(&t->state, TERR_PENDING, memory_order_seq_cst);
		atomic_fetch_add(&h->terr_live, 1);
	}
	/* Tells acquirers that took a lock across this instant to look again
	 * (see the second check in locks.c). */
	atomic_fetch_add(&h->terr_epoch, 1);
	/* New exclusive locks now back off; find the ones already held. */
	atomic_thread_fence(memory_order_seq_cst);
	if (t->type != BUMBA_TERRITORY_MONITORED)
		check_locks(s, reqs, n, b->slot, c);
	if (c->n) {
		while (n_added)
			tp_remove(s, added[--n_added]);
		if (is_new)
			atomic_fetch_sub(&h->terr_live, 1);
		return -EBUSY;
	}
	for (size_t k = 0; k < n; k++)
		desc_adjust(s, reqs[k].keys, reqs[k].depth, +1);
	atomic_fetch_add(&t->n_paths, (uint32_t)n);
	if (is_new)
		atomic_store_explicit(&t->state, TERR_LIVE, memory_order_release);
	return 0;
}

/* Out of room: forget ended territories before their grace period is
 * over (the guard loses "just before the release" for them, nothing else). */
static bool reap_ended(struct bumba_seg *s)
{
	bool any = false;

	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		if (atomic_load(&s->terrs[ti].state) == TERR_ENDED) {
			terr_drop_paths(s, ti, false);
			terr_free(s, ti);
			any = true;
		}
	}
	return any;
}

static int terr_alloc(struct bumba_seg *s)
{
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t ti = 0; ti < s->hdr->caps.max_territories; ti++) {
			if (atomic_load(&s->terrs[ti].state) == TERR_FREE) {
				if (ti >= s->hdr->terr_hwm)
					s->hdr->terr_hwm = ti + 1;
				return (int)ti;
			}
		}
		if (!reap_ended(s))
			break;
	}
	return -ENOSPC;
}

/* A joined handle remembers the territories it claimed, so that
 * bumba_close ends exactly those (the agent's others stay).  Best effort:
 * without memory the territory simply lives on with its agent. */
static void own_tid_add(struct bumba *b, uint64_t tid)
{
	pthread_mutex_lock(&b->own_mu);
	if (b->n_own_tids == b->cap_own_tids) {
		size_t cap = b->cap_own_tids ? 2 * b->cap_own_tids : 8;
		uint64_t *n = realloc(b->own_tids, cap * sizeof(*n));
		if (n) {
			b->own_tids = n;
			b->cap_own_tids = cap;
		}
	}
	if (b->n_own_tids < b->cap_own_tids)
		b->own_tids[b->n_own_tids++] = tid;
	pthread_mutex_unlock(&b->own_mu);
}

static void own_tid_del(struct bumba *b, uint64_t tid)
{
	pthread_mutex_lock(&b->own_mu);
	for (size_t i = 0; i < b->n_own_tids; i++) {
		if (b->own_tids[i] == tid) {
			b->own_tids[i] = b->own_tids[--b->n_own_tids];
			break;
		}
	}
	pthread_mutex_unlock(&b->own_mu);
}

int bumba_territory_claim(struct bumba *b, const char *title, const char *const *paths,
			  size_t n_paths, enum bumba_territory_type type, uint64_t *territory_id,
			  struct bumba_conflict *conflicts, size_t max_conflicts,
			  size_t *n_conflicts)
{
	struct conflicts c = {.out = conflicts, .max = conflicts ? max_conflicts : 0};
	uint64_t t0 = bumba_now_ns();
	int rc;

	if (n_conflicts)
		*n_conflicts = 0;
	if (!b || !paths || !n_paths || !territory_id || type > BUMBA_TERRITORY_MONITORED ||
	    (title && (strlen(title) >= TERR_TITLE || !bumba_utf8_valid(title, strlen(title)))))
		return -EINVAL;
	if (n_paths > b->seg.hdr->caps.max_tpaths)
		return -ENOSPC;
	if (atomic_load(&b->agent->gen) != b->gen)
		return -ENOLINK;
	char *arena = NULL;
	struct req *reqs = malloc(n_paths * sizeof(*reqs));
	if (!reqs)
		return -ENOMEM;
	rc = norm_requests(b, paths, n_paths, reqs, &arena);
	if (rc)
		goto out_free;

	struct bumba_seg *s = &b->seg;
	struct seg_header *h = s->hdr;
	terr_lock(s);
	/* Again under the mutex the reclaimer ends territories under: an
	 * agent reclaimed meanwhile (a joined process outliving its agent's
	 * registering one) must not leave a territory owned by its slot. */
	if (b->joined ? !agent_live(b) : atomic_load(&b->agent->gen) != b->gen) {
		rc = -ENOLINK;
		goto out_unlock;
	}
	if (b->agent->parent1) {
		for (size_t k = 0; k < n_paths; k++) {
			if (!inside_ancestors(s, &reqs[k], b->slot)) {
				rc = -EACCES;
				goto out_unlock;
			}
		}
	}
	rc = terr_alloc(s);
	if (rc < 0)
		goto out_unlock;
	uint32_t ti = (uint32_t)rc;
	struct territory *t = &s->terrs[ti];
	atomic_store(&t->state, TERR_BUILDING);
	t->owner1 = b->slot + 1;
	t->owner_gen = b->gen;
	t->type = (uint8_t)type;
	snprintf(t->title, sizeof(t->title), "%s", title ? title : "");
	t->created_ms = bumba_wall_ms();
	t->created_ns = bumba_now_ns();
	atomic_store(&t->ended_ns, 0);
	atomic_store(&t->expires_ns,
		     h->terr_timeout_ms ? t->created_ns + (uint64_t)h->terr_timeout_ms * 1000000ull
					: 0);
	atomic_store(&t->n_paths, 0);
	atomic_store(&t->conflicts_met, 0);
	atomic_store(&t->writes_seen, 0);
	uint64_t tid = atomic_fetch_add(&h->next_tid, 1);
	atomic_store(&t->id, tid);
	rc = grow(b, ti, reqs, n_paths, &c, true);
	if (rc) {
		terr_free(s, ti);
		goto out_unlock;
	}
	t->claim_ns = bumba_now_ns() - t0;
	*territory_id = tid;
	atomic_fetch_add(&h->terr_claims, 1);
	hist_claim(h, t->claim_ns);
out_unlock:
	if (rc == -EBUSY)
		atomic_fetch_add(&h->terr_conflicts, 1);
	if (rc)
		atomic_fetch_add(&h->terr_failures, 1);
	terr_unlock(s);
out_free:
	free(reqs);
	free(arena);
	if (n_conflicts)
		*n_conflicts = c.n;
	if (rc == 0 && b->joined)
		own_tid_add(b, *territory_id);
	return rc;
}

/* Our LIVE territory with this id, or -ENOENT (-ENOLINK: our agent is
 * gone). */
static int find_own(struct bumba *b, uint64_t tid)
{
	const struct bumba_seg *s = &b->seg;

	if (b->joined && !agent_live(b))
		return -ENOLINK;

	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		const struct territory *t = &s->terrs[ti];
		if (atomic_load(&t->id) == tid && atomic_load(&t->state) == TERR_LIVE &&
		    t->owner1 == b->slot + 1 && t->owner_gen == b->gen)
			return (int)ti;
	}
	return -ENOENT;
}

int bumba_territory_add(struct bumba *b, uint64_t territory_id, const char *const *paths,
			size_t n_paths, struct bumba_conflict *conflicts, size_t max_conflicts,
			size_t *n_conflicts)
{
	struct conflicts c = {.out = conflicts, .max = conflicts ? max_conflicts : 0};
	int rc;

	if (n_conflicts)
		*n_conflicts = 0;
	if (!b || !paths || !n_paths)
		return -EINVAL;
	if (n_paths > b->seg.hdr->caps.max_tpaths)
		return -ENOSPC;
	char *arena = NULL;
	struct req *reqs = malloc(n_paths * sizeof(*reqs));
	if (!reqs)
		return -ENOMEM;
	rc = norm_requests(b, paths, n_paths, reqs, &arena);
	if (rc)
		goto out_free;
	terr_lock(&b->seg);
	rc = find_own(b, territory_id);
	if (rc < 0)
		goto out_unlock;
	if (b->agent->parent1) {
		for (size_t k = 0; k < n_paths; k++) {
			if (!inside_ancestors(&b->seg, &reqs[k], b->slot)) {
				rc = -EACCES;
				goto out_unlock;
			}
		}
	}
	rc = grow(b, (uint32_t)rc, reqs, n_paths, &c, false);
	if (rc == -EBUSY)
		atomic_fetch_add(&b->seg.hdr->terr_conflicts, 1);
out_unlock:
	terr_unlock(&b->seg);
out_free:
	free(reqs);
	free(arena);
	if (n_conflicts)
		*n_conflicts = c.n;
	return rc;
}

int bumba_territory_remove(struct bumba *b, uint64_t territory_id, const char *const *paths,
			   size_t n_paths)
{
	struct bumba_seg *s = &b->seg;
	int rc;

	if (!b || !paths || !n_paths)
		return -EINVAL;
	struct req *reqs = malloc(n_paths * sizeof(*reqs));
	uint32_t *where = calloc(n_paths, sizeof(*where));
	if (!reqs || !where) {
		free(reqs);
		free(where);
		return -ENOMEM;
	}
	char *arena = NULL;
	rc = norm_requests(b, paths, n_paths, reqs, &arena);
	if (rc)
		goto out_free;
	terr_lock(s);
	rc = find_own(b, territory_id);
	if (rc < 0)
		goto out_unlock;
	uint32_t ti = (uint32_t)rc;
	rc = 0;
	/* All must be ours before anything goes. */
	const uint32_t mask = s->hdr->tkey_slots - 1;
	for (size_t k = 0; k < n_paths && !rc; k++) {
		uint64_t key = reqs[k].keys[reqs[k].depth];
		uint32_t j = (uint32_t)key & mask, i, rti;
		uint64_t rtid;
		bool found = false;
		for (uint32_t m = 0; m <= mask; m++, j = (j + 1) & mask) {
			uint64_t kk = atomic_load(&s->tkeys[j].key);
			if (kk == TP_EMPTY)
				break;
			if (kk == key && bumba_tp_read(s, &s->tkeys[j], key, &i, &rtid, &rti) &&
			    rti == ti && rtid == territory_id) {
				bool dup = false;
				for (size_t q = 0; q < k; q++)
					dup |= where[q] == i;
				if (dup)
					continue;
				where[k] = i;
				found = true;
				break;
			}
		}
		if (!found)
			rc = -ENOENT;
	}
	if (!rc) {
		for (size_t k = 0; k < n_paths; k++) {
			desc_adjust(s, reqs[k].keys, reqs[k].depth, -1);
			tp_remove(s, where[k]);
		}
		atomic_fetch_sub(&s->terrs[ti].n_paths, (uint32_t)n_paths);
	}
out_unlock:
	terr_unlock(s);
out_free:
	free(reqs);
	free(arena);
	free(where);
	return rc;
}

/* Is every path of territory ci covered by territory pi? */
static bool covered_by(struct bumba_seg *s, uint32_t ci, uint32_t pi)
{
	uint64_t keys[TERR_MAX_DEPTH + 1];
	char path[PATH_MAX];
	const uint64_t ptid = atomic_load(&s->terrs[pi].id);
	bool any = false;

	for (uint32_t l = s->terrs[ci].first1; l; l = s->tpaths[l - 1].next1) {
		bumba_tpath_string(s, l - 1, path, sizeof(path));
		int d = bumba_path_prefix_keys(path, strlen(path), keys);
		bool in = false;
		for (int k = 0; k <= d && !in; k++) {
			const uint32_t mask = s->hdr->tkey_slots - 1;
			uint32_t j = (uint32_t)keys[k] & mask, rec, rti;
			uint64_t rtid;
			for (uint32_t m = 0; m <= mask; m++, j = (j + 1) & mask) {
				uint64_t kk = atomic_load(&s->tkeys[j].key);
				if (kk == TP_EMPTY)
					break;
				if (kk == keys[k] &&
				    bumba_tp_read(s, &s->tkeys[j], kk, &rec, &rtid, &rti) &&
				    rti == pi && rtid == ptid) {
					in = true;
					break;
				}
			}
		}
		if (!in)
			return false;
		any = true;
	}
	return any;
}

static void terr_end_locked(struct bumba_seg *s, uint32_t ti)
{
	struct territory *t = &s->terrs[ti];
	const uint32_t owner = t->owner1 - 1;

	if (atomic_load(&t->state) != TERR_LIVE)
		return;
	/* Children's territories inside this one end with it. */
	for (uint32_t ci = 0; ci < s->hdr->terr_hwm; ci++) {
		struct territory *c = &s->terrs[ci];
		if (ci == ti || atomic_load(&c->state) != TERR_LIVE || c->owner1 - 1 == owner ||
		    !bumba_agent_in_line(s, owner, c->owner1 - 1))
			continue;
		if (covered_by(s, ci, ti))
			terr_end_locked(s, ci);
	}
	/* Counts go now; the paths stay a moment for the guard (ENDED). */
	uint64_t keys[TERR_MAX_DEPTH + 1];
	char path[PATH_MAX];
	for (uint32_t l = t->first1; l; l = s->tpaths[l - 1].next1) {
		bumba_tpath_string(s, l - 1, path, sizeof(path));
		int d = bumba_path_prefix_keys(path, strlen(path), keys);
		if (d > 0)
			desc_adjust(s, keys, d, -1);
	}
	/* The paths go to the ring of ended paths (for the guard) before
	 * readers stop seeing the territory live: a classifier judging a
	 * write made just before the release must find it in one or the
	 * other, never in neither. */
	const uint64_t now = bumba_now_ns();
	atomic_store(&t->ended_ns, now);
	for (uint32_t l = t->first1; l; l = s->tpaths[l - 1].next1) {
		const struct tpath *tp = &s->tpaths[l - 1];
		uint64_t seq = atomic_load(&s->hdr->ended_seq);
		struct ended_path *e = &s->ended[seq % ENDED_RING];
		atomic_store(&e->seq, 0);
		e->key = atomic_load(&tp->key);
		e->tid = atomic_load(&t->id);
		e->created_ns = t->created_ns;
		e->ended_ns = now;
		e->owner1 = t->owner1;
		e->depth = tp->depth;
		e->type = t->type;
		atomic_store_explicit(&e->seq, seq + 1, memory_order_release);
		atomic_store(&s->hdr->ended_seq, seq + 1);
	}
	atomic_store_explicit(&t->state, TERR_ENDED, memory_order_seq_cst);
	atomic_fetch_sub(&s->hdr->terr_live, 1);
	terr_drop_paths(s, ti, false);
	terr_free(s, ti);
}

int bumba_territory_release(struct bumba *b, uint64_t territory_id)
{
	int rc;

	if (!b)
		return -EINVAL;
	terr_lock(&b->seg);
	rc = find_own(b, territory_id);
	if (rc >= 0) {
		terr_end_locked(&b->seg, (uint32_t)rc);
		rc = 0;
	}
	terr_unlock(&b->seg);
	if (b->joined)
		own_tid_del(b, territory_id);
	return rc;
}

void bumba_territory_release_own(struct bumba *b)
{
	pthread_mutex_lock(&b->own_mu);
	uint64_t *tids = b->own_tids;
	size_t n = b->n_own_tids;
	b->own_tids = NULL;
	b->n_own_tids = b->cap_own_tids = 0;
	pthread_mutex_unlock(&b->own_mu);
	/* Gone already (released by another process of the agent, timed
	 * out, the agent reclaimed): -ENOENT/-ENOLINK, nothing to do. */
	for (size_t i = 0; i < n; i++)
		bumba_territory_release(b, tids[i]);
	free(tids);
}

void bumba_territory_reclaim_agent(struct bumba_seg *s, uint32_t slot)
{
	terr_lock(s);
	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		if (atomic_load(&s->terrs[ti].state) == TERR_LIVE &&
		    s->terrs[ti].owner1 == slot + 1)
			terr_end_locked(s, ti);
	}
	terr_unlock(s);
}

size_t bumba_territory_sweep(struct bumba_seg *s, uint64_t now)
{
	size_t expired = 0;

	if (!atomic_load(&s->hdr->terr_live)) {
		/* Still forget ended ones below. */
	}
	terr_lock(s);
	for (uint32_t ti = 0; ti < s->hdr->terr_hwm; ti++) {
		struct territory *t = &s->terrs[ti];
		uint32_t st = atomic_load(&t->state);
		uint64_t exp = atomic_load(&t->expires_ns);
		if (st == TERR_LIVE && exp && exp <= now) {
			terr_end_locked(s, ti);
			atomic_fetch_add(&s->hdr->terr_expired, 1);
			expired++;
		}
	}
	if (!atomic_load(&s->hdr->terr_live) && atomic_load(&s->hdr->depth_mask)) {
		bool any = false;
		for (uint32_t ti = 0; ti < s->hdr->terr_hwm && !any; ti++)
			any = atomic_load(&s->terrs[ti].state) != TERR_FREE;
		if (!any)
			atomic_store(&s->hdr->depth_mask, 0);
	}
	terr_unlock(s);
	return expired;
}

void bumba_territory_note_write(const struct bumba_seg *s, uint64_t tid)
{
	for (uint32_t ti = 0; tid && ti < s->hdr->caps.max_territories; ti++) {
		struct territory *t = &s->terrs[ti];
		if (atomic_load_explicit(&t->id, memory_order_relaxed) == tid) {
			atomic_fetch_add_explicit(&t->writes_seen, 1, memory_order_relaxed);
			return;
		}
	}
}

void bumba_territory_totals(const struct bumba_seg *s, struct bumba_terr_totals *t)
{
	const struct seg_header *h = s->hdr;

	memset(t, 0, sizeof(*t));
	for (uint32_t ti = 0; ti < h->caps.max_territories; ti++) {
		const struct territory *r = &s->terrs[ti];
		if (atomic_load_explicit(&r->state, memory_order_relaxed) != TERR_LIVE)
			continue;
		t->active++;
		t->paths += atomic_load(&r->n_paths);
		if (r->type == BUMBA_TERRITORY_EXCLUSIVE)
			t->exclusive++;
		else if (r->type == BUMBA_TERRITORY_SHARED)
			t->shared++;
		else
			t->monitored++;
	}
	t->claims = atomic_load(&h->terr_claims);
	t->conflicts = atomic_load(&h->terr_conflicts);
	t->failures = atomic_load(&h->terr_failures);
	t->expired = atomic_load(&h->terr_expired);
	t->claim_ns_sum = atomic_load(&h->terr_claim_ns_sum);
	for (int i = 0; i < TERR_HIST_BUCKETS; i++)
		t->claim_hist[i] = atomic_load(&h->terr_claim_hist[i]);
}
