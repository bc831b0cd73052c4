/* SPDX-License-Identifier: MIT */
/*
 * backup.c - the backup store under <root>/.bumba/backups: making a version
 * (reflink, hard link or copy), listing, restoring, and the retention sweep
 * bumbad runs.
 *
 * One directory per file, named by 16 hex of xxh3(normalised path), holding
 * a "path" file (the normalised path, so listing needs no reverse hash) and
 * one file per replaced version:
 *
 *     2025-01-02T03:04:05.123456789Z.write.1a2b3c4d
 *
 * the UTC instant the content stopped being current, the operation that
 * replaced it, and 8 random hex digits.  Names sort in time order.  A
 * version keeps the file's mode, owner (as far as we may) and mtime.
 *
 * How a version is made, cheapest first:
 *   1. FICLONE into a new file (XFS, btrfs, bcachefs...): shares the blocks,
 *      costs no copy, and is a true snapshot;
 *   2. a hard link, when the file has a single link and the store is on the
 *      same mount: bumba replaces files by rename and never writes an inode
 *      in place, so once the rename retires the old inode its content is
 *      frozen (another program that kept the old file open and writes to
 *      it would change the version too: that program already breaks the
 *      rules the guard enforces);
 *   3. a copy (copy_file_range, else read/write).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "handle.h"
#include "safeio.h"

void bumba_backup_key(const char *norm, size_t len, char out[17])
{
	snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits(norm, len));
}

int bumba_copy_fd(int in, int out)
{
	loff_t oi = 0, oo = 0;
	bool fallback = false;

	for (;;) {
		ssize_t k = copy_file_range(in, &oi, out, &oo, 1u << 30, 0);
		if (k == 0)
			return 0;
		if (k > 0)
			continue;
		if (errno == EINTR)
			continue;
		if (oi == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				errno == EOPNOTSUPP || errno == EBADF)) {
			fallback = true;
			break;
		}
		return -errno;
	}
	if (!fallback)
		return 0;
	char *buf = malloc(1u << 18);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	for (off_t off = 0;;) {
		ssize_t k = pread(in, buf, 1u << 18, off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = -errno;
			break;
		}
		if (k == 0)
			break;
		for (ssize_t w = 0; w < k;) {
			ssize_t x = pwrite(out, buf + w, (size_t)(k - w), off + w);
			if (x < 0 && errno == EINTR)
				continue;
			if (x < 0) {
				rc = -errno;
				goto done;
			}
			w += x;
		}
		off += k;
	}
done:
	free(buf);
	return rc;
}

static void version_name(const char *op, char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	uint32_t r;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	if (getentropy(&r, sizeof(r)) < 0)
		r = (uint32_t)XXH3_64bits(&ts, sizeof(ts)) ^ (uint32_t)getpid() * 2654435761u;
	snprintf(out, cap, "%s.%09ldZ.%s.%08x", when, ts.tv_nsec, op, r);
}

bool bumba_backup_parse_name(const char *name, uint64_t *ns, char op[16])
{
	struct tm tm = {0};
	long nsec;
	char opb[16], hex[9];
	int n = 0;

	if (strlen(name) < 31)
		return false;
	if (sscanf(name, "%4d-%2d-%2dT%2d:%2d:%2d.%9ldZ.%15[a-z].%8[0-9a-f]%n", &tm.tm_year,
		   &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &nsec, opb, hex,
		   &n) != 9 ||
	    name[n] != '\0' || strlen(hex) != 8)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || t < 0 || nsec < 0 || nsec > 999999999)
		return false;
	if (ns)
		*ns = (uint64_t)t * 1000000000ull + (uint64_t)nsec;
	if (op)
		snprintf(op, 16, "%s", opb);
	return true;
}

/* backups/<key>/ of p, created with its "path" file when missing. */
static int open_version_dir(struct bumba_sio *s, int rootfd, const struct sio_path *p,
			    bool *created)
{
	char key[17];
	int bfd = bumba_sio_backups_fd(s, rootfd, p->root); /* cached: not ours to close */

	if (bfd < 0)
		return bfd;
	bumba_backup_key(p->norm, p->len, key);
	*created = false;
	int d = openat(bfd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d < 0 && errno == ENOENT) {
		if (mkdirat(bfd, key, 0700) == 0)
			*created = true;
		else if (errno != EEXIST)
			return -errno;
		d = openat(bfd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (d < 0)
		return -errno;
	if (*created || faccessat(d, "path", F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
		struct stat bst;
		if (fstat(bfd, &bst) == 0) {
			fchmod(d, 0700 | (bst.st_mode & 0070));
			if (bst.st_uid != geteuid() || bst.st_gid != getegid())
				(void)!fchown(d, bst.st_uid, bst.st_gid);
		}
		char tmp[64];
		snprintf(tmp, sizeof(tmp), ".path.%d", (int)getpid());
		int f = openat(d, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (f >= 0) {
			bool ok = write(f, p->norm, p->len) == (ssize_t)p->len &&
				  write(f, "\n", 1) == 1 && fsync(f) == 0;
			close(f);
			if (ok)
				renameat(d, tmp, d, "path");
			else
				unlinkat(d, tmp, 0);
		}
		fsync(d);
		if (*created)
			fsync(bfd);
	}
	return d;
}

static void keep_attrs(int fd, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};

	if (fchown(fd, st->st_uid, st->st_gid) < 0)
		(void)!fchown(fd, (uid_t)-1, st->st_gid);
	fchmod(fd, st->st_mode & 07777);
	futimens(fd, ts);
}

int bumba_backup_make(struct bumba_sio *s, int rootfd, const struct sio_path *p, int dirfd, int ofd,
		      const struct stat *st, const char *op, struct sio_backup *bk)
{
	int rc, own_ofd = -1, nfd = -1;
	bool created;

	bk->dirfd = bk->fd = -1;
	bk->method = SIO_BK_NONE;
	bk->dir_created = false;
	rc = open_version_dir(s, rootfd, p, &created);
	if (rc < 0)
		return rc;
	bk->dirfd = rc;
	bk->dir_created = created;
	version_name(op, bk->name, sizeof(bk->name));
	{
		char key[17];
		bumba_backup_key(p->norm, p->len, key);
		snprintf(bk->abs, sizeof(bk->abs), "%s%s%s/backups/%s/%s", p->root_s,
			 strcmp(p->root_s, "/") ? "/" : "", SIO_STATE_DIR, key, bk->name);
	}
	if (ofd < 0) {
		own_ofd = openat(dirfd, p->base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (own_ofd < 0) {
			rc = -errno;
			goto fail;
		}
		ofd = own_ofd;
	}

	/* A version appears whole or not at all: clones and copies are made
	 * under ".<name>.part" and renamed; a link is atomic by itself. */
	char part[NAME_MAX + 1];
	snprintf(part, sizeof(part), ".%.200s.part", bk->name);

	/* 1. reflink, unless this filesystem already said no */
	bool try_clone = true;
	for (unsigned k = 0; k < atomic_load(&s->n_noclone) && k < 8; k++)
		try_clone &= s->noclone[k] != st->st_dev;
	nfd = try_clone || st->st_nlink != 1
		      ? openat(bk->dirfd, part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
		      : -2;
	if (nfd == -1) {
		rc = -errno;
		goto fail;
	}
	bool cloned = false;
	if (try_clone) {
		if (ioctl(nfd, FICLONE, ofd) == 0) {
			cloned = true;
		} else if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV ||
			   errno == EINVAL) {
			unsigned k = atomic_fetch_add(&s->n_noclone, 1);
			if (k < 8)
				s->noclone[k] = st->st_dev;
		}
	}
	if (cloned) {
		keep_attrs(nfd, st);
		if (renameat(bk->dirfd, part, bk->dirfd, bk->name) < 0) {
			rc = -errno;
			close(nfd);
			unlinkat(bk->dirfd, part, 0);
			goto fail;
		}
		bk->fd = nfd;
		bk->method = SIO_BK_CLONE;
		atomic_fetch_add(&s->n_clone, 1);
		goto done;
	}
	/* 2. hard link */
	if (st->st_nlink == 1) {
		if (nfd >= 0) {
			unlinkat(bk->dirfd, part, 0);
			close(nfd);
		}
		nfd = -1;
		if (linkat(dirfd, p->base, bk->dirfd, bk->name, 0) == 0) {
			struct stat lst;
			if (fstatat(bk->dirfd, bk->name, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
			    lst.st_ino == st->st_ino && lst.st_dev == st->st_dev) {
				bk->method = SIO_BK_LINK;
				atomic_fetch_add(&s->n_link, 1);
				goto done;
			}
			unlinkat(bk->dirfd, bk->name, 0); /* not the file we opened */
		}
		nfd = openat(bk->dirfd, part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (nfd < 0) {
			rc = -errno;
			goto fail;
		}
	}
	/* 3. copy */
	rc = bumba_copy_fd(ofd, nfd);
	if (!rc) {
		keep_attrs(nfd, st);
		if (renameat(bk->dirfd, part, bk->dirfd, bk->name) < 0)
			rc = -errno;
	}
	if (rc) {
		close(nfd);
		unlinkat(bk->dirfd, part, 0);
		goto fail;
	}
	bk->fd = nfd;
	bk->method = SIO_BK_COPY;
	atomic_fetch_add(&s->n_copy, 1);
done:
	if (own_ofd >= 0)
		close(own_ofd);
	return 0;
fail:
	if (own_ofd >= 0)
		close(own_ofd);
	close(bk->dirfd);
	bk->dirfd = -1;
	return rc;
}

void bumba_backup_close(struct sio_backup *bk)
{
	if (bk->fd >= 0)
		close(bk->fd);
	if (bk->dirfd >= 0)
		close(bk->dirfd);
	bk->fd = bk->dirfd = -1;
}

void bumba_backup_discard(struct sio_backup *bk)
{
	if (bk->method != SIO_BK_NONE && bk->dirfd >= 0)
		unlinkat(bk->dirfd, bk->name, 0);
	bk->method = SIO_BK_NONE;
}

/* ------------------------------------------------------------------ */
/* listing                                                             */

struct vlist {
	struct bumba_backup_version *v;
	size_t n, cap;
};

static int vcmp(const void *a, const void *b)
{
	const struct bumba_backup_version *x = a, *y = b;
	int c = strcmp(x->path, y->path);

	if (c)
		return c;
	return x->replaced_ns < y->replaced_ns ? -1 : x->replaced_ns > y->replaced_ns;
}

static int read_small(int dfd, const char *name, char *out, size_t cap)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ssize_t k = read(fd, out, cap - 1);
	close(fd);
	if (k <= 0)
		return -EIO;
	out[k] = '\0';
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	return 0;
}

static int list_dir(const char *root, int kd, const char *want, struct vlist *l)
{
	char path[PATH_MAX];
	DIR *d;
	struct dirent *e;

	if (read_small(kd, "path", path, sizeof(path)) < 0)
		return 0;
	if (want && strcmp(path, want) != 0)
		return 0;
	if (!(d = bumba_opendir_fd(kd)))
		return -errno;
	while ((e = readdir(d))) {
		struct bumba_backup_version v = {0};
		struct stat st;
		if (!bumba_backup_parse_name(e->d_name, &v.replaced_ns, v.op))
			continue;
		if (fstatat(kd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		v.size = (uint64_t)st.st_size;
		v.mode = st.st_mode & 07777;
		snprintf(v.path, sizeof(v.path), "%s", path);
		char key[17];
		bumba_backup_key(path, strlen(path), key);
		snprintf(v.file, sizeof(v.file), "%s%s%s/backups/%s/%s", root,
			 strcmp(root, "/") ? "/" : "", SIO_STATE_DIR, key, e->d_name);
		if (l->n == l->cap) {
			size_t nc = l->cap ? 2 * l->cap : 64;
			void *nv = realloc(l->v, nc * sizeof(*l->v));
			if (!nv) {
				closedir(d);
				return -ENOMEM;
			}
			l->v = nv;
			l->cap = nc;
		}
		l->v[l->n++] = v;
	}
	closedir(d);
	return 0;
}

int bumba_backup_list(const char *const *roots, size_t n_roots, const char *norm,
		      bumba_backup_cb cb, void *ctx)
{
	struct vlist l = {0};
	int rc = 0;

	for (size_t r = 0; r < n_roots && !rc; r++) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s%s%s/backups", roots[r],
			 strcmp(roots[r], "/") ? "/" : "", SIO_STATE_DIR);
		int bfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (bfd < 0)
			continue;
		if (norm) {
			char key[17];
			bumba_backup_key(norm, strlen(norm), key);
			int kd = openat(bfd, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (kd >= 0) {
				rc = list_dir(roots[r], kd, norm, &l);
				close(kd);
			}
		} else {
			DIR *d = bumba_opendir_fd(bfd);
			struct dirent *e;
			while (d && (e = readdir(d)) && !rc) {
				if (e->d_name[0] == '.')
					continue;
				int kd = openat(bfd, e->d_name,
						O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (kd < 0)
					continue;
				rc = list_dir(roots[r], kd, NULL, &l);
				close(kd);
			}
			if (d)
				closedir(d);
		}
		close(bfd);
	}
	if (!rc && l.n) {
		qsort(l.v, l.n, sizeof(*l.v), vcmp);
		for (size_t i = 0; i < l.n; i++) {
			if (cb(ctx, &l.v[i]))
				break;
		}
	}
	free(l.v);
	return rc;
}

/* ------------------------------------------------------------------ */
/* restore                                                             */

struct pick {
	int64_t at_ns; /* < 0: newest */
	struct bumba_backup_version best;
	bool found;
};

static int pick_cb(void *ctx, const struct bumba_backup_version *v)
{
	struct pick *pk = ctx;

	if (pk->at_ns < 0) {
		pk->best = *v; /* oldest first: the last one seen is the newest */
		pk->found = true;
		return 0;
	}
	if (v->replaced_ns > (uint64_t)pk->at_ns) {
		pk->best = *v; /* the first one replaced after the instant */
		pk->found = true;
		return 1;
	}
	return 0;
}

int bumba_safe_restore(struct bumba *b, const char *path, int64_t at_ms, unsigned flags)
{
	struct sio_path *p;
	struct pick *pk;
	int rc, fd = -1;
	char *buf = NULL;

	if (!b || !path ||
	    (flags & ~(BUMBA_WRITE_VERIFY | BUMBA_WRITE_NOSYNC | BUMBA_WRITE_BACKUP)))
		return -EINVAL;
	p = malloc(sizeof(*p));
	pk = calloc(1, sizeof(*pk));
	if (!p || !pk) {
		rc = -ENOMEM;
		goto out;
	}
	rc = bumba_sio_path(b, path, p);
	if (!rc)
		rc = bumba_sio_authority(b, p);
	if (rc)
		goto out;
	pk->at_ns = at_ms < 0 ? -1 : at_ms * 1000000ll;
	const char *root = p->root_s;
	rc = bumba_backup_list(&root, 1, p->norm, pick_cb, pk);
	if (rc)
		goto out;
	if (!pk->found) {
		/* Nothing replaced since at_ms: the file already is what it
		 * was then (or there never was a backup). */
		rc = at_ms < 0 ? -ENOENT : -EALREADY;
		goto out;
	}
	fd = open(pk->best.file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	size_t done = 0;
	while (done < (size_t)st.st_size) {
		ssize_t k = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO;
			goto out;
		}
		done += (size_t)k;
	}
	rc = bumba_sio_write_op(b, path, buf, done, flags | BUMBA_WRITE_BACKUP, "restore",
				st.st_mode & 07777);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(p);
	free(pk);
	return rc;
}

/* ------------------------------------------------------------------ */
/* retention                                                           */

static long sweep_versions(int bfd, uint64_t now_ns, uint64_t retention_ns)
{
	DIR *d = bumba_opendir_fd(bfd);
	struct dirent *e;
	long removed = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int kd = openat(bfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (kd < 0)
			continue;
		DIR *k = bumba_opendir_fd(kd);
		struct dirent *v;
		unsigned left = 0;
		while (k && (v = readdir(k))) {
			uint64_t ns;
			if (!strcmp(v->d_name, ".") || !strcmp(v->d_name, "..") ||
			    !strcmp(v->d_name, "path"))
				continue;
			size_t vl = strlen(v->d_name);
			if (v->d_name[0] == '.' && vl > 5 && !strcmp(v->d_name + vl - 5, ".part")) {
				/* A version a crash cut short, once nobody can
				 * still be making it. */
				struct stat pst;
				if (fstatat(kd, v->d_name, &pst, AT_SYMLINK_NOFOLLOW) == 0 &&
				    (uint64_t)pst.st_mtim.tv_sec * 1000000000ull +
						    3600000000000ull <
					    now_ns &&
				    unlinkat(kd, v->d_name, 0) == 0) {
					removed++;
					continue;
				}
			}
			if (bumba_backup_parse_name(v->d_name, &ns, NULL) &&
			    ns + retention_ns < now_ns && unlinkat(kd, v->d_name, 0) == 0) {
				removed++;
				continue;
			}
			left++;
		}
		if (k)
			closedir(k);
		if (!left) {
			unlinkat(kd, "path", 0);
			unlinkat(bfd, e->d_name, AT_REMOVEDIR);
		}
		close(kd);
	}
	closedir(d);
	return removed;
}

static long sweep_conflicts(int cfd, uint64_t now_ns, uint64_t retention_ns)
{
	DIR *d = bumba_opendir_fd(cfd);
	struct dirent *e;
	long removed = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(cfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		uint64_t m =
			(uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
		if (m + retention_ns >= now_ns)
			continue;
		int kd = openat(cfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (kd < 0)
			continue;
		DIR *k = bumba_opendir_fd(kd);
		struct dirent *v;
		while (k && (v = readdir(k))) {
			if (strcmp(v->d_name, ".") && strcmp(v->d_name, ".."))
				unlinkat(kd, v->d_name, 0);
		}
		if (k)
			closedir(k);
		close(kd);
		if (unlinkat(cfd, e->d_name, AT_REMOVEDIR) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

long bumba_backup_sweep(const char *root, uint64_t now_ns, uint64_t retention_ns)
{
	char dir[PATH_MAX];
	long n = 0, k;

	snprintf(dir, sizeof(dir), "%s%s%s", root, strcmp(root, "/") ? "/" : "", SIO_STATE_DIR);
	int sfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return errno == ENOENT ? 0 : -errno;
	int bfd = openat(sfd, "backups", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd >= 0) {
		k = sweep_versions(bfd, now_ns, retention_ns);
		n += k > 0 ? k : 0;
		close(bfd);
	}
	int cfd = openat(sfd, "conflicts", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cfd >= 0) {
		k = sweep_conflicts(cfd, now_ns, retention_ns);
		n += k > 0 ? k : 0;
		close(cfd);
	}
	close(sfd);
	return n;
}
