/* SPDX-License-Identifier: MIT */
/*
 * notify.h - bumbad's side of systemd's service protocol, without
 * libsystemd: sd_notify(3) datagrams (READY=1, STATUS=, WATCHDOG=1,
 * STOPPING=1, FDSTORE=1) and sd_listen_fds(3) for the one descriptor bumbad
 * asks systemd to keep across a crash, the segment.
 *
 * Outside systemd (no $NOTIFY_SOCKET) every call is a no-op returning 0.
 */
#ifndef BUMBAD_NOTIFY_H
#define BUMBAD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct bumbad;

/* The name bumbad gives the segment in systemd's file descriptor store. */
#define NOTIFY_FDNAME_SEGMENT "bumba-segment"

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and connects the
 * notification socket, before the privileges go (the socket's directory
 * may be closed to bumbad's user).  0, or -errno for a $NOTIFY_SOCKET that
 * does not work (logged; bumbad carries on). */
int notify_init(void);

/* True when $NOTIFY_SOCKET named a socket bumbad could connect. */
bool notify_enabled(void);

/* One notification ("KEY=VALUE\n..."), with a descriptor when fd >= 0.
 * 0 or -errno. */
int notify_send(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The watchdog interval systemd asked for, in microseconds (0: none, or
 * $WATCHDOG_PID names another process). */
uint64_t notify_watchdog_usec(void);

/* Every heartbeat of the event loop: WATCHDOG=1 every half interval, and
 * a STATUS= line when the counts it shows change (at most every 5 s). */
void notify_tick(struct bumbad *d, uint64_t now_ns);

/* READY=1 with a STATUS= line, once start-up is complete. */
void notify_ready(struct bumbad *d);

/* STOPPING=1, and the segment out of the store: a clean stop does not
 * hand it to the next start. */
void notify_stopping(struct bumbad *d);

/* Asks systemd to keep the segment (FileDescriptorStoreMax= >= 1). */
void notify_store_segment(struct bumbad *d);

/* The segment systemd kept across a crash ($LISTEN_FDS, named
 * NOTIFY_FDNAME_SEGMENT): 0 with *fd set, or -ENOENT.  The descriptor is
 * taken once; the $LISTEN_* variables are cleared. */
int notify_stored_segment(int *fd);

/* Drops the stored segment (after refusing it). */
void notify_forget_segment(void);

#endif /* BUMBAD_NOTIFY_H */
