/* SPDX-License-Identifier: MIT */
/*
 * guard.h - what the eBPF guard (bpf/guard.bpf.c) and its loader in bumbad
 * (supervisor/guard.c) share: the ring-buffer event, the pinned maps' keys
 * and values, the operation codes.  bumbactl reads the pinned maps with the
 * same types.
 *
 * Included by the BPF program after vmlinux.h, and by user space after the
 * usual headers: only fixed-size __u types, no pointers, explicit padding
 * (keys are hashed byte for byte).
 */
#ifndef BUMBA_GUARD_H
#define BUMBA_GUARD_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GUARD_COMM_LEN	    16
#define GUARD_MAX_ROOTS	    8	 /* = BUMBA_MAX_ROOTS */
#define GUARD_ROOT_PATH_MAX 256	 /* roots longer than this are matched by dentry only */
#define GUARD_MAX_DEPTH	    32	 /* d_parent steps from a file up to its root */
#define GUARD_COMP_MAX	    2048 /* dentry names of one path, NUL-separated, leaf first */
#define GUARD_NAME_MAX	    256	 /* NAME_MAX + NUL */
#define GUARD_STR_MAX	    1024 /* a path string read from the caller */
#define GUARD_NO_SLOT	    0xffffffffu
#define GUARD_NO_ROOT	    0xffu
/* At most one wake-up of bumbad per this many ns; bumbad drains again
 * GUARD_DRAIN_NS after each wake-up that found events. */
#define GUARD_WAKE_NS  1000000ull
#define GUARD_DRAIN_NS 2000000ull

/* bumbad learns the kernel's key (sb->s_dev, i_ino) of a root directory by
 * calling pwrite64(root_fd, NULL, 0, GUARD_MARKER_POS): the program sees
 * its own tgid do that and stores the key of root_fd in .bss. */
#define GUARD_MARKER_POS 0x6162756d6275ull /* "bumba" */

/* Operations, as the guard reports them.  The names (guard_op_name in
 * supervisor/guard.c, and bpftool's view of this enum) are the syscall's,
 * or io_uring_<opcode> for a request submitted through io_uring. */
enum guard_op {
	GUARD_OP_NONE = 0,
	GUARD_OP_WRITE,
	GUARD_OP_PWRITE64,
	GUARD_OP_WRITEV,
	GUARD_OP_PWRITEV,
	GUARD_OP_PWRITEV2,
	GUARD_OP_OPEN,
	GUARD_OP_OPENAT,
	GUARD_OP_OPENAT2,
	GUARD_OP_CREAT,
	GUARD_OP_OPEN_BY_HANDLE_AT,
	GUARD_OP_TRUNCATE,
	GUARD_OP_FTRUNCATE,
	GUARD_OP_RENAME,
	GUARD_OP_RENAMEAT,
	GUARD_OP_RENAMEAT2,
	GUARD_OP_UNLINK,
	GUARD_OP_UNLINKAT,
	GUARD_OP_RMDIR,
	GUARD_OP_FALLOCATE,
	GUARD_OP_COPY_FILE_RANGE,
	GUARD_OP_SENDFILE,
	GUARD_OP_SPLICE,
	GUARD_OP_MMAP,
	GUARD_OP_MPROTECT,
	GUARD_OP_FICLONE,
	GUARD_OP_LINK,
	GUARD_OP_LINKAT,
	GUARD_OP_SYMLINK,
	GUARD_OP_SYMLINKAT,
	GUARD_OP_MKDIR,
	GUARD_OP_MKDIRAT,
	GUARD_OP_MKNOD,
	GUARD_OP_MKNODAT,
	GUARD_OP_IO_URING_WRITE,
	GUARD_OP_IO_URING_WRITEV,
	GUARD_OP_IO_URING_WRITE_FIXED,
	GUARD_OP_IO_URING_WRITEV_FIXED,
	GUARD_OP_IO_URING_FALLOCATE,
	GUARD_OP_IO_URING_FTRUNCATE,
	GUARD_OP_IO_URING_SPLICE,
	GUARD_OP_IO_URING_OPENAT,
	GUARD_OP_IO_URING_OPENAT2,
	GUARD_OP_IO_URING_RENAMEAT,
	GUARD_OP_IO_URING_UNLINKAT,
	GUARD_OP_IO_URING_MKDIRAT,
	GUARD_OP_IO_URING_SYMLINKAT,
	GUARD_OP_IO_URING_LINKAT,
	GUARD_OP_MMAP_STORE, /* a page of a shared mapping dirtied (writeback tracepoint) */
	GUARD_OP_MAX,
};

/* How a path of an event is given. */
enum guard_path_kind {
	GUARD_PATH_NONE = 0,
	GUARD_PATH_FILE,    /* comps: the file itself, relative to root (exact, from dentries) */
	GUARD_PATH_BASE,    /* comps: a directory relative to root; str: relative to it */
	GUARD_PATH_ABS,	    /* str: absolute, its prefix matched a root's path */
	GUARD_PATH_OUTSIDE, /* str: relative to a directory outside every root, with ".." */
};

#define GUARD_PF_COMPS_TRUNC 0x1 /* deeper than GUARD_COMP_MAX bytes of names */
#define GUARD_PF_STR_TRUNC   0x2 /* string longer than GUARD_STR_MAX */
#define GUARD_PF_CWD	     0x4 /* base is the working directory (else dfd) */

struct guard_path {
	__u64 ino;  /* the file (FILE) or the base directory (BASE/OUTSIDE) */
	__u32 dev;  /* kernel dev_t of its superblock */
	__s32 dfd;  /* the directory descriptor the string is relative to */
	__u8 kind;  /* enum guard_path_kind */
	__u8 root;  /* index into the roots map, GUARD_NO_ROOT if none */
	__u8 flags; /* GUARD_PF_* */
	__u8 _pad;
	__u16 comps_len; /* bytes of names (each NUL-terminated), leaf first */
	__u16 str_len;	 /* bytes of the string, NUL included; 0 if none */
};

/* Layouts of the data after the event header. */
#define GUARD_LAYOUT_FILE  0 /* p[0] comps only, at data[0] */
#define GUARD_LAYOUT_PATHS 1 /* fixed: p0 comps, p0 str, p1 comps, p1 str */
#define GUARD_OFF_P0_COMPS 0
#define GUARD_OFF_P0_STR   GUARD_COMP_MAX
#define GUARD_OFF_P1_COMPS (GUARD_COMP_MAX + GUARD_STR_MAX)
#define GUARD_OFF_P1_STR   (2 * GUARD_COMP_MAX + GUARD_STR_MAX)
#define GUARD_DATA_MAX	   (2 * GUARD_COMP_MAX + 2 * GUARD_STR_MAX)

/* One event in the ring buffer. */
struct guard_event {
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 tgid, pid, uid;
	__u32 op;	 /* enum guard_op */
	__u32 slot, gen; /* agent of tgid from the agents map, GUARD_NO_SLOT if none */
	__u32 flags; /* open flags, mmap prot << 16 | flags, rename/unlink flags, io_uring opcode */
	__s32 fd;    /* the descriptor written to, -1 if none */
	__s64 ret;   /* result for exit-side events, 0 otherwise */
	__u16 layout;
	__u16 _pad[3];
	char comm[GUARD_COMM_LEN];
	struct guard_path p[2];
	char data[];
};

/* Watched roots: ARRAY indexed 0..GUARD_MAX_ROOTS-1, ino 0 = unused. */
struct guard_root {
	__u64 ino;
	__u32 dev;
	__u32 path_len;
	__u32 nwords; /* (path_len + 7) / 8: path is compared 8 bytes at a time */
	__u32 _pad;
	__u64 last_mask; /* bytes of the last word that belong to the path */
	char path[GUARD_ROOT_PATH_MAX];
};

/* Agents: HASH tgid -> agent slot, filled at registration, inherited on
 * fork in the kernel, removed on exit. */
struct guard_agent {
	__u32 slot;
	__u32 gen;
	__u32 reg_tgid; /* the process that registered; != key when inherited */
	__u32 depth;	/* forks since registration */
};

/* Violations: LRU_HASH written by bumbad after classification. */
struct guard_vkey {
	__u64 ino;
	__u32 dev;
	__u32 tgid;
	enum guard_op op;
	__u32 _pad;
};

struct guard_vval {
	__u64 count;
	__u64 first_ns; /* CLOCK_MONOTONIC */
	__u64 last_ns;
	__u32 uid;
	__u32 pid; /* last thread */
	char comm[GUARD_COMM_LEN];
	char agent[64];	 /* agent id (cut), or "unregistered" */
	char holder[64]; /* whose lock or territory it trampled (cut), "" if nobody's */
	char path[160];	 /* relative to its root (cut at the front if longer) */
};

/* Per-CPU counters (index 0). */
struct guard_stats {
	__u64 events; /* submitted to the ring buffer */
	__u64 drops;  /* ring buffer full: events lost */
	__u64 drop_bytes;
	__u64 comps_trunc; /* path names cut at GUARD_COMP_MAX */
	__u64 too_deep;	   /* a walk stopped at GUARD_MAX_DEPTH on a managed fs */
	__u64 agents_full; /* agents map full on fork */
	__u64 inherited;   /* forks of agents */
	__u64 exited;	   /* agent processes gone */
	__u64 uring;	   /* io_uring requests reported */
	__u64 marker;	   /* marker calls seen */
};

/* Set by the program for the marker call, read by bumbad. */
struct guard_learned {
	__u64 ino;
	__u64 dentry; /* kernel address of the root's dentry */
	__u32 dev;
	__u32 seq; /* bumped on each marker call */
};

/* The roots as the hot path compares them (.bss, written by bumbad):
 * superblocks first, then dentries, pinned by bumbad's open descriptors. */
struct guard_rootkeys {
	__u32 n;
	__u32 dev[GUARD_MAX_ROOTS];
	__u64 dentry[GUARD_MAX_ROOTS];
};

#ifndef __bpf__
/* The operation's name: the syscall's, or io_uring_<opcode>. */
static inline const char *guard_op_name(unsigned int op)
{
	switch (op) {
	case GUARD_OP_NONE:
		return "none";
	case GUARD_OP_WRITE:
		return "write";
	case GUARD_OP_PWRITE64:
		return "pwrite64";
	case GUARD_OP_WRITEV:
		return "writev";
	case GUARD_OP_PWRITEV:
		return "pwritev";
	case GUARD_OP_PWRITEV2:
		return "pwritev2";
	case GUARD_OP_OPEN:
		return "open";
	case GUARD_OP_OPENAT:
		return "openat";
	case GUARD_OP_OPENAT2:
		return "openat2";
	case GUARD_OP_CREAT:
		return "creat";
	case GUARD_OP_OPEN_BY_HANDLE_AT:
		return "open_by_handle_at";
	case GUARD_OP_TRUNCATE:
		return "truncate";
	case GUARD_OP_FTRUNCATE:
		return "ftruncate";
	case GUARD_OP_RENAME:
		return "rename";
	case GUARD_OP_RENAMEAT:
		return "renameat";
	case GUARD_OP_RENAMEAT2:
		return "renameat2";
	case GUARD_OP_UNLINK:
		return "unlink";
	case GUARD_OP_UNLINKAT:
		return "unlinkat";
	case GUARD_OP_RMDIR:
		return "rmdir";
	case GUARD_OP_FALLOCATE:
		return "fallocate";
	case GUARD_OP_COPY_FILE_RANGE:
		return "copy_file_range";
	case GUARD_OP_SENDFILE:
		return "sendfile";
	case GUARD_OP_SPLICE:
		return "splice";
	case GUARD_OP_MMAP:
		return "mmap";
	case GUARD_OP_MPROTECT:
		return "mprotect";
	case GUARD_OP_FICLONE:
		return "ficlone";
	case GUARD_OP_LINK:
		return "link";
	case GUARD_OP_LINKAT:
		return "linkat";
	case GUARD_OP_SYMLINK:
		return "symlink";
	case GUARD_OP_SYMLINKAT:
		return "symlinkat";
	case GUARD_OP_MKDIR:
		return "mkdir";
	case GUARD_OP_MKDIRAT:
		return "mkdirat";
	case GUARD_OP_MKNOD:
		return "mknod";
	case GUARD_OP_MKNODAT:
		return "mknodat";
	case GUARD_OP_IO_URING_WRITE:
		return "io_uring_write";
	case GUARD_OP_IO_URING_WRITEV:
		return "io_uring_writev";
	case GUARD_OP_IO_URING_WRITE_FIXED:
		return "io_uring_write_fixed";
	case GUARD_OP_IO_URING_WRITEV_FIXED:
		return "io_uring_writev_fixed";
	case GUARD_OP_IO_URING_FALLOCATE:
		return "io_uring_fallocate";
	case GUARD_OP_IO_URING_FTRUNCATE:
		return "io_uring_ftruncate";
	case GUARD_OP_IO_URING_SPLICE:
		return "io_uring_splice";
	case GUARD_OP_IO_URING_OPENAT:
		return "io_uring_openat";
	case GUARD_OP_IO_URING_OPENAT2:
		return "io_uring_openat2";
	case GUARD_OP_IO_URING_RENAMEAT:
		return "io_uring_renameat";
	case GUARD_OP_IO_URING_UNLINKAT:
		return "io_uring_unlinkat";
	case GUARD_OP_IO_URING_MKDIRAT:
		return "io_uring_mkdirat";
	case GUARD_OP_IO_URING_SYMLINKAT:
		return "io_uring_symlinkat";
	case GUARD_OP_IO_URING_LINKAT:
		return "io_uring_linkat";
	case GUARD_OP_MMAP_STORE:
		return "mmap_store";
	}
	return "unknown";
}
#endif

#endif /* BUMBA_GUARD_H */
