/* SPDX-License-Identifier: MIT */
/*
 * wire.c - moving protocol messages over the registration socket: one
 * datagram per message, at most one descriptor riding along (SCM_RIGHTS).
 * The codec itself is protocol.c; this file only does the system calls.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

ssize_t bumba_send_fd(int sock, const void *buf, size_t len, int pass_fd, int flags)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (pass_fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.space;
		mh.msg_controllen = sizeof(ctl.space);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, flags);
		if (n >= 0 || errno != EINTR)
			return n < 0 ? -errno : n;
	}
}

int bumba_wire_send(int sock, const struct bumba_msg *m, int pass_fd)
{
	unsigned char buf[BUMBA_MSG_MAX];
	int len = bumba_msg_encode(m, buf, sizeof(buf));
	ssize_t n;

	if (len < 0)
		return len;
	n = bumba_send_fd(sock, buf, (size_t)len, pass_fd, MSG_NOSIGNAL);
	if (n < 0)
		return (int)n;
	return n == len ? 0 : -EMSGSIZE;
}

int bumba_wire_recv(int sock, struct bumba_msg *m, int *fd_out, int timeout_ms)
{
	unsigned char buf[BUMBA_MSG_MAX + 1];
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {0};
	struct pollfd p = {.fd = sock, .events = POLLIN};
	ssize_t n;
	int got = -1;

	if (fd_out)
		*fd_out = -1;
	for (;;) {
		int r = poll(&p, 1, timeout_ms);
		if (r > 0)
			break;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.space;
	mh.msg_controllen = sizeof(ctl.space);
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	/* Take every descriptor that came, keep at most one. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < 0)
				got = fd;
			else
				close(fd);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (got >= 0)
			close(got);
		return -EMSGSIZE;
	}
	int rc = bumba_msg_decode(buf, (size_t)n, m);
	if (rc < 0 || !fd_out) {
		if (got >= 0)
			close(got);
		return rc < 0 ? rc : 0;
	}
	*fd_out = got;
	return 0;
}
