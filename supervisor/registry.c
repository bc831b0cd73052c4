/* SPDX-License-Identifier: MIT */
/*
 * registry.c - the agent registry as the supervisor runs it: the listening
 * SOCK_SEQPACKET socket, the REGISTER/OBSERVE/UNREGISTER conversation, agent
 * slots and ids, one pidfd per agent (death -> reclaim), and the periodic
 * sweep (heartbeat, stuck waiters, expired leases).
 *
 * Every message from a client is untrusted: the codec refuses malformed
 * ones, and a refused message gets an ERROR reply while the connection and
 * the supervisor carry on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "bumbad.h"
#include "guard.h"
#include "ops.h"
#include "privilege.h"
#include "recovery.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define MAX_BAD_MESSAGES 16

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_send_signal_(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int registry_listen(struct bumbad *d)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd, rc;

	strcpy(addr.sun_path, d->socket_path);
	/* A socket file nobody answers on is left over from a crash. */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(fd);
		bumbad_log(LOG_ERR, "another supervisor is serving %s", d->socket_path);
		return -EADDRINUSE;
	}
	close(fd);
	unlink(d->socket_path);

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Only our user for now; privilege_socket() opens it to the
	 * service's group (docs/security.md). */
	mode_t old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (rc < 0 || listen(fd, 512) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	d->lfd = fd;
	return 0;
}

static void reply_error(int fd, int err, const char *msg)
{
	struct bumba_msg m = {.type = BUMBA_MSG_ERROR};

	m.err = (uint32_t)err;
	m.present = 1u << BUMBA_TAG_ERRNO | 1u << BUMBA_TAG_MESSAGE;
	snprintf(m.message, sizeof(m.message), "%s", msg);
	bumba_wire_send(fd, &m, -1);
}

void registry_accept(struct bumbad *d)
{
	for (;;) {
		int fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				bumbad_log(LOG_WARNING, "accept: %s", strerror(errno));
			return;
		}
		if (fd >= BUMBAD_MAX_FDS) {
			reply_error(fd, EMFILE, "supervisor out of descriptors");
			close(fd);
			continue;
		}
		struct ucred cr;
		socklen_t len = sizeof(cr);
		/* The socket's mode is the gate; this is the second lock on
		 * it (privilege.h says who passes). */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
		    !privilege_peer_allowed(fd, &cr)) {
			reply_error(fd, EACCES, "peer not allowed");
			close(fd);
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
					 .data.u64 = EV(EV_CONN, fd)};
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		d->is_agent_conn[fd] = 0;
		d->conn_slot[fd] = 0;
		d->conn_gen[fd] = 0;
	}
}

static void close_conn(struct bumbad *d, int fd)
{
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
	/* The agent's process tree closed its last copy of the connection:
	 * the agent is over even if the registering pid's exit is not seen
	 * yet. */
	if (d->is_agent_conn[fd] &&
	    atomic_load(&d->seg.agents[d->conn_slot[fd]].gen) == d->conn_gen[fd])
		registry_agent_died(d, d->conn_slot[fd]);
	d->is_agent_conn[fd] = 0;
	close(fd);
}

int registry_watch(struct bumbad *d, uint32_t slot)
{
	const struct agent_slot *a = &d->seg.agents[slot];
	int pfd = pidfd_open_(a->pid);

	if (pfd < 0)
		return -errno;
	/* The pid may have been reused between registration and now. */
	if (!bumba_proc_same(a->pid, a->start_time)) {
		close(pfd);
		return -ESRCH;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV(EV_PIDFD, slot)};
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, pfd, &ev) < 0) {
		int rc = -errno;
		close(pfd);
		return rc;
	}
	d->pidfds[slot] = pfd;
	d->lease_killed[slot] = 0;
	return 0;
}

void registry_pidfd_event(struct bumbad *d, uint32_t slot)
{
	struct pollfd p = {.fd = slot < d->seg.hdr->caps.max_agents ? d->pidfds[slot] : -1,
			   .events = POLLIN};

	/* An event queued for a pidfd that an earlier event in the same batch
	 * closed (the connection went first) may now name a new agent's pidfd:
	 * only a pidfd that is readable now means a death. */
	if (p.fd < 0 || poll(&p, 1, 0) != 1)
		return;
	registry_agent_died(d, slot);
}

void registry_agent_died(struct bumbad *d, uint32_t slot)
{
	struct agent_slot *a = &d->seg.agents[slot];
	uint64_t t0 = bumba_now_ns();

	if (d->pidfds[slot] >= 0) {
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, d->pidfds[slot], NULL);
		close(d->pidfds[slot]);
		d->pidfds[slot] = -1;
	}
	/* The guard judges the agent's last writes while its locks and
	 * history are still in the segment, then forgets its processes. */
	guard_drain(d);
	guard_agent_gone(d, slot);
	char id[BUMBA_ID_MAX];
	unsigned held = 0;
	const struct hold *hs = bumba_seg_holds_of(&d->seg, slot);
	snprintf(id, sizeof(id), "%s", a->id);
	for (uint32_t j = 0; j < d->seg.hdr->caps.holds_per_agent; j++) {
		uint32_t l = atomic_load(&hs[j].lock1);
		held += l && l != UINT32_MAX && (atomic_load(&hs[j].state) & 0xff) == HOLD_ACTIVE;
	}
	audit_agent(d, held ? "agent.died_holding_locks" : "agent.exited", slot, held);
	/* Its half-done safe writes and transactions first: nobody may take
	 * a lock on a file a dead transaction still has to finish. */
	recovery_agent_died(d, slot);
	bumba_locks_reclaim_agent(&d->seg, slot, atomic_load(&a->gen));
	if (held)
		bumbad_log(LOG_NOTICE, "agent %s died holding %u lock(s); reclaimed in %.3f ms", id,
			   held, (double)(bumba_now_ns() - t0) / 1e6);
	else
		bumbad_log(LOG_INFO, "agent %s exited; reclaimed in %.3f ms", id,
			   (double)(bumba_now_ns() - t0) / 1e6);
}

static int find_agent(const struct bumbad *d, const char *id)
{
	for (uint32_t i = 0; i < d->seg.hdr->caps.max_agents; i++) {
		const struct agent_slot *a = &d->seg.agents[i];
		if (atomic_load(&a->state) == AGENT_LIVE && strcmp(a->id, id) == 0)
			return (int)i;
	}
	return -1;
}

/* Lowest free slot first: the live agents stay packed under hdr->agent_hwm,
 * so whoever walks the agent table (claims, metrics) stops early.  A
 * reused slot has a new generation, which stale handles check. */
static int alloc_slot(struct bumbad *d)
{
	struct seg_header *h = d->seg.hdr;

	for (uint32_t i = 0; i < h->caps.max_agents; i++) {
		if (atomic_load(&d->seg.agents[i].state) == AGENT_FREE) {
			if (i >= atomic_load(&h->agent_hwm))
				atomic_store(&h->agent_hwm, i + 1);
			return (int)i;
		}
	}
	return -1;
}

static void do_register(struct bumbad *d, int fd, const struct bumba_msg *m)
{
	struct seg_header *h = d->seg.hdr;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int parent = -1;

	if (d->is_agent_conn[fd]) {
		reply_error(fd, EISCONN, "connection already registered an agent");
		return;
	}
	if (!(m->present & (1u << BUMBA_TAG_ABI)) || m->abi != BUMBA_ABI_VERSION) {
		reply_error(fd, EPROTO, "segment ABI version mismatch");
		return;
	}
	if (strchr(m->type_s, '-') || strchr(m->name, '-')) {
		reply_error(fd, EINVAL, "type and name may not contain '-'");
		return;
	}
	if (m->present & (1u << BUMBA_TAG_PARENT_ID)) {
		parent = find_agent(d, m->parent_id);
		if (parent < 0) {
			reply_error(fd, ESRCH, "parent agent not registered");
			return;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		reply_error(fd, EACCES, "no peer credentials");
		return;
	}
	uint64_t start = bumba_proc_start_time(cr.pid);
	if (!start) {
		reply_error(fd, ESRCH, "peer process not visible");
		return;
	}
	int slot = alloc_slot(d);
	if (slot < 0) {
		reply_error(fd, ENOSPC, "agent table full");
		return;
	}
	struct agent_slot *a = &d->seg.agents[slot];
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		reply_error(fd, EAGAIN, "no randomness");
		return;
	}
	uint64_t now = bumba_wall_ms();
	a->pid = cr.pid;
	a->uid = cr.uid;
	a->start_time = start;
	a->registered_ms = now;
	atomic_store(&a->last_activity_ms, now);
	atomic_store(&a->status, BUMBA_STATUS_ACTIVE);
	a->parent1 = parent >= 0 ? (uint32_t)parent + 1 : 0;
	snprintf(a->type, sizeof(a->type), "%s",
		 (m->present & (1u << BUMBA_TAG_TYPE)) ? m->type_s : "Agent");
	if (m->present & (1u << BUMBA_TAG_NAME))
		snprintf(a->name, sizeof(a->name), "%s", m->name);
	else
		snprintf(a->name, sizeof(a->name), "agent%d", (int)cr.pid);
	snprintf(a->department, sizeof(a->department), "%s",
		 (m->present & (1u << BUMBA_TAG_DEPARTMENT)) ? m->department : "general");
	a->n_caps = m->n_caps;
	for (uint32_t i = 0; i < BUMBA_MAX_CAPS; i++)
		snprintf(a->caps[i], sizeof(a->caps[i]), "%s", i < m->n_caps ? m->caps[i] : "");
	snprintf(a->id, sizeof(a->id), "%s-%s-%llu-%08x", a->type, a->name, (unsigned long long)now,
		 rnd);
	atomic_store(&a->n_leases, 0);
	atomic_store_explicit(&a->state, AGENT_LIVE, memory_order_release);
	atomic_fetch_add(&h->n_agents, 1);
	atomic_fetch_add(&h->retired.agents_spawned, 1);

	if (registry_watch(d, (uint32_t)slot) < 0) {
		bumba_locks_reclaim_agent(&d->seg, (uint32_t)slot, atomic_load(&a->gen));
		reply_error(fd, ESRCH, "peer process vanished");
		return;
	}
	d->is_agent_conn[fd] = 1;
	d->conn_slot[fd] = (uint32_t)slot;
	d->conn_gen[fd] = atomic_load(&a->gen);
	/* Before the reply: the agent's first write is already its own. */
	guard_agent_added(d, (uint32_t)slot);

	struct bumba_msg r = {.type = BUMBA_MSG_REGISTER_OK, .seq = m->seq};
	snprintf(r.agent_id, sizeof(r.agent_id), "%s", a->id);
	r.slot = (uint32_t)slot;
	r.gen = d->conn_gen[fd];
	r.seg_size = d->seg.size;
	r.abi = BUMBA_ABI_VERSION;
	r.present = 1u << BUMBA_TAG_AGENT_ID | 1u << BUMBA_TAG_SLOT | 1u << BUMBA_TAG_GEN |
		    1u << BUMBA_TAG_SEG_SIZE | 1u << BUMBA_TAG_ABI;
	if (bumba_wire_send(fd, &r, d->seg.fd) < 0) {
		bumbad_log(LOG_WARNING, "agent %s: could not send the segment", a->id);
		close_conn(d, fd);
		registry_agent_died(d, (uint32_t)slot);
		return;
	}
	bumbad_log(LOG_INFO, "agent %s registered (pid %d uid %u slot %d)", a->id, (int)cr.pid,
		   (unsigned)cr.uid, slot);
	audit_agent(d, "agent.registered", (uint32_t)slot, 0);
}

static void do_observe(struct bumbad *d, int fd, const struct bumba_msg *m)
{
	char path[64];
	int ro;

	if (!(m->present & (1u << BUMBA_TAG_ABI)) || m->abi != BUMBA_ABI_VERSION) {
		reply_error(fd, EPROTO, "segment ABI version mismatch");
		return;
	}
	/* A read-only descriptor: observers can look but never write. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", d->seg.fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0) {
		reply_error(fd, errno, "cannot reopen the segment read-only");
		return;
	}
	struct bumba_msg r = {.type = BUMBA_MSG_OBSERVE_OK, .seq = m->seq};
	r.seg_size = d->seg.size;
	r.abi = BUMBA_ABI_VERSION;
	r.present = 1u << BUMBA_TAG_SEG_SIZE | 1u << BUMBA_TAG_ABI;
	bumba_wire_send(fd, &r, ro);
	close(ro);
}

void registry_conn_event(struct bumbad *d, int fd, uint32_t events)
{
	unsigned bad = 0;

	for (;;) {
		struct bumba_msg m;
		int rc = bumba_wire_recv(fd, &m, NULL, 0);
		if (rc == -ETIMEDOUT || rc == -EAGAIN)
			break;
		if (rc == -ECONNRESET || rc == -ENOTCONN || rc == -EPIPE) {
			close_conn(d, fd);
			return;
		}
		if (rc < 0) {
			/* Malformed: say why and keep serving; a flood of them
			 * ends the connection, never the supervisor. */
			reply_error(fd, -rc,
				    rc == -EMSGSIZE ? "message too large" : "malformed message");
			if (++bad >= MAX_BAD_MESSAGES) {
				close_conn(d, fd);
				return;
			}
			continue;
		}
		switch (m.type) {
		case BUMBA_MSG_REGISTER:
			do_register(d, fd, &m);
			break;
		case BUMBA_MSG_OBSERVE:
			do_observe(d, fd, &m);
			break;
		case BUMBA_MSG_UNREGISTER: {
			struct bumba_msg r = {.type = BUMBA_MSG_BYE_OK, .seq = m.seq};
			if (d->is_agent_conn[fd]) {
				uint32_t slot = d->conn_slot[fd];
				d->is_agent_conn[fd] = 0;
				if (atomic_load(&d->seg.agents[slot].gen) == d->conn_gen[fd])
					registry_agent_died(d, slot);
			}
			bumba_wire_send(fd, &r, -1);
			break;
		}
		case BUMBA_MSG_PING: {
			struct bumba_msg r = {.type = BUMBA_MSG_PONG, .seq = m.seq};
			bumba_wire_send(fd, &r, -1);
			break;
		}
		default:
			reply_error(fd, EBADMSG, "unexpected message type");
			break;
		}
	}
	if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))
		close_conn(d, fd);
}

void registry_sweep(struct bumbad *d)
{
	struct seg_header *h = d->seg.hdr;
	uint32_t expired[64];
	uint64_t now = bumba_now_ns();

	atomic_store(&h->heartbeat_ns, now);
	size_t n = bumba_locks_sweep(&d->seg, now, expired, 64);
	size_t gone = bumba_territory_sweep(&d->seg, now);
	if (gone)
		bumbad_log(LOG_INFO, "%zu territor%s timed out", gone, gone == 1 ? "y" : "ies");
	for (size_t i = 0; i < n; i++) {
		uint32_t s = expired[i];
		if (d->lease_killed[s] || d->pidfds[s] < 0)
			continue;
		/* Never revoke a live holder: kill it, then reclaim on death. */
		bumbad_log(LOG_WARNING, "agent %s: lease expired, killing pid %d",
			   d->seg.agents[s].id, d->seg.agents[s].pid);
		pidfd_send_signal_(d->pidfds[s], SIGKILL);
		d->lease_killed[s] = 1;
		atomic_fetch_add(&h->retired.leases_expired, 1);
	}
}
