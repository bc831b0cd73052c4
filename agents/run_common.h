/* SPDX-License-Identifier: MIT */
/*
 * run_common.h - what the wrappers that hold something for a COMMAND
 * (bumbactl lock and claim, bumba-run) share: running COMMAND (fork, exec,
 * signal forwarding, the shell's exit status conventions), reading path
 * arguments the way COMMAND would, and saying why the supervisor could not
 * be reached.
 */
#ifndef BUMBA_RUN_COMMON_H
#define BUMBA_RUN_COMMON_H

#include <stdbool.h>
#include <stddef.h>

struct bumba;

struct run_opts {
	const char *prog;   /* prefix of our messages ("bumbactl") */
	const int *signals; /* passed on to COMMAND while it runs */
	size_t n_signals;
	/* Sent to COMMAND if we die first (PR_SET_PDEATHSIG); 0: none.
	 * What we hold for COMMAND dies with us, so by default COMMAND must
	 * not go on unprotected. */
	int pdeathsig;
};

/* The signals bumbactl lock/claim pass on: SIGINT, SIGTERM, SIGHUP,
 * SIGQUIT. */
extern const int run_signals_basic[];
extern const size_t run_signals_basic_n;

/*
 * Runs cmd (execvp) and waits for it; returns its exit status the way a
 * shell reports it: its exit code, 128 + signal if it was killed, 127 if it
 * was not found, 126 if it could not be executed, EX_OSERR if we could not
 * fork or wait.  While it runs, the signals of o are passed on to it, and
 * we keep waiting: whatever we hold for it must be held until it is gone.
 * COMMAND stays in our process group (job control and the terminal work
 * as without us); a signal the terminal sent to the whole group is not
 * passed on a second time.
 */
int run_command(const struct run_opts *o, char **cmd);

/*
 * Makes a path relative to the current directory when that directory lies
 * inside a workspace root, as flock(1) and COMMAND itself would read it.
 * Outside every root a relative path keeps the API's meaning: relative to
 * the first root.  Writes into out, or returns path unchanged; NULL if the
 * joined path does not fit (falling back to the other meaning would name
 * another path).
 */
const char *run_resolve_path(struct bumba *b, const char *path, char *out, size_t len);

/* The socket a bumba_open(socket) talks to, for messages. */
const char *run_socket_name(const char *socket, char *buf, size_t len);

/* Reports a failed bumba_open/bumba_observe on stderr, prefixed by prog;
 * returns the sysexits code: 69 no supervisor (or a stale or foreign one,
 * or an agent to join that is gone), 77 not allowed, 75 agent table full,
 * 64 a half-set join environment.  may_join: the call could have joined
 * the agent named in the environment (bumba_open without
 * BUMBA_OPEN_NO_JOIN). */
int run_connect_failed(const char *prog, const char *socket, bool may_join, int err);

/* Matches argv[*i] against a long option taking a value, as "--name VALUE"
 * or "--name=VALUE".  Returns 1 and sets *val on a match (advancing *i past
 * a separate value), 0 if argv[*i] is another option, -1 if the value is
 * missing. */
int run_opt_value(int argc, char **argv, int *i, const char *name, const char **val);

/* COMMAND's file name, as a default agent name or territory title: cut to
 * fit a field of n bytes on a UTF-8 boundary; with no_dash, '-' (which
 * separates the parts of an agent id) becomes '_'.  buf, or NULL if
 * nothing usable is left. */
const char *run_command_name(const char *cmd, char *buf, size_t n, bool no_dash);

/* A territory type (or a conflict's kind) as printed: "exclusive",
 * "shared", "monitored", or "lock" (BUMBA_TERRITORY_LOCKED: a conflict
 * with another agent's exclusive lock). */
const char *run_territory_type_name(unsigned type);

#endif /* BUMBA_RUN_COMMON_H */
