/* SPDX-License-Identifier: MIT */
/*
 * refactor_agent.c - an example agent in C that does real work on a source
 * tree, the way a coding agent would, with bumba keeping it from trampling
 * the other agents working on the same tree.
 *
 *   refactor_agent [--socket PATH] [--type T] [--name N] [--department D]
 *                  [--capability C]... [--territory PATH]...
 *                  [--license-tree DIR] [--rename OLD:NEW]
 *                  [--add-function FILE:NAME]... [--add-test FILE:NAME]...
 *                  [--bump-version] [--config SECTION.KEY=VALUE]...
 *                  [--header PATH] [--changelog PATH] [--think MS]
 *                  [--hold-until FILE] [--no-lock]
 *
 * What it shows, task by task (they run in this order):
 *
 *   identity      bumba_open() registers the agent with --type/--name/
 *                 --department.  Run under `bumba-run`, the same call joins
 *                 the agent bumba-run registered (BUMBA_AGENT_ID and an
 *                 inherited descriptor): same id, same territories.
 *   --license-tree DIR
 *                 claims DIR as an EXCLUSIVE territory, adds an SPDX line
 *                 to every .c/.h file under it as ONE transaction
 *                 (bumba_txn_*: all files or none, even across a crash),
 *                 and releases DIR again so that others can have parts of it.
 *   --territory PATH
 *                 the agent's home: claimed as one EXCLUSIVE territory,
 *                 all or nothing.  When another agent holds an overlapping
 *                 claim, bumba_territory_claim() returns -EBUSY with every
 *                 conflict; the agent prints them and retries with backoff.
 *                 Files inside its territory it may write without locks.
 *   --rename OLD:NEW
 *                 renames an identifier in every .c/.h file of its territory
 *                 and in the shared header, as ONE transaction.  The shared
 *                 header is outside its territory: it holds an exclusive
 *                 lock on it from the read to the commit.
 *   --add-function FILE:NAME
 *                 appends a function to FILE (in its territory) and its
 *                 prototype to the shared header (under the lock), again as
 *                 one transaction: nobody ever sees the one without the other.
 *   --add-test FILE:NAME
 *                 appends a test of NAME to FILE and calls it from main():
 *                 a plain read-modify-write with bumba_safe_write().
 *   --bump-version
 *                 include/version.h: patch level + 1, under an exclusive lock.
 *   --config SECTION.KEY=VALUE
 *                 sets a key of config/project.ini, under an exclusive lock.
 *   every task    appends exactly one line to the shared CHANGELOG.md, under
 *                 an exclusive lock on it.  Lost updates would lose lines.
 *   --hold-until FILE
 *                 stays registered, holding its territory, until FILE exists
 *                 (the demo shows the dashboard with every agent present).
 *
 * Every file is written whole (bumba_safe_write or a transaction) and ends
 * with a seal line carrying the CRC-32 and length of everything above it:
 *
 *   <!-- bumba-seal crc32=1c291ca3 bytes=412 -->   (in Markdown; a C comment in
 *                                                   C files, "; ..." in INI)
 *
 * The agent checks the seal of every file it reads before changing it, and
 * anyone can check every file at the end (agents/demo.sh does): a torn or
 * mixed write, or a write that went around bumba, breaks the seal.  Every
 * edit carries its author's tag, "@<Name>#<task number>", so that the end
 * check can find each edit again; the agent reports on stdout, one per line:
 *
 *   claimed <territory id> <paths>      conflict <path> <holder> <type>
 *   edit <path> <tag>                   txn <tag> committed <n> files
 *   op <tag> <summary>                  owner-died <path> fence <n>
 *   bump <tag>                          holding until <file>
 *   agent <id> pid <n> [(joined ...)]   done <agent id> ops=<n> ...
 *
 * --no-lock edits the shared files (CHANGELOG.md, version.h, project.ini)
 * with a plain read-modify-write and no bumba lock, to watch the end check
 * catch the lost updates that the lock prevents.  --think MS (default 20)
 * pauses between reading and writing, to give the others something to wait
 * for.  Exit status: 0 done, 1 any error (printed with its errno name),
 * 64 bad usage.
 *
 * Build (make does): cc -Ishm refactor_agent.c build/libbumba-shm.a
 *                    -luring -lxxhash -lpthread
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bumba.h"

#define LOCK_TIMEOUT_MS	  30000
#define CLAIM_DEADLINE_MS 30000
#define HOLD_DEADLINE_MS  60000
#define MAX_LIST	  16
#define MAX_CONFLICTS	  8

/* ---------------------------------------------------------------------
 * Small growable text buffer
 * ------------------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more)
{
	size_t want = b->len + more + 1;
	char *np;

	if (want <= b->cap)
		return 0;
	if (want < 2 * b->cap)
		want = 2 * b->cap;
	np = realloc(b->p, want);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = want;
	return 0;
}

static int buf_add(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n))
		return -ENOMEM;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

__attribute__((format(printf, 2, 3))) static int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n))
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){0};
}

/* ---------------------------------------------------------------------
 * Seals: the last line of every file says what the rest must be
 * ------------------------------------------------------------------- */

/* CRC-32 (IEEE, the one of zlib, gzip and Python's zlib.crc32), bitwise:
 * the files are a few KiB, no table needed. */
static uint32_t crc32_ieee(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
	}
	return ~c;
}

/* The seal line goes in the file's own comment syntax, so that the seeded
 * C, Markdown and INI files stay valid. */
static void comment_style(const char *path, const char **open, const char **close)
{
	const char *dot = strrchr(path, '.');

	if (dot && (!strcmp(dot, ".c") || !strcmp(dot, ".h"))) {
		*open = "/*", *close = " */";
	} else if (dot && !strcmp(dot, ".md")) {
		*open = "<!--", *close = " -->";
	} else if (dot && !strcmp(dot, ".ini")) {
		*open = ";", *close = "";
	} else {
		*open = "#", *close = "";
	}
}

/* Appends the seal of body[0..len) (which ends with a newline) to out. */
static int seal(struct buf *out, const char *path)
{
	const char *open, *close;
	size_t body = out->len;

	if (body && out->p[body - 1] != '\n' && buf_add(out, "\n", 1))
		return -ENOMEM;
	body = out->len;
	comment_style(path, &open, &close);
	return buf_printf(out, "%s bumba-seal crc32=%08" PRIx32 " bytes=%zu%s\n", open,
			  crc32_ieee(out->p, body), body, close);
}

/* Checks the seal of a whole file in b and cuts it off, leaving the body.
 * -EUCLEAN when the last line is no seal or does not match: the file is
 * not a complete version written by an agent. */
static int unseal(struct buf *b, const char *path)
{
	const char *last, *s;
	unsigned long long bytes;
	unsigned int crc;

	if (b->len < 2 || b->p[b->len - 1] != '\n') {
		fprintf(stderr, "refactor_agent: %s: no seal line at the end: torn file?\n", path);
		return -EUCLEAN;
	}
	last = b->p + b->len - 1;
	while (last > b->p && last[-1] != '\n')
		last--;
	s = strstr(last, "bumba-seal crc32=");
	if (!s || sscanf(s, "bumba-seal crc32=%8x bytes=%llu", &crc, &bytes) != 2 ||
	    bytes != (unsigned long long)(last - b->p) ||
	    crc != crc32_ieee(b->p, (size_t)(last - b->p))) {
		fprintf(stderr,
			"refactor_agent: %s: the seal does not match the content: torn, mixed, "
			"or written around bumba\n",
			path);
		return -EUCLEAN;
	}
	b->len = (size_t)(last - b->p);
	b->p[b->len] = '\0';
	return 0;
}

/* ---------------------------------------------------------------------
 * The agent
 * ------------------------------------------------------------------- */

struct opts {
	const char *socket;
	struct bumba_agent_info info;
	const char *caps[MAX_LIST];
	const char *territory[MAX_LIST];
	size_t n_territory;
	const char *license_tree;
	const char *rename;
	const char *add_function[MAX_LIST];
	size_t n_add_function;
	const char *add_test[MAX_LIST];
	size_t n_add_test;
	bool bump_version;
	const char *config[MAX_LIST];
	size_t n_config;
	const char *header, *changelog, *version_h, *project_ini;
	const char *hold_until;
	int think_ms;
	bool no_lock;
};

struct agent {
	struct bumba *b;
	const struct opts *o;
	const char *id;
	char name[64];	  /* the <Name> part of the id: tags are @<Name>#<n> */
	const char *root; /* workspace root 0: relative paths are under it */
	int task;	  /* number of the task running, for its tag */
	char tag[96];
	long ops, claim_retries, owner_died;
};

static const char *err_name(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "?";
}

static int fail(const char *what, const char *path, int rc)
{
	fprintf(stderr, "refactor_agent: %s%s%s: %s (%s)\n", what, path ? " " : "",
		path ? path : "", err_name(-rc), strerror(-rc));
	return rc;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Starts the next task: its tag is what every edit of it carries. */
static void next_task(struct agent *a)
{
	a->task++;
	snprintf(a->tag, sizeof(a->tag), "@%s#%d", a->name, a->task);
	bumba_set_status(a->b, BUMBA_STATUS_BUSY);
}

/* The think time: a real agent would be working out its edit here; the
 * demo uses it to make the others wait for the lock for a while. */
static void think(const struct agent *a)
{
	if (a->o->think_ms > 0)
		sleep_ms(a->o->think_ms);
}

/* Reads a whole workspace file and checks its seal.  bumba_safe_read needs
 * no lock: safe writes replace files whole, so it sees one version. */
static int read_sealed(struct agent *a, const char *path, struct buf *out)
{
	size_t len = 0;
	int rc;

	out->len = 0;
	if (buf_reserve(out, 16384))
		return -ENOMEM;
	for (;;) {
		rc = bumba_safe_read(a->b, path, out->p, out->cap - 1, &len);
		if (rc != -ENOBUFS)
			break;
		if (buf_reserve(out, len + 1))
			return -ENOMEM;
	}
	if (rc)
		return fail("read", path, rc);
	out->len = len;
	out->p[len] = '\0';
	return unseal(out, path);
}

/* --no-lock only: the same read with plain system calls, as an agent that
 * does not know bumba would do it. */
static int read_plain(struct agent *a, const char *path, struct buf *out)
{
	char full[PATH_MAX];
	ssize_t n;
	int fd;

	snprintf(full, sizeof(full), "%s/%s", a->root, path);
	out->len = 0;
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open", path, -errno);
	for (;;) {
		if (buf_reserve(out, 16384)) {
			close(fd);
			return -ENOMEM;
		}
		n = read(fd, out->p + out->len, out->cap - out->len - 1);
		if (n <= 0)
			break;
		out->len += (size_t)n;
	}
	close(fd);
	if (n < 0)
		return fail("read", path, -errno);
	out->p[out->len] = '\0';
	return unseal(out, path);
}

/* Seals body and replaces path with it.  BACKUP: `bumbactl backups` then
 * lists every version the agents replaced. */
static int write_sealed(struct agent *a, const char *path, struct buf *body)
{
	int rc = seal(body, path);

	if (!rc)
		rc = bumba_safe_write(a->b, path, body->p, body->len, BUMBA_WRITE_BACKUP);
	return rc ? fail("safe write", path, rc) : 0;
}

/* --no-lock only: temporary file and rename, atomic but not exclusive. */
static int write_plain(struct agent *a, const char *path, struct buf *body)
{
	char full[PATH_MAX], tmp[PATH_MAX + 32];
	int fd, rc = seal(body, path);

	if (rc)
		return rc;
	snprintf(full, sizeof(full), "%s/%s", a->root, path);
	snprintf(tmp, sizeof(tmp), "%s.nolock-%d", full, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail("open", tmp, -errno);
	if (write(fd, body->p, body->len) != (ssize_t)body->len)
		rc = -EIO;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, full) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return fail("write", path, rc);
	}
	return 0;
}

/* An exclusive lock on a shared file outside our territory.  Waiting is a
 * futex sleep in the segment; the agent says "blocked" meanwhile, so the
 * dashboard shows who waits. */
static int lock_file(struct agent *a, const char *path, struct bumba_lock *lk)
{
	int rc;

	bumba_set_status(a->b, BUMBA_STATUS_BLOCKED);
	rc = bumba_lock_acquire(a->b, path, BUMBA_EXCLUSIVE, LOCK_TIMEOUT_MS, BUMBA_PRIO_NORMAL,
				lk);
	bumba_set_status(a->b, BUMBA_STATUS_BUSY);
	if (rc)
		return fail("lock", path, rc);
	if (bumba_lock_owner_died(lk)) {
		/* The holder before us was killed holding it.  Its write
		 * either happened whole or not at all (safe writes rename);
		 * the seal check on our read tells us the file is sound. */
		a->owner_died++;
		printf("owner-died %s fence %" PRIu64 "\n", path, lk->fence);
	}
	return 0;
}

static void unlock_file(struct agent *a, const char *path, struct bumba_lock *lk)
{
	int rc = bumba_lock_release(a->b, lk);

	if (rc)
		fail("release", path, rc);
}

/* An edit of a body: returns the new body in out. */
typedef int (*edit_fn)(struct agent *a, const struct buf *in, struct buf *out, const void *arg);

/* Read-modify-write of a shared file under its exclusive lock: the lock is
 * what keeps two agents from reading the same version and the second write
 * throwing the first one's edit away. */
static int edit_shared(struct agent *a, const char *path, edit_fn fn, const void *arg)
{
	struct buf in = {0}, out = {0};
	struct bumba_lock lk;
	int rc;

	if (a->o->no_lock) {
		rc = read_plain(a, path, &in);
		if (!rc)
			rc = fn(a, &in, &out, arg);
		think(a);
		if (!rc)
			rc = write_plain(a, path, &out);
	} else {
		rc = lock_file(a, path, &lk);
		if (rc)
			return rc;
		rc = read_sealed(a, path, &in);
		if (!rc)
			rc = fn(a, &in, &out, arg);
		think(a);
		if (!rc)
			rc = write_sealed(a, path, &out);
		unlock_file(a, path, &lk);
	}
	buf_free(&in);
	buf_free(&out);
	return rc;
}

/* ---------------------------------------------------------------------
 * Text edits (pure functions of the old body)
 * ------------------------------------------------------------------- */

/* Copies in to out with text inserted before the last line that starts
 * with prefix (at the end when there is none). */
static int insert_before_last(const struct buf *in, struct buf *out, const char *prefix,
			      const char *text)
{
	size_t at = in->len, pl = strlen(prefix);

	for (size_t i = 0; i < in->len; i++)
		if ((i == 0 || in->p[i - 1] == '\n') && !strncmp(in->p + i, prefix, pl))
			at = i;
	if (buf_add(out, in->p, at) || buf_add(out, text, strlen(text)) ||
	    buf_add(out, in->p + at, in->len - at))
		return -ENOMEM;
	return 0;
}

static bool ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* Whole-word replacement of an identifier.  Returns how many were made. */
static long replace_ident(const struct buf *in, struct buf *out, const char *from, const char *to)
{
	size_t fl = strlen(from), i = 0;
	long n = 0;

	while (i < in->len) {
		if (!strncmp(in->p + i, from, fl) && (i == 0 || !ident_char(in->p[i - 1])) &&
		    (i + fl >= in->len || !ident_char(in->p[i + fl]))) {
			if (buf_add(out, to, strlen(to)))
				return -ENOMEM;
			i += fl;
			n++;
		} else {
			if (buf_add(out, in->p + i, 1))
				return -ENOMEM;
			i++;
		}
	}
	return n;
}

/* CHANGELOG.md: one line per task, appended at the end. */
static int edit_changelog(struct agent *a, const struct buf *in, struct buf *out, const void *arg)
{
	if (buf_add(out, in->p, in->len) ||
	    buf_printf(out, "- %s %s (%s)\n", a->tag, (const char *)arg, a->id))
		return -ENOMEM;
	return 0;
}

/* include/version.h: CALC_VERSION_PATCH + 1, and a line saying who did. */
static int edit_version(struct agent *a, const struct buf *in, struct buf *out, const void *arg)
{
	const char *key = "#define CALC_VERSION_PATCH ";
	const char *p = strstr(in->p, key);
	char line[160];
	long patch;
	char *end;

	(void)arg;
	if (!p)
		return -EINVAL;
	p += strlen(key);
	patch = strtol(p, &end, 10);
	if (end == p)
		return -EINVAL;
	if (buf_add(out, in->p, (size_t)(p - in->p)) || buf_printf(out, "%ld", patch + 1))
		return -ENOMEM;
	snprintf(line, sizeof(line), "/* patch %ld: %s */\n", patch + 1, a->tag);
	struct buf rest = {.p = end, .len = in->len - (size_t)(end - in->p)};
	return insert_before_last(&rest, out, "#endif", line);
}

/* config/project.ini: KEY in [SECTION] set to VALUE (replacing the line if
 * the key is there, else added at the end of the section), with a comment
 * line naming the change. */
static int edit_config(struct agent *a, const struct buf *in, struct buf *out, const void *arg)
{
	char sect[64], key[64], hdr[80], kv[512], *dot, *eq;
	const char *spec = arg, *p, *q, *end = in->p + in->len;

	dot = strchr(spec, '.');
	eq = strchr(spec, '=');
	if (!dot || !eq || dot > eq || (size_t)(dot - spec) >= sizeof(sect) ||
	    (size_t)(eq - dot - 1) >= sizeof(key))
		return -EINVAL;
	snprintf(sect, sizeof(sect), "%.*s", (int)(dot - spec), spec);
	snprintf(key, sizeof(key), "%.*s", (int)(eq - dot - 1), dot + 1);
	snprintf(hdr, sizeof(hdr), "[%s]\n", sect);
	snprintf(kv, sizeof(kv), "; %s\n%s = %s\n", a->tag, key, eq + 1);

	p = strstr(in->p, hdr);
	if (!p) { /* a new section at the end */
		if (buf_add(out, in->p, in->len) || buf_printf(out, "\n%s%s", hdr, kv))
			return -ENOMEM;
		return 0;
	}
	p += strlen(hdr);
	/* Walk the section's lines: replace KEY's line, or insert before the
	 * blank line or next section that ends it. */
	for (q = p; q < end && *q != '[' && *q != '\n';) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		const char *next = nl ? nl + 1 : end;
		size_t kl = strlen(key);

		if (!strncmp(q, key, kl) && (q[kl] == ' ' || q[kl] == '=')) {
			if (buf_add(out, in->p, (size_t)(q - in->p)) ||
			    buf_add(out, kv, strlen(kv)) ||
			    buf_add(out, next, (size_t)(end - next)))
				return -ENOMEM;
			return 0;
		}
		q = next;
	}
	if (buf_add(out, in->p, (size_t)(q - in->p)) || buf_add(out, kv, strlen(kv)) ||
	    buf_add(out, q, (size_t)(end - q)))
		return -ENOMEM;
	return 0;
}

/* ---------------------------------------------------------------------
 * Tasks
 * ------------------------------------------------------------------- */

/* Ends every task: one line in the shared changelog, under its lock. */
__attribute__((format(printf, 2, 3))) static int log_task(struct agent *a, const char *fmt, ...)
{
	char summary[512];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(summary, sizeof(summary), fmt, ap);
	va_end(ap);
	rc = edit_shared(a, a->o->changelog, edit_changelog, summary);
	if (rc)
		return rc;
	a->ops++;
	printf("edit %s %s\n", a->o->changelog, a->tag);
	printf("op %s %s\n", a->tag, summary);
	bumba_set_status(a->b, BUMBA_STATUS_ACTIVE);
	return 0;
}

static const char *type_name(enum bumba_territory_type t)
{
	switch (t) {
	case BUMBA_TERRITORY_EXCLUSIVE:
		return "exclusive";
	case BUMBA_TERRITORY_SHARED:
		return "shared";
	case BUMBA_TERRITORY_MONITORED:
		return "monitored";
	case BUMBA_TERRITORY_LOCKED:
		return "locked";
	}
	return "?";
}

/* Claims paths as one EXCLUSIVE territory, retrying while another agent
 * holds an overlapping claim: a refused claim takes nothing and names
 * every conflict, so there is nothing to undo before trying again. */
static int claim(struct agent *a, const char *title, const char *const *paths, size_t n,
		 uint64_t *tid)
{
	struct bumba_conflict *c = calloc(MAX_CONFLICTS, sizeof(*c));
	uint64_t deadline = now_ms() + CLAIM_DEADLINE_MS;
	long backoff = 20;
	bool told = false;
	size_t nc = 0;
	int rc;

	if (!c)
		return -ENOMEM;
	for (;;) {
		rc = bumba_territory_claim(a->b, title, paths, n, BUMBA_TERRITORY_EXCLUSIVE, tid, c,
					   MAX_CONFLICTS, &nc);
		if (rc != -EBUSY || now_ms() > deadline)
			break;
		/* Say who is in the way once, then wait for them. */
		a->claim_retries++;
		for (size_t i = 0; !told && i < nc && i < MAX_CONFLICTS; i++)
			printf("conflict %s %s %s\n", c[i].path, c[i].holder_id,
			       type_name(c[i].type));
		told = true;
		bumba_set_status(a->b, BUMBA_STATUS_BLOCKED);
		sleep_ms(backoff);
		if (backoff < 320)
			backoff *= 2;
	}
	free(c);
	bumba_set_status(a->b, BUMBA_STATUS_BUSY);
	if (rc)
		return fail("claim", paths[0], rc);
	printf("claimed %" PRIu64, *tid);
	for (size_t i = 0; i < n; i++)
		printf(" %s", paths[i]);
	printf("\n");
	return 0;
}

/* The .c/.h files under a workspace path (a file or a directory),
 * relative to the root, sorted.  Hidden names (".bumba", temporaries of
 * safe writes in flight) are skipped. */
struct list {
	char **v;
	size_t n, cap;
};

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct list){0};
}

static int list_push(struct list *l, const char *s)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 16;
		char **nv = realloc(l->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	if (!(l->v[l->n] = strdup(s)))
		return -ENOMEM;
	l->n++;
	return 0;
}

static bool is_c_file(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot && (!strcmp(dot, ".c") || !strcmp(dot, ".h"));
}

static int walk(struct agent *a, const char *rel, struct list *out)
{
	char full[PATH_MAX], sub[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d;
	int rc = 0;

	snprintf(full, sizeof(full), "%s/%s", a->root, rel);
	if (stat(full, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return is_c_file(rel) ? list_push(out, rel) : 0;
	if (!(d = opendir(full)))
		return -errno;
	while (!rc && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
		rc = walk(a, sub, out);
	}
	closedir(d);
	return rc;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static int c_files_under(struct agent *a, const char *const *paths, size_t n, struct list *out)
{
	for (size_t i = 0; i < n; i++) {
		char rel[PATH_MAX];
		size_t l;
		int rc;

		/* "src/" and "src" are the same territory path. */
		snprintf(rel, sizeof(rel), "%s", paths[i]);
		l = strlen(rel);
		while (l > 1 && rel[l - 1] == '/')
			rel[--l] = '\0';
		rc = walk(a, rel, out);
		if (rc)
			return fail("list", rel, rc);
	}
	if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), cmp_str);
	return 0;
}

/* Stages one file's new content in a transaction (sealed). */
static int txn_stage(struct agent *a, struct bumba_txn *t, const char *path, struct buf *body)
{
	int rc = seal(body, path);

	if (!rc)
		rc = bumba_txn_write(t, path, body->p, body->len);
	return rc ? fail("stage", path, rc) : 0;
}

/* Commits t (which frees it) if anything was staged, else drops it. */
static int txn_finish(struct agent *a, struct bumba_txn *t, size_t staged, int rc)
{
	think(a);
	if (rc || !staged) {
		bumba_txn_abort(t);
		return rc;
	}
	rc = bumba_txn_commit(t);
	if (rc)
		return fail("commit", a->tag, rc);
	printf("txn %s committed %zu files\n", a->tag, staged);
	return 0;
}

/* --license-tree DIR: a wide claim, one transaction, released at once. */
static int task_license(struct agent *a, const char *dir)
{
	static const char spdx[] = "/* SPDX-License-Identifier: MIT */";
	struct list files = {0}, staged = {0};
	struct bumba_txn *t = NULL;
	uint64_t tid;
	int rc, rel;

	next_task(a);
	rc = claim(a, "license headers", &dir, 1, &tid);
	if (rc)
		return rc;
	rc = c_files_under(a, &dir, 1, &files);
	if (!rc && (rc = bumba_txn_begin(a->b, BUMBA_WRITE_BACKUP, &t)))
		fail("transaction", NULL, rc);
	for (size_t i = 0; !rc && i < files.n; i++) {
		struct buf in = {0}, out = {0};

		rc = read_sealed(a, files.v[i], &in);
		if (!rc && !strstr(in.p, spdx)) {
			if (buf_printf(&out, "%s\n/* license line: %s */\n", spdx, a->tag) ||
			    buf_add(&out, in.p, in.len))
				rc = -ENOMEM;
			/* Time to "review" each file: the claim on all of DIR
			 * lasts a while, and others wanting parts of it wait. */
			think(a);
			if (!rc)
				rc = txn_stage(a, t, files.v[i], &out);
			if (!rc)
				rc = list_push(&staged, files.v[i]);
		}
		buf_free(&in);
		buf_free(&out);
	}
	rc = txn_finish(a, t, staged.n, rc);
	/* Released before the changelog line: others may start on parts of
	 * DIR while we wait for the changelog's lock. */
	rel = bumba_territory_release(a->b, tid);
	if (rel && !rc)
		rc = fail("release territory", dir, rel);
	for (size_t i = 0; !rc && i < staged.n; i++)
		printf("edit %s %s\n", staged.v[i], a->tag);
	if (!rc)
		rc = log_task(a,
			      "added SPDX license lines to %zu files under %s in one transaction",
			      staged.n, dir);
	list_free(&files);
	list_free(&staged);
	return rc;
}

/* --rename OLD:NEW over the territory and the shared header: one
 * transaction, the header locked from its read to the commit. */
static int task_rename(struct agent *a, const char *spec)
{
	char from[128], to[128];
	const char *colon = strchr(spec, ':');
	struct list files = {0}, staged = {0};
	struct bumba_txn *t = NULL;
	struct bumba_lock lk;
	long count = 0;
	int rc;

	if (!colon || (size_t)(colon - spec) >= sizeof(from) || strlen(colon + 1) >= sizeof(to))
		return fail("bad --rename", spec, -EINVAL);
	snprintf(from, sizeof(from), "%.*s", (int)(colon - spec), spec);
	snprintf(to, sizeof(to), "%s", colon + 1);
	next_task(a);
	rc = c_files_under(a, a->o->territory, a->o->n_territory, &files);
	if (!rc)
		rc = list_push(&files, a->o->header);
	if (!rc)
		rc = lock_file(a, a->o->header, &lk);
	if (rc) {
		list_free(&files);
		return rc;
	}
	if ((rc = bumba_txn_begin(a->b, BUMBA_WRITE_BACKUP, &t)))
		fail("transaction", NULL, rc);
	for (size_t i = 0; !rc && i < files.n; i++) {
		struct buf in = {0}, out = {0};
		long n = 0;

		rc = read_sealed(a, files.v[i], &in);
		if (!rc && (n = replace_ident(&in, &out, from, to)) < 0)
			rc = (int)n;
		if (!rc && n > 0) {
			struct buf marked = {0};
			char note[384];

			/* A note of the change, inside a header's include guard. */
			count += n;
			snprintf(note, sizeof(note), "/* renamed %s to %s: %s */\n", from, to,
				 a->tag);
			rc = insert_before_last(&out, &marked, "#endif", note);
			if (!rc)
				rc = txn_stage(a, t, files.v[i], &marked);
			buf_free(&marked);
			if (!rc)
				rc = list_push(&staged, files.v[i]);
		}
		buf_free(&in);
		buf_free(&out);
	}
	rc = txn_finish(a, t, staged.n, rc);
	unlock_file(a, a->o->header, &lk);
	for (size_t i = 0; !rc && i < staged.n; i++)
		printf("edit %s %s\n", staged.v[i], a->tag);
	if (!rc)
		rc = log_task(a, "renamed %s to %s (%ld uses in %zu files) in one transaction",
			      from, to, count, staged.n);
	list_free(&files);
	list_free(&staged);
	return rc;
}

/* --add-function FILE:NAME: the function and its prototype in the shared
 * header, committed together. */
static int task_add_function(struct agent *a, const char *spec)
{
	char file[PATH_MAX], name[128], text[1024], proto[256];
	const char *colon = strchr(spec, ':');
	struct buf in = {0}, out = {0}, hin = {0}, hout = {0};
	struct bumba_txn *t = NULL;
	struct bumba_lock lk;
	int rc;

	if (!colon || (size_t)(colon - spec) >= sizeof(file) || strlen(colon + 1) >= sizeof(name))
		return fail("bad --add-function", spec, -EINVAL);
	snprintf(file, sizeof(file), "%.*s", (int)(colon - spec), spec);
	snprintf(name, sizeof(name), "%s", colon + 1);
	next_task(a);
	snprintf(text, sizeof(text),
		 "\n/* %s(): %s */\nint %s(int a, int b)\n{\n\treturn a > b ? a - b : b - a;\n}\n",
		 name, a->tag, name);
	snprintf(proto, sizeof(proto), "int %s(int a, int b); /* %s */\n", name, a->tag);

	rc = lock_file(a, a->o->header, &lk);
	if (rc)
		return rc;
	rc = read_sealed(a, file, &in);
	if (!rc)
		rc = read_sealed(a, a->o->header, &hin);
	if (!rc && (buf_add(&out, in.p, in.len) || buf_add(&out, text, strlen(text))))
		rc = -ENOMEM;
	if (!rc)
		rc = insert_before_last(&hin, &hout, "#endif", proto);
	if (!rc && (rc = bumba_txn_begin(a->b, BUMBA_WRITE_BACKUP, &t)))
		fail("transaction", NULL, rc);
	if (!rc)
		rc = txn_stage(a, t, file, &out);
	if (!rc)
		rc = txn_stage(a, t, a->o->header, &hout);
	rc = txn_finish(a, t, 2, rc);
	unlock_file(a, a->o->header, &lk);
	buf_free(&in);
	buf_free(&out);
	buf_free(&hin);
	buf_free(&hout);
	if (rc)
		return rc;
	printf("edit %s %s\nedit %s %s\n", file, a->tag, a->o->header, a->tag);
	return log_task(a, "added %s() to %s and its prototype to %s", name, file, a->o->header);
}

/* --add-test FILE:NAME: a plain read-modify-write of a file in our
 * territory (no lock needed: nobody else may write there). */
static int task_add_test(struct agent *a, const char *spec)
{
	char file[PATH_MAX], name[128], text[1024], call[256];
	const char *colon = strchr(spec, ':');
	struct buf in = {0}, mid = {0}, out = {0};
	int rc;

	if (!colon || (size_t)(colon - spec) >= sizeof(file) || strlen(colon + 1) >= sizeof(name))
		return fail("bad --add-test", spec, -EINVAL);
	snprintf(file, sizeof(file), "%.*s", (int)(colon - spec), spec);
	snprintf(name, sizeof(name), "%s", colon + 1);
	next_task(a);
	snprintf(text, sizeof(text),
		 "/* test_%s(): %s */\nstatic void test_%s(void)\n{\n"
		 "\tassert(%s(7, 3) == %s(3, 7));\n}\n\n",
		 name, a->tag, name, name, name);
	snprintf(call, sizeof(call), "\ttest_%s();\n", name);
	rc = read_sealed(a, file, &in);
	/* The test goes above main(), its call at the end of main(). */
	if (!rc)
		rc = insert_before_last(&in, &mid, "int main(", text);
	if (!rc)
		rc = insert_before_last(&mid, &out, "\treturn 0;", call);
	think(a);
	if (!rc)
		rc = write_sealed(a, file, &out);
	buf_free(&in);
	buf_free(&mid);
	buf_free(&out);
	if (rc)
		return rc;
	printf("edit %s %s\n", file, a->tag);
	return log_task(a, "added test_%s() to %s", name, file);
}

static int task_bump(struct agent *a)
{
	int rc;

	next_task(a);
	rc = edit_shared(a, a->o->version_h, edit_version, NULL);
	if (rc)
		return rc;
	printf("edit %s %s\nbump %s\n", a->o->version_h, a->tag, a->tag);
	return log_task(a, "bumped the patch level in %s", a->o->version_h);
}

static int task_config(struct agent *a, const char *spec)
{
	int rc;

	next_task(a);
	rc = edit_shared(a, a->o->project_ini, edit_config, spec);
	if (rc)
		return rc == -EINVAL ? fail("bad --config", spec, rc) : rc;
	printf("edit %s %s\n", a->o->project_ini, a->tag);
	return log_task(a, "set %s in %s", spec, a->o->project_ini);
}

/* --hold-until FILE: the demo's barrier.  Polling is fine for a demo that
 * waits a second or two; a real agent would have real work to wait for. */
static int hold(struct agent *a, const char *file)
{
	uint64_t deadline = now_ms() + HOLD_DEADLINE_MS;

	bumba_set_status(a->b, BUMBA_STATUS_IDLE);
	printf("holding until %s\n", file);
	fflush(stdout);
	while (access(file, F_OK) < 0) {
		if (now_ms() > deadline)
			return fail("nobody created", file, -ETIMEDOUT);
		sleep_ms(20);
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: refactor_agent [--socket PATH] [--type T] [--name N] [--department D]\n"
		   "         [--capability C]... [--territory PATH]... [--license-tree DIR]\n"
		   "         [--rename OLD:NEW] [--add-function FILE:NAME]...\n"
		   "         [--add-test FILE:NAME]... [--bump-version]\n"
		   "         [--config SECTION.KEY=VALUE]... [--header PATH] [--changelog PATH]\n"
		   "         [--think MS] [--hold-until FILE] [--no-lock]\n");
}

static int push(const char **v, size_t *n, const char *s)
{
	if (*n == MAX_LIST) {
		fprintf(stderr, "refactor_agent: at most %d of each list option\n", MAX_LIST);
		return -1;
	}
	v[(*n)++] = s;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum {
		O_SOCKET = 1000,
		O_TYPE,
		O_NAME,
		O_DEPT,
		O_CAP,
		O_TERR,
		O_LICENSE,
		O_RENAME,
		O_ADDFN,
		O_ADDTEST,
		O_BUMP,
		O_CONFIG,
		O_HEADER,
		O_CHANGELOG,
		O_THINK,
		O_HOLD,
		O_NOLOCK,
		O_HELP,
	};
	static const struct option lo[] = {
		{"socket", required_argument, 0, O_SOCKET},
		{"type", required_argument, 0, O_TYPE},
		{"name", required_argument, 0, O_NAME},
		{"department", required_argument, 0, O_DEPT},
		{"capability", required_argument, 0, O_CAP},
		{"territory", required_argument, 0, O_TERR},
		{"license-tree", required_argument, 0, O_LICENSE},
		{"rename", required_argument, 0, O_RENAME},
		{"add-function", required_argument, 0, O_ADDFN},
		{"add-test", required_argument, 0, O_ADDTEST},
		{"bump-version", no_argument, 0, O_BUMP},
		{"config", required_argument, 0, O_CONFIG},
		{"header", required_argument, 0, O_HEADER},
		{"changelog", required_argument, 0, O_CHANGELOG},
		{"think", required_argument, 0, O_THINK},
		{"hold-until", required_argument, 0, O_HOLD},
		{"no-lock", no_argument, 0, O_NOLOCK},
		{"help", no_argument, 0, O_HELP},
		{0, 0, 0, 0},
	};
	int c, rc = 0;

	while (!rc && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o->socket = optarg;
			break;
		case O_TYPE:
			o->info.type = optarg;
			break;
		case O_NAME:
			o->info.name = optarg;
			break;
		case O_DEPT:
			o->info.department = optarg;
			break;
		case O_CAP:
			rc = push(o->caps, &o->info.n_capabilities, optarg);
			break;
		case O_TERR:
			rc = push(o->territory, &o->n_territory, optarg);
			break;
		case O_LICENSE:
			o->license_tree = optarg;
			break;
		case O_RENAME:
			o->rename = optarg;
			break;
		case O_ADDFN:
			rc = push(o->add_function, &o->n_add_function, optarg);
			break;
		case O_ADDTEST:
			rc = push(o->add_test, &o->n_add_test, optarg);
			break;
		case O_BUMP:
			o->bump_version = true;
			break;
		case O_CONFIG:
			rc = push(o->config, &o->n_config, optarg);
			break;
		case O_HEADER:
			o->header = optarg;
			break;
		case O_CHANGELOG:
			o->changelog = optarg;
			break;
		case O_THINK:
			o->think_ms = atoi(optarg);
			break;
		case O_HOLD:
			o->hold_until = optarg;
			break;
		case O_NOLOCK:
			o->no_lock = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			rc = -1;
		}
	}
	if (rc || optind != argc) {
		usage(stderr);
		return -1;
	}
	if (o->rename && !o->n_territory) {
		fprintf(stderr, "refactor_agent: --rename works on the --territory paths\n");
		return -1;
	}
	o->info.capabilities = o->caps;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.header = "include/calc.h",
		.changelog = "CHANGELOG.md",
		.version_h = "include/version.h",
		.project_ini = "config/project.ini",
		.think_ms = 20,
	};
	struct agent a = {.o = &o};
	uint64_t home = 0;
	const char *dash;
	int rc;

	if (parse_args(argc, argv, &o) < 0)
		return 64;
	/* Line-buffered: the demo follows our report while we run. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Registers, or, under bumba-run, joins the agent it registered. */
	rc = bumba_open(o.socket, &o.info, &a.b);
	if (rc < 0) {
		fail("cannot register with bumbad", NULL, rc);
		return 1;
	}
	a.id = bumba_agent_id(a.b);
	dash = strchr(a.id, '-');
	snprintf(a.name, sizeof(a.name), "%.*s", dash ? (int)strcspn(dash + 1, "-") : 5,
		 dash ? dash + 1 : "agent");
	if ((rc = bumba_workspace_root(a.b, 0, &a.root)) < 0) {
		fail("workspace root", NULL, rc);
		goto out;
	}
	printf("agent %s pid %d%s\n", a.id, (int)getpid(),
	       getenv("BUMBA_AGENT_ID") ? " (joined the bumba-run agent)" : "");
	bumba_set_status(a.b, BUMBA_STATUS_ACTIVE);

	if (o.license_tree && (rc = task_license(&a, o.license_tree)))
		goto out;
	if (o.n_territory &&
	    (rc = claim(&a, "home", (const char *const *)o.territory, o.n_territory, &home)))
		goto out;
	if (o.rename && (rc = task_rename(&a, o.rename)))
		goto out;
	for (size_t i = 0; i < o.n_add_function; i++)
		if ((rc = task_add_function(&a, o.add_function[i])))
			goto out;
	for (size_t i = 0; i < o.n_add_test; i++)
		if ((rc = task_add_test(&a, o.add_test[i])))
			goto out;
	if (o.bump_version && (rc = task_bump(&a)))
		goto out;
	for (size_t i = 0; i < o.n_config; i++)
		if ((rc = task_config(&a, o.config[i])))
			goto out;
	if (o.hold_until && (rc = hold(&a, o.hold_until)))
		goto out;
	printf("done %s ops=%ld claim_retries=%ld owner_died=%ld\n", a.id, a.ops, a.claim_retries,
	       a.owner_died);
out:
	/* Releases the territory and anything else still held. */
	bumba_close(a.b);
	return rc ? 1 : 0;
}
