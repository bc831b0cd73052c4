/* SPDX-License-Identifier: MIT */
/*
 * notify.c - systemd's service notification protocol, by hand (see
 * notify.h).  The protocol is one AF_UNIX datagram of "KEY=VALUE" lines to
 * the socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace); libsystemd would be a dependency for thirty lines.
 *
 * What bumbad says, and when:
 *   READY=1       once the segment, the socket, the guard and HTTP are up
 *                 and the privileges are dropped (Type=notify);
 *   WATCHDOG=1    from the event loop's heartbeat, at least every half of
 *                 $WATCHDOG_USEC: a wedged loop stops the pings and systemd
 *                 restarts bumbad (WatchdogSec=);
 *   STATUS=       counts of agents, locked paths, violations, and the guard;
 *   STOPPING=1    on SIGTERM;
 *   FDSTORE=1     the segment's memfd, so that a bumbad restarted after a
 *                 crash (Restart=on-failure) adopts the live segment even
 *                 though systemd killed the segment keeper with the rest of
 *                 the unit's processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "bumbad.h"
#include "guard.h"
#include "notify.h"

#define STATUS_EVERY_NS 5000000000ull

static struct {
	int fd;		       /* connected to $NOTIFY_SOCKET, -1 if none */
	uint64_t wd_usec;      /* 0: no watchdog */
	uint64_t last_ping_ns; /* CLOCK_MONOTONIC */
	uint64_t last_status_ns;
	char status[256]; /* last STATUS= sent */
} N = {.fd = -1};

int notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC"), *wdpid = getenv("WATCHDOG_PID");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len;
	size_t n;
	int fd;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
		bumbad_log(LOG_WARNING, "NOTIFY_SOCKET=%s: not a unix socket path; not notifying",
			   path);
		return -EAFNOSUPPORT;
	}
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
		int e = errno;
		bumbad_log(LOG_WARNING, "NOTIFY_SOCKET=%s: %s; not notifying", path, strerror(e));
		close(fd);
		return -e;
	}
	N.fd = fd;

	/* The watchdog is ours only if no other process was named. */
	if (wd && *wd && (!wdpid || !*wdpid || strtol(wdpid, NULL, 10) == (long)getpid())) {
		char *end;
		unsigned long long v = strtoull(wd, &end, 10);
		if (*end == '\0' && v > 0)
			N.wd_usec = v;
	}
	return 0;
}

bool notify_enabled(void)
{
	return N.fd >= 0;
}

uint64_t notify_watchdog_usec(void)
{
	return N.fd >= 0 ? N.wd_usec : 0;
}

int notify_send(int pass_fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	ssize_t sent;
	int n;

	if (N.fd < 0)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -EMSGSIZE;
	/* A full queue (systemd busy) must never stall the event loop. */
	sent = bumba_send_fd(N.fd, buf, (size_t)n, pass_fd, MSG_NOSIGNAL | MSG_DONTWAIT);
	return sent < 0 ? (int)sent : 0;
}

static void status_line(struct bumbad *d, char *buf, size_t cap)
{
	const struct seg_header *h = d->seg.hdr;
	const char *g = guard_status();
	size_t glen = strcspn(g, ":");

	snprintf(buf, cap, "%u agent%s, %u locked path%s, %llu violation%s; guard %.*s",
		 atomic_load(&h->n_agents), atomic_load(&h->n_agents) == 1 ? "" : "s",
		 atomic_load(&h->live_keys), atomic_load(&h->live_keys) == 1 ? "" : "s",
		 (unsigned long long)atomic_load(&h->violations),
		 atomic_load(&h->violations) == 1 ? "" : "s", (int)glen, g);
}

void notify_tick(struct bumbad *d, uint64_t now_ns)
{
	char s[sizeof(N.status)];

	if (N.fd < 0)
		return;
	/* At least every half interval: ping on the last tick before it
	 * would be late. */
	if (N.wd_usec &&
	    now_ns - N.last_ping_ns + (uint64_t)d->seg.hdr->heartbeat_ms * 1000000ull >=
		    N.wd_usec * 1000ull / 2) {
		if (notify_send(-1, "WATCHDOG=1") == 0)
			N.last_ping_ns = now_ns;
	}
	if (now_ns - N.last_status_ns < STATUS_EVERY_NS)
		return;
	N.last_status_ns = now_ns;
	status_line(d, s, sizeof(s));
	if (strcmp(s, N.status) != 0 && notify_send(-1, "STATUS=%s", s) == 0)
		memcpy(N.status, s, sizeof(s));
}

void notify_ready(struct bumbad *d)
{
	if (N.fd < 0)
		return;
	status_line(d, N.status, sizeof(N.status));
	int rc = notify_send(-1, "READY=1\nSTATUS=%s", N.status);
	if (rc < 0)
		bumbad_log(LOG_WARNING, "could not tell systemd we are ready: %s", strerror(-rc));
	N.last_ping_ns = N.last_status_ns = bumba_now_ns();
	if (N.wd_usec)
		notify_send(-1, "WATCHDOG=1");
	bumbad_log(LOG_INFO, "told systemd: ready%s", N.wd_usec ? ", watchdog on" : "");
}

void notify_stopping(struct bumbad *d)
{
	(void)d;
	notify_send(-1, "STOPPING=1\nSTATUS=stopping");
	notify_forget_segment();
}

void notify_store_segment(struct bumbad *d)
{
	if (N.fd < 0)
		return;
	/* Replaces any earlier one of the same name (refused, or stale). */
	notify_forget_segment();
	if (notify_send(d->seg.fd, "FDSTORE=1\nFDNAME=" NOTIFY_FDNAME_SEGMENT) < 0)
		bumbad_log(LOG_INFO, "systemd did not take the segment into its store: %s",
			   strerror(errno));
}

void notify_forget_segment(void)
{
	notify_send(-1, "FDSTOREREMOVE=1\nFDNAME=" NOTIFY_FDNAME_SEGMENT);
}

int notify_stored_segment(int *out)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	int rc = -ENOENT;
	long n;

	*out = -1;
	if (!pid || !nfds || strtol(pid, NULL, 10) != (long)getpid())
		return -ENOENT;
	n = strtol(nfds, NULL, 10);
	for (long i = 0; i < n && i < 64; i++) {
		int fd = 3 + (int)i;
		const char *name = names;
		size_t len = 0;

		/* The i-th ':'-separated name. */
		for (long j = 0; name && j < i; j++) {
			name = strchr(name, ':');
			if (name)
				name++;
		}
		if (name)
			len = strcspn(name, ":");
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (rc != 0 && name && len == strlen(NOTIFY_FDNAME_SEGMENT) &&
		    !strncmp(name, NOTIFY_FDNAME_SEGMENT, len)) {
			*out = fd;
			rc = 0;
		}
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}
