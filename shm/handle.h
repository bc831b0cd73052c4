/* SPDX-License-Identifier: MIT */
/*
 * handle.h - struct bumba, the per-agent handle, shared by client.c (which
 * makes it) and locks.c (which uses it on the fast path).
 */
#ifndef BUMBA_HANDLE_H
#define BUMBA_HANDLE_H

#include "internal.h"

struct bumba {
	struct bumba_seg seg;
	uint32_t slot;
	uint32_t gen;
	int sock; /* registration connection, open for the agent's life */
	pid_t pid;
	struct agent_slot *agent;
	struct hold *holds;
	uint32_t hold_mask;
	char id[BUMBA_ID_MAX];
	/* Safe file operations (safeio.c): the handle's io_uring and friends,
	 * made on first use so handles that never write pay nothing. */
	struct bumba_sio *_Atomic sio;
	/* A joined handle (client.c: bumba_join): a process of an agent that
	 * another process registered.  The agent's liveness is the
	 * registering process's, so the agent can be reclaimed while this
	 * process still runs: the lock and territory code re-checks
	 * agent_live() at every point where a reclaim could slip in.  It
	 * remembers what it took itself, so that bumba_close gives back
	 * exactly that and leaves the rest of the agent alone. */
	bool joined;
	_Atomic uint64_t *own;	/* per hold index: lock1 << 32 | counts taken here */
	pthread_mutex_t own_mu; /* own_tids */
	uint64_t *own_tids;	/* territories claimed through this handle */
	size_t n_own_tids, cap_own_tids;
};

/* The agent of a joined handle is still the one it joined: live, and the
 * slot not reclaimed or reused since. */
static inline bool agent_live(const struct bumba *b)
{
	return atomic_load(&b->agent->state) == AGENT_LIVE && atomic_load(&b->agent->gen) == b->gen;
}

/* locks.c: releases every count a joined handle took and did not give
 * back (bumba_close). */
void bumba_locks_release_own(struct bumba *b);
/* territory.c: the same for territories claimed through a joined handle. */
void bumba_territory_release_own(struct bumba *b);

/* locks.c: releases every hold of the handle (bumba_close). */
void bumba_locks_release_all(struct bumba *b);

/* safeio.c: finishes and frees the safe-file state (bumba_close, before
 * the locks go). */
void bumba_sio_free(struct bumba *b);

#endif /* BUMBA_HANDLE_H */
