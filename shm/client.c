/* SPDX-License-Identifier: MIT */
/*
 * client.c - the agent's side of registration: finding the supervisor's
 * socket, the REGISTER/OBSERVE handshake, mapping the segment it hands over,
 * joining an agent another process registered (bumba-run's children), and
 * the handle's life until bumba_close.
 *
 * Joining.  An agent is registered by one process, whose death ends it; its
 * descendants act as that agent.  The registering process exports
 * BUMBA_AGENT_ID and BUMBA_AGENT_FD, a descriptor of the segment it was
 * handed (read-write, inherited across exec).  That descriptor is the
 * membership proof: the supervisor only ever gives a writable one to a
 * registered agent (observers get O_RDONLY), and whoever holds it can
 * already write anything in the segment, so no further secret would add
 * protection; the id only says which agent to be.  A joined handle maps the
 * same segment and uses the same agent slot and generation: no socket, no
 * message to bumbad.  See bumba.h and docs/api.md for the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "handle.h"

#define HANDSHAKE_TIMEOUT_MS 5000
#define SYSTEM_SOCKET	     "/run/bumba/bumba.sock"

int bumba_default_socket(char *out, size_t out_len)
{
	const char *env = getenv("BUMBA_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (env && *env)
		n = snprintf(out, out_len, "%s", env);
	else if (geteuid() != 0 && xdg && *xdg)
		n = snprintf(out, out_len, "%s/bumba/bumba.sock", xdg);
	else
		n = snprintf(out, out_len, "%s", SYSTEM_SOCKET);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

static int connect_to(const char *socket_path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char def[sizeof(addr.sun_path)];
	int fd, rc;

	if (!socket_path) {
		rc = bumba_default_socket(def, sizeof(def));
		if (rc)
			return rc;
		socket_path = def;
	}
	if (strlen(socket_path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		rc = -errno;
		/* No supervisor of the user's own under XDG_RUNTIME_DIR: a
		 * member of the bumba group talks to the system one. */
		if (rc == -ENOENT && socket_path == def && strcmp(def, SYSTEM_SOCKET) != 0 &&
		    strlen(SYSTEM_SOCKET) < sizeof(addr.sun_path)) {
			strcpy(addr.sun_path, SYSTEM_SOCKET);
			if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
				return fd;
		}
		close(fd);
		return rc;
	}
	return fd;
}

static int set_str(char *dst, size_t cap, const char *src, bool no_dash)
{
	size_t n;

	if (!src)
		return 0;
	n = strlen(src);
	if (n == 0 || n >= cap || !bumba_utf8_valid(src, n) || (no_dash && strchr(src, '-')))
		return -EINVAL;
	memcpy(dst, src, n + 1);
	return 1;
}

static int build_register(const struct bumba_agent_info *info, struct bumba_msg *m)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->type = BUMBA_MSG_REGISTER;
	m->abi = BUMBA_ABI_VERSION;
	m->present |= 1u << BUMBA_TAG_ABI;
	if (!info)
		return 0;
	if ((rc = set_str(m->type_s, sizeof(m->type_s), info->type, true)) < 0)
		return rc;
	if (rc)
		m->present |= 1u << BUMBA_TAG_TYPE;
	if ((rc = set_str(m->name, sizeof(m->name), info->name, true)) < 0)
		return rc;
	if (rc)
		m->present |= 1u << BUMBA_TAG_NAME;
	if ((rc = set_str(m->department, sizeof(m->department), info->department, false)) < 0)
		return rc;
	if (rc)
		m->present |= 1u << BUMBA_TAG_DEPARTMENT;
	if ((rc = set_str(m->parent_id, sizeof(m->parent_id), info->parent_id, false)) < 0)
		return rc;
	if (rc)
		m->present |= 1u << BUMBA_TAG_PARENT_ID;
	if (info->n_capabilities > BUMBA_MAX_CAPS || (info->n_capabilities && !info->capabilities))
		return -EINVAL;
	for (size_t i = 0; i < info->n_capabilities; i++) {
		rc = set_str(m->caps[i], sizeof(m->caps[i]), info->capabilities[i], false);
		if (rc <= 0)
			return -EINVAL;
	}
	m->n_caps = (uint32_t)info->n_capabilities;
	if (m->n_caps)
		m->present |= 1u << BUMBA_TAG_CAPABILITY;
	return 0;
}

/* One request, one reply (with a descriptor). */
static int handshake(int sock, const struct bumba_msg *req, uint16_t want, struct bumba_msg *rep,
		     int *fd)
{
	int rc = bumba_wire_send(sock, req, -1);

	if (rc)
		return rc;
	rc = bumba_wire_recv(sock, rep, fd, HANDSHAKE_TIMEOUT_MS);
	if (rc)
		return rc == -ECONNRESET ? -ECONNREFUSED : rc;
	if (rep->type == BUMBA_MSG_ERROR) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return rep->err > 0 && rep->err < 4096 ? -(int)rep->err : -EPROTO;
	}
	if (rep->type != want || *fd < 0) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	return 0;
}

/* Registers a new agent over the socket (bumba_open without a join). */
static int open_register(const char *socket_path, const struct bumba_agent_info *info,
			 struct bumba **out)
{
	struct bumba_msg req, rep;
	struct bumba *b;
	int sock, fd = -1, rc;

	rc = build_register(info, &req);
	if (rc)
		return rc;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->seg.fd = -1;
	sock = connect_to(socket_path);
	if (sock < 0) {
		free(b);
		return sock;
	}
	rc = handshake(sock, &req, BUMBA_MSG_REGISTER_OK, &rep, &fd);
	if (rc)
		goto fail;
	if (rep.abi != BUMBA_ABI_VERSION) {
		rc = -EPROTO;
		close(fd);
		goto fail;
	}
	rc = bumba_seg_map(fd, true, true, &b->seg);
	if (rc) {
		close(fd);
		goto fail;
	}
	if (rep.slot >= b->seg.hdr->caps.max_agents) {
		rc = -EPROTO;
		goto fail_map;
	}
	b->slot = rep.slot;
	b->gen = rep.gen;
	b->agent = &b->seg.agents[b->slot];
	b->holds = bumba_seg_holds_of(&b->seg, b->slot);
	b->hold_mask = b->seg.hdr->caps.holds_per_agent - 1;
	b->pid = getpid();
	b->sock = sock;
	/* The slot must be the one the supervisor just filled for us. */
	if (atomic_load(&b->agent->gen) != b->gen || atomic_load(&b->agent->state) != AGENT_LIVE ||
	    strncmp(b->agent->id, rep.agent_id, BUMBA_ID_MAX) != 0) {
		rc = -EPROTO;
		goto fail_map;
	}
	snprintf(b->id, sizeof(b->id), "%s", rep.agent_id);
	*out = b;
	return 0;
fail_map:
	bumba_seg_unmap(&b->seg);
fail:
	close(sock);
	free(b);
	return rc;
}

/* The live slot of agent id in seg, with its generation; -ESTALE if the
 * agent is gone (ids carry a time and random bits: never reused). */
static int find_live_agent(const struct bumba_seg *seg, const char *id, uint32_t *slot,
			   uint32_t *gen)
{
	const struct seg_header *h = seg->hdr;
	uint32_t hwm = atomic_load(&h->agent_hwm);

	if (hwm == 0 || hwm > h->caps.max_agents)
		hwm = h->caps.max_agents;
	for (uint32_t i = 0; i < hwm; i++) {
		const struct agent_slot *a = &seg->agents[i];
		uint32_t g = atomic_load(&a->gen);
		if (atomic_load_explicit(&a->state, memory_order_acquire) != AGENT_LIVE ||
		    strncmp(a->id, id, BUMBA_ID_MAX) != 0)
			continue;
		/* The id was read from the slot's generation g: reused
		 * between the two loads, it may have been someone else's. */
		if (atomic_load(&a->gen) != g || atomic_load(&a->state) != AGENT_LIVE)
			continue;
		*slot = i;
		*gen = g;
		return 0;
	}
	return -ESTALE;
}

/* A descriptor that is open, read-write (not an observer's) and a bumba
 * segment; *st gets its identity.  Anything else was a wrong number, or a
 * descriptor closed or reused on the way. */
static bool is_segment_fd(int fd, struct stat *st)
{
	uint64_t magic = 0;
	int flags = fd < 0 ? -1 : fcntl(fd, F_GETFL);

	return flags >= 0 && (flags & O_ACCMODE) == O_RDWR && fstat(fd, st) == 0 &&
	       S_ISREG(st->st_mode) &&
	       pread(fd, &magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
	       magic == BUMBA_SEG_MAGIC;
}

int bumba_join(const char *agent_id, int fd, struct bumba **out)
{
	struct bumba *b;
	struct stat st;
	int dup, rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!agent_id || !*agent_id || strnlen(agent_id, BUMBA_ID_MAX) >= BUMBA_ID_MAX)
		return -EINVAL;
	if (!is_segment_fd(fd, &st))
		return -EBADF;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->seg.fd = -1;
	b->sock = -1;
	/* Our own descriptor for the mapping: the inherited one stays for our
	 * children, which may join too. */
	dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0) {
		rc = -errno;
		goto fail;
	}
	rc = bumba_seg_map(dup, true, true, &b->seg);
	if (rc) {
		close(dup);
		goto fail;
	}
	rc = find_live_agent(&b->seg, agent_id, &b->slot, &b->gen);
	if (rc)
		goto fail_map;
	b->agent = &b->seg.agents[b->slot];
	b->holds = bumba_seg_holds_of(&b->seg, b->slot);
	b->hold_mask = b->seg.hdr->caps.holds_per_agent - 1;
	b->pid = getpid();
	b->joined = true;
	b->own = calloc((size_t)b->hold_mask + 1, sizeof(*b->own));
	if (!b->own) {
		rc = -ENOMEM;
		goto fail_map;
	}
	pthread_mutex_init(&b->own_mu, NULL);
	snprintf(b->id, sizeof(b->id), "%s", b->agent->id);
	if (strcmp(b->id, agent_id) != 0 || !agent_live(b)) {
		rc = -ESTALE; /* reclaimed while we looked */
		pthread_mutex_destroy(&b->own_mu);
		free(b->own);
		goto fail_map;
	}
	*out = b;
	return 0;
fail_map:
	bumba_seg_unmap(&b->seg);
fail:
	free(b);
	return rc;
}

int bumba_join_fd(const struct bumba *b)
{
	int fd;

	if (!b || b->seg.fd < 0)
		return -EINVAL;
	/* Read-write, like the one the supervisor handed over; not
	 * close-on-exec, which is the point. */
	fd = fcntl(b->seg.fd, F_DUPFD, 3);
	return fd < 0 ? -errno : fd;
}

int bumba_is_joined(const struct bumba *b)
{
	return b && b->joined ? 1 : 0;
}

/* BUMBA_NO_JOIN set to anything but "" or "0". */
static bool no_join_env(void)
{
	const char *v = getenv("BUMBA_NO_JOIN");

	return v && *v && strcmp(v, "0") != 0;
}

/* What the environment says to join: 1 with *id and *fd set, 0 nothing to
 * join, -EINVAL half set or malformed. */
static int join_env(const char **id, int *fd)
{
	const char *i = getenv("BUMBA_AGENT_ID"), *f = getenv("BUMBA_AGENT_FD");
	char *end;
	long n;

	if ((!i || !*i) && (!f || !*f))
		return 0;
	if (!i || !*i || !f || !*f)
		return -EINVAL;
	errno = 0;
	n = strtol(f, &end, 10);
	if (errno || end == f || *end || n < 0 || n > INT_MAX)
		return -EINVAL;
	*id = i;
	*fd = (int)n;
	return 1;
}

/* One OBSERVE round trip: the supervisor's read-only descriptor of its
 * segment, or -errno. */
static int observe_fd(const char *socket_path)
{
	struct bumba_msg req = {.type = BUMBA_MSG_OBSERVE}, rep;
	int sock, fd = -1, rc;

	req.abi = BUMBA_ABI_VERSION;
	req.present = 1u << BUMBA_TAG_ABI;
	sock = connect_to(socket_path);
	if (sock < 0)
		return sock;
	rc = handshake(sock, &req, BUMBA_MSG_OBSERVE_OK, &rep, &fd);
	close(sock);
	return rc ? rc : fd;
}

/*
 * Is fd a descriptor of the segment of the supervisor on socket_path?  The
 * environment may name an agent of another supervisor than the one the
 * caller talks to (a test suite starting its own bumbad inside bumba-run):
 * the supervisor's observer descriptor is a reopening of its segment, the
 * same inode.  A descriptor that is no segment at all counts as a match,
 * so that the join reports it (-EBADF) rather than a silent new agent.
 */
static bool same_supervisor(const char *socket_path, int fd)
{
	struct stat mine, theirs;
	int ro, rc;

	if (!is_segment_fd(fd, &mine))
		return true;
	ro = observe_fd(socket_path);
	if (ro < 0)
		return false;
	rc = fstat(ro, &theirs);
	close(ro);
	return rc == 0 && theirs.st_dev == mine.st_dev && theirs.st_ino == mine.st_ino;
}

int bumba_open_ex(const char *socket_path, const struct bumba_agent_info *info, unsigned flags,
		  struct bumba **out)
{
	const char *id = NULL;
	int fd = -1, rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (flags & ~(BUMBA_OPEN_NO_JOIN | BUMBA_OPEN_JOIN_ONLY) ||
	    (flags & BUMBA_OPEN_NO_JOIN && flags & BUMBA_OPEN_JOIN_ONLY))
		return -EINVAL;
	if (flags & BUMBA_OPEN_NO_JOIN)
		return open_register(socket_path, info, out);
	rc = join_env(&id, &fd);
	if (flags & BUMBA_OPEN_JOIN_ONLY)
		return rc < 0 ? rc : rc == 0 ? -ENOENT : bumba_join(id, fd, out);
	/* Register instead of joining when told to, and when a child agent
	 * of its own is asked for (parent_id). */
	if (rc == 0 || no_join_env() || (info && info->parent_id))
		return open_register(socket_path, info, out);
	if (rc < 0)
		return rc;
	/* And when the caller talks to another supervisor than the one the
	 * agent lives with: the agent does not exist there. */
	if (!same_supervisor(socket_path, fd))
		return open_register(socket_path, info, out);
	return bumba_join(id, fd, out);
}

int bumba_open(const char *socket_path, const struct bumba_agent_info *info, struct bumba **out)
{
	return bumba_open_ex(socket_path, info, 0, out);
}

void bumba_close(struct bumba *b)
{
	struct bumba_msg m = {.type = BUMBA_MSG_UNREGISTER};
	struct bumba_msg rep;
	bool said_bye = false;

	if (!b)
		return;
	/* Safe-file state first: unfinished transactions are completed while
	 * the locks that cover them are still held. */
	bumba_sio_free(b);
	if (b->joined) {
		/* Not the agent's end: give back what this process took,
		 * nothing else.  (An agent already gone: the checks inside
		 * leave the slot alone.)  A forked child closing the copy it
		 * inherited gives back nothing: the counts are its parent's. */
		if (b->pid == getpid()) {
			bumba_territory_release_own(b);
			bumba_locks_release_own(b);
		}
		pthread_mutex_destroy(&b->own_mu);
		free(b->own);
		free(b->own_tids);
	} else if (atomic_load(&b->agent->gen) == b->gen) {
		bumba_locks_release_all(b);
		if (b->sock >= 0 && bumba_wire_send(b->sock, &m, -1) == 0 &&
		    bumba_wire_recv(b->sock, &rep, NULL, HANDSHAKE_TIMEOUT_MS) == 0 &&
		    rep.type == BUMBA_MSG_BYE_OK)
			said_bye = true;
		/* No supervisor to hear it: free our slot ourselves. */
		if (!said_bye)
			bumba_locks_reclaim_agent(&b->seg, b->slot, b->gen);
	}
	if (b->sock >= 0)
		close(b->sock);
	bumba_seg_unmap(&b->seg);
	free(b);
}

const char *bumba_agent_id(const struct bumba *b)
{
	return b ? b->id : NULL;
}

int bumba_set_status(struct bumba *b, enum bumba_agent_status status)
{
	if (!b || status > BUMBA_STATUS_BLOCKED)
		return -EINVAL;
	if (atomic_load_explicit(&b->agent->gen, memory_order_relaxed) != b->gen)
		return -ENOLINK;
	atomic_store_explicit(&b->agent->status, (uint32_t)status, memory_order_relaxed);
	atomic_store_explicit(&b->agent->last_activity_ms, bumba_wall_ms(), memory_order_relaxed);
	return 0;
}

int bumba_workspace_root(const struct bumba *b, size_t idx, const char **root)
{
	if (!b || !root)
		return -EINVAL;
	if (idx >= b->seg.hdr->n_roots)
		return -ENOENT;
	*root = b->seg.root_ptrs[idx];
	return 0;
}

int bumba_path_normalize(const struct bumba *b, const char *path, char *out, size_t out_len)
{
	size_t root;

	if (!b || !path || !out)
		return -EINVAL;
	return bumba_path_norm(b->seg.root_ptrs, b->seg.hdr->n_roots, path, (size_t)-1, out,
			       out_len, &root);
}

int bumba_observe(const char *socket_path, struct bumba_seg *seg)
{
	int fd = observe_fd(socket_path), rc;

	if (fd < 0)
		return fd;
	rc = bumba_seg_map(fd, false, false, seg);
	if (rc)
		close(fd);
	return rc;
}

const struct bumba_seg *bumba_handle_seg(const struct bumba *b)
{
	return &b->seg;
}

uint32_t bumba_handle_slot(const struct bumba *b)
{
	return b->slot;
}
