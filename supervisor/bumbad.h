/* SPDX-License-Identifier: MIT */
/*
 * bumbad.h - the supervisor's state, shared by its files: main.c (options,
 * event loop, lifecycle), registry.c (the registration socket and agent
 * slots) and keeper.c (keeping the segment alive across a supervisor crash).
 */
#ifndef BUMBAD_H
#define BUMBAD_H

#include <stdarg.h>
#include <sys/types.h>

#include "internal.h"

#define BUMBAD_MAX_FDS 65536

struct bumbad_opts {
	const char *socket_path;
	const char *roots[BUMBA_MAX_ROOTS];
	size_t n_roots;
	struct bumba_caps caps;
	int default_timeout_ms;
	int max_timeout_ms;
	int keeper_linger_s;
	/* Operations (ops.h); 0/NULL: not given, the configuration decides. */
	const char *config_path; /* --config */
	const char *http;	 /* --http ADDR:PORT | off */
	bool no_guard;		 /* --no-guard */
	const char *user;	 /* --user: a root-started bumbad switches to it */
	uint32_t cleanup_interval_ms;
};

struct bumbad {
	struct bumbad_opts o;
	struct bumba_seg seg;
	char root_buf[BUMBA_MAX_ROOTS][PATH_MAX];
	const char *roots[BUMBA_MAX_ROOTS];
	char socket_path[108];
	char keeper_path[108];
	int epfd, lfd, sigfd, timerfd;
	int keeper_fd;			/* connection to the keeper process, -1 if none */
	int *pidfds;			/* per agent slot, -1 if none */
	uint8_t *is_agent_conn;		/* per fd: conn registered an agent */
	uint32_t *conn_slot, *conn_gen; /* per fd */
	uint8_t *lease_killed;		/* per slot: SIGKILL sent for an expired lease */
	uint32_t next_slot;
	bool adopted;
	volatile bool stop;
	struct bumbad_ops *ops; /* configuration, HTTP, audit log: ops.h */
};

/* Event sources in epoll_event.data.u64: kind << 32 | value. */
enum { EV_LISTEN = 1, EV_CONN, EV_PIDFD, EV_SIGNAL, EV_TIMER, EV_KEEPER, EV_GUARD };
#define EV(kind, val) (((uint64_t)(kind) << 32) | (uint32_t)(val))

/* main.c */
void bumbad_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
extern int bumbad_log_level; /* lines of a higher (less urgent) priority are dropped */

/* registry.c */
int registry_listen(struct bumbad *d);
void registry_accept(struct bumbad *d);
void registry_conn_event(struct bumbad *d, int fd, uint32_t events);
void registry_agent_died(struct bumbad *d, uint32_t slot);
void registry_pidfd_event(struct bumbad *d, uint32_t slot);
int registry_watch(struct bumbad *d, uint32_t slot);
void registry_sweep(struct bumbad *d);

/* keeper.c */
int keeper_adopt(struct bumbad *d, int *seg_fd);
int keeper_start(struct bumbad *d);
void keeper_quit(struct bumbad *d);
void keeper_adopted(struct bumbad *d);

#endif /* BUMBAD_H */
