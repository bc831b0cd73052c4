/* SPDX-License-Identifier: MIT */
/*
 * segment.c - the shared-memory segment: its layout, creation (by bumbad),
 * mapping and validation (by everyone), and the liveness facts every process
 * needs to judge another: clocks, /proc start times, the supervisor's
 * heartbeat.
 *
 * The layout is a pure function of the capacities, so a mapper recomputes it
 * and refuses a segment whose header disagrees, instead of trusting offsets
 * written by someone else.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define PAGE 4096u

uint64_t bumba_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* How long one sleep on a contended robust mutex lasts before the word is
 * looked at again. */
#define ROBUST_SLICE_NS 10000000ull

/*
 * A robust mutex shared by processes that may be SIGKILLed can lose its
 * wake-up: an unlock wakes one sleeper, that sleeper is killed before it
 * takes the mutex, and a third process takes it meanwhile with a plain
 * CAS (no sleep, so no FUTEX_WAITERS bit).  The kernel's robust-list walk
 * for the dead sleeper sees the word owned by someone alive and wakes
 * nobody; the third process's unlock sees no WAITERS and wakes nobody;
 * the other sleepers sleep on a free mutex for ever.  Sleeping in slices
 * bounds that to one slice; uncontended, this is one trylock.
 */
int bumba_robust_lock(pthread_mutex_t *m)
{
	int rc = pthread_mutex_trylock(m);

	while (rc == EBUSY || rc == ETIMEDOUT) {
		/* timedlock (CLOCK_REALTIME), not clocklock: sanitizers
		 * know only the former; a clock step just makes one slice
		 * longer or shorter. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t t = (uint64_t)ts.tv_nsec + ROBUST_SLICE_NS;
		ts.tv_sec += (time_t)(t / 1000000000ull);
		ts.tv_nsec = (long)(t % 1000000000ull);
		rc = pthread_mutex_timedlock(m, &ts);
	}
	return rc;
}

uint64_t bumba_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bumba_coarse_res_ns(void)
{
	struct timespec ts;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) < 0)
		return 10000000ull;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bumba_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

uint64_t bumba_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	ssize_t n;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* comm may contain spaces and parentheses: fields start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	/* field 3 (state) is the first after ')'; start time is field 22. */
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p + 1, ' ');
	}
	if (!p)
		return 0;
	/* A zombie still has its start time but is dead for our purposes. */
	char *st = strrchr(buf, ')') + 2;
	if (*st == 'Z' || *st == 'X')
		return 0;
	return strtoull(p + 1, NULL, 10);
}

bool bumba_proc_same(pid_t pid, uint64_t start_time)
{
	uint64_t now = bumba_proc_start_time(pid);

	return now != 0 && now == start_time;
}

uint32_t bumba_seg_format(void)
{
	/* FNV-1a over the sizes and alignments of every shared type: two builds
	 * that would read the segment differently get different words. */
	const uint32_t parts[] = {
		(uint32_t)sizeof(struct seg_header),
		(uint32_t)sizeof(struct agent_slot),
		(uint32_t)sizeof(struct hold),
		(uint32_t)sizeof(struct lock_entry),
		(uint32_t)sizeof(struct waiter),
		(uint32_t)sizeof(pthread_mutex_t),
		(uint32_t) _Alignof(struct lock_entry),
		(uint32_t)offsetof(struct lock_entry, mu),
		(uint32_t)offsetof(struct agent_slot, mu),
		BUMBA_LOCK_NAME,
		BUMBA_ID_MAX,
		BUMBA_FIELD_MAX,
		(uint32_t)sizeof(void *),
		(uint32_t)sizeof(struct territory),
		(uint32_t)sizeof(struct tpath),
		(uint32_t)sizeof(struct tkey),
		TPATH_INLINE,
		(uint32_t)sizeof(struct desc_entry),
		(uint32_t)offsetof(struct seg_header, terr_mu),
		(uint32_t)sizeof(struct ended_path),
	};
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		for (int b = 0; b < 4; b++) {
			h ^= (parts[i] >> (8 * b)) & 0xffu;
			h *= 16777619u;
		}
	}
	return h;
}

struct layout {
	uint32_t lock_slots, tkey_slots, tpath_slots, desc_slots, tlong_slots;
	uint64_t off_agents, off_holds, off_locks, off_names, off_waiters, off_waitmap, off_roots;
	uint64_t off_terrs, off_tkeys, off_tpaths, off_tlong, off_desc, off_ended;
	uint64_t total;
};

static uint32_t pow2_at_least(uint64_t v)
{
	uint32_t p = 16;

	while (p < v)
		p <<= 1;
	return p;
}

static uint64_t align_page(uint64_t v)
{
	return (v + PAGE - 1) & ~(uint64_t)(PAGE - 1);
}

static int compute_layout(const struct bumba_caps *c, struct layout *l)
{
	uint64_t off;

	if (c->max_agents == 0 || c->max_agents >= LK_OWNER_MASK || c->max_locks == 0 ||
	    c->max_locks > (1u << 24) || c->max_waiters == 0 || c->max_waiters > (1u << 24) ||
	    c->holds_per_agent < 8 || c->holds_per_agent > 65536 ||
	    (c->holds_per_agent & (c->holds_per_agent - 1)) || c->max_territories == 0 ||
	    c->max_territories > (1u << 22) || c->max_tpaths == 0 || c->max_tpaths > (1u << 22))
		return -EINVAL;
	l->lock_slots = pow2_at_least(2ull * c->max_locks);
	/* The headroom of open addressing is paid in 16-byte index slots; the
	 * path records themselves are dense, one per claimable path. */
	l->tkey_slots = pow2_at_least(2ull * c->max_tpaths);
	l->tpath_slots = c->max_tpaths;
	/* Every claimed path bumps the count of each of its ancestors. */
	l->desc_slots = pow2_at_least(8ull * c->max_tpaths);
	l->tlong_slots = c->max_tpaths / 16 + 1;
	/* All products are of 32-bit counts by small sizes: they fit in 64 bits. */
	off = align_page(sizeof(struct seg_header));
	l->off_agents = off;
	off = align_page(off + (uint64_t)c->max_agents * sizeof(struct agent_slot));
	l->off_holds = off;
	off = align_page(off + (uint64_t)c->max_agents * c->holds_per_agent * sizeof(struct hold));
	l->off_locks = off;
	off = align_page(off + (uint64_t)l->lock_slots * sizeof(struct lock_entry));
	l->off_names = off;
	off = align_page(off + (uint64_t)l->lock_slots * BUMBA_LOCK_NAME);
	l->off_waiters = off;
	off = align_page(off + (uint64_t)c->max_waiters * sizeof(struct waiter));
	l->off_waitmap = off;
	off = align_page(off + ((uint64_t)c->max_agents + 63) / 64 * 8);
	l->off_roots = off;
	off = align_page(off + (uint64_t)BUMBA_MAX_ROOTS * PATH_MAX);
	l->off_terrs = off;
	off = align_page(off + (uint64_t)c->max_territories * sizeof(struct territory));
	l->off_tkeys = off;
	off = align_page(off + (uint64_t)l->tkey_slots * sizeof(struct tkey));
	l->off_tpaths = off;
	off = align_page(off + (uint64_t)l->tpath_slots * sizeof(struct tpath));
	l->off_tlong = off;
	off = align_page(off + (uint64_t)l->tlong_slots * PATH_MAX);
	l->off_desc = off;
	off = align_page(off + (uint64_t)l->desc_slots * sizeof(struct desc_entry));
	l->off_ended = off;
	off = align_page(off + (uint64_t)ENDED_RING * sizeof(struct ended_path));
	l->total = off;
	return 0;
}

static void bind_pointers(struct bumba_seg *s)
{
	char *b = s->base;
	const struct seg_header *h = s->hdr;

	s->agents = (struct agent_slot *)(b + h->off_agents);
	s->holds = (struct hold *)(b + h->off_holds);
	s->locks = (struct lock_entry *)(b + h->off_locks);
	s->names = (char(*)[BUMBA_LOCK_NAME])(b + h->off_names);
	s->waiters = (struct waiter *)(b + h->off_waiters);
	s->waitmap = (_Atomic uint64_t *)(b + h->off_waitmap);
	s->roots = (char(*)[PATH_MAX])(b + h->off_roots);
	s->terrs = (struct territory *)(b + h->off_terrs);
	s->tkeys = (struct tkey *)(b + h->off_tkeys);
	s->tpaths = (struct tpath *)(b + h->off_tpaths);
	s->tlong = (char(*)[PATH_MAX])(b + h->off_tlong);
	s->desc = (struct desc_entry *)(b + h->off_desc);
	s->ended = (struct ended_path *)(b + h->off_ended);
	for (uint32_t i = 0; i < BUMBA_MAX_ROOTS; i++)
		s->root_ptrs[i] = i < h->n_roots ? s->roots[i] : NULL;
}

/* Allocates the pages of [off, off+len) now.  The key index and the
 * descendant counts are addressed by hash, so every claim would otherwise
 * land on pages never touched and pay a page allocation for each (a claim
 * of 100 new paths: up to a few hundred).  The dense regions (territory and
 * path records, overflow) grow from their start and fault a page only when
 * their high-water mark crosses one, so they stay sparse. */
static void prefault(void *base, uint64_t off, uint64_t len)
{
	char *p = (char *)base + off;

	if (!len || madvise(p, len, MADV_POPULATE_WRITE) == 0)
		return;
	/* Kernels before 5.14: touch each page (the memfd reads as zeros). */
	for (uint64_t o = 0; o < len; o += PAGE)
		*(volatile char *)(p + o) = 0;
}

static int init_robust(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int rc;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return -rc;
}

int bumba_seg_create(const struct bumba_caps *caps_in, const char *const *roots, size_t n_roots,
		     int default_timeout_ms, int max_timeout_ms, struct bumba_seg *seg)
{
	struct bumba_caps c = *caps_in;
	const struct bumba_caps *caps = &c;
	struct layout l;
	int fd, rc;
	void *base;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	if (n_roots == 0 || n_roots > BUMBA_MAX_ROOTS)
		return -EINVAL;
	if (!c.max_territories)
		c.max_territories = 10000;
	if (!c.max_tpaths)
		c.max_tpaths = 65536;
	rc = compute_layout(caps, &l);
	if (rc)
		return rc;
	fd = memfd_create("bumba-segment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)l.total) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	/* Nobody may resize the segment under the others' mappings (SIGBUS). */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	base = mmap(NULL, l.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}

	struct seg_header *h = base;
	h->abi_version = BUMBA_ABI_VERSION;
	h->format = bumba_seg_format();
	h->total_size = l.total;
	h->created_ms = bumba_wall_ms();
	h->caps = *caps;
	h->lock_slots = l.lock_slots;
	h->n_roots = (uint32_t)n_roots;
	h->off_agents = l.off_agents;
	h->off_holds = l.off_holds;
	h->off_locks = l.off_locks;
	h->off_names = l.off_names;
	h->off_waiters = l.off_waiters;
	h->off_waitmap = l.off_waitmap;
	h->off_roots = l.off_roots;
	h->off_terrs = l.off_terrs;
	h->off_tkeys = l.off_tkeys;
	h->off_tpaths = l.off_tpaths;
	h->off_tlong = l.off_tlong;
	h->off_desc = l.off_desc;
	h->off_ended = l.off_ended;
	h->tkey_slots = l.tkey_slots;
	h->tpath_slots = l.tpath_slots;
	h->desc_slots = l.desc_slots;
	h->tlong_slots = l.tlong_slots;
	atomic_store(&h->next_tid, 1);
	h->heartbeat_ms = 100;
	h->default_timeout_ms = default_timeout_ms;
	h->max_timeout_ms = max_timeout_ms;
	atomic_store(&h->fence_base, 0);

	seg->base = base;
	seg->size = l.total;
	seg->fd = fd;
	seg->writable = true;
	seg->hdr = h;
	bind_pointers(seg);

	for (size_t i = 0; i < n_roots; i++) {
		if (strlen(roots[i]) >= PATH_MAX) {
			rc = -ENAMETOOLONG;
			goto fail;
		}
		strcpy(seg->roots[i], roots[i]);
	}
	if ((rc = init_robust(&h->table_mu)) || (rc = init_robust(&h->reclaim_mu)) ||
	    (rc = init_robust(&h->terr_mu)))
		goto fail;
	for (uint32_t i = 0; i < caps->max_agents; i++) {
		rc = init_robust(&seg->agents[i].mu);
		if (rc)
			goto fail;
	}
	for (uint32_t i = 0; i < l.lock_slots; i++) {
		rc = init_robust(&seg->locks[i].mu);
		if (rc)
			goto fail;
	}
	prefault(base, l.off_tkeys, l.off_tpaths - l.off_tkeys);
	prefault(base, l.off_desc, l.off_ended - l.off_desc);
	/* The magic goes last: a half-built segment is never valid. */
	atomic_thread_fence(memory_order_release);
	h->magic = BUMBA_SEG_MAGIC;
	return 0;
fail:
	bumba_seg_unmap(seg);
	return rc;
}

bool bumba_seg_supervisor_alive(const struct bumba_seg *seg)
{
	const struct seg_header *h = seg->hdr;
	pid_t pid = atomic_load(&h->sup_pid);
	uint64_t beat = atomic_load(&h->heartbeat_ns);
	uint64_t now = bumba_now_ns();

	if (!bumba_proc_same(pid, atomic_load(&h->sup_start_time)))
		return false;
	/* Alive but not beating for 50 beats (5 s by default): hung or stopped. */
	return now < beat || now - beat < 50ull * h->heartbeat_ms * 1000000ull;
}

int bumba_seg_map(int fd, bool writable, bool check_live, struct bumba_seg *seg)
{
	struct seg_header probe;
	struct layout l;
	struct stat st;
	void *base;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof(probe))
		return -EPROTO;
	if (pread(fd, &probe, sizeof(probe), 0) != (ssize_t)sizeof(probe))
		return -EPROTO;
	if (probe.magic != BUMBA_SEG_MAGIC || probe.abi_version != BUMBA_ABI_VERSION ||
	    probe.format != bumba_seg_format())
		return -EPROTO;
	if (compute_layout(&probe.caps, &l) || l.total != probe.total_size ||
	    l.total != (uint64_t)st.st_size || l.lock_slots != probe.lock_slots ||
	    l.off_agents != probe.off_agents || l.off_holds != probe.off_holds ||
	    l.off_locks != probe.off_locks || l.off_names != probe.off_names ||
	    l.off_waiters != probe.off_waiters || l.off_waitmap != probe.off_waitmap ||
	    l.off_roots != probe.off_roots || l.off_terrs != probe.off_terrs ||
	    l.off_tkeys != probe.off_tkeys || l.tkey_slots != probe.tkey_slots ||
	    l.off_tpaths != probe.off_tpaths || l.off_tlong != probe.off_tlong ||
	    l.off_desc != probe.off_desc || l.off_ended != probe.off_ended ||
	    l.tpath_slots != probe.tpath_slots || l.desc_slots != probe.desc_slots ||
	    l.tlong_slots != probe.tlong_slots || probe.n_roots == 0 ||
	    probe.n_roots > BUMBA_MAX_ROOTS || probe.heartbeat_ms == 0)
		return -EPROTO;
	base = mmap(NULL, l.total, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd,
		    0);
	if (base == MAP_FAILED)
		return -errno;
	seg->base = base;
	seg->size = l.total;
	seg->fd = fd;
	seg->writable = writable;
	seg->hdr = base;
	bind_pointers(seg);
	for (uint32_t i = 0; i < seg->hdr->n_roots; i++) {
		if (!memchr(seg->roots[i], '\0', PATH_MAX) || seg->roots[i][0] != '/') {
			munmap(base, l.total);
			memset(seg, 0, sizeof(*seg));
			seg->fd = -1;
			return -EPROTO;
		}
	}
	if (check_live && !bumba_seg_supervisor_alive(seg)) {
		munmap(base, l.total);
		memset(seg, 0, sizeof(*seg));
		seg->fd = -1;
		return -ESTALE;
	}
	return 0;
}

void bumba_seg_unmap(struct bumba_seg *seg)
{
	if (seg->base)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
}
