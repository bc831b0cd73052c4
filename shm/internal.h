/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the pieces of libbumba-shm, bumbad and bumbactl share
 * but agents never see: the segment layout, the wire protocol, the path
 * normaliser, and the reclaim entry points the supervisor drives.
 *
 * Everything in the segment is addressed by offsets from its base, so it can
 * be mapped at any address in any process.  Every field another process may
 * read while it changes is a C11 atomic; plain fields are written once before
 * the word that publishes them.
 */
#ifndef BUMBA_INTERNAL_H
#define BUMBA_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bumba.h"

#define BUMBA_CACHELINE 64
#define BUMBA_ALIGNED	__attribute__((aligned(BUMBA_CACHELINE)))

/* ---------------------------------------------------------------------
 * Limits shared by the protocol, the registry and the segment
 * ------------------------------------------------------------------- */

#define BUMBA_ID_MAX	  128 /* agent id incl. NUL */
#define BUMBA_FIELD_MAX	  32  /* type, name, department, one capability, incl. NUL */
#define BUMBA_MAX_CAPS	  16
#define BUMBA_MAX_ROOTS	  8
#define BUMBA_LOCK_NAME	  256 /* display copy of a lock's path, incl. NUL */
#define BUMBA_AGENT_WAITS 4   /* locks one agent can wait for at once (threads) */

/* ---------------------------------------------------------------------
 * Paths (path.c)
 * ------------------------------------------------------------------- */

/* Normalises path lexically (never touches the filesystem).  path_len is in
 * bytes, or (size_t)-1 for a NUL-terminated path.  A relative path means
 * roots[0] + "/" + path; an absolute one must lie inside a root, compared on
 * component boundaries ("/" contains everything).  Roots are in
 * bumba_path_norm_root() form.  "." and ".." are folded, repeated and
 * trailing slashes dropped.  Writes the result to out (NUL-terminated) and
 * returns its length; *root_idx (may be NULL) gets the longest root that
 * contains the result and that no ".." climbed out of.
 * -EINVAL: empty, NUL inside, a ".." above the root (even if the path comes
 * back inside), outside every root, invalid UTF-8, control characters.
 * -ENAMETOOLONG: a component longer than NAME_MAX, or a result longer than
 * PATH_MAX-1 or out_len-1. */
int bumba_path_norm(const char *const *roots, size_t n_roots, const char *path, size_t path_len,
		    char *out, size_t out_len, size_t *root_idx);

/* Normalises one root itself (must be absolute). */
int bumba_path_norm_root(const char *root, char *out, size_t out_len);

/* Length of the well-formed UTF-8 sequence at s (1 for ASCII), 0 if the
 * bytes there are none (stray continuation, overlong, surrogate, beyond
 * U+10FFFF, cut short by avail).  Bytes are tested in order, so on a
 * NUL-terminated string avail may be SIZE_MAX: the NUL stops it. */
size_t bumba_utf8_seq(const unsigned char *s, size_t avail);

/* 1 if s[0..len) is valid UTF-8 with no control characters (< 0x20, 0x7f). */
bool bumba_utf8_valid(const char *s, size_t len);

/* ---------------------------------------------------------------------
 * Wire protocol (protocol.c) - see docs/protocol.md
 *
 * One message per SOCK_SEQPACKET datagram: a fixed header followed by TLV
 * fields.  All integers little-endian (the protocol never leaves the host,
 * but fixing it keeps the codec testable byte for byte).
 * ------------------------------------------------------------------- */

#define BUMBA_PROTO_MAGIC   0x504d4201u /* "\x01BMP" read as LE u32 */
#define BUMBA_PROTO_VERSION 1
#define BUMBA_MSG_MAX	    4096 /* larger datagrams are refused */

enum bumba_msg_type {
	BUMBA_MSG_REGISTER = 1,	   /* client -> server */
	BUMBA_MSG_REGISTER_OK = 2, /* server -> client, carries the segment fd */
	BUMBA_MSG_ERROR = 3,	   /* server -> client */
	BUMBA_MSG_UNREGISTER = 4,  /* client -> server */
	BUMBA_MSG_OBSERVE = 5,	   /* client -> server: read-only segment, no agent */
	BUMBA_MSG_OBSERVE_OK = 6,  /* server -> client, carries a read-only fd */
	BUMBA_MSG_PING = 7,
	BUMBA_MSG_PONG = 8,
	BUMBA_MSG_BYE_OK = 9, /* server -> client after UNREGISTER */
};

enum bumba_tag {
	BUMBA_TAG_TYPE = 1,	  /* string */
	BUMBA_TAG_NAME = 2,	  /* string */
	BUMBA_TAG_DEPARTMENT = 3, /* string */
	BUMBA_TAG_CAPABILITY = 4, /* string, repeatable up to BUMBA_MAX_CAPS */
	BUMBA_TAG_PARENT_ID = 5,  /* string */
	BUMBA_TAG_AGENT_ID = 6,	  /* string */
	BUMBA_TAG_SLOT = 7,	  /* u32 */
	BUMBA_TAG_GEN = 8,	  /* u32 */
	BUMBA_TAG_SEG_SIZE = 9,	  /* u64 */
	BUMBA_TAG_ERRNO = 10,	  /* u32 (positive errno) */
	BUMBA_TAG_MESSAGE = 11,	  /* string */
	BUMBA_TAG_ABI = 12,	  /* u32: segment ABI version the sender speaks */
};

struct bumba_msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t length; /* whole datagram, header included */
	uint32_t seq;
};

/* A decoded message.  Strings are NUL-terminated copies in the struct's own
 * storage. */
struct bumba_msg {
	uint16_t type;
	uint32_t seq;
	char type_s[BUMBA_FIELD_MAX];
	char name[BUMBA_FIELD_MAX];
	char department[BUMBA_FIELD_MAX];
	char caps[BUMBA_MAX_CAPS][BUMBA_FIELD_MAX];
	uint32_t n_caps;
	char parent_id[BUMBA_ID_MAX];
	char agent_id[BUMBA_ID_MAX];
	char message[256];
	uint32_t slot, gen, err, abi;
	uint64_t seg_size;
	uint32_t present; /* bit (1 << tag) for every tag seen */
};

/* Encodes the fields of m whose present bit is set, in ascending tag order;
 * returns the datagram length, -ENOSPC, or -EINVAL (a string too long or not
 * valid UTF-8, an unknown type or tag, more than BUMBA_MAX_CAPS
 * capabilities). */
int bumba_msg_encode(const struct bumba_msg *m, void *buf, size_t cap);

/* Decodes a datagram: 0, or an error with *m left all zeros.  Never reads
 * past len; -EPROTO for a bad magic or
 * version, -EBADMSG for malformed/truncated TLVs, unknown types, strings
 * that are too long, not UTF-8, or contain NUL/control characters, repeated
 * single-valued tags, or too many capabilities; -EMSGSIZE for len >
 * BUMBA_MSG_MAX. */
int bumba_msg_decode(const void *buf, size_t len, struct bumba_msg *m);

/* wire.c: one message per datagram, optionally with one descriptor.
 * send returns 0 or -errno.  recv waits at most timeout_ms (-1: forever)
 * and returns 0, -ETIMEDOUT, -ECONNRESET (peer gone) or the decoder's
 * error; *fd_out gets a received descriptor or -1 (pass NULL to close any). */
int bumba_wire_send(int sock, const struct bumba_msg *m, int pass_fd);
/* One message of len bytes, with pass_fd as SCM_RIGHTS unless it is < 0;
 * retried on EINTR.  Bytes sent or -errno. */
ssize_t bumba_send_fd(int sock, const void *buf, size_t len, int pass_fd, int flags);
int bumba_wire_recv(int sock, struct bumba_msg *m, int *fd_out, int timeout_ms);

/* ---------------------------------------------------------------------
 * The segment (segment.c)
 * ------------------------------------------------------------------- */

#define BUMBA_SEG_MAGIC	  0x47455341424d5542ull /* "BUMBASEG" */
#define BUMBA_ABI_VERSION 3

/* Capacities; bumbad fills them from its configuration. */
struct bumba_caps {
	uint32_t max_agents;	  /* default 10000 */
	uint32_t max_locks;	  /* live lock entries, default 10000 */
	uint32_t max_waiters;	  /* waiter records, default 16384 */
	uint32_t holds_per_agent; /* power of two, default 128 */
	uint32_t max_territories; /* default 10000 (0: default) */
	uint32_t max_tpaths; /* claimed paths over all territories, default 65536 (0: default) */
};

/* Lock state word. */
#define LK_OWNER_BITS	24
#define LK_OWNER_MASK	((1ull << LK_OWNER_BITS) - 1) /* exclusive owner slot+1 */
#define LK_SHARED_SHIFT 24
#define LK_SHARED_ONE	(1ull << LK_SHARED_SHIFT)
#define LK_SHARED_MASK	(((1ull << 24) - 1) << LK_SHARED_SHIFT)
#define LK_WAITERS	(1ull << 48) /* someone is queued: release takes the slow path */
#define LK_OWNER_DIED	(1ull << 49) /* previous holder died: told to the next acquirer */
#define LK_DEAD		(1ull << 50) /* entry being removed from the table */

/* Lock table slot keys. */
#define LK_KEY_EMPTY	 0ull
#define LK_KEY_TOMBSTONE 1ull

struct lock_entry {
	_Atomic uint64_t state;
	_Atomic uint64_t key;	      /* xxh3 of the normalised path (>= 2), or EMPTY/TOMBSTONE */
	_Atomic uint64_t fence;	      /* last token handed out */
	_Atomic uint64_t acquired_ns; /* CLOCK_MONOTONIC of the last grant, for display */
	_Atomic uint32_t nwaiters;
	uint32_t qhead; /* waiter index + 1, under mu */
	uint32_t qtail;
	uint32_t pad;
	pthread_mutex_t mu; /* robust, process-shared: queue and shared count */
} BUMBA_ALIGNED;

/* Hold record: one per (agent, lock), in the agent's own hold table, found
 * by probing from the lock index. */
#define HOLD_FREE    0u
#define HOLD_PENDING 1u /* about to take the lock: reclaim must check the word */
#define HOLD_ACTIVE  2u
#define HOLD_LEAVING 3u /* given back to the lock word, record not yet freed */

struct hold {
	_Atomic uint32_t lock1; /* lock index + 1, 0 = free */
	_Atomic uint32_t state; /* HOLD_* */
	_Atomic uint32_t count; /* reentrant count */
	uint8_t mode;		/* enum bumba_mode */
	uint8_t pad[3];
	_Atomic uint64_t fence;
	_Atomic uint64_t lease_deadline_ns; /* 0: no lease */
	uint64_t since_ns;
	uint64_t pad2;
};

#define AGENT_FREE    0u
#define AGENT_LIVE    1u
#define AGENT_CLOSING 2u /* closed without a supervisor: sweep it */
#define AGENT_DYING   3u /* being reclaimed */

#define WAIT_HIST_BUCKETS 12 /* 1us .. 10s, see metrics */
#define AGENT_HIST	  16 /* released exclusive locks remembered per agent */

struct agent_slot {
	_Atomic uint32_t state; /* AGENT_* */
	_Atomic uint32_t gen;
	int32_t pid;
	uint32_t uid;
	uint64_t start_time; /* /proc/<pid>/stat field 22, against pid reuse */
	uint64_t registered_ms;
	_Atomic uint64_t last_activity_ms;
	_Atomic uint32_t status;		     /* enum bumba_agent_status */
	uint32_t parent1;			     /* parent slot + 1 */
	_Atomic uint32_t waiting[BUMBA_AGENT_WAITS]; /* lock index + 1 */
	_Atomic uint32_t n_leases;
	uint32_t n_caps;
	_Atomic uint32_t n_waiting; /* entries of waiting[] in use */
	_Atomic uint32_t hist_next; /* next slot of hist[] to overwrite */
	pthread_mutex_t mu;	    /* robust: the agent's hold table (several processes) */
	char id[BUMBA_ID_MAX];
	char type[BUMBA_FIELD_MAX];
	char name[BUMBA_FIELD_MAX];
	char department[BUMBA_FIELD_MAX];
	char caps[BUMBA_MAX_CAPS][BUMBA_FIELD_MAX];
	/* Counters: per agent so no cache line is shared by all agents. */
	_Atomic uint64_t acquired, released, contended, timeouts, deadlocks;
	_Atomic uint64_t wait_ns_sum;
	_Atomic uint64_t wait_hist[WAIT_HIST_BUCKETS];
	/* What the agent held lately: exclusive locks it released, so the
	 * guard can judge a write that happened just before a release. */
	struct {
		_Atomic uint64_t key; /* lock path key, 0 = empty */
		_Atomic uint64_t since_ns, until_ns;
	} hist[AGENT_HIST];
} BUMBA_ALIGNED;

#define WAITER_FREE    0u
#define WAITER_QUEUED  1u
#define WAITER_GRANTED 2u
#define WAITER_CANCEL  3u /* timed out by the sweeper, or agent reclaimed */

struct waiter {
	_Atomic uint32_t futex;	 /* 0 sleeping; changed before every wake */
	_Atomic uint32_t state;	 /* WAITER_* */
	_Atomic uint32_t agent1; /* slot + 1; 0 = free (claimed by CAS) */
	uint32_t lock;		 /* lock index */
	uint32_t next;		 /* waiter index + 1, under the lock's mu */
	uint8_t mode, prio, owner_died, pad;
	int32_t pid;
	uint32_t hold; /* hold index in the agent's table */
	uint64_t ticket;
	uint64_t deadline_ns;
	uint64_t granted_fence;
} BUMBA_ALIGNED;

/* Territories (territory.c).  A territory is a record plus one tpath record
 * per claimed path.  The records are dense (exactly max_tpaths of them, from
 * a free list) and are found through a compact open-addressed key index
 * (struct tkey, 16 B a slot, with the headroom) keyed by the chained hash of
 * the path's components (bumba_path_prefix_keys), so a reader finds every
 * territory covering a path with one probe per ancestor depth, lock-free.
 * Writers serialise on hdr->terr_mu. */
#define TERR_FREE     0u
#define TERR_BUILDING 1u /* being claimed: invisible to everyone */
#define TERR_PENDING  2u /* claimed, checking file locks: blocks new exclusive locks */
#define TERR_LIVE     3u
#define TERR_ENDED    4u /* released: its paths go to the ended ring, the record is freed */

#define TPATH_INLINE	  112 /* path bytes stored in the record itself, NUL included */
#define TERR_TITLE	  64
#define TERR_HIST_BUCKETS 10		/* claim duration histogram */
#define TERR_GRACE_NS	  2000000000ull /* how long an ended territory is remembered */
#define TERR_MAX_DEPTH	  64

struct territory {
	_Atomic uint32_t state; /* TERR_* */
	uint32_t owner1;	/* agent slot + 1 */
	uint32_t owner_gen;
	uint8_t type; /* enum bumba_territory_type */
	uint8_t pad[3];
	_Atomic uint64_t id; /* never reused; 0 while free */
	uint64_t created_ms; /* CLOCK_REALTIME */
	uint64_t created_ns; /* CLOCK_MONOTONIC */
	_Atomic uint64_t ended_ns;
	_Atomic uint64_t expires_ns; /* 0: no timeout */
	uint64_t claim_ns;	     /* how long the claim took */
	_Atomic uint32_t n_paths;
	uint32_t first1; /* first tpath index + 1 of its list, under terr_mu */
	_Atomic uint64_t conflicts_met, writes_seen;
	char title[TERR_TITLE];
} BUMBA_ALIGNED;

#define TP_EMPTY     0ull
#define TP_TOMBSTONE 1ull

/* A slot of the key index.  key is the publishing word: written last on
 * insert (rec1 before it), first on removal (TOMBSTONE).  A reader never
 * trusts rec1 alone: the record it names is checked to carry the same key
 * (see tp_read in territory.c), because the slot may be reused between the
 * two loads. */
struct tkey {
	_Atomic uint64_t key;  /* chained component hash (>= 2), EMPTY, TOMBSTONE */
	_Atomic uint32_t rec1; /* tpath record index + 1 */
	uint32_t pad;
};

/* One claimed path.  tid is the record's sequence word for lock-free
 * readers: 0 while the record is free or being refilled, the territory id
 * once key and terr are valid (stored with release after them), so a reader
 * that loads tid, then key and terr, then tid again and finds the same
 * non-zero id read one consistent record. */
struct tpath {
	_Atomic uint64_t tid;  /* territory id; 0: free */
	_Atomic uint64_t key;  /* the claimed path's key, as in the index */
	_Atomic uint32_t terr; /* territory record index */
	uint32_t owner1;
	uint32_t long1; /* overflow slot + 1 when the path does not fit inline */
	uint32_t next1; /* next record of the same territory + 1, or of the free list */
	uint32_t slot1; /* its key index slot + 1, 0 while not in the index */
	uint16_t depth; /* components */
	uint16_t len;
	uint8_t type;
	uint8_t root; /* workspace root index */
	uint8_t pad[6];
	char path[TPATH_INLINE]; /* normalised absolute path, NUL-terminated (cut if long1) */
};

/* A claimed path of a territory that ended: kept in a ring so the guard
 * can judge a write made just before the end, while the path itself leaves
 * the tpath table at once (no dead entries lengthen its probe chains). */
#define ENDED_RING 4096
struct ended_path {
	_Atomic uint64_t seq; /* position + 1 once written */
	uint64_t key;	      /* the claimed path's key */
	uint64_t tid, created_ns, ended_ns;
	uint32_t owner1;
	uint16_t depth;
	uint8_t type, pad;
};

struct desc_entry { /* under terr_mu only: claimed paths strictly below a prefix */
	uint64_t key;
	uint32_t count;
	uint32_t pad;
};

/* Totals of agents that are gone, folded in at reclaim so counters never go
 * backwards. */
struct retired_counters {
	_Atomic uint64_t acquired, released, contended, timeouts, deadlocks;
	_Atomic uint64_t wait_ns_sum;
	_Atomic uint64_t wait_hist[WAIT_HIST_BUCKETS];
	_Atomic uint64_t agents_spawned, agents_reclaimed, owner_died, leases_expired;
};

struct seg_header {
	uint64_t magic;
	uint32_t abi_version;
	uint32_t format; /* sizes of the shared types: builds that disagree refuse */
	uint64_t total_size;
	uint64_t created_ms;
	struct bumba_caps caps;
	uint32_t lock_slots; /* power of two >= 2 * max_locks */
	uint32_t n_roots;
	uint64_t off_agents, off_holds, off_locks, off_names, off_waiters, off_waitmap, off_roots;
	uint64_t off_terrs, off_tkeys, off_tpaths, off_tlong, off_desc, off_ended;
	uint32_t tkey_slots;  /* key index slots: power of two >= 2 * max_tpaths */
	uint32_t tpath_slots; /* path records: max_tpaths */
	uint32_t desc_slots, tlong_slots;

	/* Supervisor liveness. */
	_Atomic int32_t sup_pid;
	_Atomic uint32_t sup_generation; /* bumped by every supervisor that adopts */
	_Atomic uint64_t sup_start_time; /* of sup_pid, /proc stat field 22 */
	_Atomic uint64_t heartbeat_ns;	 /* CLOCK_MONOTONIC, every heartbeat_ms */
	uint32_t heartbeat_ms;
	int32_t default_timeout_ms;
	int32_t max_timeout_ms;
	uint32_t pad0;

	pthread_mutex_t table_mu;    /* robust: inserting/removing lock keys */
	pthread_mutex_t reclaim_mu;  /* robust: one reclaimer at a time */
	_Atomic uint64_t fence_base; /* > every token of a removed entry */
	_Atomic uint32_t live_keys;
	_Atomic uint32_t n_agents;
	_Atomic uint32_t agent_hwm;    /* no agent slot at or past it was ever used; 0: unknown */
	uint32_t max_txn_files;	       /* safeFileOps.maxTransactionSize, 0: the default */
	_Atomic uint32_t guard_active; /* bumbad's eBPF guard is loaded and reporting */
	uint32_t pad_g;
	_Atomic uint64_t violations;	       /* writes the guard found unsanctioned, all ops */
	_Atomic uint64_t ticket BUMBA_ALIGNED; /* FIFO order of waiters */

	/* Territories. */
	pthread_mutex_t terr_mu BUMBA_ALIGNED; /* robust: claims, resizes, releases */
	_Atomic uint64_t next_tid;
	_Atomic uint64_t depth_mask;  /* bit d: some live tpath has d components */
	_Atomic uint64_t terr_epoch;  /* bumped whenever claimed paths appear */
	_Atomic uint64_t ended_seq;   /* ended paths written to the ring so far */
	_Atomic uint32_t terr_live;   /* LIVE or PENDING territories */
	_Atomic uint32_t tpaths_used; /* keys + tombstones in the key index */
	_Atomic uint64_t terr_claims, terr_conflicts, terr_failures, terr_expired;
	_Atomic uint64_t terr_claim_ns_sum;
	_Atomic uint64_t terr_claim_hist[TERR_HIST_BUCKETS];
	uint32_t desc_used;	  /* under terr_mu */
	uint32_t terr_hwm;	  /* under terr_mu: no record at or past it was ever used */
	uint32_t tpaths_live;	  /* under terr_mu: path records in use */
	uint32_t terr_timeout_ms; /* territoryManagement.defaultTimeout, 0: none */
	/* Under terr_mu: free lists (index + 1) and high-water marks of the path
	 * records and the overflow slots.  Never-used ones are taken past the
	 * mark, freed ones are reused first (their pages are already warm). */
	uint32_t tpath_free1, tpath_hwm, tlong_free1, tlong_hwm;

	struct retired_counters retired BUMBA_ALIGNED;
	_Atomic uint64_t table_full BUMBA_ALIGNED; /* -ENOSPC count */
};

/* A mapping of the segment, in any process. */
struct bumba_seg {
	void *base;
	size_t size;
	int fd;
	bool writable;
	struct seg_header *hdr;
	struct agent_slot *agents;
	struct hold *holds;
	struct lock_entry *locks;
	char (*names)[BUMBA_LOCK_NAME];
	struct waiter *waiters;
	_Atomic uint64_t *waitmap;
	char (*roots)[PATH_MAX];
	const char *root_ptrs[BUMBA_MAX_ROOTS];
	struct territory *terrs;
	struct tkey *tkeys;
	struct tpath *tpaths;
	char (*tlong)[PATH_MAX];
	struct desc_entry *desc;
	struct ended_path *ended;
};

/* bumbad: creates a sealed memfd sized for caps, with the roots (already
 * normalised) and the timeouts, and maps it. */
int bumba_seg_create(const struct bumba_caps *caps, const char *const *roots, size_t n_roots,
		     int default_timeout_ms, int max_timeout_ms, struct bumba_seg *seg);

/* Maps a segment fd received from a supervisor (or a keeper) and checks it:
 * -EPROTO for a foreign magic, another ABI version or format word, sizes
 * that disagree with the header or the file; -ESTALE if its supervisor is
 * gone (sup_pid dead, or no heartbeat for 50 beats) and check_live. */
int bumba_seg_map(int fd, bool writable, bool check_live, struct bumba_seg *seg);
void bumba_seg_unmap(struct bumba_seg *seg);

/* Format word of this build. */
uint32_t bumba_seg_format(void);

static inline struct hold *bumba_seg_holds_of(const struct bumba_seg *s, uint32_t slot)
{
	return &s->holds[(size_t)slot * s->hdr->caps.holds_per_agent];
}

/* Supervisor liveness as seen by a client. */
bool bumba_seg_supervisor_alive(const struct bumba_seg *seg);

/* /proc/<pid>/stat start time, 0 if the process is gone. */
uint64_t bumba_proc_start_time(pid_t pid);
/* true if pid is alive and still the process that had start_time. */
bool bumba_proc_same(pid_t pid, uint64_t start_time);

uint64_t bumba_now_ns(void); /* CLOCK_MONOTONIC */

/* Locks a process-shared robust mutex of the segment: pthread_mutex_lock's
 * results (0, EOWNERDEAD, ...), but never an unbounded sleep (segment.c
 * says why). */
int bumba_robust_lock(pthread_mutex_t *m);
/* CLOCK_MONOTONIC_COARSE (a few ns instead of ~25 on a VM) and its
 * resolution: for timestamps that may be one tick early, never late. */
uint64_t bumba_coarse_ns(void);
uint64_t bumba_coarse_res_ns(void);
uint64_t bumba_wall_ms(void); /* CLOCK_REALTIME */

/* ---------------------------------------------------------------------
 * Locks (locks.c) - the parts the supervisor and tools drive
 * ------------------------------------------------------------------- */

/* Reclaims everything agent slot holds or waits for: its locks are marked
 * owner-died and handed to the next waiters, its waiter records cancelled,
 * its counters folded into the retired totals, the slot freed (generation
 * bumped).  Does nothing if the slot is free or its generation is no longer
 * gen.  Safe to call from any process mapping the segment writable; one
 * reclaimer at a time. */
void bumba_locks_reclaim_agent(struct bumba_seg *seg, uint32_t slot, uint32_t gen);

/* The supervisor's sweep: cancels waiters past their deadline (a stopped
 * process must not keep a queue blocked), and returns in *expired the slots
 * of agents holding a lock whose lease has expired (up to max). */
size_t bumba_locks_sweep(struct bumba_seg *seg, uint64_t now_ns, uint32_t *expired, size_t max);

/* The key of a normalised path in the lock table, and the table slot
 * holding it (-1: none).  Lock-free. */
uint64_t bumba_lock_key(const char *norm, size_t len);
int64_t bumba_locks_find(const struct bumba_seg *s, uint64_t key);

/* Snapshot helpers for bumbactl and metrics. */
struct bumba_lock_view {
	uint32_t index;
	uint64_t fence;
	uint32_t owner1; /* exclusive owner slot + 1 */
	uint32_t shared;
	uint32_t nwaiters;
	bool owner_died;
	uint64_t acquired_ns;
	char path[BUMBA_LOCK_NAME];
};
/* Fills v for lock slot i if it is held or waited for; returns false for an
 * idle or empty slot.  Never blocks the lock's users. */
bool bumba_locks_view(const struct bumba_seg *seg, uint32_t i, struct bumba_lock_view *v);

/* Totals over live agents plus retired. */
struct bumba_totals {
	uint64_t acquired, released, contended, timeouts, deadlocks, wait_ns_sum;
	uint64_t wait_hist[WAIT_HIST_BUCKETS];
	uint64_t agents_spawned, agents_reclaimed, owner_died, leases_expired, table_full;
	uint32_t agents_active, locks_active, locks_waiting, lock_keys;
};
void bumba_seg_totals(const struct bumba_seg *seg, struct bumba_totals *t);

/* client.c: connects as an observer (no agent is registered) and maps the
 * segment read-only.  For bumbactl, metrics readers and tests. */
int bumba_observe(const char *socket_path, struct bumba_seg *seg);

/* client.c: the socket path bumba_open uses for NULL. */
int bumba_default_socket(char *out, size_t out_len);

/* client.c: the segment mapping and slot behind a handle (tests, tools). */
const struct bumba_seg *bumba_handle_seg(const struct bumba *b);
uint32_t bumba_handle_slot(const struct bumba *b);

/* ---------------------------------------------------------------------
 * Territories (territory.c) - the parts locks, the supervisor and tools use
 * ------------------------------------------------------------------- */

/* Keys of every prefix of the normalised absolute path p: keys[d] is the
 * key of its first d components (keys[0]: "/").  Returns the depth (number
 * of components), or -ENAMETOOLONG past TERR_MAX_DEPTH. */
int bumba_path_prefix_keys(const char *p, size_t len, uint64_t keys[TERR_MAX_DEPTH + 1]);

/* For an exclusive lock on norm by agent slot: -EACCES if it lies inside
 * another agent's EXCLUSIVE territory (its own ancestors' count as its
 * own) or inside any SHARED one (PENDING claims count: see locks.c). */
int bumba_territory_lock_check(const struct bumba_seg *s, uint32_t slot, const char *norm,
			       size_t len);

/* Is agent a the agent me or one of its ancestors (parent1 chain)? */
bool bumba_agent_in_line(const struct bumba_seg *s, uint32_t a, uint32_t me);

/* Ends every territory of agent slot (its death) and those of its child
 * agents inside them. */
void bumba_territory_reclaim_agent(struct bumba_seg *s, uint32_t slot);

/* Supervisor sweep: ends territories past their timeout, forgets ended ones
 * past TERR_GRACE_NS.  Returns how many expired. */
size_t bumba_territory_sweep(struct bumba_seg *s, uint64_t now_ns);

/* Counters for metrics and the dashboard. */
struct bumba_terr_totals {
	uint32_t active, exclusive, shared, monitored;
	uint64_t paths; /* files/directories managed */
	uint64_t claims, conflicts, failures, expired, claim_ns_sum;
	uint64_t claim_hist[TERR_HIST_BUCKETS];
};
void bumba_territory_totals(const struct bumba_seg *s, struct bumba_terr_totals *t);
extern const double bumba_claim_bounds[TERR_HIST_BUCKETS];

/* The guard saw a write inside territory tid: count it (analytics). */
void bumba_territory_note_write(const struct bumba_seg *s, uint64_t tid);

/* Lock-free readers of the territory tables (territory.c, access.c). */

/* The state of territory record t if it still has id tid, else TERR_FREE.
 * The id is loaded before and after the state, so the state read is that
 * territory's: ids are never reused, a claim stores BUILDING before the id,
 * a free clears the id before storing FREE. */
static inline uint32_t bumba_terr_state_of(const struct territory *t, uint64_t tid)
{
	if (atomic_load(&t->id) != tid)
		return TERR_FREE;
	uint32_t st = atomic_load(&t->state);
	return atomic_load(&t->id) == tid ? st : TERR_FREE;
}

/* Index slot e was seen holding key k: the record it names, if that record
 * read consistently (its tid the same non-zero value before and after, see
 * struct tpath) carries k too.  The slot may have been reused between the
 * key load and the rec1 load, and the record freed and refilled since:
 * both show as a record with another key or a changed tid, and are
 * skipped.  *tid and *terr get the record's territory id and index. */
static inline bool bumba_tp_read(const struct bumba_seg *s, const struct tkey *e, uint64_t k,
				 uint32_t *rec, uint64_t *tid, uint32_t *terr)
{
	uint32_t r1 = atomic_load_explicit(&e->rec1, memory_order_acquire);

	if (!r1 || r1 > s->hdr->tpath_slots)
		return false;
	const struct tpath *tp = &s->tpaths[r1 - 1];
	uint64_t t1 = atomic_load_explicit(&tp->tid, memory_order_acquire);
	uint64_t key = atomic_load_explicit(&tp->key, memory_order_relaxed);
	uint32_t ti = atomic_load_explicit(&tp->terr, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (!t1 || key != k || ti >= s->hdr->caps.max_territories ||
	    atomic_load_explicit(&tp->tid, memory_order_relaxed) != t1)
		return false;
	*rec = r1 - 1;
	*tid = t1;
	*terr = ti;
	return true;
}

/* The full path of tpath record i (inline or overflow) into out. */
void bumba_tpath_string(const struct bumba_seg *s, uint32_t i, char *out, size_t cap);

/* ---------------------------------------------------------------------
 * Write authority (access.c) - who may change a file, now or at a past
 * instant.  Used by the safe file operations (now) and by the guard's
 * classifier in bumbad (at the instant of a kernel event).
 * ------------------------------------------------------------------- */

/* 0 if agent slot may write the normalised path norm (len bytes) now: it
 * holds an exclusive lock on it, or an EXCLUSIVE territory covering it
 * (its own or, for a child agent, its parent's); else -EPERM. */
int bumba_may_write(const struct bumba_seg *s, uint32_t slot, const char *norm, size_t len);

/* The id of a live MONITORED territory covering norm now, 0 if none. */
uint64_t bumba_monitored_by(const struct bumba_seg *s, const char *norm, size_t len);

enum bumba_verdict_kind {
	BUMBA_VERDICT_VIOLATION = 0, /* nobody sanctioned this write */
	BUMBA_VERDICT_LOCK,	     /* writer held an exclusive lock on the file */
	BUMBA_VERDICT_TERRITORY,     /* writer held an EXCLUSIVE territory over it */
	BUMBA_VERDICT_MONITORED,     /* allowed, but inside a MONITORED territory: log it */
};

struct bumba_verdict {
	enum bumba_verdict_kind kind;
	uint64_t territory_id; /* the territory involved, 0 if none */
	/* For a violation: who owned the file at that time (a lock holder or
	 * an EXCLUSIVE/SHARED territory owner), "" if nobody. */
	char holder_id[BUMBA_ID_MAX];
	char holder_kind[16]; /* "lock", "exclusive", "shared", "" */
};

/* Judges a write to norm done at event_ns (CLOCK_MONOTONIC) by agent slot
 * (UINT32_MAX: a process that is no agent).  A lock released, or a
 * territory ended, shortly after event_ns still sanctions the write: each
 * agent keeps a short history of what it gave up and when. */
void bumba_classify_write(const struct bumba_seg *s, uint32_t slot, const char *norm, size_t len,
			  uint64_t event_ns, struct bumba_verdict *v);

/* Upper bounds of the wait histogram buckets, seconds. */
extern const double bumba_wait_bounds[WAIT_HIST_BUCKETS];

#endif /* BUMBA_INTERNAL_H */
