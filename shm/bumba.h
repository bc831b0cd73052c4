/* SPDX-License-Identifier: MIT */
/*
 * bumba.h - the one public header of libbumba-shm.
 *
 * An agent process links libbumba-shm, calls bumba_open() once to register
 * with the supervisor (bumbad) and map the shared segment, and then takes
 * locks on paths of the workspace.  Uncontended acquire and release are
 * atomic operations on the mapped segment: no system call.  Contended
 * acquires sleep on a futex in the segment.  If the process dies at any
 * instruction, bumbad reclaims everything it held within milliseconds.
 *
 * Conventions (the liburing/libbpf ones):
 *   - every function that can fail returns 0 or a negative errno;
 *   - handles are opaque; the library keeps no global state, so several
 *     handles (several agents) may live in one process;
 *   - a handle may be used from several threads at once.
 *
 * Paths given to the API are absolute paths inside a workspace root, or paths
 * relative to the first root.  They are normalised lexically ("." and ".."
 * folded, repeated slashes dropped); a path that leaves its root, is empty,
 * longer than PATH_MAX or contains a NUL is -EINVAL.
 */
#ifndef BUMBA_H
#define BUMBA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BUMBA_VERSION_MAJOR 0
#define BUMBA_VERSION_MINOR 1
#define BUMBA_VERSION_PATCH 0

/* ---------------------------------------------------------------------
 * Agents
 * ------------------------------------------------------------------- */

/* One registered agent.  Opaque. */
struct bumba;

/* What an agent says about itself at registration.  Every field may be
 * NULL/0: the defaults are type "Agent", name "agent<pid>", department
 * "general", no capabilities, no parent.  Strings must be UTF-8 without
 * control characters; type and name may not contain '-' (it separates the
 * parts of the agent id).  Limits: type/name 31 bytes, department 31 bytes,
 * 16 capabilities of 31 bytes each. */
struct bumba_agent_info {
	const char *type;
	const char *name;
	const char *department;
	const char *const *capabilities;
	size_t n_capabilities;
	const char *parent_id; /* id of the parent agent, NULL: none */
};

/* Registers with the supervisor listening on socket_path (NULL: the
 * BUMBA_SOCKET environment variable, else $XDG_RUNTIME_DIR/bumba/bumba.sock
 * for a user, /run/bumba/bumba.sock for root) and maps the segment.
 * Inside an agent's process tree (BUMBA_AGENT_ID and BUMBA_AGENT_FD set,
 * as bumba-run does) it joins that agent instead: see "Joining" below.
 * Errors: -ECONNREFUSED/-ENOENT (no supervisor), -EPROTO (supervisor speaks
 * another protocol or ABI version, or the segment it handed over is
 * foreign), -ESTALE (the segment's supervisor is gone), -EINVAL (bad info), -ENOSPC (agent table full), -EACCES;
 * when joining, those of bumba_join. */
int bumba_open(const char *socket_path, const struct bumba_agent_info *info, struct bumba **out);

/* Releases every lock the handle holds, unregisters and unmaps.  NULL is a
 * no-op.  On a joined handle: releases what was taken through this handle
 * only (lock counts and territories), and the agent lives on. */
void bumba_close(struct bumba *b);

/* ---------------------------------------------------------------------
 * Joining: several processes, one agent
 *
 * An agent is a process tree (DESIGN: "children forked by an agent act as
 * that agent").  A process that registered an agent can let the programs
 * it starts join it rather than register agents of their own: it exports
 *   BUMBA_AGENT_ID=<the agent id>
 *   BUMBA_AGENT_FD=<n>   a descriptor of the segment, read-write, without
 *                        FD_CLOEXEC (bumba_join_fd), inherited across exec
 *   BUMBA_SOCKET=<the socket it registered on>
 * and bumba_open() in any descendant then joins: same agent id, same slot.
 * The descriptor is the membership proof: bumbad hands a writable one to
 * registered agents only (observers get read-only ones), and holding it
 * already allows anything in the segment, so it needs no extra secret.
 *
 * bumba_open joins when both variables are set, unless (then it registers
 * a new agent, as without them)
 *   - BUMBA_NO_JOIN is set (not "" or "0"), or bumba_open_ex gets
 *     BUMBA_OPEN_NO_JOIN;
 *   - info->parent_id is set: the caller asked for a child agent of its own;
 *   - the supervisor on socket_path (NULL: BUMBA_SOCKET, then the default)
 *     is not the one the agent lives with: its segment is another file
 *     than the descriptor's (asked with one OBSERVE round trip), or it
 *     does not answer.
 * Set but unusable variables are an error, never a silent new agent:
 *   -EINVAL   only one of them set, or BUMBA_AGENT_FD not a number;
 *   -EBADF    the descriptor is not open, not read-write, or not a bumba
 *             segment (closed or reused on the way: a program that closes
 *             inherited descriptors breaks the chain);
 *   -EPROTO   a segment of another ABI version;
 *   -ESTALE   the agent is gone (its registering process died or closed,
 *             the slot was reclaimed), or the segment's supervisor is.
 * info is ignored when joining: the agent already has its metadata.
 *
 * A joined handle acts as the agent, like processes sharing one open file
 * description under flock(2):
 *   - locks are the agent's: a lock the agent holds (from any of its
 *     processes) is re-entered at once, counted, by any other; processes of
 *     one agent do not exclude each other;
 *   - territories are the agent's: a path inside the agent's EXCLUSIVE
 *     territory can be locked and safely written by every process of it;
 *   - bumba_close releases the lock counts and territories taken through
 *     this handle and leaves the agent registered (in a forked child, on
 *     the copy it inherited, it releases nothing); a joined process that
 *     dies without closing leaves what it took with the agent until the
 *     agent ends (nothing wedges: the agent's end releases everything);
 *   - the agent's liveness is the registering process's: when it ends,
 *     bumbad reclaims everything, also what joined processes took.  Every
 *     call on a joined handle then fails cleanly (-ENOLINK from acquire,
 *     claim, add, remove, release of a territory and status; -ENOLCK from
 *     lock release and renew; -EPERM from safe writes) and never touches
 *     the agent slot's next occupant.
 * ------------------------------------------------------------------- */

#define BUMBA_OPEN_NO_JOIN   0x1u /* always register a new agent */
#define BUMBA_OPEN_JOIN_ONLY 0x2u /* join from the environment or fail (-ENOENT if unset) */

/* bumba_open with flags (BUMBA_OPEN_*; -EINVAL for unknown ones or both).
 * BUMBA_OPEN_JOIN_ONLY joins whatever the environment names, without
 * asking the supervisor on socket_path. */
int bumba_open_ex(const char *socket_path, const struct bumba_agent_info *info, unsigned flags,
		  struct bumba **out);

/* Joins agent agent_id through fd, a segment descriptor as described above
 * (not consumed: it stays open for the caller's children).  Errors as
 * listed above, -EINVAL for a NULL or over-long id. */
int bumba_join(const char *agent_id, int fd, struct bumba **out);

/* A new descriptor of b's segment for a child to join with: read-write,
 * without FD_CLOEXEC.  Export it as BUMBA_AGENT_FD with BUMBA_AGENT_ID =
 * bumba_agent_id(b); close it when no more children need it.  Returns the
 * descriptor or a negative errno. */
int bumba_join_fd(const struct bumba *b);

/* 1 if b joined an agent registered by another process, 0 if b registered
 * its own. */
int bumba_is_joined(const struct bumba *b);

/* The agent id, "<Type>-<Name>-<unix ms>-<8 hex>".  Valid until close. */
const char *bumba_agent_id(const struct bumba *b);

enum bumba_agent_status {
	BUMBA_STATUS_IDLE = 0,
	BUMBA_STATUS_ACTIVE,
	BUMBA_STATUS_BUSY,
	BUMBA_STATUS_BLOCKED,
};

/* Publishes the agent's status and bumps its last-activity time.  A store
 * into the segment; no system call beyond reading the clock. */
int bumba_set_status(struct bumba *b, enum bumba_agent_status status);

/* Workspace roots of the supervisor this handle is attached to.  idx 0 is
 * the root relative paths are taken against.  -ENOENT past the last root. */
int bumba_workspace_root(const struct bumba *b, size_t idx, const char **root);

/* Normalises path as every call of this API does, into out (PATH_MAX bytes
 * is always enough).  Returns the length written, without the NUL, or
 * -EINVAL / -ENAMETOOLONG. */
int bumba_path_normalize(const struct bumba *b, const char *path, char *out, size_t out_len);

/* ---------------------------------------------------------------------
 * Locks
 * ------------------------------------------------------------------- */

enum bumba_mode { BUMBA_EXCLUSIVE, BUMBA_SHARED };
enum bumba_priority { BUMBA_PRIO_LOW, BUMBA_PRIO_NORMAL, BUMBA_PRIO_HIGH };

/* A held lock.  fence is the fencing token of this acquisition: strictly
 * greater than every token handed out before for the same path, so a
 * storage layer can refuse writes carrying an older one. */
struct bumba_lock {
	uint64_t fence;
	uint64_t opaque[3];
};

/* Acquires a lock on path.
 *   timeout_ms  < 0: the supervisor's default (fileLocking.defaultTimeout),
 *               0: try once, > 0: wait at most that long.
 *   prio        waiters are served highest priority first, FIFO within one.
 * Re-acquiring a lock the agent already holds in the same mode succeeds at
 * once and is counted: release it as many times.  An exclusive holder asking
 * for shared mode gets a counted re-entry.  A shared holder asking for
 * exclusive mode is upgraded in place if it is the only sharer, else gets
 * -EDEADLK at once (two upgraders would wait for each other forever):
 * release the shared hold first.
 * Errors: -ETIMEDOUT, -EBUSY (timeout 0 and held), -EDEADLK (waiting would
 * close a wait-for cycle between agents), -EACCES (inside another agent's
 * EXCLUSIVE territory), -EINVAL (bad path), -ENOSPC (lock table or the
 * agent's hold table full), -EOWNERDEAD is never returned: see
 * bumba_lock_owner_died(). */
int bumba_lock_acquire(struct bumba *b, const char *path, enum bumba_mode mode, int timeout_ms,
		       enum bumba_priority prio, struct bumba_lock *out);

/* The extended form: every knob of the acquire.  Zero-initialise it. */
struct bumba_lock_opts {
	enum bumba_mode mode;
	int timeout_ms;
	enum bumba_priority prio;
	/* Lease: if not renewed within lease_ms the supervisor treats the
	 * agent as hung, kills it and reclaims what it held.  0: no lease. */
	uint32_t lease_ms;
};
int bumba_lock_acquire_opts(struct bumba *b, const char *path, const struct bumba_lock_opts *opts,
			    struct bumba_lock *out);

/* Extends the lease of a held lock by lease_ms from now.  -EINVAL if the
 * lock has no lease, -ENOLCK if it is no longer held. */
int bumba_lock_renew(struct bumba *b, struct bumba_lock *lock, uint32_t lease_ms);

/* Releases one count of a held lock.  -ENOLCK if it is not held (already
 * released, or reclaimed after a lease expiry). */
int bumba_lock_release(struct bumba *b, struct bumba_lock *lock);

/* 1 if the previous holder of this lock died while holding it, so that the
 * caller should check what it protected; 0 otherwise. */
int bumba_lock_owner_died(const struct bumba_lock *lock);

/* ---------------------------------------------------------------------
 * Territories
 *
 * A territory is a set of paths one agent claims before it works on them;
 * a directory path covers its whole subtree.  Claims are all or nothing and
 * report every conflict.  Compatibility (full matrix in docs/territories.md):
 *   EXCLUSIVE  only the owner writes; overlaps nothing of another agent.
 *   SHARED     read-only for everyone while it stands; overlaps other SHARED
 *              claims only; exclusive file locks inside it are refused.
 *   MONITORED  anyone may write under the usual file locks, and every write
 *              is logged; overlaps other MONITORED claims only.
 * An agent's claims never conflict with its own, its ancestors' or its
 * descendants' (an agent registered with a parent claims inside the
 * parent's territories only, and acts as its parent for locking).  Territories end with their agent, on
 * release, or after territoryManagement.defaultTimeout.
 * ------------------------------------------------------------------- */

enum bumba_territory_type {
	BUMBA_TERRITORY_EXCLUSIVE,
	BUMBA_TERRITORY_SHARED,
	BUMBA_TERRITORY_MONITORED,
	BUMBA_TERRITORY_LOCKED, /* in conflicts only: another agent's exclusive file lock */
};

/* One conflict: the path in the way (the other agent's claimed path, or
 * the requested path it covers), who holds it and how. */
struct bumba_conflict {
	char path[4096];
	char holder_id[128];
	enum bumba_territory_type type;
};

/* Claims paths (n_paths >= 1) as one territory titled title (NULL: none).
 * On success *territory_id identifies it.  On conflict nothing is claimed,
 * -EBUSY is returned, conflicts[0..max_conflicts) gets the first conflicts
 * and *n_conflicts (may be NULL) the total.  Other errors: -EINVAL (bad
 * path, type or title), -EACCES (a child agent outside its parent's
 * territories), -ENOSPC (territory or path table full), -ENAMETOOLONG. */
int bumba_territory_claim(struct bumba *b, const char *title, const char *const *paths,
			  size_t n_paths, enum bumba_territory_type type, uint64_t *territory_id,
			  struct bumba_conflict *conflicts, size_t max_conflicts,
			  size_t *n_conflicts);

/* Grows a territory of ours by paths, all or nothing, with the same
 * conflict reporting.  -ENOENT if it is not ours or no longer exists. */
int bumba_territory_add(struct bumba *b, uint64_t territory_id, const char *const *paths,
			size_t n_paths, struct bumba_conflict *conflicts, size_t max_conflicts,
			size_t *n_conflicts);

/* Shrinks a territory of ours: every path must be one it claimed
 * (-ENOENT otherwise, and nothing is removed). */
int bumba_territory_remove(struct bumba *b, uint64_t territory_id, const char *const *paths,
			   size_t n_paths);

/* Ends a territory of ours, and the territories of our child agents inside
 * it.  -ENOENT if it is not ours or already gone. */
int bumba_territory_release(struct bumba *b, uint64_t territory_id);

/* ---------------------------------------------------------------------
 * Safe file operations (docs/safe-file-ops.md)
 *
 * Every file is replaced whole and atomically: the new content goes to a
 * temporary ".<name>.bumba-<token>.tmp" in the same directory, is synced,
 * and renamed over the target; the directory is synced.  A crash at any
 * instant leaves every file with exactly its old or its new content, and a
 * transaction all applied or not at all (bumbad finishes or rolls back what
 * a dead agent left).  The steps of one operation run as linked io_uring
 * requests on the handle's own ring (made on first use); without io_uring
 * (kernel.io_uring_disabled, seccomp, BUMBA_NO_IO_URING=1) the same steps
 * run as plain system calls.
 *
 * The caller must hold an exclusive lock on every path it changes, or an
 * EXCLUSIVE territory covering it: -EPERM otherwise.  Errors never damage:
 * on any failure the original file is intact and no temporary is left.
 *   -EINVAL     bad path (outside every workspace root, empty, ...), a
 *               target that is not a regular file, bad flags
 *   -EPERM      not the holder, or a path in the state directory .bumba
 *   -EISDIR     a directory where a file was expected
 *   -ENOENT     a missing parent directory (they are never created)
 *   -ENOTDIR, -ELOOP   a file or a symbolic link on the way (paths are
 *               resolved beneath the root without following symlinks)
 *   -ENOSPC, -EDQUOT, -EROFS, -EACCES, -EIO   from the filesystem
 * State (backups, transaction manifests) lives in <root>/.bumba/.
 * ------------------------------------------------------------------- */

#define BUMBA_WRITE_BACKUP 0x1u /* keep the old content as a backup version */
#define BUMBA_WRITE_VERIFY 0x2u /* re-read what was written, compare xxh3 before publishing */
#define BUMBA_WRITE_NOSYNC 0x4u /* skip fsync: atomic but not durable */

/* Replaces (or creates) path with buf[0..len).  The old file's mode and
 * ownership are kept (ownership as far as the caller may set it); a new
 * file gets 0666 & ~umask.  With BUMBA_WRITE_VERIFY the temporary is read
 * back (from the device where the page cache allows it) and compared by
 * checksum before it is published: -EIO on a mismatch, nothing changed. */
int bumba_safe_write(struct bumba *b, const char *path, const void *buf, size_t len,
		     unsigned flags);

/* Reads the whole of path into buf[0..cap); *len gets its size.  -ENOBUFS
 * (with *len set) if it does not fit.  A read inside a MONITORED territory
 * is logged.  Never needs a lock: safe writes replace files whole, so a
 * read sees one version. */
int bumba_safe_read(struct bumba *b, const char *path, void *buf, size_t cap, size_t *len);

/* Removes path; its content is kept as a backup version (restorable with
 * bumba_safe_restore or `bumbactl restore`).  flags: BUMBA_WRITE_NOSYNC. */
int bumba_safe_delete(struct bumba *b, const char *path, unsigned flags);

/* Renames from to to.  Never clobbers: -EEXIST if to exists.  Across
 * filesystems the content is copied and the source removed as one
 * transaction (all or nothing, even across a crash).  Needs authority over
 * both paths.  flags: BUMBA_WRITE_NOSYNC. */
int bumba_safe_move(struct bumba *b, const char *from, const char *to, unsigned flags);

/* Puts an old version of path back, itself as a safe write (with a backup
 * of what it replaces).  at_ms < 0: the version the last change replaced
 * (undo); else the content path had at that instant (unix ms): the oldest
 * version replaced after at_ms.  -ENOENT if there is none. */
int bumba_safe_restore(struct bumba *b, const char *path, int64_t at_ms, unsigned flags);

/* Transactions: up to safeFileOps.maxTransactionSize (default 100) files,
 * each path at most once.  Staging copies the data and checks authority;
 * commit writes every temporary (in flight together), then an fsynced
 * intent manifest; renaming it to ".commit" is the commit point.  flags
 * (BUMBA_WRITE_*) apply to every file.  A delete keeps a backup. */
struct bumba_txn;
int bumba_txn_begin(struct bumba *b, unsigned flags, struct bumba_txn **out);
int bumba_txn_write(struct bumba_txn *t, const char *path, const void *buf, size_t len);
int bumba_txn_delete(struct bumba_txn *t, const char *path);
int bumba_txn_move(struct bumba_txn *t, const char *from, const char *to);
/* -E2BIG past the size limit, -EINVAL for a path staged twice, -EXDEV for
 * paths in two workspace roots (the manifest lives in one of them). */

/* Commits and frees t.  0: everything applied.  An error before the commit
 * point: nothing changed.  An error after it (-EIO and friends, rare): the
 * transaction stands and is finished by bumba_close or bumbad; -EBUSY: it
 * was finished, but a target had changed under it (a writer ignoring the
 * locks), and that file's new content was set aside in .bumba/conflicts. */
int bumba_txn_commit(struct bumba_txn *t);
/* Drops t without changing anything.  NULL is a no-op.  Returns 0. */
int bumba_txn_abort(struct bumba_txn *t);

/* 1 if safe file operations run on io_uring in this process; 0 if it is
 * turned off by BUMBA_NO_IO_URING=1; else why the kernel refuses it
 * (-EPERM: kernel.io_uring_disabled or io_uring_group, -ENOSYS: no
 * io_uring, -EOPNOTSUPP: an opcode we need is missing). */
int bumba_io_uring_available(void);

#ifdef __cplusplus
}
#endif

#endif /* BUMBA_H */
