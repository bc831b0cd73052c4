/* SPDX-License-Identifier: MIT */
/*
 * guard.h - bumbad's side of the eBPF guard (guard.c): loads and attaches
 * bpf/guard.bpf.c, pins its maps under /sys/fs/bpf/bumba/, tells it the
 * roots and the agents, and classifies every event it reports against the
 * segment (bumba_classify_write): violations go to the audit log, to
 * bumba_violations_total (bumbad_count_violation), to bumbad's log and to
 * the pinned `violations` map.  See docs/audit.md.
 *
 * Everything runs in bumbad's event loop (single thread), except
 * guard_status(), which any thread may call.
 *
 * Without BPF support (a build without clang/bpftool/BTF, not root, no
 * CAP_BPF/CAP_PERFMON, a kernel that refuses the programs) guard_start
 * says why in the log and in /health and returns 0: bumbad runs on without
 * the guard.
 */
#ifndef BUMBAD_GUARD_H
#define BUMBAD_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "bumbad.h"

/* Default place of the pinned maps; BUMBA_BPF_PIN_DIR overrides it (tests,
 * or two supervisors on one host: only one of them can own a pin
 * directory, the other runs its guard unpinned). */
#define GUARD_PIN_DIR_DEFAULT "/sys/fs/bpf/bumba"

/* After the segment exists, the loop is set up and ops_start() ran (the
 * audit log is open).  Reads guard.enabled/enforce/roots from the
 * configuration.  Always returns 0: a guard that cannot run is reported,
 * never fatal. */
int guard_start(struct bumbad *d);

/* Start-up is over and bumbad has its final credentials (privilege.c):
 * starts the enforcement thread (guard.enforce), which must be made with
 * them. */
void guard_started(struct bumbad *d);

/* For privilege.c: 0 if a look-up in the guard's maps works with the
 * capabilities bumbad has now (kernels before 6.4 with
 * kernel.unprivileged_bpf_disabled refuse every bpf(2) command without
 * CAP_BPF), -errno if not, -ENOENT when the guard is not running. */
int guard_probe_maps(void);

/* The pin directory in use, NULL when the maps are not pinned. */
const char *guard_pin_dir(void);

/* The ring buffer is readable (EV_GUARD). */
void guard_event(struct bumbad *d);

/* Classifies every event already in the ring buffer.  Called before an
 * agent's slot is reclaimed, so that its last writes are judged while its
 * locks and history are still in the segment. */
void guard_drain(struct bumbad *d);

/* An agent registered (slot is LIVE, its pid set): its process and every
 * process it forks from now on are that agent. */
void guard_agent_added(struct bumbad *d, uint32_t slot);
/* An agent is gone (before its slot is reclaimed). */
void guard_agent_gone(struct bumbad *d, uint32_t slot);

/* Every heartbeat: flushes coalesced audit lines, reports lost events. */
void guard_tick(struct bumbad *d, uint64_t now_ns);

/* Clean stop: detaches the programs, unpins the maps, removes the pin
 * directory. */
void guard_stop(struct bumbad *d);

/* One line for logs and tools: "active: ...", "disabled: ...",
 * "unavailable: ...".  Any thread. */
const char *guard_status(void);

/* Counters since start (event loop, or racy reads from elsewhere). */
struct guard_counters {
	uint64_t events;     /* received from the kernel */
	uint64_t sanctioned; /* by a lock or an EXCLUSIVE territory */
	uint64_t monitored;  /* inside a MONITORED territory: logged */
	uint64_t violations;
	uint64_t ignored;    /* outside every workspace after resolving, bumba's own state */
	uint64_t unresolved; /* a path that could not be named */
	uint64_t lost;	     /* ring buffer full in the kernel */
	uint64_t lat_ns_max; /* event to report, worst */
};
void guard_counters(struct guard_counters *c);

#endif /* BUMBAD_GUARD_H */
