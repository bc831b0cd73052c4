/* SPDX-License-Identifier: MIT */
/*
 * guard.c - bumbad's side of the eBPF guard (see guard.h, docs/audit.md).
 *
 *   start   open the skeleton (build/guard.skel.h, generated from
 *           bpf/guard.bpf.c), pin its maps under the pin directory (one
 *           owner at a time: flock on the directory), load, attach each
 *           program on its own (a missing io_uring tracepoint degrades the
 *           coverage, it does not stop the guard), learn each root's kernel
 *           key with the marker call, publish the roots, register the live
 *           agents, add the ring buffer to the event loop.
 *   events  each one names one or two paths (dentry names from the kernel,
 *           or a path string and the directory it is relative to); they are
 *           resolved to normalised workspace paths, bumba's own files (the
 *           state directory, a safe write's temporary) are mapped or
 *           dropped, and bumba_classify_write judges the write at the
 *           event's instant for the agent the kernel charged it to (and any
 *           other agent registered by the same process).
 *   report  a violation: one JSON line in the audit log (repeats of the
 *           same process, file and operation within a second are folded
 *           into one line with a count), bumba_violations_total, bumbad's
 *           log, and the pinned `violations` map (every event counted).
 *           A MONITORED write: an audit line, no violation.
 *   enforce guard.enforce: fanotify FAN_OPEN_PERM on roots that are mount
 *           points, answered by a thread of its own (see below).
 *   stop    detach, unpin, remove the pin directory.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/timerfd.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"
#include "ops.h"

static pthread_mutex_t status_mu = PTHREAD_MUTEX_INITIALIZER;
static char status_line[320] = "unavailable: not started";

static void set_status(struct bumbad *d, const char *health, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_status(struct bumbad *d, const char *health, const char *fmt, ...)
{
	char detail[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&status_mu);
	snprintf(status_line, sizeof(status_line), "%s: %s",
		 !strcmp(health, "healthy") || !strcmp(health, "degraded") ? "active"
		 : !strcmp(health, "disabled")				   ? "disabled"
									   : "unavailable",
		 detail);
	pthread_mutex_unlock(&status_mu);
	if (d && d->ops)
		bumbad_guard_health(d, health, detail);
}

const char *guard_status(void)
{
	static __thread char copy[sizeof(status_line)];

	pthread_mutex_lock(&status_mu);
	memcpy(copy, status_line, sizeof(copy));
	pthread_mutex_unlock(&status_mu);
	return copy;
}

#ifndef BUMBA_GUARD

/* A build without clang, bpftool or the kernel's BTF: no guard. */
int guard_start(struct bumbad *d)
{
	if (d->ops && !d->ops->cfg.guard_enabled) {
		set_status(d, "disabled", "%s",
			   d->o.no_guard ? "--no-guard" : "guard.enabled = false");
		return 0;
	}
	set_status(d, "not_built",
		   "this bumbad was built without the eBPF guard (no clang, bpftool or "
		   "/sys/kernel/btf/vmlinux at build time)");
	bumbad_log(LOG_WARNING, "guard: %s", guard_status());
	return 0;
}
void guard_event(struct bumbad *d)
{
	(void)d;
}
void guard_drain(struct bumbad *d)
{
	(void)d;
}
void guard_agent_added(struct bumbad *d, uint32_t slot)
{
	(void)d, (void)slot;
}
void guard_agent_gone(struct bumbad *d, uint32_t slot)
{
	(void)d, (void)slot;
}
void guard_tick(struct bumbad *d, uint64_t now_ns)
{
	(void)d, (void)now_ns;
}
void guard_stop(struct bumbad *d)
{
	(void)d;
}
void guard_counters(struct guard_counters *c)
{
	memset(c, 0, sizeof(*c));
}
void guard_started(struct bumbad *d)
{
	(void)d;
}
int guard_probe_maps(void)
{
	return -ENOENT;
}
const char *guard_pin_dir(void)
{
	return NULL;
}

#else /* BUMBA_GUARD */

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cjson/cJSON.h>

#include "../bpf/guard.h"
#include "guard.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

#define COALESCE_SLOTS 1024
#define COALESCE_NS    1000000000ull /* repeats within a second share a line */
#define MAX_MULTI      256	     /* second and later agents of one process */

static const char *op_name(uint32_t op)
{
	return guard_op_name(op);
}

/* The label of bumba_violations_total. */
static enum bumbad_violation_op vop_of(const struct guard_event *e)
{
	switch (e->op) {
	case GUARD_OP_WRITE:
	case GUARD_OP_PWRITE64:
	case GUARD_OP_WRITEV:
	case GUARD_OP_PWRITEV:
	case GUARD_OP_PWRITEV2:
		return VOP_WRITE;
	case GUARD_OP_TRUNCATE:
	case GUARD_OP_FTRUNCATE:
		return VOP_TRUNCATE;
	case GUARD_OP_OPEN:
	case GUARD_OP_OPENAT:
	case GUARD_OP_OPENAT2:
	case GUARD_OP_OPEN_BY_HANDLE_AT:
		if (e->flags & O_TRUNC)
			return VOP_TRUNCATE;
		return (e->flags & O_CREAT) ? VOP_CREATE : VOP_OPEN;
	case GUARD_OP_CREAT:
	case GUARD_OP_LINK:
	case GUARD_OP_LINKAT:
	case GUARD_OP_SYMLINK:
	case GUARD_OP_SYMLINKAT:
	case GUARD_OP_MKDIR:
	case GUARD_OP_MKDIRAT:
	case GUARD_OP_MKNOD:
	case GUARD_OP_MKNODAT:
		return VOP_CREATE;
	case GUARD_OP_RENAME:
	case GUARD_OP_RENAMEAT:
	case GUARD_OP_RENAMEAT2:
		return VOP_RENAME;
	case GUARD_OP_UNLINK:
	case GUARD_OP_UNLINKAT:
	case GUARD_OP_RMDIR:
		return VOP_UNLINK;
	case GUARD_OP_FALLOCATE:
		return VOP_FALLOCATE;
	case GUARD_OP_COPY_FILE_RANGE:
	case GUARD_OP_SENDFILE:
	case GUARD_OP_SPLICE:
	case GUARD_OP_FICLONE:
		return VOP_COPY;
	case GUARD_OP_MMAP:
	case GUARD_OP_MPROTECT:
	case GUARD_OP_MMAP_STORE:
		return VOP_MMAP;
	default:
		if (e->op >= GUARD_OP_IO_URING_WRITE && e->op <= GUARD_OP_IO_URING_LINKAT)
			return VOP_IO_URING;
		return VOP_OTHER;
	}
}

/* A root the kernel watches. */
struct groot {
	char path[PATH_MAX]; /* normalised, absolute */
	size_t len;
	uint32_t dev; /* kernel dev_t */
	uint64_t ino;
	uint64_t dentry; /* its address in the kernel, pinned by fd */
	int fd;
	size_t ws; /* the workspace root it lies in */
};

/* A folded run of one process's violations on one file. */
struct fold {
	uint64_t ino;
	uint32_t dev, tgid, op;
	uint64_t line_ns;	    /* when the last line was written */
	uint64_t pending;	    /* violations since, not yet written */
	uint64_t first_ns, last_ns; /* of the pending ones, monotonic */
	cJSON *line;		    /* the last line written, to repeat */
};

struct multi {
	uint32_t tgid, slot, gen;
};

static struct guard {
	bool running;
	struct guard_bpf *skel;
	struct ring_buffer *rb;
	int rb_fd; /* our epoll set: the ring buffer's and the drain timer */
	int tfd;   /* drain timer: GUARD_DRAIN_NS after a wake-up with events */
	char pin_dir[PATH_MAX];
	int pin_lock;
	bool pinned;
	struct groot roots[GUARD_MAX_ROOTS];
	size_t n_roots;
	char coverage[160];
	bool uring, exits, stores;
	struct guard_counters c;
	uint64_t by_op[GUARD_OP_MAX];
	uint64_t lost_reported;
	uint64_t last_log_ns;
	unsigned logged_this_sec;
	struct fold fold[COALESCE_SLOTS];
	struct multi multi[MAX_MULTI];
	size_t n_multi;
	struct bumbad *d;
} G = {.pin_lock = -1, .rb_fd = -1, .tfd = -1};

void guard_counters(struct guard_counters *c)
{
	*c = G.c;
}

static bool quiet_libbpf; /* a first try that may fail */

/* libbpf's messages: warnings to our log, the verifier's chatter to debug. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char buf[1024];
	size_t n;

	if (level == LIBBPF_DEBUG || quiet_libbpf)
		return 0;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	bumbad_log(level == LIBBPF_WARN ? LOG_WARNING : LOG_INFO, "guard: libbpf: %s", buf);
	return 0;
}

/* ---------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------- */

/* Lexical normalisation of an absolute path in place: "." and ".."
 * folded, repeated slashes dropped.  Returns the length. */
static size_t lexical(char *p)
{
	char *out = p, *s = p;

	while (*s) {
		while (*s == '/')
			s++;
		if (!*s)
			break;
		char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 1 && s[0] == '.') {
			/* nothing */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (out > p && out[-1] != '/')
				out--;
			if (out > p)
				out--;
		} else {
			*out++ = '/';
			memmove(out, s, n);
			out += n;
		}
		s += n;
	}
	if (out == p)
		*out++ = '/';
	*out = '\0';
	return (size_t)(out - p);
}

/* Appends the NUL-separated names (leaf first) in reverse order. */
static bool append_comps(char *buf, size_t cap, size_t *len, const char *comps, size_t n)
{
	const char *names[GUARD_MAX_DEPTH + 1];
	size_t k = 0, off = 0;

	while (off < n && k < GUARD_MAX_DEPTH + 1) {
		size_t l = strnlen(comps + off, n - off);
		names[k++] = comps + off;
		off += l + 1;
	}
	while (k--) {
		size_t l = strnlen(names[k], n - (size_t)(names[k] - comps));
		if (*len + 1 + l + 1 > cap)
			return false;
		buf[(*len)++] = '/';
		memcpy(buf + *len, names[k], l);
		*len += l;
	}
	buf[*len] = '\0';
	return true;
}

/* Where a resolved path stands. */
enum where { W_OUTSIDE, W_STATE, W_MANAGED };

struct resolved {
	char abs[PATH_MAX];
	char norm[PATH_MAX]; /* as bumba normalises it (locks, territories) */
	size_t norm_len;
	size_t ws;	 /* workspace root index */
	const char *rel; /* into norm: relative to the workspace root */
	uint32_t dev;
	uint64_t ino;
};

/* Maps bumba's own files: a safe write's temporary ".<name>.bumba-<32
 * hex>.tmp" is judged as <name>; the state directory <root>/.bumba is
 * bumba's (W_STATE). */
static enum where judge_name(struct bumbad *d, struct resolved *r)
{
	const char *root = d->roots[r->ws];
	size_t rl = strlen(root);
	const char *rel = r->norm + rl + (rl > 1 ? 1 : 0);
	char *slash, *base;
	size_t bl;

	if (r->norm_len <= rl)
		return W_OUTSIDE; /* the root directory itself */
	r->rel = rel;
	if (!strncmp(rel, ".bumba", 6) && (rel[6] == '\0' || rel[6] == '/'))
		return W_STATE;
	slash = strrchr(r->norm, '/');
	base = slash + 1;
	bl = strlen(base);
	/* "." + name + ".bumba-" + 32 hex + ".tmp" */
	if (bl > 1 + 7 + 32 + 4 && base[0] == '.' && !strcmp(base + bl - 4, ".tmp") &&
	    !strncmp(base + bl - 4 - 32 - 7, ".bumba-", 7)) {
		bool hex = true;
		for (size_t i = bl - 4 - 32; i < bl - 4; i++)
			hex = hex && isxdigit((unsigned char)base[i]);
		if (hex) {
			size_t nl = bl - 1 - 7 - 32 - 4;
			memmove(base, base + 1, nl);
			base[nl] = '\0';
			r->norm_len = (size_t)(base - r->norm) + nl;
		}
	}
	return W_MANAGED;
}

/* The last file event's path, resolved: a flood of writes to one file
 * names it the same way every time. */
static struct {
	bool valid;
	uint64_t ino;
	uint32_t dev;
	uint8_t root;
	uint16_t len;
	char comps[GUARD_COMP_MAX];
	enum where w;
	struct resolved r;
} last;

static enum where resolve_uncached(struct bumbad *d, const struct guard_event *e,
				   const struct guard_path *p, const char *data, size_t dlen,
				   size_t *off, struct resolved *r);

/* Resolves path p of event e (its data at *off, advanced) into r. */
static enum where resolve(struct bumbad *d, const struct guard_event *e, const struct guard_path *p,
			  const char *data, size_t dlen, size_t *off, struct resolved *r)
{
	enum where w;
	size_t start = *off;

	if (p->kind != GUARD_PATH_FILE || p->comps_len > GUARD_COMP_MAX ||
	    *off + p->comps_len > dlen)
		return resolve_uncached(d, e, p, data, dlen, off, r);
	if (last.valid && last.ino == p->ino && last.dev == p->dev && last.root == p->root &&
	    last.len == p->comps_len && !memcmp(last.comps, data + *off, p->comps_len)) {
		*off += p->comps_len;
		*r = last.r;
		if (last.r.rel)
			r->rel = r->norm + (last.r.rel - last.r.norm);
		return last.w;
	}
	w = resolve_uncached(d, e, p, data, dlen, off, r);
	last.valid = true;
	last.ino = p->ino;
	last.dev = p->dev;
	last.root = p->root;
	last.len = p->comps_len;
	memcpy(last.comps, data + start, p->comps_len);
	last.w = w;
	last.r = *r;
	if (r->rel)
		last.r.rel = last.r.norm + (r->rel - r->norm);
	return w;
}

static enum where resolve_uncached(struct bumbad *d, const struct guard_event *e,
				   const struct guard_path *p, const char *data, size_t dlen,
				   size_t *off, struct resolved *r)
{
	size_t len = 0, need = (size_t)p->str_len + p->comps_len;
	const char *str = data + *off, *comps = data + *off + p->str_len;
	int rc;

	r->rel = NULL;
	if (*off + need > dlen)
		return W_OUTSIDE;
	*off += need;
	if (p->str_len && str[p->str_len - 1] != '\0')
		return W_OUTSIDE;
	r->dev = p->dev;
	r->ino = 0;

	switch (p->kind) {
	case GUARD_PATH_FILE:
	case GUARD_PATH_BASE:
		if (p->root >= G.n_roots || (p->flags & GUARD_PF_COMPS_TRUNC)) {
			G.c.unresolved++;
			return W_OUTSIDE;
		}
		len = G.roots[p->root].len;
		memcpy(r->abs, G.roots[p->root].path, len + 1);
		if (len == 1)
			len = 0; /* root "/" */
		if (!append_comps(r->abs, sizeof(r->abs), &len, comps, p->comps_len)) {
			G.c.unresolved++;
			return W_OUTSIDE;
		}
		if (p->kind == GUARD_PATH_FILE) {
			r->ino = p->ino;
			break;
		}
		if (len + 1 + p->str_len > sizeof(r->abs))
			return W_OUTSIDE;
		r->abs[len++] = '/';
		memcpy(r->abs + len, str, p->str_len);
		break;
	case GUARD_PATH_ABS:
		snprintf(r->abs, sizeof(r->abs), "%s", str);
		break;
	case GUARD_PATH_OUTSIDE: {
		/* Relative to a directory outside the roots, with "..": the
		 * directory is only known by the process (best effort). */
		char link[64], dir[PATH_MAX];
		ssize_t n;
		if (p->flags & GUARD_PF_CWD)
			snprintf(link, sizeof(link), "/proc/%u/cwd", e->tgid);
		else
			snprintf(link, sizeof(link), "/proc/%u/fd/%d", e->tgid, p->dfd);
		n = readlink(link, dir, sizeof(dir) - 1);
		if (n <= 0) {
			G.c.unresolved++;
			return W_OUTSIDE;
		}
		dir[n] = '\0';
		if (snprintf(r->abs, sizeof(r->abs), "%s/%s", dir, str) >= (int)sizeof(r->abs))
			return W_OUTSIDE;
		break;
	}
	default:
		return W_OUTSIDE;
	}
	lexical(r->abs);
	rc = bumba_path_norm(d->roots, d->o.n_roots, r->abs, (size_t)-1, r->norm, sizeof(r->norm),
			     &r->ws);
	if (rc < 0) {
		/* A name bumba cannot lock (control characters, not UTF-8)
		 * inside a root is still a write there: judged by its
		 * directory, reported by its raw name. */
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", r->abs);
		char *s = strrchr(dir, '/');
		if (!s || s == dir)
			return W_OUTSIDE;
		*s = '\0';
		rc = bumba_path_norm(d->roots, d->o.n_roots, dir, (size_t)-1, r->norm,
				     sizeof(r->norm), &r->ws);
		if (rc < 0)
			return W_OUTSIDE;
	}
	r->norm_len = (size_t)rc;
	/* Inside a workspace, but only the guard's roots are watched. */
	bool watched = false;
	for (size_t i = 0; i < G.n_roots && !watched; i++) {
		size_t l = G.roots[i].len;
		watched = l == 1 || (!strncmp(r->norm, G.roots[i].path, l) &&
				     (r->norm[l] == '/' || r->norm[l] == '\0'));
	}
	if (!watched)
		return W_OUTSIDE;
	return judge_name(d, r);
}

/* ---------------------------------------------------------------------
 * Agents
 * ------------------------------------------------------------------- */

static bool slot_is(const struct bumbad *d, uint32_t slot, uint32_t gen)
{
	const struct agent_slot *a;

	if (slot >= d->seg.hdr->caps.max_agents)
		return false;
	a = &d->seg.agents[slot];
	return atomic_load(&a->gen) == gen && atomic_load(&a->state) != AGENT_FREE;
}

void guard_agent_added(struct bumbad *d, uint32_t slot)
{
	const struct agent_slot *a = &d->seg.agents[slot];
	struct guard_agent v = {.slot = slot, .gen = atomic_load(&a->gen)}, old;
	uint32_t tgid = (uint32_t)a->pid;
	int fd;

	if (!G.running)
		return;
	v.reg_tgid = tgid;
	fd = bpf_map__fd(G.skel->maps.agents);
	/* A process that registered an agent already keeps it in the kernel
	 * map; the others of the same process are judged too (G.multi). */
	if (bpf_map_lookup_elem(fd, &tgid, &old) == 0 && old.reg_tgid == tgid && old.slot != slot &&
	    slot_is(d, old.slot, old.gen)) {
		if (G.n_multi < MAX_MULTI)
			G.multi[G.n_multi++] = (struct multi){tgid, slot, v.gen};
		return;
	}
	if (bpf_map_update_elem(fd, &tgid, &v, BPF_ANY) < 0)
		bumbad_log(LOG_WARNING,
			   "guard: agents map: %s: writes of agent %s will count as "
			   "unregistered",
			   strerror(errno), a->id);
}

void guard_agent_gone(struct bumbad *d, uint32_t slot)
{
	const struct agent_slot *a = &d->seg.agents[slot];
	uint32_t gen = atomic_load(&a->gen), key, next, *prev = NULL;
	struct guard_agent v;
	int fd;

	if (!G.running)
		return;
	for (size_t i = 0; i < G.n_multi;) {
		if (G.multi[i].slot == slot) {
			G.multi[i] = G.multi[--G.n_multi];
			continue;
		}
		i++;
	}
	/* Every process of the agent (its own and the inherited ones). */
	fd = bpf_map__fd(G.skel->maps.agents);
	uint32_t dead[256];
	size_t nd = 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v) == 0 && v.slot == slot && v.gen == gen &&
		    nd < 256)
			dead[nd++] = key;
	}
	for (size_t i = 0; i < nd; i++)
		bpf_map_delete_elem(fd, &dead[i]);
	/* Another agent of the same process takes over its entry. */
	for (size_t i = 0; i < G.n_multi; i++) {
		if (G.multi[i].tgid != (uint32_t)a->pid)
			continue;
		struct guard_agent m = {.slot = G.multi[i].slot,
					.gen = G.multi[i].gen,
					.reg_tgid = G.multi[i].tgid};
		bpf_map_update_elem(fd, &G.multi[i].tgid, &m, BPF_ANY);
		G.multi[i] = G.multi[--G.n_multi];
		break;
	}
	(void)d;
}

/* ---------------------------------------------------------------------
 * Classification and reports
 * ------------------------------------------------------------------- */

static void iso_time(uint64_t wall_ms, char *out, size_t cap)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + strlen(out), cap - strlen(out), ".%03uZ", (unsigned)(wall_ms % 1000));
}

/* A string we did not make (a file name, a comm), as valid UTF-8. */
static void add_clean(cJSON *o, const char *k, const char *s)
{
	size_t n = strlen(s);
	char *clean = malloc(n * 3 + 1);

	if (!clean)
		return;
	bumba_dash_clean(s, clean, n * 3 + 1, '?');
	cJSON_AddStringToObject(o, k, clean);
	free(clean);
}

static void copy_tail(char *dst, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (n < cap) {
		memcpy(dst, s, n + 1);
		return;
	}
	memcpy(dst, "...", 3);
	memcpy(dst + 3, s + n - (cap - 4), cap - 4);
	dst[cap - 1] = '\0';
}

/* s cut to cap - 1 bytes (the map's fixed fields). */
static void cut(char *dst, size_t cap, const char *s)
{
	size_t n = strnlen(s, cap - 1);

	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* Counts of the pinned map, gathered over one batch of events and written
 * once per key at its end (a flood from one process on one file costs two
 * system calls per batch, not per event). */
#define PENDING_SLOTS  256
static struct pending {
	bool used;
	struct guard_vkey k;
	struct guard_vval v; /* count: events of this batch; first_ns: of the batch */
} pending[PENDING_SLOTS];
static unsigned n_pending;

static void flush_map(void)
{
	int fd;

	if (!n_pending || !G.skel)
		return;
	fd = bpf_map__fd(G.skel->maps.violations);
	for (size_t i = 0; i < PENDING_SLOTS; i++) {
		struct pending *p = &pending[i];
		struct guard_vval old;

		if (!p->used)
			continue;
		if (bpf_map_lookup_elem(fd, &p->k, &old) == 0) {
			p->v.count += old.count;
			if (old.first_ns < p->v.first_ns)
				p->v.first_ns = old.first_ns;
			if (old.last_ns > p->v.last_ns)
				p->v.last_ns = old.last_ns;
		}
		bpf_map_update_elem(fd, &p->k, &p->v, BPF_ANY);
		p->used = false;
	}
	n_pending = 0;
}

static void count_in_map(const struct guard_event *e, const struct resolved *r, const char *agent,
			 const char *holder)
{
	struct guard_vkey k = {.ino = r->ino, .dev = r->dev, .tgid = e->tgid, .op = e->op};
	uint64_t h = (r->ino * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)e->tgid << 32 | e->op) ^ r->dev;
	struct pending *p = NULL;

	for (unsigned i = 0; i < PENDING_SLOTS; i++) {
		struct pending *q = &pending[(h + i) % PENDING_SLOTS];
		if (!q->used || !memcmp(&q->k, &k, sizeof(k))) {
			p = q;
			break;
		}
	}
	if (!p) {
		flush_map();
		p = &pending[h % PENDING_SLOTS];
	}
	if (!p->used) {
		memset(p, 0, sizeof(*p));
		p->used = true;
		p->k = k;
		p->v.first_ns = e->ts_ns;
		n_pending++;
	}
	struct guard_vval *v = &p->v;
	v->count++;
	if (e->ts_ns > v->last_ns)
		v->last_ns = e->ts_ns;
	if (e->ts_ns < v->first_ns)
		v->first_ns = e->ts_ns;
	v->uid = e->uid;
	v->pid = e->pid;
	memcpy(v->comm, e->comm, sizeof(v->comm));
	v->comm[sizeof(v->comm) - 1] = '\0';
	cut(v->agent, sizeof(v->agent), agent);
	cut(v->holder, sizeof(v->holder), holder);
	copy_tail(v->path, sizeof(v->path), r->rel);
}

static void write_line(struct bumbad *d, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);

	if (s)
		audit_raw(d, s);
	cJSON_free(s);
}

static struct fold *fold_of(const struct guard_event *e, const struct resolved *r)
{
	uint64_t h = r->ino * 0x9e3779b97f4a7c15ull ^ ((uint64_t)r->dev << 32 | e->tgid) ^
		     (uint64_t)e->op * 0xff51afd7ed558ccdull;

	return &G.fold[(h ^ h >> 29) % COALESCE_SLOTS];
}

static void fold_flush(struct bumbad *d, struct fold *f)
{
	char ts[40];

	if (!f->line || !f->pending)
		return;
	cJSON *o = cJSON_Duplicate(f->line, 1);
	if (o) {
		iso_time(bumba_wall_ms() - (bumba_now_ns() - f->last_ns) / 1000000, ts, sizeof(ts));
		cJSON_ReplaceItemInObject(o, "ts", cJSON_CreateString(ts));
		cJSON_ReplaceItemInObject(o, "count", cJSON_CreateNumber((double)f->pending));
		cJSON_ReplaceItemInObject(o, "mono_ns", cJSON_CreateNumber((double)f->first_ns));
		cJSON_AddNumberToObject(o, "last_mono_ns", (double)f->last_ns);
		cJSON_DeleteItemFromObject(o, "latency_us");
		cJSON_AddBoolToObject(o, "repeat", 1);
		write_line(d, o);
		cJSON_Delete(o);
	}
	f->pending = 0;
	f->line_ns = bumba_now_ns();
}

static void log_violation(const char *agent, const struct guard_event *e, const char *rel,
			  const struct bumba_verdict *v)
{
	uint64_t now = bumba_now_ns();

	if (now - G.last_log_ns > 1000000000ull) {
		if (G.logged_this_sec > 10)
			bumbad_log(LOG_WARNING,
				   "guard: %u more violations in the last second (see "
				   "the audit log)",
				   G.logged_this_sec - 10);
		G.last_log_ns = now;
		G.logged_this_sec = 0;
	}
	if (G.logged_this_sec++ < 10)
		bumbad_log(LOG_WARNING, "guard: violation: %s (pid %u, %.16s) %s %s%s%s", agent,
			   e->tgid, e->comm, op_name(e->op), rel,
			   v->holder_id[0] ? ", held by " : "", v->holder_id);
}

static void report(struct bumbad *d, const struct guard_event *e, const struct resolved *r,
		   const struct resolved *r2, const struct bumba_verdict *v, uint32_t slot,
		   bool violation)
{
	char agent[BUMBA_ID_MAX], ts[40], comm[GUARD_COMM_LEN + 1];
	uint64_t now = bumba_now_ns();
	cJSON *o;

	if (slot != UINT32_MAX) {
		memcpy(agent, d->seg.agents[slot].id, sizeof(agent));
		agent[sizeof(agent) - 1] = '\0';
	} else {
		snprintf(agent, sizeof(agent), "unregistered");
	}
	if (violation) {
		G.c.violations++;
		bumbad_count_violation(d, vop_of(e));
		count_in_map(e, r, agent, v->holder_id);
	} else {
		G.c.monitored++;
	}
	if (now > e->ts_ns && now - e->ts_ns > G.c.lat_ns_max)
		G.c.lat_ns_max = now - e->ts_ns;

	/* Repeats within a second: one line with a count. */
	struct fold *f = fold_of(e, r);
	if (violation) {
		if (f->line && f->ino == r->ino && f->dev == r->dev && f->tgid == e->tgid &&
		    f->op == e->op && now - f->line_ns < COALESCE_NS) {
			if (!f->pending++)
				f->first_ns = e->ts_ns;
			f->last_ns = e->ts_ns;
			return;
		}
		fold_flush(d, f);
	}

	memcpy(comm, e->comm, GUARD_COMM_LEN);
	comm[GUARD_COMM_LEN] = '\0';
	iso_time(bumba_wall_ms() - (now > e->ts_ns ? (now - e->ts_ns) / 1000000 : 0), ts,
		 sizeof(ts));
	o = cJSON_CreateObject();
	if (!o)
		return;
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "event", violation ? "guard.violation" : "guard.monitored");
	add_clean(o, "agent", agent);
	cJSON_AddNumberToObject(o, "pid", e->tgid);
	cJSON_AddNumberToObject(o, "tid", e->pid);
	add_clean(o, "comm", comm);
	cJSON_AddNumberToObject(o, "uid", e->uid);
	cJSON_AddStringToObject(o, "op", op_name(e->op));
	add_clean(o, "path", r->rel);
	if (r2) /* the other name of a rename or link */
		add_clean(o, "path2", r2->rel);
	add_clean(o, "workspace", d->roots[r->ws]);
	if (violation) {
		if (v->holder_id[0]) {
			add_clean(o, "holder", v->holder_id);
			cJSON_AddStringToObject(o, "holder_kind", v->holder_kind);
		} else {
			cJSON_AddNullToObject(o, "holder");
		}
	}
	if (v->territory_id)
		cJSON_AddNumberToObject(o, "territory", (double)v->territory_id);
	if (e->flags)
		cJSON_AddNumberToObject(o, "flags", e->flags);
	char dev[24];
	snprintf(dev, sizeof(dev), "%u:%u", r->dev >> 20, r->dev & 0xfffff);
	cJSON_AddStringToObject(o, "dev", dev);
	cJSON_AddNumberToObject(o, "kdev", r->dev);
	cJSON_AddNumberToObject(o, "ino", (double)r->ino);
	cJSON_AddNumberToObject(o, "count", 1);
	cJSON_AddNumberToObject(o, "mono_ns", (double)e->ts_ns);
	cJSON_AddNumberToObject(o, "latency_us", (double)(now - e->ts_ns) / 1000.0);
	write_line(d, o);
	if (violation) {
		log_violation(agent, e, r->rel, v);
		cJSON_Delete(f->line);
		f->line = o;
		f->ino = r->ino;
		f->dev = r->dev;
		f->tgid = e->tgid;
		f->op = e->op;
		f->line_ns = now;
		f->pending = 0;
	} else {
		cJSON_Delete(o);
	}
}

/* The verdict for one path: the charged agent first, then any other agent
 * the same process registered.  Returns the slot that was judged. */
static uint32_t judge(struct bumbad *d, const struct guard_event *e, const struct resolved *r,
		      struct bumba_verdict *v)
{
	uint32_t slot = UINT32_MAX;

	if (e->slot != GUARD_NO_SLOT && slot_is(d, e->slot, e->gen))
		slot = e->slot;
	bumba_classify_write(&d->seg, slot, r->norm, r->norm_len, e->ts_ns, v);
	if (v->kind != BUMBA_VERDICT_VIOLATION)
		return slot;
	for (size_t i = 0; i < G.n_multi; i++) {
		struct bumba_verdict w;
		if (G.multi[i].tgid != e->tgid || !slot_is(d, G.multi[i].slot, G.multi[i].gen))
			continue;
		bumba_classify_write(&d->seg, G.multi[i].slot, r->norm, r->norm_len, e->ts_ns, &w);
		if (w.kind != BUMBA_VERDICT_VIOLATION) {
			*v = w;
			return G.multi[i].slot;
		}
	}
	return slot;
}

static void classify(struct bumbad *d, const struct guard_event *e, size_t size)
{
	static struct resolved r[2];
	struct bumba_verdict v[2];
	uint32_t slot[2] = {UINT32_MAX, UINT32_MAX};
	enum where w[2] = {W_OUTSIDE, W_OUTSIDE};
	size_t off = 0, dlen = size - sizeof(*e);
	int bad = -1, mon = -1, n = 0;

	G.c.events++;
	if (e->op < GUARD_OP_MAX)
		G.by_op[e->op]++;
	for (int i = 0; i < 2; i++) {
		if (e->p[i].kind == GUARD_PATH_NONE)
			continue;
		w[i] = resolve(d, e, &e->p[i], e->data, dlen, &off, &r[i]);
		if (w[i] != W_MANAGED)
			continue;
		if (r[i].ino == 0 && e->layout == GUARD_LAYOUT_PATHS) {
			/* A path operation names no inode: the file's, if it
			 * still exists. */
			struct stat st;
			if (lstat(r[i].abs, &st) == 0) {
				r[i].ino = st.st_ino;
				r[i].dev = (uint32_t)(major(st.st_dev) << 20 | minor(st.st_dev));
			} else {
				r[i].dev = G.roots[0].dev;
			}
		}
		n++;
		slot[i] = judge(d, e, &r[i], &v[i]);
		/* The path reported: one somebody holds, else the target of a
		 * rename or link (the file that changed), else the first. */
		if (v[i].kind == BUMBA_VERDICT_VIOLATION &&
		    (bad < 0 || (v[i].holder_id[0] && !v[bad].holder_id[0]) ||
		     (i == 1 && !v[bad].holder_id[0])))
			bad = i;
		if (v[i].kind == BUMBA_VERDICT_MONITORED && mon < 0)
			mon = i;
	}
	if (!n) {
		G.c.ignored++;
		return;
	}
	/* A rename's old name is gone: the file is the one at the new name. */
	if (w[0] == W_MANAGED && w[1] == W_MANAGED && r[0].ino == 0 && r[1].ino &&
	    (vop_of(e) == VOP_RENAME || e->op == GUARD_OP_IO_URING_RENAMEAT)) {
		r[0].ino = r[1].ino;
		r[0].dev = r[1].dev;
	}
	if (bad >= 0) {
		int other = bad ^ 1;
		report(d, e, &r[bad], w[other] == W_MANAGED ? &r[other] : NULL, &v[bad], slot[bad],
		       true);
		return;
	}
	if (mon >= 0) {
		int other = mon ^ 1;
		report(d, e, &r[mon], w[other] == W_MANAGED ? &r[other] : NULL, &v[mon], slot[mon],
		       false);
		return;
	}
	G.c.sanctioned++;
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct bumbad *d = ctx;

	if (size < sizeof(struct guard_event))
		return 0;
	classify(d, data, size);
	return 0;
}

void guard_event(struct bumbad *d)
{
	uint64_t ticks;
	int n;

	(void)d;
	if (!G.running)
		return;
	while (read(G.tfd, &ticks, sizeof(ticks)) > 0)
		;
	/* The program wakes us at most once per GUARD_WAKE_NS: what came
	 * after a wake-up is fetched by the timer, soon. */
	n = ring_buffer__consume(G.rb);
	flush_map();
	if (n > 0) {
		struct itimerspec its = {.it_value = {.tv_nsec = (long)GUARD_DRAIN_NS}};
		timerfd_settime(G.tfd, 0, &its, NULL);
	}
}

void guard_drain(struct bumbad *d)
{
	guard_event(d);
}

/* ---------------------------------------------------------------------
 * Counters from the kernel
 * ------------------------------------------------------------------- */

static bool kernel_stats(struct guard_stats *sum)
{
	int ncpu = libbpf_num_possible_cpus();
	struct guard_stats *per;
	uint32_t zero = 0;

	memset(sum, 0, sizeof(*sum));
	if (ncpu <= 0)
		return false;
	per = calloc((size_t)ncpu, sizeof(*per));
	if (!per)
		return false;
	if (bpf_map_lookup_elem(bpf_map__fd(G.skel->maps.stats), &zero, per) < 0) {
		free(per);
		return false;
	}
	for (int i = 0; i < ncpu; i++) {
		sum->events += per[i].events;
		sum->drops += per[i].drops;
		sum->drop_bytes += per[i].drop_bytes;
		sum->comps_trunc += per[i].comps_trunc;
		sum->too_deep += per[i].too_deep;
		sum->agents_full += per[i].agents_full;
		sum->inherited += per[i].inherited;
		sum->exited += per[i].exited;
		sum->uring += per[i].uring;
		sum->marker += per[i].marker;
	}
	free(per);
	return true;
}

void guard_tick(struct bumbad *d, uint64_t now_ns)
{
	struct guard_stats s;

	if (!G.running)
		return;
	for (size_t i = 0; i < COALESCE_SLOTS; i++) {
		struct fold *f = &G.fold[i];
		if (f->pending && now_ns - f->line_ns >= COALESCE_NS)
			fold_flush(d, f);
	}
	if (kernel_stats(&s) && s.drops > G.lost_reported) {
		uint64_t n = s.drops - G.lost_reported;
		G.lost_reported = s.drops;
		G.c.lost = s.drops;
		bumbad_log(
			LOG_WARNING,
			"guard: %llu events lost (ring buffer full; %llu in all): writes in that "
			"time may have gone unjudged",
			(unsigned long long)n, (unsigned long long)s.drops);
		cJSON *o = cJSON_CreateObject();
		if (o) {
			char ts[40];
			iso_time(bumba_wall_ms(), ts, sizeof(ts));
			cJSON_AddStringToObject(o, "ts", ts);
			cJSON_AddStringToObject(o, "event", "guard.events_lost");
			cJSON_AddNumberToObject(o, "count", (double)n);
			cJSON_AddNumberToObject(o, "total", (double)s.drops);
			write_line(d, o);
			cJSON_Delete(o);
		}
	}
}

/* ---------------------------------------------------------------------
 * Enforcement (guard.enforce): fanotify FAN_OPEN_PERM
 *
 * BPF LSM does not load on the kernels bumba targets, so denial goes
 * through fanotify: every open on a marked mount waits for our answer.
 * fanotify says who opens what but not how, so the program notes in
 * `opening` which threads are inside an open for writing; anything else is
 * allowed at once.  A write open of a managed file by a writer the
 * classifier does not sanction (now) is denied with EPERM.  Only roots
 * that are mount points are marked (a bind mount of a directory onto
 * itself makes one), so that the rest of the system never waits for
 * bumbad.  Everything that needs no writable descriptor (rename, unlink,
 * truncate by path) and io_uring's own opens are detected, not denied.
 * The answers come from a thread of their own: bumbad's main thread may
 * itself open files on a marked mount.
 * ------------------------------------------------------------------- */

static struct {
	bool on, started;
	int fan, stopfd, opening_fd;
	pthread_t th;
	char scope[512];
	_Atomic uint64_t denied, checked;
} E = {.fan = -1, .stopfd = -1, .opening_fd = -1};

/* Appends to a message (cut when full). */
static void appendf(char *buf, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void appendf(char *buf, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 1 >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
}

static bool is_mountpoint(const char *path)
{
	struct statx a, b;
	char parent[PATH_MAX + 4];

	snprintf(parent, sizeof(parent), "%s/..", path);
	if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &a) < 0 ||
	    statx(AT_FDCWD, parent, 0, STATX_MNT_ID, &b) < 0 || !(a.stx_mask & STATX_MNT_ID))
		return false;
	return a.stx_mnt_id != b.stx_mnt_id || !strcmp(path, "/");
}

static uint32_t tgid_of(uint32_t tid, char *comm, size_t cap)
{
	char p[64], line[256];
	uint32_t tgid = 0;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%u/status", tid);
	f = fopen(p, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Name:", 5)) {
			char *v = line + 5;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			snprintf(comm, cap, "%.63s", v);
		} else if (sscanf(line, "Tgid: %u", &tgid) == 1) {
			break;
		}
	}
	fclose(f);
	return tgid;
}

/* The answer for one FAN_OPEN_PERM event. */
static bool enforce_allows(struct bumbad *d, const struct fanotify_event_metadata *m)
{
	uint32_t tid = (uint32_t)m->pid, flags, tgid, slot = UINT32_MAX;
	char link[64], comm[64] = "", agent[BUMBA_ID_MAX] = "unregistered", ts[40];
	struct resolved r;
	struct bumba_verdict v;
	struct guard_agent a;
	ssize_t n;

	if (bpf_map_lookup_elem(E.opening_fd, &tid, &flags) < 0)
		return true; /* not an open for writing */
	atomic_fetch_add(&E.checked, 1);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", m->fd);
	n = readlink(link, r.abs, sizeof(r.abs) - 1);
	if (n <= 0)
		return true;
	r.abs[n] = '\0';
	lexical(r.abs);
	int rc = bumba_path_norm(d->roots, d->o.n_roots, r.abs, (size_t)-1, r.norm, sizeof(r.norm),
				 &r.ws);
	if (rc < 0)
		return true;
	r.norm_len = (size_t)rc;
	r.rel = NULL;
	if (judge_name(d, &r) != W_MANAGED)
		return true;
	tgid = tgid_of(tid, comm, sizeof(comm));
	if (!tgid || tgid == (uint32_t)getpid())
		return true;
	if (bpf_map_lookup_elem(bpf_map__fd(G.skel->maps.agents), &tgid, &a) == 0 &&
	    slot_is(d, a.slot, a.gen))
		slot = a.slot;
	bumba_classify_write(&d->seg, slot, r.norm, r.norm_len, bumba_now_ns(), &v);
	if (v.kind != BUMBA_VERDICT_VIOLATION)
		return true;
	/* Another agent of the same process may hold it. */
	for (uint32_t i = 0; i < d->seg.hdr->caps.max_agents; i++) {
		const struct agent_slot *s = &d->seg.agents[i];
		struct bumba_verdict w;
		if (i == slot || atomic_load(&s->state) != AGENT_LIVE || (uint32_t)s->pid != tgid)
			continue;
		bumba_classify_write(&d->seg, i, r.norm, r.norm_len, bumba_now_ns(), &w);
		if (w.kind != BUMBA_VERDICT_VIOLATION)
			return true;
	}
	if (slot != UINT32_MAX) {
		memcpy(agent, d->seg.agents[slot].id, sizeof(agent));
		agent[sizeof(agent) - 1] = '\0';
	}
	atomic_fetch_add(&E.denied, 1);
	bumbad_count_violation(d, (flags & O_TRUNC) ? VOP_TRUNCATE : VOP_OPEN);
	cJSON *o = cJSON_CreateObject();
	if (o) {
		iso_time(bumba_wall_ms(), ts, sizeof(ts));
		cJSON_AddStringToObject(o, "ts", ts);
		cJSON_AddStringToObject(o, "event", "guard.denied");
		add_clean(o, "agent", agent);
		cJSON_AddNumberToObject(o, "pid", tgid);
		cJSON_AddNumberToObject(o, "tid", tid);
		add_clean(o, "comm", comm);
		cJSON_AddStringToObject(o, "op", "open");
		add_clean(o, "path", r.rel ? r.rel : r.norm);
		add_clean(o, "workspace", d->roots[r.ws]);
		if (v.holder_id[0]) {
			add_clean(o, "holder", v.holder_id);
			cJSON_AddStringToObject(o, "holder_kind", v.holder_kind);
		} else {
			cJSON_AddNullToObject(o, "holder");
		}
		cJSON_AddNumberToObject(o, "flags", flags);
		cJSON_AddNumberToObject(o, "count", 1);
		write_line(d, o);
		cJSON_Delete(o);
	}
	bumbad_log(LOG_WARNING, "guard: denied: %s (pid %u, %s) open for writing %s%s%s", agent,
		   tgid, comm, r.rel ? r.rel : r.norm, v.holder_id[0] ? ", held by " : "",
		   v.holder_id);
	return false;
}

static void *enforce_thread(void *arg)
{
	struct bumbad *d = arg;
	char buf[8192] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));

	for (;;) {
		struct pollfd p[2] = {{.fd = E.fan, .events = POLLIN},
				      {.fd = E.stopfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		ssize_t n = read(E.fan, buf, sizeof(buf));
		if (n <= 0)
			continue;
		struct fanotify_event_metadata *m = (void *)buf;
		for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			if (m->vers != FANOTIFY_METADATA_VERSION)
				continue;
			if (m->mask & FAN_OPEN_PERM) {
				struct fanotify_response res = {
					.fd = m->fd,
					.response = m->fd < 0 || enforce_allows(d, m) ? FAN_ALLOW
										      : FAN_DENY};
				if (write(E.fan, &res, sizeof(res)) < 0)
					bumbad_log(LOG_ERR, "guard: fanotify answer: %s",
						   strerror(errno));
			}
			if (m->fd >= 0)
				close(m->fd);
		}
	}
	return NULL;
}

/* Marks the roots that are mount points; says in why what it could not. */
static void enforce_start(struct bumbad *d, char *why, size_t cap)
{
	size_t marked = 0;

	why[0] = '\0';
	E.fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_REPORT_TID,
			      O_RDONLY | O_CLOEXEC | O_LARGEFILE);
	if (E.fan < 0) {
		snprintf(why, cap, "fanotify_init: %.80s%s", strerror(errno),
			 errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
		return;
	}
	E.scope[0] = '\0';
	for (size_t i = 0; i < G.n_roots; i++) {
		const char *root = G.roots[i].path;
		if (!is_mountpoint(root)) {
			appendf(why, cap,
				"%s%s is not a mount point (mount --bind it onto itself to "
				"enforce)",
				why[0] ? "; " : "", root);
			continue;
		}
		if (fanotify_mark(E.fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_PERM, AT_FDCWD,
				  root) < 0) {
			appendf(why, cap, "%s%s: fanotify_mark: %s", why[0] ? "; " : "", root,
				strerror(errno));
			continue;
		}
		appendf(E.scope, sizeof(E.scope), "%s%s", marked++ ? ", " : "", root);
	}
	if (!marked) {
		close(E.fan);
		E.fan = -1;
		return;
	}
	E.opening_fd = bpf_map__fd(G.skel->maps.opening);
	E.stopfd = eventfd(0, EFD_CLOEXEC);
	if (E.stopfd < 0) {
		snprintf(why, cap, "eventfd: %s", strerror(errno));
		close(E.fan);
		E.fan = -1;
		return;
	}
	/* The thread that answers starts in guard_started(), once bumbad has
	 * its final credentials: capabilities belong to each thread, and one
	 * made now would keep the start-up set (CAP_SYS_ADMIN, CAP_BPF) for
	 * good (privilege.c).  Opens on the marked mounts wait until then
	 * (milliseconds); bumbad opens nothing there meanwhile. */
	E.on = true;
}

static void enforce_run(struct bumbad *d)
{
	if (!E.on || E.started)
		return;
	if (pthread_create(&E.th, NULL, enforce_thread, d) != 0) {
		bumbad_log(LOG_ERR, "guard: cannot start the enforcement thread: not enforcing");
		close(E.fan); /* pending permission events are allowed */
		close(E.stopfd);
		E.fan = E.stopfd = -1;
		E.on = false;
		set_status(d, "degraded",
			   "watching, but the enforcement thread did not start: detecting only");
		return;
	}
	E.started = true;
}

static void enforce_stop(void)
{
	uint64_t one = 1;

	if (!E.on)
		return;
	if (E.started) {
		if (write(E.stopfd, &one, sizeof(one)) < 0) {
			/* the thread is stopped by the close below */
		}
		pthread_join(E.th, NULL);
	}
	E.started = false;
	close(E.fan); /* pending permission events are allowed */
	close(E.stopfd);
	E.fan = E.stopfd = -1;
	E.on = false;
}

/* ---------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------- */

static bool is_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC;
}

/* Takes the pin directory: mounted bpffs, created, flocked, emptied of a
 * crashed predecessor's pins.  Returns false (with the reason in why) to
 * run unpinned. */
static bool take_pin_dir(char *why, size_t cap)
{
	char parent[PATH_MAX], *slash;
	const char *env = getenv("BUMBA_BPF_PIN_DIR");

	snprintf(G.pin_dir, sizeof(G.pin_dir), "%s", env && *env ? env : GUARD_PIN_DIR_DEFAULT);
	snprintf(parent, sizeof(parent), "%s", G.pin_dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent) {
		snprintf(why, cap, "bad pin directory %.200s", G.pin_dir);
		return false;
	}
	*slash = '\0';
	if (!is_bpffs(parent)) {
		/* systemd mounts it; a bare system may not have. */
		if (strcmp(parent, "/sys/fs/bpf") != 0 ||
		    mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0 || !is_bpffs(parent)) {
			snprintf(why, cap, "%.200s is not a BPF filesystem", parent);
			return false;
		}
		bumbad_log(LOG_NOTICE, "guard: mounted the BPF filesystem on /sys/fs/bpf");
	}
	if (mkdir(G.pin_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(why, cap, "mkdir %.180s: %.60s", G.pin_dir, strerror(errno));
		return false;
	}
	G.pin_lock = open(G.pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (G.pin_lock < 0 || flock(G.pin_lock, LOCK_EX | LOCK_NB) < 0) {
		snprintf(why, cap, "%.200s is in use by another bumbad", G.pin_dir);
		if (G.pin_lock >= 0)
			close(G.pin_lock);
		G.pin_lock = -1;
		return false;
	}
	/* Left by a bumbad that did not stop cleanly. */
	static const char *const names[] = {"roots", "agents", "violations", "stats"};
	int stale = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char p[PATH_MAX + 16];
		snprintf(p, sizeof(p), "%s/%s", G.pin_dir, names[i]);
		stale += unlink(p) == 0;
	}
	if (stale)
		bumbad_log(LOG_NOTICE, "guard: removed %d stale pinned map(s) from %s", stale,
			   G.pin_dir);
	return true;
}

static void close_roots(void)
{
	for (size_t i = 0; i < G.n_roots; i++) {
		if (G.roots[i].fd >= 0)
			close(G.roots[i].fd);
		G.roots[i].fd = -1;
	}
}

static void release_pin_dir(void)
{
	if (G.pin_lock < 0)
		return;
	rmdir(G.pin_dir);
	close(G.pin_lock);
	G.pin_lock = -1;
}

static bool have_tracepoint(struct btf *vm, const char *name)
{
	char t[128];

	snprintf(t, sizeof(t), "btf_trace_%s", name);
	return vm && btf__find_by_name_kind(vm, t, BTF_KIND_TYPEDEF) > 0;
}

/* Opens, configures and loads the skeleton into G.skel. */
static int open_load(bool direct)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = G.pinned ? G.pin_dir : NULL);
	int rc;

	G.skel = guard_bpf__open_opts(&oo);
	if (!G.skel)
		return -errno;
	if (!G.pinned) {
		bpf_map__set_pin_path(G.skel->maps.roots, NULL);
		bpf_map__set_pin_path(G.skel->maps.agents, NULL);
		bpf_map__set_pin_path(G.skel->maps.violations, NULL);
		bpf_map__set_pin_path(G.skel->maps.stats, NULL);
	}
	G.skel->rodata->self_tgid = (uint32_t)getpid();
	G.skel->rodata->direct_fd = direct;
	G.skel->rodata->enforce = G.d->ops->cfg.guard_enforce;
	if (!G.uring) {
		bpf_program__set_autoload(G.skel->progs.guard_uring_submit, false);
		bpf_program__set_autoload(G.skel->progs.guard_uring_complete, false);
	}
	if (!G.stores)
		bpf_program__set_autoload(G.skel->progs.guard_dirty, false);
	quiet_libbpf = direct;
	rc = guard_bpf__load(G.skel);
	quiet_libbpf = false;
	return rc;
}

/* The kernel key of a root: from the program itself (marker call), so it
 * is exactly what the walk will meet (btrfs subvolumes and overlayfs make
 * stat()'s st_dev differ).  The descriptor stays open: it pins the root's
 * dentry, which the program compares by address. */
static int learn_root(struct groot *g)
{
	int fd = open(g->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint32_t seq;

	if (fd < 0)
		return -errno;
	seq = __atomic_load_n(&G.skel->bss->learned.seq, __ATOMIC_ACQUIRE);
	if (pwrite(fd, NULL, 0, (off_t)GUARD_MARKER_POS) >= 0) {
		/* cannot succeed on a directory */
	}
	if (__atomic_load_n(&G.skel->bss->learned.seq, __ATOMIC_ACQUIRE) == seq) {
		close(fd);
		return -ENOTRECOVERABLE; /* the marker was not seen: sys_enter is not there */
	}
	g->dev = G.skel->bss->learned.dev;
	g->ino = G.skel->bss->learned.ino;
	g->dentry = G.skel->bss->learned.dentry;
	g->fd = fd;
	return 0;
}

/* Processes forked by agents before the guard watched (a bumbad restarted
 * on an adopted segment): found by their parent chain in /proc, given
 * their ancestor's agent. */
static void adopt_descendants(void)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	uint32_t *ppid = NULL, max = 0, n = 0;
	int fd = bpf_map__fd(G.skel->maps.agents);

	if (!dir)
		return;
	/* pid -> ppid for every process. */
	while ((de = readdir(dir))) {
		char p[64], buf[512], *rp;
		uint32_t pid = (uint32_t)strtoul(de->d_name, NULL, 10);
		unsigned pp;
		FILE *f;

		if (!pid)
			continue;
		snprintf(p, sizeof(p), "/proc/%u/stat", pid);
		f = fopen(p, "re");
		if (!f)
			continue;
		rp = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (!rp || sscanf(rp + 1, " %*c %u", &pp) != 1)
			continue;
		if (pid >= max) {
			uint32_t nmax = pid * 2 + 1024, *np = realloc(ppid, nmax * sizeof(*np));
			if (!np)
				break;
			memset(np + max, 0, (nmax - max) * sizeof(*np));
			ppid = np;
			max = nmax;
		}
		ppid[pid] = pp ? pp : UINT32_MAX;
	}
	closedir(dir);
	for (uint32_t pid = 1; pid < max; pid++) {
		struct guard_agent a;
		uint32_t cur = pid;
		if (!ppid[pid] || bpf_map_lookup_elem(fd, &pid, &a) == 0)
			continue;
		for (int hops = 0; hops < 64; hops++) {
			cur = cur < max ? ppid[cur] : 0;
			if (!cur || cur == UINT32_MAX)
				break;
			if (bpf_map_lookup_elem(fd, &cur, &a) == 0) {
				a.depth++;
				bpf_map_update_elem(fd, &pid, &a, BPF_NOEXIST);
				n++;
				break;
			}
		}
	}
	free(ppid);
	if (n)
		bumbad_log(LOG_INFO,
			   "guard: %u process(es) forked by agents before the guard "
			   "started are theirs",
			   n);
}

/* The hot path's copy of the roots, count last. */
static void publish_keys(void)
{
	struct guard_rootkeys *k = &G.skel->bss->rk;

	for (size_t i = 0; i < G.n_roots; i++) {
		k->dev[i] = G.roots[i].dev;
		k->dentry[i] = G.roots[i].dentry;
	}
	__atomic_store_n(&k->n, (uint32_t)G.n_roots, __ATOMIC_RELEASE);
}

static int publish_root(size_t i)
{
	struct groot *g = &G.roots[i];
	struct guard_root r;
	uint32_t k = (uint32_t)i;

	memset(&r, 0, sizeof(r));
	r.ino = g->ino;
	r.dev = g->dev;
	if (g->len < GUARD_ROOT_PATH_MAX) {
		r.path_len = (uint32_t)g->len;
		memcpy(r.path, g->path, g->len);
		r.nwords = (uint32_t)((g->len + 7) / 8);
		r.last_mask = g->len % 8 ? (1ull << (8 * (g->len % 8))) - 1 : ~0ull;
	}
	return bpf_map_update_elem(bpf_map__fd(G.skel->maps.roots), &k, &r, BPF_ANY) < 0 ? -errno
											 : 0;
}

/* The roots to watch: guard.roots, else every workspace; each must lie in
 * a workspace (writes are judged against its locks and territories). */
static int pick_roots(struct bumbad *d)
{
	const struct bumba_config *c = &d->ops->cfg;
	size_t n = c->n_guard_roots ? c->n_guard_roots : d->o.n_roots;

	G.n_roots = 0;
	for (size_t i = 0; i < n && G.n_roots < GUARD_MAX_ROOTS; i++) {
		const char *want = c->n_guard_roots ? c->guard_roots[i] : d->roots[i];
		char real[PATH_MAX];
		struct groot *g = &G.roots[G.n_roots];
		int rc;

		if (!realpath(want, real)) {
			bumbad_log(LOG_WARNING, "guard: root %s: %s; not watched", want,
				   strerror(errno));
			continue;
		}
		rc = bumba_path_norm(d->roots, d->o.n_roots, real, (size_t)-1, g->path,
				     sizeof(g->path), &g->ws);
		if (rc < 0) {
			bumbad_log(LOG_WARNING, "guard: root %s is in no workspace; not watched",
				   real);
			continue;
		}
		g->len = (size_t)rc;
		g->fd = -1;
		G.n_roots++;
	}
	return G.n_roots ? 0 : -ENOENT;
}

static int attach(struct bpf_program *p, struct bpf_link **link, const char *what, bool need)
{
	if (!bpf_program__autoload(p))
		return need ? -ENOENT : 0;
	*link = bpf_program__attach(p);
	if (!*link) {
		int e = errno;
		bumbad_log(need ? LOG_ERR : LOG_WARNING, "guard: cannot attach %s: %s", what,
			   strerror(e));
		return -e;
	}
	return 0;
}

int guard_start(struct bumbad *d)
{
	const struct bumba_config *c = &d->ops->cfg;
	char why[256] = "";
	struct btf *vm = NULL;
	int rc;

	G.d = d;
	if (!c->guard_enabled) {
		set_status(d, "disabled", "%s",
			   d->o.no_guard ? "--no-guard" : "guard.enabled = false");
		bumbad_log(LOG_NOTICE, "guard: disabled (%s)",
			   d->o.no_guard ? "--no-guard" : "guard.enabled = false");
		return 0;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		set_status(d, "failed",
			   "no kernel BTF (/sys/kernel/btf/vmlinux): running without "
			   "the guard");
		goto fail;
	}
	if (pick_roots(d) < 0) {
		set_status(d, "failed", "no root to watch");
		goto fail;
	}
	libbpf_set_print(libbpf_print);

	G.pinned = take_pin_dir(why, sizeof(why));
	if (!G.pinned)
		bumbad_log(LOG_WARNING, "guard: %s: its maps will not be pinned", why);

	/* io_uring's tracepoints come and go with the kernel's config. */
	vm = btf__load_vmlinux_btf();
	G.uring = have_tracepoint(vm, "io_uring_submit_req") &&
		  have_tracepoint(vm, "io_uring_complete");
	G.stores = have_tracepoint(vm, "writeback_dirty_folio");
	btf__free(vm);

	/* Descriptors read with plain loads first (6.15+), else with
	 * bpf_probe_read_kernel: the verifier's chatter of the first try is
	 * not worth a log line. */
	rc = getenv("BUMBA_GUARD_NO_DIRECT") ? -ENOTSUP : open_load(true);
	if (rc) {
		if (G.skel)
			guard_bpf__destroy(G.skel);
		G.skel = NULL;
		rc = open_load(false);
	}
	if (rc) {
		if (rc == -EPERM || rc == -EACCES)
			set_status(d, "failed",
				   "the kernel refused the BPF programs (%s): bumbad needs root, "
				   "or CAP_BPF and CAP_PERFMON; running without the guard",
				   strerror(-rc));
		else
			set_status(d, "failed",
				   "cannot load the BPF programs (%s): running without the guard",
				   strerror(-rc));
		goto fail;
	}
	if (attach(G.skel->progs.guard_sys_enter, &G.skel->links.guard_sys_enter,
		   "tp_btf/sys_enter", true) < 0 ||
	    attach(G.skel->progs.guard_sys_exit, &G.skel->links.guard_sys_exit, "tp_btf/sys_exit",
		   true) < 0 ||
	    attach(G.skel->progs.guard_fork, &G.skel->links.guard_fork, "tp_btf/sched_process_fork",
		   true) < 0) {
		set_status(d, "failed",
			   "cannot attach the syscall tracepoints: running without "
			   "the guard");
		goto fail;
	}
	G.exits = attach(G.skel->progs.guard_exit, &G.skel->links.guard_exit,
			 "tp_btf/sched_process_exit", false) == 0;
	G.stores = G.stores && attach(G.skel->progs.guard_dirty, &G.skel->links.guard_dirty,
				      "tp_btf/writeback_dirty_folio", false) == 0;
	if (G.uring &&
	    (attach(G.skel->progs.guard_uring_submit, &G.skel->links.guard_uring_submit,
		    "tp_btf/io_uring_submit_req", false) < 0 ||
	     attach(G.skel->progs.guard_uring_complete, &G.skel->links.guard_uring_complete,
		    "tp_btf/io_uring_complete", false) < 0))
		G.uring = false;

	for (size_t i = 0; i < G.n_roots; i++) {
		rc = learn_root(&G.roots[i]);
		if (rc == 0)
			rc = publish_root(i);
		if (rc < 0) {
			set_status(d, "failed", "root %s: %s", G.roots[i].path, strerror(-rc));
			goto fail;
		}
	}
	publish_keys();

	G.rb = ring_buffer__new(bpf_map__fd(G.skel->maps.events), on_event, d, NULL);
	if (!G.rb) {
		set_status(d, "failed", "ring buffer: %s", strerror(errno));
		goto fail;
	}
	G.rb_fd = epoll_create1(EPOLL_CLOEXEC);
	G.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN};
	if (G.rb_fd < 0 || G.tfd < 0 ||
	    epoll_ctl(G.rb_fd, EPOLL_CTL_ADD, ring_buffer__epoll_fd(G.rb), &ev) < 0 ||
	    epoll_ctl(G.rb_fd, EPOLL_CTL_ADD, G.tfd, &ev) < 0) {
		set_status(d, "failed", "epoll: %s", strerror(errno));
		goto fail;
	}
	ev.data.u64 = EV(EV_GUARD, 0);
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, G.rb_fd, &ev) < 0) {
		set_status(d, "failed", "epoll: %s", strerror(errno));
		goto fail;
	}
	G.running = true;

	/* Agents already there (an adopted segment), and the processes they
	 * forked while no guard was watching. */
	bool any = false;
	for (uint32_t i = 0; i < d->seg.hdr->caps.max_agents; i++) {
		if (atomic_load(&d->seg.agents[i].state) == AGENT_LIVE) {
			guard_agent_added(d, i);
			any = true;
		}
	}
	if (any)
		adopt_descendants();

	snprintf(G.coverage, sizeof(G.coverage), "syscalls%s%s%s",
		 G.uring ? ", io_uring" : " (io_uring NOT covered: no tracepoint)",
		 G.stores ? ", mmap stores" : "", G.exits ? "" : " (exit cleanup off)");
	char roots[512] = "";
	for (size_t i = 0; i < G.n_roots; i++)
		snprintf(roots + strlen(roots), sizeof(roots) - strlen(roots), "%s%s",
			 i ? ", " : "", G.roots[i].path);
	char enforce[700] = "";
	bool enforce_ok = true;
	if (c->guard_enforce) {
		char ewhy[200];
		enforce_start(d, ewhy, sizeof(ewhy));
		if (E.on)
			snprintf(enforce, sizeof(enforce),
				 "; enforcing on %.200s (write opens by non-holders denied; "
				 "renames, unlinks and io_uring opens detected only)%s%.200s",
				 E.scope, ewhy[0] ? "; not enforced: " : "", ewhy);
		else
			snprintf(enforce, sizeof(enforce),
				 "; guard.enforce: not possible (%.200s; no BPF LSM on this "
				 "kernel): "
				 "detecting only",
				 ewhy);
		enforce_ok = E.on && !ewhy[0];
	}
	set_status(d, G.uring && enforce_ok ? "healthy" : "degraded", "watching %s (%s)%s%s%s",
		   roots, G.coverage, G.pinned ? "; maps pinned in " : "; maps not pinned",
		   G.pinned ? G.pin_dir : "", enforce);
	bumbad_log(LOG_NOTICE, "guard: %s", guard_status());
	return 0;

fail:
	bumbad_log(LOG_WARNING, "guard: %s", guard_status());
	if (G.rb_fd >= 0)
		close(G.rb_fd);
	if (G.tfd >= 0)
		close(G.tfd);
	G.rb_fd = G.tfd = -1;
	if (G.rb)
		ring_buffer__free(G.rb);
	G.rb = NULL;
	if (G.skel) {
		if (G.pinned)
			bpf_object__unpin_maps(G.skel->obj, NULL);
		guard_bpf__destroy(G.skel);
	}
	G.skel = NULL;
	close_roots();
	release_pin_dir();
	return 0;
}

void guard_started(struct bumbad *d)
{
	if (G.running)
		enforce_run(d);
}

int guard_probe_maps(void)
{
	struct guard_root r;
	uint32_t k = 0;

	if (!G.running)
		return -ENOENT;
	/* What the event loop does all day: a map look-up by descriptor. */
	return bpf_map_lookup_elem(bpf_map__fd(G.skel->maps.roots), &k, &r) < 0 ? -errno : 0;
}

const char *guard_pin_dir(void)
{
	return G.running && G.pinned ? G.pin_dir : NULL;
}

void guard_stop(struct bumbad *d)
{
	if (!G.running)
		return;
	enforce_stop();
	guard_drain(d);
	for (size_t i = 0; i < COALESCE_SLOTS; i++) {
		fold_flush(d, &G.fold[i]);
		cJSON_Delete(G.fold[i].line);
		G.fold[i].line = NULL;
	}
	G.running = false;
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, G.rb_fd, NULL);
	close(G.rb_fd);
	close(G.tfd);
	G.rb_fd = G.tfd = -1;
	ring_buffer__free(G.rb);
	G.rb = NULL;
	if (G.pinned && bpf_object__unpin_maps(G.skel->obj, NULL) < 0)
		bumbad_log(LOG_WARNING, "guard: could not unpin the maps in %s", G.pin_dir);
	guard_bpf__destroy(G.skel);
	G.skel = NULL;
	close_roots();
	release_pin_dir();
	bumbad_log(LOG_INFO,
		   "guard: stopped (%llu events: %llu sanctioned, %llu monitored, %llu "
		   "violations, %llu ignored, %llu lost)",
		   (unsigned long long)G.c.events, (unsigned long long)G.c.sanctioned,
		   (unsigned long long)G.c.monitored, (unsigned long long)G.c.violations,
		   (unsigned long long)G.c.ignored, (unsigned long long)G.c.lost);
	set_status(d, "disabled", "stopped");
}

#endif /* BUMBA_GUARD */
