/* SPDX-License-Identifier: MIT */
/*
 * keeper.c - keeps the segment alive when the supervisor dies.
 *
 * The segment is a memfd: it exists only while some process holds it.  If
 * bumbad is SIGKILLed, agents still map it, but a new bumbad could not reach
 * it.  So the first bumbad forks a tiny keeper that holds the memfd and
 * listens on "<socket>.keeper" (mode 0600).  A starting bumbad asks the
 * keeper first; if one answers, it adopts the live segment instead of
 * making a new one, and tells the keeper to watch it.  A clean stop tells
 * the keeper to quit.  A keeper whose supervisor died and that nobody asks
 * within keeper_linger seconds exits on its own.
 *
 * The conversation is three fixed words over SOCK_SEQPACKET: the keeper
 * sends "SEG" with the descriptor on accept; the supervisor answers "ADOPT"
 * (watch my pid) or "QUIT".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "bumbad.h"
#include "privilege.h"

static int send_word(int fd, const char *w, int pass_fd)
{
	ssize_t n = bumba_send_fd(fd, w, strlen(w), pass_fd, MSG_NOSIGNAL);

	return n < 0 ? (int)n : 0;
}

static int recv_word(int fd, char *w, size_t cap, int *got_fd, int timeout_ms)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = w, .iov_len = cap - 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (got_fd)
		*got_fd = -1;
	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	mh.msg_control = ctl.space;
	mh.msg_controllen = sizeof(ctl.space);
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return -ECONNRESET;
	w[n] = '\0';
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS) {
		int f;
		memcpy(&f, CMSG_DATA(c), sizeof(int));
		if (got_fd)
			*got_fd = f;
		else
			close(f);
	}
	return 0;
}

int keeper_adopt(struct bumbad *d, int *seg_fd)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char w[16];
	int fd, rc;

	*seg_fd = -1;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", d->keeper_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -ENOENT;
	}
	rc = recv_word(fd, w, sizeof(w), seg_fd, 2000);
	if (rc || strcmp(w, "SEG") != 0 || *seg_fd < 0) {
		if (*seg_fd >= 0)
			close(*seg_fd);
		*seg_fd = -1;
		close(fd);
		return -EPROTO;
	}
	d->keeper_fd = fd;
	return 0;
}

/* Tells the keeper we took the segment (ADOPT) or that it may go (QUIT). */
static void keeper_say(struct bumbad *d, const char *w)
{
	if (d->keeper_fd < 0)
		return;
	send_word(d->keeper_fd, w, -1);
	if (strcmp(w, "QUIT") == 0) {
		char ack[16];
		recv_word(d->keeper_fd, ack, sizeof(ack), NULL, 2000);
		close(d->keeper_fd);
		d->keeper_fd = -1;
	}
}

void keeper_quit(struct bumbad *d)
{
	keeper_say(d, "QUIT");
	unlink(d->keeper_path);
}

static int pidfd_of(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static pid_t peer_pid(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 ? cr.pid : -1;
}

static bool peer_allowed(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 &&
	       (cr.uid == geteuid() || cr.uid == 0);
}

static void keeper_main(int lfd, int seg_fd, pid_t sup, int linger_s)
{
	int sup_pidfd = pidfd_of(sup), conn = -1;
	time_t orphaned = 0;

	prctl(PR_SET_NAME, "bumbad-keeper");
	/* It only holds a descriptor and answers on a socket. */
	privilege_drop_keeper();
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (;;) {
		struct pollfd p[3] = {
			{.fd = lfd, .events = POLLIN},
			{.fd = conn, .events = POLLIN},
			{.fd = sup_pidfd, .events = POLLIN},
		};
		int r = poll(p, 3, 1000);
		if (r < 0 && errno != EINTR)
			_exit(1);
		if (p[2].revents) {
			/* Our supervisor died: wait for the next one a while. */
			close(sup_pidfd);
			sup_pidfd = -1;
			if (conn >= 0)
				close(conn);
			conn = -1;
			orphaned = time(NULL);
		}
		if (orphaned && time(NULL) - orphaned > linger_s)
			_exit(0);
		if (p[0].revents & POLLIN) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0 && (!peer_allowed(c) || send_word(c, "SEG", seg_fd) < 0)) {
				close(c);
				c = -1;
			}
			if (c >= 0) {
				if (conn >= 0)
					close(conn);
				conn = c;
			}
		}
		if (conn >= 0 && (p[1].revents & (POLLIN | POLLHUP))) {
			char w[16];
			if (recv_word(conn, w, sizeof(w), NULL, 0) < 0) {
				close(conn);
				conn = -1;
				continue;
			}
			if (strcmp(w, "QUIT") == 0) {
				send_word(conn, "BYE", -1);
				_exit(0);
			}
			if (strcmp(w, "ADOPT") == 0) {
				pid_t np = peer_pid(conn);
				if (sup_pidfd >= 0)
					close(sup_pidfd);
				sup_pidfd = pidfd_of(np);
				orphaned = 0;
			}
		}
	}
}

int keeper_start(struct bumbad *d)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int lfd, rc, seg_fd;
	pid_t pid, sup = getpid();

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", d->keeper_path);
	unlink(d->keeper_path);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	mode_t old = umask(0177);
	rc = bind(lfd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (rc < 0 || listen(lfd, 4) < 0) {
		rc = -errno;
		close(lfd);
		return rc;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(lfd);
		return rc;
	}
	if (pid == 0) {
		/* Double fork: the keeper is nobody's child, so it outlives us
		 * without a zombie and without our signals. */
		if (fork() != 0)
			_exit(0);
		setsid();
		for (int fd = 0; fd < 1024; fd++) {
			if (fd != lfd && fd != d->seg.fd && fd != 2)
				close(fd);
		}
		keeper_main(lfd, d->seg.fd, sup, d->o.keeper_linger_s);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	close(lfd);
	rc = keeper_adopt(d, &seg_fd);
	if (rc)
		return rc;
	close(seg_fd);
	keeper_say(d, "ADOPT");
	return 0;
}

void keeper_adopted(struct bumbad *d)
{
	keeper_say(d, "ADOPT");
}
