/* SPDX-License-Identifier: MIT */
/*
 * client.c - the agent's side of registration: finding the supervisor's
 * socket, the REGISTER/OBSERVE handshake, mapping the segment it hands over,
 * and the handle's life until bumba_close.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "handle.h"

#define HANDSHAKE_TIMEOUT_MS 5000

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
		n = snprintf(out, out_len, "/run/bumba/bumba.sock");
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

int bumba_open(const char *socket_path, const struct bumba_agent_info *info, struct bumba **out)
{
	struct bumba_msg req, rep;
	struct bumba *b;
	int sock, fd = -1, rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
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
	if (atomic_load(&b->agent->gen) == b->gen) {
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
	struct bumba_msg req = {.type = BUMBA_MSG_OBSERVE}, rep;
	int sock, fd = -1, rc;

	req.abi = BUMBA_ABI_VERSION;
	req.present = 1u << BUMBA_TAG_ABI;
	sock = connect_to(socket_path);
	if (sock < 0)
		return sock;
	rc = handshake(sock, &req, BUMBA_MSG_OBSERVE_OK, &rep, &fd);
	close(sock);
	if (rc)
		return rc;
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
