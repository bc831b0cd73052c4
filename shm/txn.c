/* SPDX-License-Identifier: MIT */
/*
 * txn.c - multi-file transactions, and their recovery after a crash.
 *
 * Commit, after SQLite's multi-file commit:
 *   0. check authority over every path; stat the pre-images; make the
 *      backups (deletes always, writes with BUMBA_WRITE_BACKUP)
 *   1. write every temporary and the intent manifest <txid>.prep, each its
 *      own linked chain (open -> write -> fdatasync -> close), all in flight
 *      together; fsync the backups
 *   2. fsync every directory that got a new entry (temporaries, backups,
 *      the manifest)
 *   -- fence check: authority over every path again --
 *   3. rename <txid>.prep -> <txid>.commit, fsync the txn directory:
 *      THE COMMIT POINT
 *   4. apply: renames of the temporaries over their targets, unlinks, moves,
 *      in flight together
 *   5. fsync every directory touched
 *   6. unlink the manifest (no fsync: replaying it is idempotent)
 *
 * Recovery (bumbad at an agent's death and at its own start, and a process
 * at bumba_close for what it could not finish): a .prep manifest is rolled
 * back (its temporaries and backups removed), a .commit one rolled forward,
 * step by step and idempotently; an operation whose target no longer
 * matches its recorded pre-image (inode, size, mtime) is a conflict: the
 * new content is kept under .bumba/conflicts/<txid>/, never forced over.
 *
 * The manifest is text, one operation a line, tab-separated (normalised
 * paths hold no control characters), sealed by an xxh3 of everything above
 * its last line:
 *
 *   bumba-txn 1
 *   txid <tag16>-<pid8>-<ms hex>-<rand8>
 *   agent <agent id>
 *   pid <pid> <start time>
 *   flags <BUMBA_WRITE_* bits>
 *   ops <n>
 *   W <target> <temporary> <pre> <backup|->
 *   D <target> - <pre> <backup>
 *   M <from> <to> <pre of from> <temporary in to's directory|->
 *   end <16 hex>
 *
 * <pre> is "-" (absent) or "<ino>:<size>:<mtime ns>".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "handle.h"
#include "safeio.h"

struct txop {
	char kind;	   /* 'W', 'D', 'M' */
	struct sio_path p; /* target, or the source of a move */
	struct sio_path q; /* destination of a move */
	void *data;
	size_t len;
	int dirfd, dirfd2, srcfd;
	bool exists;
	struct stat pre;
	struct sio_wplan w;
	struct sio_backup bk;
	bool across;		 /* a move between mounts: copy + unlink */
	char xtmp[NAME_MAX + 1]; /* its temporary in q's directory */
	int xfd;
	int chain;
};

struct bumba_txn {
	struct bumba *b;
	unsigned flags;
	uint32_t max;
	struct txop **ops;
	size_t n, cap;
};

static const unsigned all_flags = BUMBA_WRITE_BACKUP | BUMBA_WRITE_VERIFY | BUMBA_WRITE_NOSYNC;

int bumba_txn_begin(struct bumba *b, unsigned flags, struct bumba_txn **out)
{
	struct bumba_txn *t;

	if (!b || !out || (flags & ~all_flags))
		return -EINVAL;
	*out = NULL;
	if (!bumba_sio_get(b))
		return -ENOMEM;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->b = b;
	t->flags = flags;
	t->max = bumba_sio_max_txn(b);
	*out = t;
	return 0;
}

static void op_free(struct txop *o)
{
	if (!o)
		return;
	free(o->data);
	free(o);
}

int bumba_txn_abort(struct bumba_txn *t)
{
	if (!t)
		return 0;
	for (size_t i = 0; i < t->n; i++)
		op_free(t->ops[i]);
	free(t->ops);
	free(t);
	return 0;
}

static bool staged(const struct bumba_txn *t, const struct sio_path *p)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct txop *o = t->ops[i];
		if (!strcmp(o->p.norm, p->norm) || (o->kind == 'M' && !strcmp(o->q.norm, p->norm)))
			return true;
	}
	return false;
}

static int stage(struct bumba_txn *t, char kind, const char *path, const char *to, const void *buf,
		 size_t len, struct txop **out)
{
	struct txop *o;
	int rc;

	if (!t || !path || (kind == 'M' && !to) || (kind == 'W' && !buf && len))
		return -EINVAL;
	if (t->n >= t->max)
		return -E2BIG;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->kind = kind;
	o->dirfd = o->dirfd2 = o->srcfd = o->xfd = -1;
	o->w.dirfd = o->w.fixfd = -1;
	o->bk.dirfd = o->bk.fd = -1;
	rc = bumba_sio_path(t->b, path, &o->p);
	if (!rc && kind == 'M')
		rc = bumba_sio_path(t->b, to, &o->q);
	if (!rc && kind == 'M' && !strcmp(o->p.norm, o->q.norm))
		rc = -EINVAL;
	/* One workspace root per transaction: its manifest lives there. */
	if (!rc &&
	    ((t->n && o->p.root != t->ops[0]->p.root) || (kind == 'M' && o->q.root != o->p.root)))
		rc = -EXDEV;
	if (!rc && (staged(t, &o->p) || (kind == 'M' && staged(t, &o->q))))
		rc = -EINVAL;
	if (!rc)
		rc = bumba_sio_authority(t->b, &o->p);
	if (!rc && kind == 'M')
		rc = bumba_sio_authority(t->b, &o->q);
	if (!rc && kind == 'W') {
		o->data = malloc(len ? len : 1);
		if (!o->data)
			rc = -ENOMEM;
		else if (len)
			memcpy(o->data, buf, len);
		o->len = len;
	}
	if (!rc && t->n == t->cap) {
		size_t nc = t->cap ? 2 * t->cap : 8;
		void *nv = realloc(t->ops, nc * sizeof(*t->ops));
		if (!nv)
			rc = -ENOMEM;
		else {
			t->ops = nv;
			t->cap = nc;
		}
	}
	if (rc) {
		op_free(o);
		return rc;
	}
	t->ops[t->n++] = o;
	if (out)
		*out = o;
	return 0;
}

int bumba_txn_write(struct bumba_txn *t, const char *path, const void *buf, size_t len)
{
	return stage(t, 'W', path, NULL, buf, len, NULL);
}

int bumba_txn_delete(struct bumba_txn *t, const char *path)
{
	return stage(t, 'D', path, NULL, NULL, 0, NULL);
}

int bumba_txn_move(struct bumba_txn *t, const char *from, const char *to)
{
	return stage(t, 'M', from, to, NULL, 0, NULL);
}

/* ------------------------------------------------------------------ */
/* manifest text                                                       */

struct sbuf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		va_start(ap, fmt);
		int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->oom = true;
			return;
		}
		if (b->p && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t nc = (b->cap ? b->cap : 4096);
		while (nc < b->n + (size_t)k + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
}

static void pre_str(bool exists, const struct stat *st, char *out, size_t cap)
{
	if (!exists)
		snprintf(out, cap, "-");
	else
		snprintf(out, cap, "%llu:%lld:%llu", (unsigned long long)st->st_ino,
			 (long long)st->st_size,
			 (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
				 (unsigned long long)st->st_mtim.tv_nsec);
}

static void abs_in_dir(const struct sio_path *p, const char *name, char *out, size_t cap)
{
	const char *slash = strrchr(p->norm, '/');
	int dl = (int)(slash - p->norm);

	snprintf(out, cap, "%.*s/%s", dl, p->norm, name);
}

/* ------------------------------------------------------------------ */
/* commit                                                              */

struct fdset {
	int fd[4 * SIO_MAX_TXN_LIMIT + 8];
	dev_t dev[4 * SIO_MAX_TXN_LIMIT + 8];
	ino_t ino[4 * SIO_MAX_TXN_LIMIT + 8];
	size_t n;
};

static void fds_add(struct fdset *f, int fd)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	for (size_t i = 0; i < f->n; i++) {
		if (f->dev[i] == st.st_dev && f->ino[i] == st.st_ino)
			return;
	}
	if (f->n < sizeof(f->fd) / sizeof(f->fd[0])) {
		f->fd[f->n] = fd;
		f->dev[f->n] = st.st_dev;
		f->ino[f->n] = st.st_ino;
		f->n++;
	}
}

/* One fsync chain per descriptor of f, run together. */
static int fsync_all(struct bumba_sio *s, const struct fdset *f)
{
	struct sio_chain *ch;
	int rc;

	if (!f->n)
		return 0;
	ch = calloc(f->n, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	for (size_t i = 0; i < f->n; i++)
		bumba_chain_add(&ch[i], SIO_FSYNC)->fd = f->fd[i];
	rc = bumba_sio_run(s, ch, f->n, false);
	free(ch);
	return rc;
}

static uint64_t mount_of(int fd)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) < 0)
		return 0;
	return (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id
					    : ((uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor);
}

static void keep_attrs_fd(int fd, const struct stat *st)
{
	if (fchown(fd, st->st_uid, st->st_gid) < 0)
		(void)!fchown(fd, (uid_t)-1, st->st_gid);
	fchmod(fd, st->st_mode & 07777);
}

static void stuck_add(struct bumba_sio *s, size_t root, const char *name)
{
	pthread_mutex_lock(&s->smu);
	void *nv = realloc(s->stuck, (s->n_stuck + 1) * sizeof(*s->stuck));
	if (nv) {
		s->stuck = nv;
		s->stuck[s->n_stuck].root = root;
		snprintf(s->stuck[s->n_stuck].name, sizeof(s->stuck[0].name), "%s", name);
		s->n_stuck++;
	}
	pthread_mutex_unlock(&s->smu);
}

/* Phase 0 for one operation. */
static int prepare_op(struct bumba_txn *t, struct bumba_sio *s, struct txop *o, int *rootfds)
{
	struct bumba *b = t->b;
	int rc;
	char dn[PATH_MAX];

	o->dirfd = bumba_sio_open_dir(s, &o->p);
	if (o->dirfd < 0)
		return o->dirfd;
	switch (o->kind) {
	case 'W': {
		bool want_fd = t->flags & BUMBA_WRITE_BACKUP;
		if (want_fd) {
			o->srcfd = openat(o->dirfd, o->p.base,
					  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			if (o->srcfd >= 0) {
				if (fstat(o->srcfd, &o->pre) < 0)
					return -errno;
				o->exists = true;
			} else if (errno != ENOENT) {
				return -errno;
			}
		} else if (fstatat(o->dirfd, o->p.base, &o->pre, AT_SYMLINK_NOFOLLOW) == 0) {
			o->exists = true;
		} else if (errno != ENOENT) {
			return -errno;
		}
		o->w.dirfd = o->dirfd;
		o->w.base = o->p.base;
		o->w.buf = o->data;
		o->w.len = o->len;
		o->w.flags = t->flags;
		o->w.exists = o->exists;
		o->w.old = o->pre;
		o->w.fixfd = -1;
		bumba_sio_tmp_name(s, o->p.base, o->w.tmp, sizeof(o->w.tmp));
		memcpy(dn, o->p.norm, o->p.len + 1);
		*strrchr(dn, '/') = '\0';
		(void)bumba_sio_journal(s, b, o->p.root, dn[0] ? dn : "/"); /* best effort */
		rc = bumba_wplan_prepare(s, &o->w, 0);
		if (rc)
			return rc;
		if ((t->flags & BUMBA_WRITE_BACKUP) && o->exists)
			return bumba_backup_make(s, rootfds[o->p.root], &o->p, o->dirfd, o->srcfd,
						 &o->pre, "txn", &o->bk);
		return 0;
	}
	case 'D':
		o->srcfd =
			openat(o->dirfd, o->p.base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (o->srcfd < 0)
			return -errno;
		if (fstat(o->srcfd, &o->pre) < 0)
			return -errno;
		o->exists = true;
		if (S_ISDIR(o->pre.st_mode))
			return -EISDIR;
		if (!S_ISREG(o->pre.st_mode))
			return -EINVAL;
		return bumba_backup_make(s, rootfds[o->p.root], &o->p, o->dirfd, o->srcfd, &o->pre,
					 "delete", &o->bk);
	case 'M': {
		struct stat tst;
		o->dirfd2 = bumba_sio_open_dir(s, &o->q);
		if (o->dirfd2 < 0)
			return o->dirfd2;
		if (fstatat(o->dirfd, o->p.base, &o->pre, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		o->exists = true;
		if (S_ISDIR(o->pre.st_mode))
			return -EISDIR;
		if (S_ISLNK(o->pre.st_mode))
			return -ELOOP;
		if (!S_ISREG(o->pre.st_mode))
			return -EINVAL;
		if (fstatat(o->dirfd2, o->q.base, &tst, AT_SYMLINK_NOFOLLOW) == 0)
			return S_ISDIR(tst.st_mode) ? -EISDIR : -EEXIST;
		if (errno != ENOENT)
			return -errno;
		o->across = mount_of(o->dirfd) != mount_of(o->dirfd2);
		if (!o->across)
			return 0;
		/* Across filesystems: a copy in to's directory, published by
		 * rename, then the source unlinked. */
		o->srcfd =
			openat(o->dirfd, o->p.base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (o->srcfd < 0)
			return -errno;
		memcpy(dn, o->q.norm, o->q.len + 1);
		*strrchr(dn, '/') = '\0';
		(void)bumba_sio_journal(s, b, o->q.root, dn[0] ? dn : "/"); /* best effort */
		bumba_sio_tmp_name(s, o->q.base, o->xtmp, sizeof(o->xtmp));
		o->xfd = openat(o->dirfd2, o->xtmp,
				O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (o->xfd < 0)
			return -errno;
		keep_attrs_fd(o->xfd, &o->pre);
		return bumba_copy_fd(o->srcfd, o->xfd);
	}
	}
	return -EINVAL;
}

static void rollback_op(struct txop *o)
{
	if (o->kind == 'W')
		bumba_wplan_cleanup(&o->w);
	if (o->xtmp[0] && o->dirfd2 >= 0)
		unlinkat(o->dirfd2, o->xtmp, 0);
	bumba_backup_discard(&o->bk);
}

static void close_op(struct txop *o)
{
	if (o->kind == 'W')
		bumba_wplan_release(&o->w);
	bumba_backup_close(&o->bk);
	if (o->dirfd >= 0)
		close(o->dirfd);
	if (o->dirfd2 >= 0)
		close(o->dirfd2);
	if (o->srcfd >= 0)
		close(o->srcfd);
	if (o->xfd >= 0)
		close(o->xfd);
	o->dirfd = o->dirfd2 = o->srcfd = o->xfd = -1;
}

static void build_manifest(struct bumba_txn *t, struct bumba_sio *s, const char *txid,
			   struct sbuf *m)
{
	char pre[96], a[PATH_MAX], c[PATH_MAX];

	sb_printf(m, "bumba-txn 1\ntxid %s\nagent %s\npid %d %llu\nflags %u\nops %zu\n", txid,
		  t->b->id, (int)getpid(), (unsigned long long)bumba_sio_self_start(s), t->flags,
		  t->n);
	for (size_t i = 0; i < t->n; i++) {
		struct txop *o = t->ops[i];
		pre_str(o->exists, &o->pre, pre, sizeof(pre));
		switch (o->kind) {
		case 'W':
			abs_in_dir(&o->p, o->w.tmp, a, sizeof(a));
			sb_printf(m, "W\t%s\t%s\t%s\t%s\n", o->p.norm, a, pre,
				  o->bk.method != SIO_BK_NONE ? o->bk.abs : "-");
			break;
		case 'D':
			sb_printf(m, "D\t%s\t-\t%s\t%s\n", o->p.norm, pre, o->bk.abs);
			break;
		case 'M':
			if (o->across)
				abs_in_dir(&o->q, o->xtmp, c, sizeof(c));
			sb_printf(m, "M\t%s\t%s\t%s\t%s\n", o->p.norm, o->q.norm, pre,
				  o->across ? c : "-");
			break;
		}
	}
	sb_printf(m, "end %016llx\n", m->oom ? 0ull : (unsigned long long)XXH3_64bits(m->p, m->n));
}

static int recover_one(int rootfd, const char *root, int txnfd, const char *name,
		       bumba_recovery_log log, void *log_ctx, struct bumba_recovery_report *r);

int bumba_txn_commit(struct bumba_txn *t)
{
	struct bumba *b;
	struct bumba_sio *s;
	struct sio_chain *ch = NULL;
	struct fdset *fs = NULL;
	struct sbuf m = {0};
	int rc = 0, rootfds[BUMBA_MAX_ROOTS], txnfd = -1;
	char txid[80], prep[NAME_MAX + 1], commit[NAME_MAX + 1];
	size_t mroot = 0, nch = 0, i;
	bool committed = false;
	int commit_rc = 0;

	if (!t)
		return -EINVAL;
	b = t->b;
	s = bumba_sio_get(b);
	if (!s) {
		bumba_txn_abort(t);
		return -ENOMEM;
	}
	if (t->n == 0) {
		bumba_txn_abort(t);
		return 0;
	}
	for (i = 0; i < BUMBA_MAX_ROOTS; i++)
		rootfds[i] = -1;
	ch = calloc(3 * t->n + 2, sizeof(*ch));
	fs = calloc(1, sizeof(*fs));
	if (!ch || !fs) {
		rc = -ENOMEM;
		goto out;
	}

	/* 0. authority, pre-images, backups */
	for (i = 0; i < t->n && !rc; i++) {
		struct txop *o = t->ops[i];
		rc = bumba_sio_authority(b, &o->p);
		if (!rc && o->kind == 'M')
			rc = bumba_sio_authority(b, &o->q);
		if (!rc) {
			int fd = bumba_sio_rootfd(s, b, o->p.root);
			rc = fd < 0 ? fd : 0;
			rootfds[o->p.root] = fd;
			if (!rc && o->kind == 'M') {
				fd = bumba_sio_rootfd(s, b, o->q.root);
				rc = fd < 0 ? fd : 0;
				rootfds[o->q.root] = fd;
			}
		}
		if (!rc)
			rc = prepare_op(t, s, o, rootfds);
	}
	if (rc)
		goto rollback;
	mroot = t->ops[0]->p.root;
	txnfd = bumba_sio_state_dir(rootfds[mroot], "txn");
	if (txnfd < 0) {
		rc = txnfd;
		goto rollback;
	}
	{
		uint32_t rnd;
		if (getentropy(&rnd, sizeof(rnd)) < 0)
			rnd = (uint32_t)bumba_now_ns();
		snprintf(txid, sizeof(txid), "%s-%08x-%llx-%08x", s->tag, (unsigned)getpid(),
			 (unsigned long long)bumba_wall_ms(), rnd);
	}
	snprintf(prep, sizeof(prep), "%s.prep", txid);
	snprintf(commit, sizeof(commit), "%s.commit", txid);
	build_manifest(t, s, txid, &m);
	if (m.oom) {
		rc = -ENOMEM;
		goto rollback;
	}
	bumba_fault_point();

	/* 1. temporaries, backups, manifest: in flight together */
	const bool sync = !(t->flags & BUMBA_WRITE_NOSYNC);
	for (i = 0; i < t->n; i++) {
		struct txop *o = t->ops[i];
		o->chain = -1;
		if (o->kind == 'W') {
			o->chain = (int)nch;
			bumba_wplan_chain(&o->w, &ch[nch++]);
		}
		if (o->kind == 'M' && o->across && sync)
			bumba_chain_add(&ch[nch++], SIO_FDATASYNC)->fd = o->xfd;
		if (o->bk.fd >= 0 && sync)
			bumba_chain_add(&ch[nch++], SIO_FSYNC)->fd = o->bk.fd;
	}
	{
		struct sio_chain *c = &ch[nch++];
		struct sio_step *st = bumba_chain_add(c, SIO_OPEN);
		st->fd = txnfd;
		st->name = prep;
		st->flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
		st->mode = 0600;
		st = bumba_chain_add(c, SIO_WRITE);
		st->use_slot = true;
		st->buf = m.p;
		st->len = m.n;
		if (sync) {
			st = bumba_chain_add(c, SIO_FDATASYNC);
			st->use_slot = true;
		}
		bumba_chain_add(c, SIO_CLOSE);
	}
	rc = bumba_sio_run(s, ch, nch, false);
	{
		/* The writes' own verdicts first: they turn a short write
		 * into its real errno (ENOSPC...). */
		int we = 0;
		for (i = 0; i < t->n; i++) {
			struct txop *o = t->ops[i];
			if (o->kind == 'W') {
				int e = bumba_wplan_finish(s, &o->w, &ch[o->chain]);
				if (e && (!we || we == -ECANCELED))
					we = e;
			}
		}
		if (we)
			rc = we;
	}
	if (rc)
		goto rollback;
	bumba_fault_point();

	/* 2. every directory with a new entry */
	if (sync) {
		for (i = 0; i < t->n; i++) {
			struct txop *o = t->ops[i];
			if (o->kind == 'W')
				fds_add(fs, o->dirfd);
			if (o->across)
				fds_add(fs, o->dirfd2);
			if (o->bk.method != SIO_BK_NONE)
				fds_add(fs, o->bk.dirfd);
		}
		fds_add(fs, txnfd);
		rc = fsync_all(s, fs);
		if (rc)
			goto rollback;
		bumba_fault_point();
	}

	/* The fence check: every path still ours? */
	for (i = 0; i < t->n && !rc; i++) {
		struct txop *o = t->ops[i];
		rc = bumba_sio_authority(b, &o->p);
		if (!rc && o->kind == 'M')
			rc = bumba_sio_authority(b, &o->q);
	}
	if (rc)
		goto rollback;

	/* 3. the commit point */
	memset(ch, 0, sizeof(*ch));
	{
		struct sio_step *st = bumba_chain_add(&ch[0], SIO_RENAME);
		st->fd = st->fd2 = txnfd;
		st->name = prep;
		st->name2 = commit;
		if (sync)
			bumba_chain_add(&ch[0], SIO_FSYNC)->fd = txnfd;
	}
	rc = bumba_sio_run(s, ch, 1, false);
	if (ch[0].s[0].res < 0) {
		if (!rc)
			rc = ch[0].s[0].res;
		goto rollback;
	}
	committed = true;
	commit_rc = rc; /* a failed directory fsync: committed, durability unsure */
	bumba_fault_point();

	/* 4. apply */
	nch = 0;
	for (i = 0; i < t->n; i++) {
		struct txop *o = t->ops[i];
		struct sio_chain *c = &ch[nch];
		struct sio_step *st;
		memset(c, 0, sizeof(*c));
		o->chain = (int)nch++;
		switch (o->kind) {
		case 'W':
			st = bumba_chain_add(c, SIO_RENAME);
			st->fd = st->fd2 = o->dirfd;
			st->name = o->w.tmp;
			st->name2 = o->p.base;
			st->flags = o->exists ? 0 : RENAME_NOREPLACE;
			break;
		case 'D':
			st = bumba_chain_add(c, SIO_UNLINK);
			st->fd = o->dirfd;
			st->name = o->p.base;
			break;
		case 'M':
			st = bumba_chain_add(c, SIO_RENAME);
			st->fd = o->across ? o->dirfd2 : o->dirfd;
			st->name = o->across ? o->xtmp : o->p.base;
			st->fd2 = o->dirfd2;
			st->name2 = o->q.base;
			st->flags = RENAME_NOREPLACE;
			if (o->across) {
				st = bumba_chain_add(c, SIO_UNLINK);
				st->fd = o->dirfd;
				st->name = o->p.base;
			}
			break;
		}
	}
	rc = bumba_sio_run(s, ch, nch, false);
	bumba_fault_point();
	if (rc) {
		/* Finish by the book (idempotent, pre-image checked), now. */
		struct bumba_recovery_report rr = {0};
		int e = recover_one(rootfds[mroot], b->seg.root_ptrs[mroot], txnfd, commit, NULL,
				    NULL, &rr);
		if (e == 0 && rr.conflicts == 0) {
			rc = 0;
		} else {
			if (e)
				stuck_add(s, mroot, commit);
			rc = e ? e : -EBUSY;
		}
		goto out;
	}

	/* 5. every directory touched */
	if (sync) {
		fs->n = 0;
		for (i = 0; i < t->n; i++) {
			fds_add(fs, t->ops[i]->dirfd);
			fds_add(fs, t->ops[i]->dirfd2);
		}
		rc = fsync_all(s, fs);
		if (rc) {
			/* Applied, but not known durable: the manifest stays for
			 * recovery to replay. */
			stuck_add(s, mroot, commit);
			goto out;
		}
		bumba_fault_point();
	}

	/* 6. done */
	unlinkat(txnfd, commit, 0);
	bumba_fault_point();
	rc = commit_rc;
	for (i = 0; i < t->n; i++) {
		bumba_sio_log_monitored(b, &t->ops[i]->p,
					t->ops[i]->kind == 'W'	 ? "write"
					: t->ops[i]->kind == 'D' ? "delete"
								 : "move");
	}
	goto out;

rollback:
	if (!committed) {
		for (i = 0; i < t->n; i++)
			rollback_op(t->ops[i]);
		if (txnfd >= 0 && m.p)
			unlinkat(txnfd, prep, 0);
	}
out:
	if (t)
		for (i = 0; i < t->n; i++)
			close_op(t->ops[i]);
	if (txnfd >= 0)
		close(txnfd);
	free(m.p);
	free(ch);
	free(fs);
	bumba_txn_abort(t);
	return rc;
}

int bumba_txn_move_across(struct bumba *b, const char *from, const char *to, unsigned flags);
int bumba_txn_move_across(struct bumba *b, const char *from, const char *to, unsigned flags)
{
	struct bumba_txn *t;
	int rc = bumba_txn_begin(b, flags & BUMBA_WRITE_NOSYNC, &t);

	if (rc)
		return rc;
	rc = bumba_txn_move(t, from, to);
	if (rc) {
		bumba_txn_abort(t);
		return rc;
	}
	return bumba_txn_commit(t);
}

/* ------------------------------------------------------------------ */
/* recovery                                                            */

void bumba_txn_finish_stuck(struct bumba *b, struct bumba_sio *s);
void bumba_txn_finish_stuck(struct bumba *b, struct bumba_sio *s)
{
	pthread_mutex_lock(&s->smu);
	for (size_t i = 0; i < s->n_stuck; i++) {
		struct bumba_recovery_report r = {0};
		bumba_recover_manifest(b->seg.root_ptrs[s->stuck[i].root], s->stuck[i].name, NULL,
				       NULL, &r);
	}
	s->n_stuck = 0;
	pthread_mutex_unlock(&s->smu);
}

bool bumba_recover_pid_alive(void *ctx, const char *tag, pid_t pid, uint64_t start_time)
{
	if (pid <= 0)
		return false;
	if (start_time)
		return bumba_proc_same(pid, start_time);
	return kill(pid, 0) == 0 || errno == EPERM;
}

static void say(bumba_recovery_log log, void *ctx, int prio, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void say(bumba_recovery_log log, void *ctx, int prio, const char *fmt, ...)
{
	char buf[2 * PATH_MAX + 256];
	va_list ap;

	if (!log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log(ctx, prio, buf);
}

struct mop {
	char kind;
	char *a, *b, *pre, *c; /* into the manifest's own text */
};

struct manifest {
	uid_t uid; /* owner of the manifest file: who asked for all this */
	char *text;
	size_t len;
	char txid[80];
	pid_t pid;
	uint64_t start;
	unsigned flags;
	struct mop *ops;
	size_t n;
};

static int read_all_as(int dfd, const char *name, char **out, size_t *len, uid_t *uid)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
		close(fd);
		return -EINVAL;
	}
	if (uid)
		*uid = st.st_uid;
	char *p = malloc((size_t)st.st_size + 1);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	size_t done = 0;
	while (done < (size_t)st.st_size) {
		ssize_t k = read(fd, p + done, (size_t)st.st_size - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		done += (size_t)k;
	}
	close(fd);
	p[done] = '\0';
	*out = p;
	*len = done;
	return 0;
}

static int read_all(int dfd, const char *name, char **out, size_t *len)
{
	return read_all_as(dfd, name, out, len, NULL);
}

/* bumbad may run as root while manifests are written by agents: recovery
 * only moves a temporary that belongs to the manifest's owner, and never
 * over another user's file in a sticky directory (where that owner could
 * not have done it). */
static bool may_apply(uid_t owner, int dirfd, const char *tmp, const char *target)
{
	struct stat ts, ds, gs;

	if (geteuid() != 0 || owner == 0)
		return true;
	if (fstatat(dirfd, tmp, &ts, AT_SYMLINK_NOFOLLOW) < 0 || ts.st_uid != owner)
		return false;
	if (fstat(dirfd, &ds) == 0 && (ds.st_mode & S_ISVTX) &&
	    fstatat(dirfd, target, &gs, AT_SYMLINK_NOFOLLOW) == 0 && gs.st_uid != owner &&
	    ds.st_uid != owner)
		return false;
	return true;
}

static char *next_line(char **cur)
{
	char *s = *cur, *nl;

	if (!s || !*s)
		return NULL;
	nl = strchr(s, '\n');
	if (!nl)
		return NULL; /* every line ends with a newline */
	*nl = '\0';
	*cur = nl + 1;
	return s;
}

static int parse_manifest(char *text, size_t len, struct manifest *mf)
{
	char *endl;
	unsigned long long want;

	/* The seal: "end <hex>\n" over everything before it. */
	if (len < 5 || text[len - 1] != '\n')
		return -EBADMSG;
	text[len - 1] = '\0';
	endl = strrchr(text, '\n');
	text[len - 1] = '\n';
	if (!endl || strncmp(endl + 1, "end ", 4) != 0)
		return -EBADMSG;
	want = strtoull(endl + 5, NULL, 16);
	if (XXH3_64bits(text, (size_t)(endl + 1 - text)) != want)
		return -EBADMSG;
	*(endl + 1) = '\0';

	char *cur = text, *l;
	size_t nops = 0;
	if (!(l = next_line(&cur)) || strcmp(l, "bumba-txn 1") != 0)
		return -EBADMSG;
	if (!(l = next_line(&cur)) || sscanf(l, "txid %79s", mf->txid) != 1)
		return -EBADMSG;
	if (!(l = next_line(&cur)) || strncmp(l, "agent ", 6) != 0)
		return -EBADMSG;
	unsigned long long st;
	int pid;
	if (!(l = next_line(&cur)) || sscanf(l, "pid %d %llu", &pid, &st) != 2)
		return -EBADMSG;
	mf->pid = pid;
	mf->start = st;
	if (!(l = next_line(&cur)) || sscanf(l, "flags %u", &mf->flags) != 1)
		return -EBADMSG;
	if (!(l = next_line(&cur)) || sscanf(l, "ops %zu", &nops) != 1 || nops > SIO_MAX_TXN_LIMIT)
		return -EBADMSG;
	mf->ops = calloc(nops ? nops : 1, sizeof(*mf->ops));
	if (!mf->ops)
		return -ENOMEM;
	for (size_t i = 0; i < nops; i++) {
		char *f[5];
		if (!(l = next_line(&cur)))
			return -EBADMSG;
		for (int k = 0; k < 5; k++) {
			f[k] = strsep(&l, "\t");
			if (!f[k])
				return -EBADMSG;
		}
		if (l || strlen(f[0]) != 1 || !strchr("WDM", f[0][0]))
			return -EBADMSG;
		mf->ops[i] = (struct mop){f[0][0], f[1], f[2], f[3], f[4]};
	}
	mf->n = nops;
	return 0;
}

/* A path from a manifest: must be a normalised absolute path strictly
 * inside root; gives its directory (opened beneath the root, no symlinks)
 * and its last component. */
static int resolve_in(int rootfd, const char *root, const char *path, int *dirfd, const char **base)
{
	char norm[PATH_MAX], dir[PATH_MAX];
	size_t rl = strlen(root);
	int n = bumba_path_norm(&root, 1, path, (size_t)-1, norm, sizeof(norm), NULL);

	if (n < 0 || strcmp(norm, path) != 0 || (size_t)n <= rl)
		return -EINVAL;
	const char *rel = path + (rl == 1 ? 1 : rl + 1);
	const char *slash = strrchr(rel, '/');
	*base = slash ? slash + 1 : rel;
	if (slash) {
		memcpy(dir, rel, (size_t)(slash - rel));
		dir[slash - rel] = '\0';
	} else {
		strcpy(dir, ".");
	}
	*dirfd = bumba_sio_openat_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY);
	return *dirfd < 0 ? *dirfd : 0;
}

static bool same_dir(const char *a, const char *b)
{
	const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');

	return sa && sb && sa - a == sb - b && !strncmp(a, b, (size_t)(sa - a));
}

static bool is_backup_path(const char *root, const char *p)
{
	char pre[PATH_MAX];

	snprintf(pre, sizeof(pre), "%s%s%s/backups/", root, strcmp(root, "/") ? "/" : "",
		 SIO_STATE_DIR);
	return !strncmp(p, pre, strlen(pre)) && !strstr(p + strlen(pre), "..");
}

static bool matches_pre(int dirfd, const char *base, const char *pre, bool *absent)
{
	struct stat st;
	unsigned long long ino, mt;
	long long size;

	*absent = false;
	if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		*absent = errno == ENOENT;
		return !strcmp(pre, "-") && *absent;
	}
	if (!strcmp(pre, "-"))
		return false;
	if (sscanf(pre, "%llu:%lld:%llu", &ino, &size, &mt) != 3)
		return false;
	return S_ISREG(st.st_mode) && st.st_ino == ino && st.st_size == size &&
	       (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
			       (unsigned long long)st.st_mtim.tv_nsec ==
		       mt;
}

static bool exists_at(int dirfd, const char *base)
{
	struct stat st;

	return fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Keeps the new content a conflict stopped: conflicts/<txid>/<i>-<name>. */
static void set_aside(int rootfd, const char *txid, size_t i, int dirfd, const char *tmp,
		      const char *base)
{
	int cfd = bumba_sio_state_dir(rootfd, "conflicts");
	char name[NAME_MAX + 1];

	if (cfd < 0)
		return;
	mkdirat(cfd, txid, 0700);
	int d = openat(cfd, txid, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d >= 0) {
		snprintf(name, sizeof(name), "%zu-%.200s", i, base);
		if (renameat(dirfd, tmp, d, name) < 0) {
			/* Another filesystem: leave it where it is, but never
			 * under the target's name. */
		}
		fsync(d);
		close(d);
	}
	fsync(cfd);
	close(cfd);
}

static void unlink_abs(int rootfd, const char *root, const char *path)
{
	int d;
	const char *base;

	if (strcmp(path, "-") && resolve_in(rootfd, root, path, &d, &base) == 0) {
		unlinkat(d, base, 0);
		close(d);
	}
}

static int roll_back(int rootfd, const char *root, struct manifest *mf, bumba_recovery_log log,
		     void *ctx, struct bumba_recovery_report *r)
{
	for (size_t i = 0; i < mf->n; i++) {
		struct mop *o = &mf->ops[i];
		const char *tmp = o->kind == 'W' ? o->b : o->kind == 'M' ? o->c : "-";
		const char *bk = o->kind == 'M' ? "-" : o->c;
		if (strcmp(tmp, "-")) {
			const char *slash = strrchr(tmp, '/');
			if (slash && bumba_sio_parse_tmp(slash + 1, NULL, NULL)) {
				unlink_abs(rootfd, root, tmp);
				r->temps++;
			}
		}
		/* The version saved for a change that did not happen: a
		 * delete's backup went with the file only if applied. */
		if (strcmp(bk, "-") && is_backup_path(root, bk))
			unlink_abs(rootfd, root, bk);
	}
	say(log, ctx, LOG_NOTICE, "transaction %s rolled back (%zu operations)", mf->txid, mf->n);
	r->back++;
	return 0;
}

static int roll_forward(int rootfd, const char *root, struct manifest *mf, bumba_recovery_log log,
			void *ctx, struct bumba_recovery_report *r)
{
	int dirs[2 * SIO_MAX_TXN_LIMIT];
	size_t nd = 0;
	int err = 0;

	for (size_t i = 0; i < mf->n; i++) {
		struct mop *o = &mf->ops[i];
		int d1 = -1, d2 = -1, rc;
		const char *b1, *b2;
		bool absent;

		rc = resolve_in(rootfd, root, o->a, &d1, &b1);
		if (rc) {
			say(log, ctx, LOG_ERR, "transaction %s: %s: %s", mf->txid, o->a,
			    strerror(-rc));
			err = err ? err : rc;
			continue;
		}
		switch (o->kind) {
		case 'W': {
			const char *slash = strrchr(o->b, '/');
			if (!slash || !same_dir(o->a, o->b) ||
			    !bumba_sio_parse_tmp(slash + 1, NULL, NULL)) {
				rc = -EINVAL;
				break;
			}
			const char *tmp = slash + 1;
			if (!exists_at(d1, tmp))
				break; /* applied */
			if (!may_apply(mf->uid, d1, tmp, b1)) {
				rc = -EPERM;
				break;
			}
			if (matches_pre(d1, b1, o->pre, &absent)) {
				if (renameat2(d1, tmp, d1, b1, absent ? RENAME_NOREPLACE : 0) < 0)
					rc = -errno;
			} else {
				say(log, ctx, LOG_WARNING,
				    "transaction %s: %s changed since the transaction began; its "
				    "new "
				    "content is kept in .bumba/conflicts/%s",
				    mf->txid, o->a, mf->txid);
				set_aside(rootfd, mf->txid, i, d1, tmp, b1);
				r->conflicts++;
			}
			break;
		}
		case 'D':
			if (matches_pre(d1, b1, o->pre, &absent)) {
				if (unlinkat(d1, b1, 0) < 0 && errno != ENOENT)
					rc = -errno;
			} else if (!absent) {
				say(log, ctx, LOG_WARNING,
				    "transaction %s: %s changed since the transaction began; not "
				    "deleted",
				    mf->txid, o->a);
				r->conflicts++;
			}
			break;
		case 'M': {
			rc = resolve_in(rootfd, root, o->b, &d2, &b2);
			if (rc)
				break;
			if (strcmp(o->c, "-")) {
				const char *slash = strrchr(o->c, '/');
				if (!slash || !same_dir(o->b, o->c) ||
				    !bumba_sio_parse_tmp(slash + 1, NULL, NULL)) {
					rc = -EINVAL;
					break;
				}
				const char *tmp = slash + 1;
				if (exists_at(d2, tmp) && !may_apply(mf->uid, d2, tmp, b2)) {
					rc = -EPERM;
					break;
				}
				if (exists_at(d2, tmp)) {
					if (renameat2(d2, tmp, d2, b2, RENAME_NOREPLACE) < 0) {
						if (errno != EEXIST) {
							rc = -errno;
							break;
						}
						set_aside(rootfd, mf->txid, i, d2, tmp, b2);
						r->conflicts++;
						say(log, ctx, LOG_WARNING,
						    "transaction %s: %s appeared meanwhile; the "
						    "moved "
						    "content is kept in .bumba/conflicts/%s",
						    mf->txid, o->b, mf->txid);
						break;
					}
				}
				if (matches_pre(d1, b1, o->pre, &absent)) {
					if (unlinkat(d1, b1, 0) < 0 && errno != ENOENT)
						rc = -errno;
				}
			} else if (matches_pre(d1, b1, o->pre, &absent)) {
				if (renameat2(d1, b1, d2, b2, RENAME_NOREPLACE) < 0) {
					if (errno == EEXIST) {
						r->conflicts++;
						say(log, ctx, LOG_WARNING,
						    "transaction %s: %s appeared meanwhile; %s not "
						    "moved",
						    mf->txid, o->b, o->a);
					} else {
						rc = -errno;
					}
				}
			} else if (!absent) {
				r->conflicts++;
				say(log, ctx, LOG_WARNING,
				    "transaction %s: %s changed since the transaction began; not "
				    "moved",
				    mf->txid, o->a);
			}
			break;
		}
		}
		if (rc) {
			say(log, ctx, LOG_ERR, "transaction %s: %s: %s", mf->txid, o->a,
			    strerror(-rc));
			err = err ? err : rc;
		}
		if (nd < sizeof(dirs) / sizeof(dirs[0]) - 2) {
			dirs[nd++] = d1;
			if (d2 >= 0)
				dirs[nd++] = d2;
		} else {
			fsync(d1);
			close(d1);
			if (d2 >= 0) {
				fsync(d2);
				close(d2);
			}
		}
	}
	for (size_t i = 0; i < nd; i++) {
		fsync(dirs[i]);
		close(dirs[i]);
	}
	if (!err) {
		say(log, ctx, LOG_NOTICE, "transaction %s rolled forward (%zu operations)",
		    mf->txid, mf->n);
		r->forward++;
	}
	return err;
}

static int recover_one(int rootfd, const char *root, int txnfd, const char *name,
		       bumba_recovery_log log, void *log_ctx, struct bumba_recovery_report *r)
{
	struct manifest mf = {0};
	char *text = NULL;
	size_t len = 0, nl = strlen(name);
	bool commit = nl > 7 && !strcmp(name + nl - 7, ".commit");
	bool prep = nl > 5 && !strcmp(name + nl - 5, ".prep");
	int rc;

	if (!commit && !prep)
		return -EINVAL;
	rc = read_all_as(txnfd, name, &text, &len, &mf.uid);
	if (rc == -ENOENT)
		return 0; /* someone else finished it */
	if (!rc)
		rc = parse_manifest(text, len, &mf);
	if (rc) {
		if (prep) {
			/* Never committed: its temporaries go with the scans. */
			unlinkat(txnfd, name, 0);
			r->back++;
			rc = 0;
		} else {
			int cfd = bumba_sio_state_dir(rootfd, "conflicts");
			say(log, log_ctx, LOG_ERR,
			    "transaction manifest %s unreadable (%s); set aside in "
			    ".bumba/conflicts",
			    name, strerror(-rc));
			if (cfd >= 0) {
				if (renameat(txnfd, name, cfd, name) == 0)
					rc = 0; /* handled: reported, out of the way */
				close(cfd);
			}
			r->bad++;
		}
		free(text);
		free(mf.ops);
		return rc;
	}
	if (prep) {
		rc = roll_back(rootfd, root, &mf, log, log_ctx, r);
		unlinkat(txnfd, name, 0);
	} else {
		rc = roll_forward(rootfd, root, &mf, log, log_ctx, r);
		if (!rc) {
			/* Durable before it goes: else a crash now could replay
			 * nothing over renames the disk never saw. */
			unlinkat(txnfd, name, 0);
		}
	}
	free(text);
	free(mf.ops);
	return rc;
}

int bumba_recover_manifest(const char *root, const char *name, bumba_recovery_log log,
			   void *log_ctx, struct bumba_recovery_report *r)
{
	int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC), txnfd, rc;

	if (rootfd < 0)
		return -errno;
	txnfd = bumba_sio_state_dir(rootfd, "txn");
	if (txnfd < 0) {
		close(rootfd);
		return txnfd;
	}
	flock(txnfd, LOCK_EX);
	rc = recover_one(rootfd, root, txnfd, name, log, log_ctx, r);
	close(txnfd);
	close(rootfd);
	return rc;
}

/* "<tag16>-<pid8>..." */
static bool parse_owner(const char *name, char tag[SIO_TAG_HEX + 1], pid_t *pid)
{
	unsigned p = 0;

	for (int i = 0; i < SIO_TAG_HEX; i++) {
		if (!strchr("0123456789abcdef", name[i]) || !name[i])
			return false;
	}
	if (name[SIO_TAG_HEX] != '-')
		return false;
	for (int i = 0; i < 8; i++) {
		char c = name[SIO_TAG_HEX + 1 + i];
		if (!c || !strchr("0123456789abcdef", c))
			return false;
		p = p << 4 | (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	memcpy(tag, name, SIO_TAG_HEX);
	tag[SIO_TAG_HEX] = '\0';
	*pid = (pid_t)p;
	return true;
}

static void clean_dir_temps(int rootfd, const char *root, const char *dir, const char *tag,
			    pid_t pid, struct bumba_recovery_report *r)
{
	char rel[PATH_MAX];
	size_t rl = strlen(root);

	if (strncmp(dir, root, rl) != 0 || (dir[rl] != '/' && dir[rl] != '\0' && rl != 1))
		return;
	snprintf(rel, sizeof(rel), "%s", dir[rl] == '\0' ? "." : dir + (rl == 1 ? 1 : rl + 1));
	if (!rel[0])
		strcpy(rel, ".");
	int d = bumba_sio_openat_beneath(rootfd, rel, O_RDONLY | O_DIRECTORY);
	if (d < 0)
		return;
	DIR *dd = bumba_opendir_fd(d);
	struct dirent *e;
	while (dd && (e = readdir(dd))) {
		char t[SIO_TAG_HEX + 1];
		pid_t p;
		if (bumba_sio_parse_tmp(e->d_name, t, &p) && !strcmp(t, tag) && p == pid &&
		    unlinkat(d, e->d_name, 0) == 0)
			r->temps++;
	}
	if (dd)
		closedir(dd);
	close(d);
}

int bumba_recover_root(const char *root, const char *tag, bool force, bumba_live_fn live,
		       void *live_ctx, bumba_recovery_log log, void *log_ctx,
		       struct bumba_recovery_report *r)
{
	char dir[PATH_MAX];
	int rootfd, txnfd, err = 0;

	if (!live)
		live = bumba_recover_pid_alive;
	rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	snprintf(dir, sizeof(dir), "%s/txn", SIO_STATE_DIR);
	txnfd = openat(rootfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (txnfd < 0) {
		close(rootfd);
		return errno == ENOENT ? 0 : -errno;
	}
	/* One recoverer at a time per root (bumbad's sweep, a process
	 * finishing its own, a test).  bumbad must not hang behind a stopped
	 * process: it waits at most 100 ms, then goes ahead (every step of a
	 * recovery is idempotent; two at once only cost a spurious warning). */
	for (int tries = 0; flock(txnfd, LOCK_EX | LOCK_NB) < 0 && tries < 50; tries++) {
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	/* Two passes: manifests first (they name temporaries), then the
	 * journals of the processes that are gone. */
	for (int pass = 0; pass < 2; pass++) {
		DIR *d = bumba_opendir_fd(txnfd);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char t[SIO_TAG_HEX + 1];
			pid_t pid;
			size_t nl = strlen(e->d_name);
			bool is_j = nl > 5 && !strcmp(e->d_name + nl - 5, ".dirs");
			if (e->d_name[0] == '.' || !parse_owner(e->d_name, t, &pid))
				continue;
			if (tag && strcmp(tag, t) != 0)
				continue;
			if (pass == 0 && !is_j) {
				char *text = NULL;
				size_t len;
				struct manifest mf = {0};
				uint64_t start = 0;
				/* The start time recorded inside, against pid reuse. */
				if (read_all(txnfd, e->d_name, &text, &len) == 0 &&
				    parse_manifest(text, len, &mf) == 0)
					start = mf.start;
				free(text);
				free(mf.ops);
				if (!force && live(live_ctx, t, pid, start)) {
					r->live++;
					continue;
				}
				int rc = recover_one(rootfd, root, txnfd, e->d_name, log, log_ctx,
						     r);
				if (rc && !err)
					err = rc;
			} else if (pass == 1 && is_j) {
				char *text = NULL, *cur, *l;
				size_t len;
				unsigned long long start = 0;
				if (read_all(txnfd, e->d_name, &text, &len) < 0)
					continue;
				cur = text;
				if (!strncmp(text, "#pid ", 5))
					sscanf(text, "#pid %*d %llu", &start);
				if (!force && live(live_ctx, t, pid, start)) {
					free(text);
					continue;
				}
				while ((l = next_line(&cur))) {
					if (l[0] == '/')
						clean_dir_temps(rootfd, root, l, t, pid, r);
				}
				free(text);
				unlinkat(txnfd, e->d_name, 0);
			}
		}
		if (d)
			closedir(d);
	}
	close(txnfd);
	close(rootfd);
	return err;
}

static void scan_dir(int dfd, int depth, bumba_live_fn live, void *live_ctx, bumba_recovery_log log,
		     void *log_ctx, struct bumba_recovery_report *r)
{
	DIR *d;
	struct dirent *e;

	if (depth > 256)
		return;
	d = bumba_opendir_fd(dfd);
	if (!d)
		return;
	while ((e = readdir(d))) {
		char t[SIO_TAG_HEX + 1];
		pid_t pid;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (depth == 0 && !strcmp(e->d_name, SIO_STATE_DIR))
			continue;
		if (e->d_type == DT_DIR) {
			int sub = openat(dfd, e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				scan_dir(sub, depth + 1, live, live_ctx, log, log_ctx, r);
				close(sub);
			}
			continue;
		}
		if ((e->d_type == DT_REG || e->d_type == DT_UNKNOWN) &&
		    bumba_sio_parse_tmp(e->d_name, t, &pid) && !live(live_ctx, t, pid, 0)) {
			struct stat st;
			if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode) && unlinkat(dfd, e->d_name, 0) == 0) {
				r->temps++;
				say(log, log_ctx, LOG_INFO, "removed stray temporary %s",
				    e->d_name);
			}
		}
	}
	closedir(d);
}

int bumba_recover_scan(const char *root, bumba_live_fn live, void *live_ctx, bumba_recovery_log log,
		       void *log_ctx, struct bumba_recovery_report *r)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	scan_dir(fd, 0, live ? live : bumba_recover_pid_alive, live_ctx, log, log_ctx, r);
	close(fd);
	return 0;
}
