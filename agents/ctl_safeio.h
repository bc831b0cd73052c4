/* SPDX-License-Identifier: MIT */
/*
 * ctl_safeio.h - bumbactl's backup commands (ctl_safeio.c):
 *
 *   bumbactl backups [--json] [PATH]
 *       the versions kept under <workspace>/.bumba/backups, of PATH or of
 *       every file, newest first
 *   bumbactl restore [--at TIME] [--timeout MS] PATH
 *       puts a version back (itself a safe write, with a backup of what it
 *       replaces): the last change undone, or the content PATH had at TIME
 *
 * argv[0] is the command name; json is bumbactl's --json given before it,
 * socket its --socket (NULL: the default).  Return the exit status.
 */
#ifndef BUMBA_CTL_SAFEIO_H
#define BUMBA_CTL_SAFEIO_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

int bumba_ctl_backups(bool json, const char *socket, int argc, char **argv);
int bumba_ctl_restore(bool json, const char *socket, int argc, char **argv);

/* Parses TIME into unix ms: seconds since the epoch ("1735787045",
 * "@1735787045.5"), an ISO date ("2025-01-02T03:04:05Z", "2025-01-02 03:04",
 * local time without the Z), or an age ("-90s", "-5m", "-2h", "-1d", "5m
 * ago").  now_ms is the reference for ages.  0 or -EINVAL. */
int bumba_ctl_parse_time(const char *s, int64_t now_ms, int64_t *out_ms);

#endif /* BUMBA_CTL_SAFEIO_H */
