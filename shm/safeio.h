/* SPDX-License-Identifier: MIT */
/*
 * safeio.h - what the safe file operations share between their files
 * (safeio.c: single-file operations and the I/O engine; backup.c: the backup
 * store; txn.c: transactions and their recovery) and with bumbad's
 * supervisor/recovery.c and bumbactl.  Agents never see this header.
 *
 * The on-disk layout, per workspace root (docs/safe-file-ops.md):
 *
 *   <root>/.bumba/                    the state directory (same filesystem
 *                                     as the files it protects: backups can
 *                                     be reflinks or hard links, renames
 *                                     never cross a device)
 *     backups/<16 hex>/path           the file's normalised path, one line
 *     backups/<16 hex>/<UTC time>.<op>.<8 hex>
 *                                     one old version per change, named by
 *                                     when it was replaced (op: write,
 *                                     delete, restore, txn)
 *     txn/<txid>.prep|.commit         transaction intent manifests
 *     txn/<tag>-<pid>.dirs            directories a process made temporaries
 *                                     in (found again when it dies)
 *     conflicts/<txid>/               what recovery could not apply
 *     access.log                      JSON lines: reads and writes inside
 *                                     MONITORED territories
 *
 * Temporary files live beside their target: ".<name>.bumba-<32 hex>.tmp",
 * the 32 hex being the agent tag (16), the creating pid (8), random (8).
 */
#ifndef BUMBA_SAFEIO_H
#define BUMBA_SAFEIO_H

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "internal.h"

#define SIO_STATE_DIR	    ".bumba"
#define SIO_TMP_INFIX	    ".bumba-"
#define SIO_TMP_SUFFIX	    ".tmp"
#define SIO_TOKEN_HEX	    32
#define SIO_TAG_HEX	    16
#define SIO_MAX_TXN_DEFAULT 100
#define SIO_MAX_TXN_LIMIT   4096
#define SIO_RING_ENTRIES    512
#define SIO_RING_FILES	    1024 /* fixed-file slots per ring */

/* ---------------------------------------------------------------------
 * Fault injection (tests): BUMBA_FAULT_STEP=N makes the process SIGKILL
 * itself at the N-th fault point it passes (1-based).  Inert when unset.
 * ------------------------------------------------------------------- */
void bumba_fault_point(void);
/* Number of fault points passed so far in this process. */
unsigned long bumba_fault_count(void);
/* Tests: restarts the count and fires at step (<= 0: never), whatever the
 * environment said (a forked child inherits its parent's reading). */
void bumba_fault_arm(long step);

/* ---------------------------------------------------------------------
 * The I/O engine: chains of steps run as linked io_uring SQEs, or one
 * after the other with plain system calls (the fallback).  A chain stops
 * at its first failing step; the rest get -ECANCELED.  Chains of one run
 * are independent and in flight together.
 * ------------------------------------------------------------------- */
enum sio_op {
	SIO_OPEN,      /* dfd, name, flags, mode -> file slot */
	SIO_WRITE,     /* file, buf, len, off */
	SIO_READ,      /* file, buf, len, off */
	SIO_FSYNC,     /* file (or fd) */
	SIO_FDATASYNC, /* file (or fd) */
	SIO_FADVISE,   /* file, off, len, advice in flags */
	SIO_CLOSE,     /* file slot */
	SIO_RENAME,    /* dfd, name -> dfd2, name2, flags (RENAME_*) */
	SIO_UNLINK,    /* dfd, name, flags (AT_REMOVEDIR) */
	SIO_LINK,      /* dfd, name -> dfd2, name2 */
	SIO_STATX,     /* dfd, name, flags (AT_*), mode = mask, buf = struct statx */
};

struct sio_step {
	uint8_t op;
	bool use_slot; /* file: the chain's opened file (else fd) */
	bool short_io; /* result: a read/write came back short (io_uring) */
	int fd;	       /* dfd for OPEN/RENAME/UNLINK/LINK, or a plain fd */
	int fd2;
	const char *name, *name2;
	int flags;
	mode_t mode;
	void *buf;
	size_t len;
	off_t off;
	size_t got; /* bytes a short read/write did move */
	int res;    /* >= 0 done, -errno, -ECANCELED (not run) */
};

#define SIO_CHAIN_MAX 16
struct sio_chain {
	struct sio_step s[SIO_CHAIN_MAX];
	int n;
	int done;  /* CQEs seen (engine) */
	int gslot; /* fixed-file slot while running, -1 */
	int sfd;   /* plain fd while running (sync engine), -1 */
	bool opened, closed;
};

/* Per-handle state: the lazily created ring, cached root descriptors, the
 * process's temporary-file journal, counters. */
struct bumba_sio {
	pthread_mutex_t mu; /* the ring */
	bool ring_ok;
	bool no_ring; /* BUMBA_NO_IO_URING=1 when the state was made */
	int ring_err; /* why not, when !ring_ok */
	pid_t ring_pid;
	void *ring; /* struct io_uring * */
	uint64_t slot_map[SIO_RING_FILES / 64];

	pthread_mutex_t jmu; /* journal and root fds */
	pid_t jpid;
	int rootfd[BUMBA_MAX_ROOTS];
	int jfd[BUMBA_MAX_ROOTS];
	uint64_t jseen[256]; /* keys of directories already journalled */
	unsigned jn;

	int bkfd[BUMBA_MAX_ROOTS]; /* <root>/.bumba/backups, cached */
	dev_t noclone[8];	   /* filesystems where FICLONE failed */
	_Atomic unsigned n_noclone;

	char tag[SIO_TAG_HEX + 1];
	int umask_cached; /* -1: unknown */
	pid_t self_pid;	  /* start time of this process, for manifests */
	uint64_t self_start;

	/* Counters (tests, doctor). */
	_Atomic uint64_t n_ring_ops, n_sync_ops, n_clone, n_link, n_copy;

	/* Transactions this process could not finish after their commit
	 * point: retried at bumba_close. */
	pthread_mutex_t smu;
	struct sio_stuck {
		size_t root;
		char name[NAME_MAX + 1];
	} * stuck;
	size_t n_stuck;
};

/* Gets (creating on first use) the handle's state.  NULL: out of memory. */
struct bumba_sio *bumba_sio_get(struct bumba *b);
/* bumba_close: finishes stuck transactions, removes the process's journal,
 * tears the ring down. */
void bumba_sio_free(struct bumba *b);

/* Runs chains[0..n); returns 0 when every step of every chain succeeded,
 * else the first error (by chain order).  Uses the ring unless force_sync,
 * the ring is unavailable or busy (another thread). */
int bumba_sio_run(struct bumba_sio *s, struct sio_chain *chains, size_t n, bool force_sync);

/* One file written through a temporary: the plan shared by safe writes,
 * restores and transactions. */
struct sio_wplan {
	int dirfd;		/* the target's directory */
	const char *base;	/* the target's name in it */
	char tmp[NAME_MAX + 1]; /* the temporary's name in it */
	const void *buf;
	size_t len;
	unsigned flags; /* BUMBA_WRITE_* */
	bool exists;	/* the target exists: old is its stat */
	struct stat old;
	mode_t want; /* mode of the new file */
	uid_t want_uid;
	gid_t want_gid;
	bool have_owner;   /* keep want_uid/want_gid */
	int fixfd;	   /* temporary opened by hand (mode/owner), -1 */
	void *vbuf;	   /* read-back buffer (VERIFY) */
	struct statx *stx; /* what the temporary came out as */
	bool created;	   /* the temporary exists */
	int chain;	   /* index of its chain in the run */
};
/* Checks the target (regular file or absent), decides how the temporary is
 * made.  new_mode: mode for a new file (0: 0666 & ~umask). */
int bumba_wplan_prepare(struct bumba_sio *s, struct sio_wplan *w, mode_t new_mode);
/* Fills chain c with the write phase of w. */
void bumba_wplan_chain(struct sio_wplan *w, struct sio_chain *c);
/* After the run: errors (with the real errno of a short write), the
 * read-back comparison, mode/owner repair. */
int bumba_wplan_finish(struct bumba_sio *s, struct sio_wplan *w, struct sio_chain *c);
/* Removes the temporary if it was made, frees what prepare took. */
void bumba_wplan_cleanup(struct sio_wplan *w);
/* Frees without removing (the temporary was published). */
void bumba_wplan_release(struct sio_wplan *w);

/* The first error of a chain (a step that failed rather than was cancelled), or 0. */
int bumba_chain_error(const struct sio_chain *c);
/* Appends a step to c (NULL when full). */
struct sio_step *bumba_chain_add(struct sio_chain *c, enum sio_op op);

/* Counters snapshot (tests). */
struct bumba_safeio_stats {
	uint64_t ring_ops, sync_ops, clone, link, copy;
	bool ring;
};
void bumba_safeio_stats(struct bumba *b, struct bumba_safeio_stats *st);

/* ---------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------- */
struct sio_path {
	char norm[PATH_MAX]; /* normalised absolute path */
	size_t len;
	size_t root;		/* root index */
	const char *root_s;	/* the root */
	const char *rel;	/* norm relative to the root ("" for the root) */
	const char *base;	/* last component */
	char dir_rel[PATH_MAX]; /* parent relative to the root ("." at the top) */
};

/* Normalises path (the API's rules), refuses the root itself and anything
 * in the state directory (-EPERM). */
int bumba_sio_path(const struct bumba *b, const char *path, struct sio_path *p);
/* Opens the parent directory of p beneath the root (no symlinks, no escape):
 * O_RDONLY|O_DIRECTORY.  -ENOENT, -ENOTDIR, -ELOOP (a symlink on the way). */
int bumba_sio_open_dir(struct bumba_sio *s, const struct sio_path *p);
/* Descriptor (O_PATH) of root i, cached. */
int bumba_sio_rootfd(struct bumba_sio *s, const struct bumba *b, size_t i);
/* The same beneath an explicit root fd (recovery). */
int bumba_sio_openat_beneath(int rootfd, const char *rel, int flags);

/* Temporary name for base into out (NAME_MAX + 1). */
void bumba_sio_tmp_name(const struct bumba_sio *s, const char *base, char *out, size_t cap);
/* If name is a bumba temporary, its tag and pid; true if so. */
bool bumba_sio_parse_tmp(const char *name, char tag[SIO_TAG_HEX + 1], pid_t *pid);
/* Agent tag: 16 hex of xxh3(agent id). */
void bumba_sio_agent_tag(const char *agent_id, char out[SIO_TAG_HEX + 1]);

/* The state directory of a root, created (with backups/, txn/, conflicts/)
 * if missing: mode 0700 plus the root's group bits, owned like the root.
 * Returns an O_RDONLY|O_DIRECTORY fd of <root>/.bumba/<sub> (sub may be
 * ""), or -errno. */
int bumba_sio_state_dir(int rootfd, const char *sub);

/* Records (once per directory and process) that temporaries are about to be
 * made in directory dir_norm of root i. */
int bumba_sio_journal(struct bumba_sio *s, const struct bumba *b, size_t root,
		      const char *dir_norm);

/* Authority check (bumba_may_write) for a normalised path. */
int bumba_sio_authority(const struct bumba *b, const struct sio_path *p);

/* JSON line into <root>/.bumba/access.log when p lies inside a MONITORED
 * territory.  Never fails the operation. */
void bumba_sio_log_monitored(const struct bumba *b, const struct sio_path *p, const char *op);

/* Start time (/proc stat field 22) of the calling process, cached. */
uint64_t bumba_sio_self_start(struct bumba_sio *s);

/* The body of a safe write; op names the backup version ("write",
 * "restore"); new_mode is the mode of a file that does not exist yet (0:
 * 0666 & ~umask). */
int bumba_sio_write_op(struct bumba *b, const char *path, const void *buf, size_t len,
		       unsigned flags, const char *op, mode_t new_mode);

/* Max files per transaction for this handle (safeFileOps.maxTransactionSize). */
uint32_t bumba_sio_max_txn(const struct bumba *b);

/* opendir of a directory fd, with its own read position. */
DIR *bumba_opendir_fd(int dfd);

/* Current umask of the process, without changing it. */
mode_t bumba_sio_umask(void);

/* ---------------------------------------------------------------------
 * Backups (backup.c)
 * ------------------------------------------------------------------- */
enum sio_backup_method { SIO_BK_NONE, SIO_BK_CLONE, SIO_BK_LINK, SIO_BK_COPY };

struct sio_backup {
	int dirfd; /* backups/<hash>/, -1 if none */
	int fd;	   /* the backup file if it needs an fsync (clone, copy), else -1 */
	char name[NAME_MAX + 1];
	char abs[PATH_MAX]; /* absolute path of the version */
	enum sio_backup_method method;
	bool dir_created;
};

/* Makes a backup of the file name in dirfd (its normalised path p) as a new
 * version of op.  ofd, if >= 0, is that file opened read-only (its content
 * is what gets saved); st its stat.  Chooses FICLONE, else a hard link (a
 * single-link file on the same mount: bumba never writes an inode in place,
 * so the old inode is frozen once the rename retires it), else a copy.
 * The caller makes it durable (fsync of b->fd and b->dirfd) before the
 * change it protects is published. */
int bumba_backup_make(struct bumba_sio *s, int rootfd, const struct sio_path *p, int dirfd, int ofd,
		      const struct stat *st, const char *op, struct sio_backup *bk);
/* The cached backups directory of root i (s->jmu), or -errno. */
int bumba_sio_backups_fd(struct bumba_sio *s, int rootfd, size_t i);
void bumba_backup_close(struct sio_backup *bk);
/* Removes a version made for an operation that did not happen. */
void bumba_backup_discard(struct sio_backup *bk);

/* Copies every byte of in to out (copy_file_range, else read/write). */
int bumba_copy_fd(int in, int out);

/* Name of the backup directory of a normalised path: 16 hex. */
void bumba_backup_key(const char *norm, size_t len, char out[17]);

struct bumba_backup_version {
	char path[PATH_MAX];  /* the file it belongs to */
	char file[PATH_MAX];  /* absolute path of the stored version */
	uint64_t replaced_ns; /* CLOCK_REALTIME when it was replaced */
	char op[16];
	uint64_t size;
	uint32_t mode;
};
typedef int (*bumba_backup_cb)(void *ctx, const struct bumba_backup_version *v);
/* Lists versions, oldest first per file, of norm (NULL: every file) under
 * every root.  The callback's non-zero return stops the walk. */
int bumba_backup_list(const char *const *roots, size_t n_roots, const char *norm,
		      bumba_backup_cb cb, void *ctx);
/* Parses "2025-01-02T03:04:05.123456789Z.write.1a2b3c4d". */
bool bumba_backup_parse_name(const char *name, uint64_t *ns, char op[16]);

/* Removes versions replaced more than retention_ns ago (and emptied
 * directories), under <root>/.bumba/backups and conflicts.  Returns the
 * number removed or -errno. */
long bumba_backup_sweep(const char *root, uint64_t now_ns, uint64_t retention_ns);

/* ---------------------------------------------------------------------
 * Recovery (txn.c), driven by bumbad and by tests
 * ------------------------------------------------------------------- */
typedef void (*bumba_recovery_log)(void *ctx, int prio, const char *msg);

struct bumba_recovery_report {
	unsigned forward;   /* committed transactions finished */
	unsigned back;	    /* prepared transactions rolled back */
	unsigned conflicts; /* operations not applied: pre-image changed */
	unsigned temps;	    /* stray temporaries removed */
	unsigned live;	    /* manifests left alone: their process lives */
	unsigned bad;	    /* unreadable manifests set aside */
};

/* Tells whether a temporary's or manifest's owner still runs: agent tag,
 * pid, and the pid's start time when known (0: unknown). */
typedef bool (*bumba_live_fn)(void *ctx, const char *tag, pid_t pid, uint64_t start_time);

/* Recovers the manifests in <root>/.bumba/txn: those of agent tag (NULL:
 * any) whose process is gone (or every one when force).  Then removes the
 * temporaries recorded in the journals of processes that are gone. */
int bumba_recover_root(const char *root, const char *tag, bool force, bumba_live_fn live,
		       void *live_ctx, bumba_recovery_log log, void *log_ctx,
		       struct bumba_recovery_report *r);
/* Walks the whole root (not .bumba) removing temporaries whose owner is not
 * live.  For bumbad's start, after bumba_recover_root. */
int bumba_recover_scan(const char *root, bumba_live_fn live, void *live_ctx, bumba_recovery_log log,
		       void *log_ctx, struct bumba_recovery_report *r);

/* Default liveness: the pid exists (and is the same process when the start
 * time is known); the tag is not looked at. */
bool bumba_recover_pid_alive(void *ctx, const char *tag, pid_t pid, uint64_t start_time);

/* Recovers one manifest (name in <root>/.bumba/txn) whatever its owner:
 * for a process finishing its own transaction, and for tests. */
int bumba_recover_manifest(const char *root, const char *name, bumba_recovery_log log,
			   void *log_ctx, struct bumba_recovery_report *r);

#endif /* BUMBA_SAFEIO_H */
