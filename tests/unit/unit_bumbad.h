/* SPDX-License-Identifier: MIT */
/*
 * unit_bumbad.h - a real supervisor for the cmocka tests that need one
 * (registry, join, safe io, transactions): $BUILD/bumbad on a socket and
 * one workspace root, without the guard or HTTP, its stderr appended to a
 * log file the test keeps for a failure.
 */
#ifndef BUMBA_UNIT_BUMBAD_H
#define BUMBA_UNIT_BUMBAD_H

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/*
 * Starts bumbad with the options every unit test wants, then extra (a
 * NULL-terminated list of more arguments, or NULL), and waits up to 5 s
 * for it to answer on sock.  Returns its pid, or -1 with nothing left
 * running.
 */
static inline pid_t unit_start_bumbad(const char *sock, const char *root, const char *log,
				      const char *const *extra)
{
	const char *argv[24] = {"bumbad", "--socket", sock,	    "--workspace",     root,
				"--http", "off",      "--no-guard", "--keeper-linger", "1"};
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char bin[PATH_MAX];
	size_t n = 10;
	pid_t pid;

	while (extra && *extra && n < sizeof(argv) / sizeof(argv[0]) - 1)
		argv[n++] = *extra++;
	argv[n] = NULL;
	snprintf(bin, sizeof(bin), "%s/bumbad", build);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDWR);
		dup2(fd, 2);
		dup2(nul, 1); /* never hold the test runner's pipe */
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		struct bumba_seg s;
		if (bumba_observe(sock, &s) == 0) {
			bumba_seg_unmap(&s);
			return pid;
		}
		usleep(20000);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return -1;
}

static inline void unit_stop_bumbad(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(pid, sig);
	waitpid(pid, NULL, 0);
}

#endif /* BUMBA_UNIT_BUMBAD_H */
