// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * guard.bpf.c - the kernel half of the bumba guard: report every write-like
 * operation on a file under a managed root, by any process but bumbad.
 *
 * Only tracepoints are used (fentry/fexit, kprobes and BPF LSM do not load
 * on the kernels bumba targets):
 *
 *   tp_btf/sys_enter   write, pwrite64, writev, pwritev(2), ftruncate,
 *                      fallocate, copy_file_range/sendfile/splice (output
 *                      fd), ioctl FICLONE/FICLONERANGE, mmap with
 *                      PROT_WRITE|MAP_SHARED, mprotect adding PROT_WRITE to
 *                      a shared file mapping: judged at entry, by fd, from
 *                      the struct file the fd refers to.
 *   tp_btf/sys_exit    open, openat, openat2, creat, open_by_handle_at for
 *                      writing or with O_CREAT/O_TRUNC: judged from the
 *                      returned fd.  truncate, rename*, unlink*, rmdir,
 *                      link*, symlink*, mkdir*, mknod*: reported when they
 *                      succeeded, with the path strings (read at exit) and
 *                      the directory they are relative to; user space
 *                      finishes resolving them.
 *   tp_btf/io_uring_submit_req   io_uring writes, fallocate, ftruncate,
 *                      splice (normal and fixed files), renameat, unlinkat,
 *                      mkdirat, symlinkat, linkat.
 *   tp_btf/io_uring_complete     io_uring openat/openat2, from the result.
 *   tp_btf/writeback_dirty_folio  the first store to a clean page of a
 *                      shared mapping, outside any syscall (mmap_store).
 *   tp_btf/sched_process_fork/exit   an agent's children are the agent.
 *
 * With guard.enforce the syscall hooks also note, in `opening`, which
 * threads are inside an open for writing, for bumbad's fanotify handler.
 *
 * The syscall hooks are the generic sys_enter/sys_exit raw tracepoints: one
 * program each, a switch on the syscall number first, so that a syscall we
 * do not care about costs a few instructions; 32-bit (ia32) syscalls come
 * through the same hooks and are mapped by their own numbers.
 *
 * A file is managed if its superblock is a root's and walking d_parent
 * from its dentry (at most GUARD_MAX_DEPTH steps) meets a root's dentry
 * (bumbad pins each root's dentry with an open descriptor and learns its
 * address, s_dev and i_ino with a marker call: never from stat()).  The walk cannot be fooled by bind mounts; it stays inside one
 * superblock, so a root must be on the filesystem of the files under it
 * (a filesystem mounted below a root is a separate root).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "guard.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set by bumbad before load. */
const volatile __u32 self_tgid = 0;
/* Read a descriptor's struct file with a plain load (6.15+ verifiers
 * allow it on untrusted memory) rather than bpf_probe_read_kernel: bumbad
 * retries with 0 if the kernel refuses. */
const volatile __u32 direct_fd = 1;
/* guard.enforce: note which threads are opening a file for writing, for
 * bumbad's fanotify permission handler (see opening). */
const volatile __u32 enforce = 0;

/* The marker call's answer (see GUARD_MARKER_POS). */
struct guard_learned learned = {};

/* The roots for the hot path (bumbad fills it with the roots map). */
struct guard_rootkeys rk = {};

/* When bumbad was last woken up: at most one wake-up per
 * GUARD_WAKE_NS, bumbad drains the rest on a short timer of its own. */
__u64 last_wake_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* bumbad may resize before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GUARD_MAX_ROOTS);
	__type(key, __u32);
	__type(value, struct guard_root);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} roots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* tgid */
	__type(value, struct guard_agent);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} agents SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct guard_vkey);
	__type(value, struct guard_vval);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} violations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

/* Enforcement: thread id -> open flags, from sys_enter to sys_exit of an
 * open for writing.  fanotify's FAN_OPEN_PERM says who opens what, not
 * how: bumbad looks the thread up here. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} opening SEC(".maps");

/* An event is built here, then copied into the ring buffer with its real
 * length.  Room past GUARD_DATA_MAX for one more name, so that bounds the
 * verifier can prove are simple. */
#define SCRATCH_SIZE (sizeof(struct guard_event) + GUARD_DATA_MAX + GUARD_NAME_MAX + 64)
struct pend {
	__u64 task;   /* task_struct charged */
	__u64 file;   /* struct file to judge */
	__u64 dentry; /* dentry to walk from */
	__u32 op, flags;
	__s32 fd;
	__s64 ret;
	__s64 dfd[2];
	__u64 str[2]; /* path strings */
	__u32 user;   /* strings are in user memory */
	__u32 used;   /* data bytes taken by the paths so far */
};

struct scratch {
	struct pend pend;
	char buf[SCRATCH_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* Read-only view of a kernel object from a plain address (6.2+). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define CAST(type, p) ((type *)bpf_rdonly_cast((void *)(p), bpf_core_type_id_kernel(type)))

#define AT_FDCWD		-100
#define AT_REMOVEDIR		0x200
#define O_ACCMODE		00000003
#define O_WRONLY		00000001
#define O_RDWR			00000002
#define O_CREAT			00000100
#define O_TRUNC			00001000
#define O_PATH			010000000
#define FMODE_WRITE		0x2
#define PROT_WRITE		0x2
#define MAP_TYPE		0x0f
#define MAP_SHARED		0x01
#define MAP_SHARED_VALIDATE	0x03
#define VM_WRITE		0x2
#define VM_SHARED		0x8
#define TS_COMPAT		0x0002
#define FICLONE			0x40049409u
#define FICLONERANGE		0x4020940du
#define REQ_F_FIXED_FILE	1ull /* = IOSQE_FIXED_FILE, bit 0 */
#define FFS_MASK		(~3ul)
#define IORING_FILE_INDEX_ALLOC (~0u)

static __always_inline struct guard_stats *st(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

#define STAT_INC(field)                                                                            \
	do {                                                                                       \
		struct guard_stats *s_ = st();                                                     \
		if (s_)                                                                            \
			s_->field++;                                                               \
	} while (0)

static __always_inline struct scratch *scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

/*
 * The heavy lifting (the root walk, collecting names, reading path
 * strings) is done by global subprograms, which the verifier checks once
 * each instead of once per call site and loop state.  They take scalars
 * only; kernel pointers are passed through the per-CPU pending record
 * (a pointer stored in a map value reads back as a plain address, which
 * bpf_rdonly_cast turns into a read-only typed pointer again).
 */

/* Who is charged, and with what: set by the hooks, read by the emitters. */
static __always_inline struct pend *pend_start(struct scratch *sc, struct task_struct *task,
					       __u32 op, __u32 flags, long fd, long ret)
{
	struct pend *p = &sc->pend;

	/* Who it is (tgid, pid, uid) is only read from the task once the
	 * file turned out to be managed: see header(). */
	p->task = (__u64)task;
	p->op = op;
	p->flags = flags;
	p->fd = (__s32)fd;
	p->ret = ret;
	return p;
}

/* ---------------------------------------------------------------------
 * Files and the root walk
 * ------------------------------------------------------------------- */

/* The struct file behind fd in task's table, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **arr;
	struct file *f = NULL;

	if (fd < 0)
		return NULL;
	files = task->files;
	if (!files)
		return NULL;
	fdt = files->fdt;
	if (!fdt || (unsigned long)fd >= fdt->max_fds)
		return NULL;
	arr = fdt->fd;
	if (direct_fd)
		f = ((struct file **)bpf_rdonly_cast(arr, 0))[fd];
	else if (bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]))
		return NULL;
	if (!f)
		return NULL;
	return CAST(struct file, f);
}

/* A file registered with an io_uring (fixed file) by its index. */
static __always_inline struct file *fixed_file(struct io_ring_ctx *ctx, __u32 idx)
{
	struct io_rsrc_node **nodes;
	struct io_rsrc_node *node = NULL;
	unsigned long ptr;

	if (!ctx || !bpf_core_field_exists(ctx->file_table.data.nodes))
		return NULL; /* older layouts: not covered, see docs/audit.md */
	if (idx >= ctx->file_table.data.nr)
		return NULL;
	nodes = ctx->file_table.data.nodes;
	if (bpf_probe_read_kernel(&node, sizeof(node), &nodes[idx]) || !node)
		return NULL;
	node = CAST(struct io_rsrc_node, node);
	ptr = node->file_ptr & FFS_MASK;
	if (!ptr)
		return NULL;
	return CAST(struct file, ptr);
}

/* 1 if a root lives on superblock dev (read before anything else: most
 * writes are to files on other filesystems, or on none of ours). */
static __always_inline int dev_watched(__u32 dev)
{
	__u32 n = rk.n;

	for (__u32 i = 0; i < GUARD_MAX_ROOTS; i++) {
		if (i >= n)
			break;
		if (rk.dev[i] == dev)
			return 1;
	}
	return 0;
}

/* Walks up from pend->dentry.  Returns depth << 8 | root index (depth 0:
 * the dentry is the root), or -1 if it is under no root.  Roots are known
 * by their dentries, which bumbad pins by keeping them open: one load and
 * a few compares per step. */
__noinline int find_root_g(__u32 dev)
{
	struct scratch *sc = scratch_get();
	struct dentry *d;
	__u32 n = rk.n;

	if (!sc || !sc->pend.dentry || !dev_watched(dev))
		return -1;
	d = CAST(struct dentry, sc->pend.dentry);
	for (int depth = 0; depth < GUARD_MAX_DEPTH; depth++) {
		struct dentry *parent;

		for (__u32 i = 0; i < GUARD_MAX_ROOTS; i++) {
			if (i >= n)
				break;
			if ((__u64)d == rk.dentry[i])
				return depth << 8 | (int)i;
		}
		parent = d->d_parent;
		if (!parent || parent == d)
			return -1;
		d = parent;
	}
	STAT_INC(too_deep);
	return -1;
}

/* Writes the names of `depth` dentries from pend->dentry upwards at
 * data + off (leaf first, each NUL-terminated).  Returns the bytes written,
 * | 0x10000 if they were cut. */
__noinline int names_g(int depth, int off_)
{
	struct scratch *sc = scratch_get();
	struct guard_event *e;
	struct dentry *d;
	__u64 off = (__u32)off_, n = 0;
	char *out;

	if (!sc || !sc->pend.dentry)
		return 0;
	if (off > GUARD_DATA_MAX - GUARD_COMP_MAX)
		return 0;
	barrier_var(off);
	e = (struct guard_event *)sc->buf;
	out = e->data + off;
	d = CAST(struct dentry, sc->pend.dentry);
	for (int i = 0; i < GUARD_MAX_DEPTH; i++) {
		const unsigned char *name;
		long r;

		if (i >= depth)
			break;
		if (n > GUARD_COMP_MAX - GUARD_NAME_MAX) {
			STAT_INC(comps_trunc);
			return (int)n | 0x10000;
		}
		barrier_var(n);
		name = d->d_name.name;
		r = bpf_probe_read_kernel_str(out + n, GUARD_NAME_MAX, name);
		if (r <= 0 || r > GUARD_NAME_MAX) {
			out[n] = '?';
			out[n + 1] = '\0';
			r = 2;
		}
		n += (__u64)r;
		d = d->d_parent;
	}
	return (int)n;
}

/* Fills the event header from the pending record. */
static __always_inline void header(struct guard_event *e, const struct pend *p)
{
	struct task_struct *t = CAST(struct task_struct, p->task);
	struct guard_agent *a;
	__u32 tgid = t->tgid;

	e->ts_ns = bpf_ktime_get_ns();
	e->tgid = tgid;
	e->pid = t->pid;
	e->uid = t->cred->uid.val;
	e->op = p->op;
	e->flags = p->flags;
	e->fd = p->fd;
	e->ret = p->ret;
	e->layout = GUARD_LAYOUT_FILE;
	a = bpf_map_lookup_elem(&agents, &tgid);
	if (a) {
		e->slot = a->slot;
		e->gen = a->gen;
	} else {
		e->slot = GUARD_NO_SLOT;
		e->gen = 0;
	}
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), t->comm);
	__builtin_memset(&e->p, 0, sizeof(e->p));
}

static __always_inline void submit(struct guard_event *e, __u64 len)
{
	struct guard_stats *s = st();
	__u64 size;

	if (len > GUARD_DATA_MAX)
		len = GUARD_DATA_MAX;
	barrier_var(len);
	size = sizeof(*e) + len;
	/* A lone event wakes bumbad at once; in a flood, one wake-up per
	 * GUARD_WAKE_NS carries many events (a wake-up costs the writer an
	 * irq_work and bumbad a context switch per event otherwise). */
	__u64 now = e->ts_ns, flags = BPF_RB_NO_WAKEUP;
	if (now - last_wake_ns >= GUARD_WAKE_NS) {
		last_wake_ns = now;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, e, size, flags) == 0) {
		if (s)
			s->events++;
	} else if (s) {
		s->drops++;
		s->drop_bytes += size;
	}
}

/* Reports the pending operation on pend->dentry (an inode of dev) if it
 * is under a root. */
__noinline int emit_node_g(__u32 dev)
{
	struct scratch *sc = scratch_get();
	struct guard_event *e;
	struct dentry *d;
	struct inode *inode;
	int r, depth, n;

	if (!sc || !sc->pend.dentry)
		return 0;
	d = CAST(struct dentry, sc->pend.dentry);
	inode = d->d_inode;
	if (!inode)
		return 0;
	r = find_root_g(dev);
	if (r < 0)
		return 0;
	depth = r >> 8;
	if (depth <= 0) /* the root directory itself */
		return 0;
	if (inode->i_nlink == 0) /* deleted: no longer part of the tree */
		return 0;
	e = (struct guard_event *)sc->buf;
	header(e, &sc->pend);
	e->p[0].kind = GUARD_PATH_FILE;
	e->p[0].root = (__u8)(r & 0xff);
	e->p[0].dev = dev;
	e->p[0].ino = inode->i_ino;
	e->p[0].dfd = -1;
	n = names_g(depth, 0);
	if (n & 0x10000)
		e->p[0].flags |= GUARD_PF_COMPS_TRUNC;
	n &= 0xffff;
	e->p[0].comps_len = (__u16)n;
	submit(e, (__u64)n);
	return 1;
}

/* Reports the pending operation on pend->file if it is under a root. */
__noinline int emit_file_g(void)
{
	struct scratch *sc = scratch_get();
	struct inode *inode;
	struct dentry *d;
	struct file *f;

	if (!sc || !sc->pend.file)
		return 0;
	f = CAST(struct file, sc->pend.file);
	inode = f->f_inode;
	d = f->f_path.dentry;
	if (!inode || !d)
		return 0;
	sc->pend.dentry = (__u64)d;
	return emit_node_g(inode->i_sb->s_dev);
}

/* 1 if walking up from d reaches the top of its filesystem without
 * meeting a root: the common case of a write on a root's filesystem but
 * outside it, decided here, inline, before any call.  0: under a root,
 * or too deep to tell (the full walk decides). */
static __always_inline int outside_roots(struct dentry *d)
{
	__u64 r0 = rk.dentry[0], r1 = rk.dentry[1];
	__u32 n = rk.n;

	if (!d || n > 2) /* more roots than we compare here */
		return 0;
	for (int depth = 0; depth < GUARD_MAX_DEPTH; depth++) {
		struct dentry *parent;

		if ((__u64)d == r0 || (n > 1 && (__u64)d == r1))
			return 0;
		parent = d->d_parent;
		if (!parent || parent == d)
			return 1;
		d = parent;
	}
	return 0;
}

/* The hooks' entry point for a file operation. */
static __always_inline int emit_file(struct task_struct *task, __u32 op, struct file *f, long fd,
				     __u32 flags, long ret)
{
	struct scratch *sc;

	if (!f)
		return 0;
	if (!f->f_inode || !dev_watched(f->f_inode->i_sb->s_dev))
		return 0;
	if (outside_roots(f->f_path.dentry))
		return 0;
	sc = scratch_get();
	if (!sc)
		return 0;
	pend_start(sc, task, op, flags, fd, ret);
	sc->pend.file = (__u64)f;
	return emit_file_g();
}

/* ---------------------------------------------------------------------
 * Path strings (rename, unlink, ...): one path of an event
 * ------------------------------------------------------------------- */

/* Index of the root whose path is a prefix of the string at s (n bytes,
 * NUL included) on a component boundary, or -1.  Compared eight bytes at
 * a time, the tail of the root's last word masked (bumbad fills nwords and
 * last_mask); no test on the data inside the loops, so that the verifier
 * has few states to follow. */
static __always_inline int root_of_string(const char *s, long n)
{
#pragma unroll
	for (__u32 i = 0; i < GUARD_MAX_ROOTS; i++) {
		__u32 k = i, nw, L;
		struct guard_root *r = bpf_map_lookup_elem(&roots, &k);
		const __u64 *rw;
		__u64 diff = 0;
		char c;

		if (!r || !r->ino)
			continue;
		L = r->path_len;
		nw = r->nwords;
		if (L < 2 || L >= GUARD_ROOT_PATH_MAX || L + 1 > (__u64)n || nw == 0 || nw > 32)
			continue;
		rw = (const __u64 *)r->path;
		for (__u32 w = 0; w < 31; w++) {
			if (w + 1 >= nw)
				break;
			diff |= *(const __u64 *)(s + w * 8) ^ rw[w];
		}
		nw = (nw - 1) & 31;
		diff |= (*(const __u64 *)(s + nw * 8) ^ rw[nw]) & r->last_mask;
		c = s[L & (GUARD_ROOT_PATH_MAX - 1)];
		if (diff == 0 && (c == '/' || c == '\0'))
			return (int)i;
	}
	return -1;
}

/* 1 if the string at s (n bytes) may contain "..": eight bytes at a time
 * (a false positive only costs an event that user space drops). */
static __always_inline int has_dotdot(const char *s, long n)
{
	__u64 prev = 0;

	for (int k = 0; k < GUARD_STR_MAX / 8; k++) {
		__u64 w, x, z;

		if (k * 8 >= n)
			break;
		w = *(const __u64 *)(s + k * 8);
		x = w ^ 0x2e2e2e2e2e2e2e2eull; /* '.' -> 0 */
		z = (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
		if ((z & (z >> 8)) || (prev && (z & 0x80)))
			return 1;
		prev = z >> 63;
	}
	return 0;
}

/* Describes path `which` (0 or 1) of the pending record: reads its string
 * at data + pend.used, then the base directory's names after it.  Returns
 * the bytes used, 0 if the path is surely outside every root. */
__noinline int path_desc_g(int which)
{
	struct scratch *sc = scratch_get();
	struct guard_event *e;
	struct guard_path *p;
	struct task_struct *t;
	struct dentry *base;
	const void *str;
	char *out;
	long n, dfd;
	__u64 off;
	__u32 dev;
	int r, c;

	if (!sc || which < 0 || which > 1)
		return 0;
	off = sc->pend.used;
	if (off > GUARD_STR_MAX + GUARD_COMP_MAX)
		return 0;
	barrier_var(off);
	e = (struct guard_event *)sc->buf;
	out = e->data + off;
	if (which) {
		p = &e->p[1];
		str = (const void *)sc->pend.str[1];
		dfd = sc->pend.dfd[1];
	} else {
		p = &e->p[0];
		str = (const void *)sc->pend.str[0];
		dfd = sc->pend.dfd[0];
	}
	if (!str)
		return 0;
	if (sc->pend.user)
		n = bpf_probe_read_user_str(out, GUARD_STR_MAX, str);
	else
		n = bpf_probe_read_kernel_str(out, GUARD_STR_MAX, str);
	if (n <= 1 || n > GUARD_STR_MAX)
		return 0;
	if (n == GUARD_STR_MAX)
		p->flags |= GUARD_PF_STR_TRUNC;
	p->dfd = (__s32)dfd;
	p->root = GUARD_NO_ROOT;

	if (out[0] == '/') {
		r = root_of_string(out, n);
		if (r < 0)
			return 0;
		p->kind = GUARD_PATH_ABS;
		p->root = (__u8)r;
		p->str_len = (__u16)n;
		return (int)n;
	}

	/* Relative: to the working directory or to dfd. */
	t = CAST(struct task_struct, sc->pend.task);
	if ((int)dfd == AT_FDCWD) {
		base = t->fs->pwd.dentry;
		p->flags |= GUARD_PF_CWD;
	} else {
		struct file *f = fd_file(t, (int)dfd);
		if (!f)
			return 0;
		base = f->f_path.dentry;
	}
	if (!base || !base->d_inode)
		return 0;
	dev = base->d_sb->s_dev;
	p->dev = dev;
	p->ino = base->d_inode->i_ino;
	p->str_len = (__u16)n;
	sc->pend.dentry = (__u64)base;
	r = find_root_g(dev);
	if (r < 0) {
		/* Outside every root: only a ".." can lead back in; user
		 * space resolves it against the directory. */
		if (!has_dotdot(out, n))
			return 0;
		p->kind = GUARD_PATH_OUTSIDE;
		return (int)n;
	}
	p->kind = GUARD_PATH_BASE;
	p->root = (__u8)(r & 0xff);
	c = names_g(r >> 8, (int)(off + n));
	if (c & 0x10000)
		p->flags |= GUARD_PF_COMPS_TRUNC;
	c &= 0xffff;
	p->comps_len = (__u16)c;
	return (int)n + c;
}

/* Reports the pending path operation if one of its paths may be managed. */
__noinline int emit_paths_g(void)
{
	struct scratch *sc = scratch_get();
	struct guard_event *e;
	int u0, u1 = 0;

	if (!sc)
		return 0;
	e = (struct guard_event *)sc->buf;
	header(e, &sc->pend);
	e->layout = GUARD_LAYOUT_PATHS;
	sc->pend.used = 0;
	u0 = path_desc_g(0);
	if (u0 < 0 || u0 > GUARD_STR_MAX + GUARD_COMP_MAX)
		return 0;
	sc->pend.used = (__u32)u0;
	if (sc->pend.str[1])
		u1 = path_desc_g(1);
	if (u1 < 0 || u1 > GUARD_STR_MAX + GUARD_COMP_MAX)
		return 0;
	if (e->p[0].kind == GUARD_PATH_NONE && e->p[1].kind == GUARD_PATH_NONE)
		return 0;
	submit(e, (__u64)(u0 + u1));
	return 1;
}

/* The hooks' entry point for a path operation (s1 may be NULL). */
static __always_inline int emit_paths(struct task_struct *task, __u32 op, __u32 flags, long ret,
				      long dfd0, const void *s0, long dfd1, const void *s1,
				      int user)
{
	struct scratch *sc = scratch_get();

	if (!sc)
		return 0;
	pend_start(sc, task, op, flags, -1, ret);
	sc->pend.dfd[0] = dfd0;
	sc->pend.str[0] = (__u64)s0;
	sc->pend.dfd[1] = dfd1;
	sc->pend.str[1] = (__u64)s1;
	sc->pend.user = user;
	return emit_paths_g();
}

/* ---------------------------------------------------------------------
 * System calls
 * ------------------------------------------------------------------- */

enum sc {
	SC_NONE = 0,
	/* at entry, by fd */
	SC_WRITE,
	SC_PWRITE64,
	SC_WRITEV,
	SC_PWRITEV,
	SC_PWRITEV2,
	SC_FTRUNCATE,
	SC_FALLOCATE,
	SC_COPY_FILE_RANGE,
	SC_SENDFILE,
	SC_SPLICE,
	SC_MMAP,
	SC_MPROTECT,
	SC_IOCTL,
	/* at exit */
	SC_OPEN,
	SC_OPENAT,
	SC_OPENAT2,
	SC_CREAT,
	SC_OPEN_BY_HANDLE_AT,
	SC_TRUNCATE,
	SC_RENAME,
	SC_RENAMEAT,
	SC_RENAMEAT2,
	SC_UNLINK,
	SC_UNLINKAT,
	SC_RMDIR,
	SC_LINK,
	SC_LINKAT,
	SC_SYMLINK,
	SC_SYMLINKAT,
	SC_MKDIR,
	SC_MKDIRAT,
	SC_MKNOD,
	SC_MKNODAT,
};

static __always_inline int sc_of(long id, int compat)
{
	if (!compat) {
		switch (id) {
		case 1:
			return SC_WRITE;
		case 18:
			return SC_PWRITE64;
		case 20:
			return SC_WRITEV;
		case 296:
			return SC_PWRITEV;
		case 328:
			return SC_PWRITEV2;
		case 77:
			return SC_FTRUNCATE;
		case 285:
			return SC_FALLOCATE;
		case 326:
			return SC_COPY_FILE_RANGE;
		case 40:
			return SC_SENDFILE;
		case 275:
			return SC_SPLICE;
		case 9:
			return SC_MMAP;
		case 10:
			return SC_MPROTECT;
		case 16:
			return SC_IOCTL;
		case 2:
			return SC_OPEN;
		case 257:
			return SC_OPENAT;
		case 437:
			return SC_OPENAT2;
		case 85:
			return SC_CREAT;
		case 304:
			return SC_OPEN_BY_HANDLE_AT;
		case 76:
			return SC_TRUNCATE;
		case 82:
			return SC_RENAME;
		case 264:
			return SC_RENAMEAT;
		case 316:
			return SC_RENAMEAT2;
		case 87:
			return SC_UNLINK;
		case 263:
			return SC_UNLINKAT;
		case 84:
			return SC_RMDIR;
		case 86:
			return SC_LINK;
		case 265:
			return SC_LINKAT;
		case 88:
			return SC_SYMLINK;
		case 266:
			return SC_SYMLINKAT;
		case 83:
			return SC_MKDIR;
		case 258:
			return SC_MKDIRAT;
		case 133:
			return SC_MKNOD;
		case 259:
			return SC_MKNODAT;
		}
		return SC_NONE;
	}
	switch (id) { /* ia32 */
	case 4:
		return SC_WRITE;
	case 181:
		return SC_PWRITE64;
	case 146:
		return SC_WRITEV;
	case 334:
		return SC_PWRITEV;
	case 379:
		return SC_PWRITEV2;
	case 93:
	case 194:
		return SC_FTRUNCATE;
	case 324:
		return SC_FALLOCATE;
	case 377:
		return SC_COPY_FILE_RANGE;
	case 187:
	case 239:
		return SC_SENDFILE;
	case 313:
		return SC_SPLICE;
	case 192:
		return SC_MMAP; /* mmap2 */
	case 125:
		return SC_MPROTECT;
	case 54:
		return SC_IOCTL;
	case 5:
		return SC_OPEN;
	case 295:
		return SC_OPENAT;
	case 437:
		return SC_OPENAT2;
	case 8:
		return SC_CREAT;
	case 342:
		return SC_OPEN_BY_HANDLE_AT;
	case 92:
	case 193:
		return SC_TRUNCATE;
	case 38:
		return SC_RENAME;
	case 302:
		return SC_RENAMEAT;
	case 353:
		return SC_RENAMEAT2;
	case 10:
		return SC_UNLINK;
	case 301:
		return SC_UNLINKAT;
	case 40:
		return SC_RMDIR;
	case 9:
		return SC_LINK;
	case 303:
		return SC_LINKAT;
	case 83:
		return SC_SYMLINK;
	case 304:
		return SC_SYMLINKAT;
	case 39:
		return SC_MKDIR;
	case 296:
		return SC_MKDIRAT;
	case 14:
		return SC_MKNOD;
	case 297:
		return SC_MKNODAT;
	}
	return SC_NONE;
}

static __always_inline int is_compat(struct task_struct *t)
{
	if (!bpf_core_field_exists(t->thread_info.status))
		return 0;
	return (t->thread_info.status & TS_COMPAT) != 0;
}

struct args {
	unsigned long a[6];
};

static __always_inline void get_args(struct pt_regs *r, int compat, struct args *x)
{
	if (compat) {
		x->a[0] = (__u32)r->bx;
		x->a[1] = (__u32)r->cx;
		x->a[2] = (__u32)r->dx;
		x->a[3] = (__u32)r->si;
		x->a[4] = (__u32)r->di;
		x->a[5] = (__u32)r->bp;
	} else {
		x->a[0] = r->di;
		x->a[1] = r->si;
		x->a[2] = r->dx;
		x->a[3] = r->r10;
		x->a[4] = r->r8;
		x->a[5] = r->r9;
	}
}

/* The marker: bumbad asks for the kernel key of one of its descriptors. */
static __always_inline void marker(struct task_struct *t, struct args *x)
{
	struct file *f;
	struct inode *inode;

	if (x->a[2] != 0 || x->a[3] != GUARD_MARKER_POS)
		return;
	f = fd_file(t, (long)x->a[0]);
	if (!f)
		return;
	inode = f->f_inode;
	if (!inode)
		return;
	learned.dev = inode->i_sb->s_dev;
	learned.ino = inode->i_ino;
	learned.dentry = (__u64)f->f_path.dentry;
	__sync_fetch_and_add(&learned.seq, 1);
	STAT_INC(marker);
}

/* Writes are only possible through a descriptor open for writing. */
static __always_inline struct file *writable(struct task_struct *t, long fd)
{
	struct file *f = fd_file(t, fd);

	if (!f || !(f->f_mode & FMODE_WRITE))
		return NULL;
	return f;
}

struct vma_ctx {
	struct file *file;
	__u32 prot;
};

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_ctx *c = data;
	unsigned long fl = vma->vm_flags;

	if ((fl & VM_SHARED) && !(fl & VM_WRITE) && vma->vm_file)
		c->file = vma->vm_file;
	return 0;
}

static __always_inline int open_for_write(__u64 flags)
{
	if (flags & O_PATH)
		return 0;
	return (flags & O_ACCMODE) != 0 || (flags & (O_CREAT | O_TRUNC)) != 0;
}

/* The open flags of syscall sc from its arguments; 0 if unreadable. */
static __always_inline __u64 open_flags(int sc, const struct args *x)
{
	struct open_how how = {};

	switch (sc) {
	case SC_OPEN:
		return x->a[1];
	case SC_OPENAT:
	case SC_OPEN_BY_HANDLE_AT:
		return x->a[2];
	case SC_CREAT:
		return O_CREAT | O_WRONLY | O_TRUNC;
	case SC_OPENAT2:
		if (bpf_probe_read_user(&how, sizeof(how.flags), (void *)x->a[2]))
			return 0;
		return how.flags;
	}
	return 0;
}

static __always_inline void note_open(struct task_struct *t, struct pt_regs *regs, int compat,
				      int sc)
{
	struct args x;
	__u32 tid, fl;
	__u64 flags;

	if (t->tgid == self_tgid)
		return;
	get_args(regs, compat, &x);
	flags = open_flags(sc, &x);
	if (!open_for_write(flags))
		return;
	tid = t->pid;
	fl = (__u32)flags;
	bpf_map_update_elem(&opening, &tid, &fl, BPF_ANY);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(guard_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *t = bpf_get_current_task_btf();
	int compat = is_compat(t);
	int sc = sc_of(id, compat);
	struct args x;
	__u32 op = 0, flags = 0;
	long fd;

	if (sc == SC_NONE)
		return 0;
	if (sc >= SC_OPEN) {
		if (enforce && sc <= SC_OPEN_BY_HANDLE_AT)
			note_open(t, regs, compat, sc);
		return 0;
	}
	get_args(regs, compat, &x);
	if (t->tgid == self_tgid) {
		if (sc == SC_PWRITE64)
			marker(t, &x);
		return 0;
	}
	fd = (long)(int)x.a[0];
	switch (sc) {
	case SC_WRITE:
		op = GUARD_OP_WRITE;
		break;
	case SC_PWRITE64:
		op = GUARD_OP_PWRITE64;
		break;
	case SC_WRITEV:
		op = GUARD_OP_WRITEV;
		break;
	case SC_PWRITEV:
		op = GUARD_OP_PWRITEV;
		break;
	case SC_PWRITEV2:
		op = GUARD_OP_PWRITEV2;
		break;
	case SC_FTRUNCATE:
		op = GUARD_OP_FTRUNCATE;
		break;
	case SC_FALLOCATE:
		op = GUARD_OP_FALLOCATE;
		flags = (__u32)x.a[1];
		break;
	case SC_SENDFILE:
		op = GUARD_OP_SENDFILE;
		break;
	case SC_COPY_FILE_RANGE:
		op = GUARD_OP_COPY_FILE_RANGE;
		fd = (long)(int)x.a[2];
		break;
	case SC_SPLICE:
		op = GUARD_OP_SPLICE;
		fd = (long)(int)x.a[2];
		break;
	case SC_IOCTL:
		if ((__u32)x.a[1] != FICLONE && (__u32)x.a[1] != FICLONERANGE)
			return 0;
		op = GUARD_OP_FICLONE;
		flags = (__u32)x.a[1];
		break;
	case SC_MMAP: {
		__u32 prot = (__u32)x.a[2], mfl = (__u32)x.a[3];
		if (!(prot & PROT_WRITE) ||
		    ((mfl & MAP_TYPE) != MAP_SHARED && (mfl & MAP_TYPE) != MAP_SHARED_VALIDATE))
			return 0;
		op = GUARD_OP_MMAP;
		flags = prot << 16 | (mfl & 0xffff);
		fd = (long)(int)x.a[4];
		break;
	}
	case SC_MPROTECT: {
		struct vma_ctx c = {};
		if (!(x.a[2] & PROT_WRITE))
			return 0;
		c.prot = (__u32)x.a[2];
		bpf_find_vma(t, x.a[0], vma_cb, &c, 0);
		if (!c.file)
			return 0;
		emit_file(t, GUARD_OP_MPROTECT, CAST(struct file, c.file), -1, c.prot, 0);
		return 0;
	}
	default:
		return 0;
	}
	emit_file(t, op, writable(t, fd), fd, flags, 0);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(guard_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *t;
	int compat, sc;
	struct args x;
	__u64 oflags;
	__u32 op;

	t = bpf_get_current_task_btf();
	compat = is_compat(t);
	sc = sc_of(regs->orig_ax, compat);
	if (sc < SC_OPEN)
		return 0;
	if (enforce && sc <= SC_OPEN_BY_HANDLE_AT) {
		__u32 tid = t->pid;
		bpf_map_delete_elem(&opening, &tid);
	}
	if (ret < 0)
		return 0;
	if (t->tgid == self_tgid)
		return 0;
	get_args(regs, compat, &x);

	switch (sc) {
	case SC_OPEN:
		op = GUARD_OP_OPEN;
		break;
	case SC_OPENAT:
		op = GUARD_OP_OPENAT;
		break;
	case SC_CREAT:
		op = GUARD_OP_CREAT;
		break;
	case SC_OPEN_BY_HANDLE_AT:
		op = GUARD_OP_OPEN_BY_HANDLE_AT;
		break;
	case SC_OPENAT2:
		op = GUARD_OP_OPENAT2;
		break;
	case SC_TRUNCATE:
		emit_paths(t, GUARD_OP_TRUNCATE, 0, ret, AT_FDCWD, (void *)x.a[0], 0, NULL, 1);
		return 0;
	case SC_RENAME:
		emit_paths(t, GUARD_OP_RENAME, 0, ret, AT_FDCWD, (void *)x.a[0], AT_FDCWD,
			   (void *)x.a[1], 1);
		return 0;
	case SC_RENAMEAT:
	case SC_RENAMEAT2:
		emit_paths(t, sc == SC_RENAMEAT ? GUARD_OP_RENAMEAT : GUARD_OP_RENAMEAT2,
			   sc == SC_RENAMEAT2 ? (__u32)x.a[4] : 0, ret, (int)x.a[0], (void *)x.a[1],
			   (int)x.a[2], (void *)x.a[3], 1);
		return 0;
	case SC_UNLINK:
		emit_paths(t, GUARD_OP_UNLINK, 0, ret, AT_FDCWD, (void *)x.a[0], 0, NULL, 1);
		return 0;
	case SC_RMDIR:
		emit_paths(t, GUARD_OP_RMDIR, 0, ret, AT_FDCWD, (void *)x.a[0], 0, NULL, 1);
		return 0;
	case SC_UNLINKAT:
		emit_paths(t, GUARD_OP_UNLINKAT, (__u32)x.a[2], ret, (int)x.a[0], (void *)x.a[1], 0,
			   NULL, 1);
		return 0;
	case SC_LINK:
		emit_paths(t, GUARD_OP_LINK, 0, ret, AT_FDCWD, (void *)x.a[0], AT_FDCWD,
			   (void *)x.a[1], 1);
		return 0;
	case SC_LINKAT:
		emit_paths(t, GUARD_OP_LINKAT, (__u32)x.a[4], ret, (int)x.a[0], (void *)x.a[1],
			   (int)x.a[2], (void *)x.a[3], 1);
		return 0;
	case SC_SYMLINK: /* the target is a string, not a file: only the new name counts */
		emit_paths(t, GUARD_OP_SYMLINK, 0, ret, AT_FDCWD, (void *)x.a[1], 0, NULL, 1);
		return 0;
	case SC_SYMLINKAT:
		emit_paths(t, GUARD_OP_SYMLINKAT, 0, ret, (int)x.a[1], (void *)x.a[2], 0, NULL, 1);
		return 0;
	case SC_MKDIR:
		emit_paths(t, GUARD_OP_MKDIR, 0, ret, AT_FDCWD, (void *)x.a[0], 0, NULL, 1);
		return 0;
	case SC_MKDIRAT:
		emit_paths(t, GUARD_OP_MKDIRAT, 0, ret, (int)x.a[0], (void *)x.a[1], 0, NULL, 1);
		return 0;
	case SC_MKNOD:
		emit_paths(t, GUARD_OP_MKNOD, 0, ret, AT_FDCWD, (void *)x.a[0], 0, NULL, 1);
		return 0;
	case SC_MKNODAT:
		emit_paths(t, GUARD_OP_MKNODAT, 0, ret, (int)x.a[0], (void *)x.a[1], 0, NULL, 1);
		return 0;
	default:
		return 0;
	}
	oflags = open_flags(sc, &x);
	if (!open_for_write(oflags))
		return 0;
	emit_file(t, op, fd_file(t, ret), ret, (__u32)oflags, ret);
	return 0;
}

/* ---------------------------------------------------------------------
 * io_uring
 * ------------------------------------------------------------------- */

#define UOP(name) bpf_core_enum_value(enum io_uring_op, name)

static __always_inline __u32 uring_fd_op(__u8 opc)
{
	if (opc == UOP(IORING_OP_WRITE))
		return GUARD_OP_IO_URING_WRITE;
	if (opc == UOP(IORING_OP_WRITEV))
		return GUARD_OP_IO_URING_WRITEV;
	if (opc == UOP(IORING_OP_WRITE_FIXED))
		return GUARD_OP_IO_URING_WRITE_FIXED;
	if (bpf_core_enum_value_exists(enum io_uring_op, IORING_OP_WRITEV_FIXED) &&
	    opc == UOP(IORING_OP_WRITEV_FIXED))
		return GUARD_OP_IO_URING_WRITEV_FIXED;
	if (opc == UOP(IORING_OP_FALLOCATE))
		return GUARD_OP_IO_URING_FALLOCATE;
	if (bpf_core_enum_value_exists(enum io_uring_op, IORING_OP_FTRUNCATE) &&
	    opc == UOP(IORING_OP_FTRUNCATE))
		return GUARD_OP_IO_URING_FTRUNCATE;
	if (opc == UOP(IORING_OP_SPLICE))
		return GUARD_OP_IO_URING_SPLICE;
	return 0;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(guard_uring_submit, struct io_kiocb *req)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u8 opc;
	__u32 op;

	if (t->tgid == self_tgid)
		return 0;
	opc = req->opcode;
	op = uring_fd_op(opc);
	if (op) {
		long fd = req->cqe.fd;
		struct file *f;

		if (req->flags & REQ_F_FIXED_FILE)
			f = fixed_file(req->ctx, (__u32)fd);
		else
			f = fd_file(t, fd);
		if (!f || !(f->f_mode & FMODE_WRITE))
			return 0;
		if (emit_file(t, op, f, fd, opc, 0))
			STAT_INC(uring);
		return 0;
	}
	/* Path operations: their names were copied into the kernel at prep. */
	if (opc == UOP(IORING_OP_RENAMEAT)) {
		struct io_rename *r = CAST(struct io_rename, req);
		if (emit_paths(t, GUARD_OP_IO_URING_RENAMEAT, r->flags, 0, r->old_dfd,
			       r->oldpath->name, r->new_dfd, r->newpath->name, 0))
			STAT_INC(uring);
	} else if (opc == UOP(IORING_OP_UNLINKAT)) {
		struct io_unlink *u = CAST(struct io_unlink, req);
		if (emit_paths(t, GUARD_OP_IO_URING_UNLINKAT, u->flags, 0, u->dfd,
			       u->filename->name, 0, NULL, 0))
			STAT_INC(uring);
	} else if (opc == UOP(IORING_OP_MKDIRAT)) {
		struct io_mkdir *m = CAST(struct io_mkdir, req);
		if (emit_paths(t, GUARD_OP_IO_URING_MKDIRAT, 0, 0, m->dfd, m->filename->name, 0,
			       NULL, 0))
			STAT_INC(uring);
	} else if (opc == UOP(IORING_OP_SYMLINKAT)) {
		struct io_link *l = CAST(struct io_link, req);
		if (emit_paths(t, GUARD_OP_IO_URING_SYMLINKAT, 0, 0, l->new_dfd, l->newpath->name,
			       0, NULL, 0))
			STAT_INC(uring);
	} else if (opc == UOP(IORING_OP_LINKAT)) {
		struct io_link *l = CAST(struct io_link, req);
		if (emit_paths(t, GUARD_OP_IO_URING_LINKAT, l->flags, 0, l->old_dfd,
			       l->oldpath->name, l->new_dfd, l->newpath->name, 0))
			STAT_INC(uring);
	}
	return 0;
}

/* Opens are judged by what they opened: at completion, from the result. */
SEC("tp_btf/io_uring_complete")
int BPF_PROG(guard_uring_complete, struct io_ring_ctx *rctx, void *reqp, struct io_uring_cqe *cqe)
{
	struct io_kiocb *req;
	struct io_open *o;
	struct task_struct *t;
	struct scratch *sc;
	struct file *f;
	__u8 opc;
	__u32 op, slot, tgid;
	__s32 res;
	__u64 oflags;

	if (!reqp || !cqe)
		return 0;
	req = CAST(struct io_kiocb, reqp);
	opc = req->opcode;
	if (opc == UOP(IORING_OP_OPENAT))
		op = GUARD_OP_IO_URING_OPENAT;
	else if (opc == UOP(IORING_OP_OPENAT2))
		op = GUARD_OP_IO_URING_OPENAT2;
	else
		return 0;
	res = cqe->res;
	if (res < 0)
		return 0;
	o = CAST(struct io_open, req);
	oflags = o->how.flags;
	if (!open_for_write(oflags))
		return 0;

	/* Charged to the ring's task (completions may run elsewhere). */
	t = bpf_get_current_task_btf();
	if (bpf_core_field_exists(req->tctx) && req->tctx && req->tctx->task)
		t = CAST(struct task_struct, req->tctx->task);
	tgid = t->tgid;
	if (tgid == self_tgid)
		return 0;

	slot = o->file_slot;
	if (slot)
		f = fixed_file(rctx, slot == IORING_FILE_INDEX_ALLOC ? (__u32)res : slot - 1);
	else
		f = fd_file(t, res);
	if (!f)
		return 0;
	sc = scratch_get();
	if (!sc)
		return 0;
	pend_start(sc, t, op, (__u32)oflags, slot ? -1 : res, res);
	sc->pend.file = (__u64)f;
	if (emit_file_g())
		STAT_INC(uring);
	return 0;
}

/* ---------------------------------------------------------------------
 * Stores through shared mappings
 * ------------------------------------------------------------------- */

#define PF_KTHREAD 0x00200000

/* A page of a file becomes dirty in the task that dirtied it.  Outside any
 * system call (orig_ax -1: a page fault from user space), that is a store
 * through a shared writable mapping, reported as mmap_store at the instant
 * of the first store to each clean page.  (Inside a write system call it
 * is the write itself, already reported.  tmpfs pages are never "dirtied"
 * this way: there the mmap call is the only event.) */
SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(guard_dirty, struct folio *folio, struct address_space *mapping)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct pt_regs *regs;
	struct inode *inode;
	struct hlist_node *alias;
	struct scratch *sc;
	__u32 dev;

	if ((t->flags & PF_KTHREAD) || t->tgid == self_tgid || !mapping)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs || (long)regs->orig_ax != -1)
		return 0;
	inode = mapping->host;
	if (!inode)
		return 0;
	dev = inode->i_sb->s_dev;
	if (!dev_watched(dev))
		return 0;
	alias = inode->i_dentry.first; /* a file has one dentry (hard links aside) */
	if (!alias)
		return 0;
	sc = scratch_get();
	if (!sc)
		return 0;
	pend_start(sc, t, GUARD_OP_MMAP_STORE, 0, -1, 0);
	sc->pend.dentry = (__u64)alias;
	sc->pend.dentry -= bpf_core_field_offset(struct dentry, d_u.d_alias);
	emit_node_g(dev);
	return 0;
}

/* ---------------------------------------------------------------------
 * Agents: a process tree is one agent
 * ------------------------------------------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(guard_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	struct guard_agent *a, n;

	if (ptgid == ctgid) /* a thread */
		return 0;
	a = bpf_map_lookup_elem(&agents, &ptgid);
	if (!a)
		return 0;
	n = *a;
	n.depth++;
	if (bpf_map_update_elem(&agents, &ctgid, &n, BPF_ANY))
		STAT_INC(agents_full);
	else
		STAT_INC(inherited);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(guard_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;

	if (p->signal->live.counter != 0) /* other threads go on */
		return 0;
	if (bpf_map_delete_elem(&agents, &tgid) == 0)
		STAT_INC(exited);
	return 0;
}
