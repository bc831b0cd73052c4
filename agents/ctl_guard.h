/* SPDX-License-Identifier: MIT */
/*
 * ctl_guard.h - bumbactl's guard commands (ctl_guard.c):
 *
 *   bumbactl audit [--json] [--since T] [--file PATH]
 *       the guard's violations: the audit log's guard.* lines and the
 *       pinned map /sys/fs/bpf/bumba/violations (root only)
 *   bumbactl doctor [--json]
 *       probes and prints every kernel feature bumba uses
 *
 * argv[0] is the command name; json is bumbactl's --json given before it,
 * config its --config (NULL: $BUMBA_CONFIG, then the default file).
 * Return the exit status.
 */
#ifndef BUMBA_CTL_GUARD_H
#define BUMBA_CTL_GUARD_H

#include <stdbool.h>

int bumba_ctl_audit(bool json, const char *config, int argc, char **argv);
int bumba_ctl_doctor(bool json, const char *config, int argc, char **argv);

#endif /* BUMBA_CTL_GUARD_H */
