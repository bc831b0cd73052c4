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
};

/* locks.c: releases every hold of the handle (bumba_close). */
void bumba_locks_release_all(struct bumba *b);

/* safeio.c: finishes and frees the safe-file state (bumba_close, before
 * the locks go). */
void bumba_sio_free(struct bumba *b);

#endif /* BUMBA_HANDLE_H */
