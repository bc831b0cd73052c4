/* SPDX-License-Identifier: MIT */
/*
 * run_common.c - fork/exec/wait of a wrapped COMMAND with its signals passed
 * on, path arguments read against the current directory, and connection
 * errors explained: shared by bumbactl (lock, claim) and bumba-run.  See
 * run_common.h.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "bumba.h"
#include "internal.h"
#include "run_common.h"

#define MAX_SIGNALS 16

const int run_signals_basic[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
const size_t run_signals_basic_n = sizeof(run_signals_basic) / sizeof(run_signals_basic[0]);

static volatile sig_atomic_t child_pid;

static void forward_signal(int sig, siginfo_t *si, void *uctx)
{
	int saved = errno;

	(void)uctx;
	/* A signal the terminal generated (SI_KERNEL) went to the whole
	 * foreground process group, COMMAND included: forwarding it would
	 * deliver it twice, and a shell counts its interrupts. */
	if (child_pid > 0 && si->si_code != SI_KERNEL)
		kill((pid_t)child_pid, sig);
	errno = saved;
}

int run_command(const struct run_opts *o, char **cmd)
{
	struct sigaction sa, old[MAX_SIGNALS];
	bool installed[MAX_SIGNALS] = {false};
	struct sigaction dfl = {.sa_handler = SIG_DFL}, chld;
	size_t nsig = o->n_signals < MAX_SIGNALS ? o->n_signals : MAX_SIGNALS;
	sigset_t block, saved;
	pid_t parent = getpid(), pid;
	bool waited = true;
	int status = 0;

	/* With SIGCHLD ignored (inherited from whoever started us) the kernel
	 * reaps COMMAND itself and waitpid could not report its status. */
	sigaction(SIGCHLD, &dfl, &chld);

	sigemptyset(&block);
	for (size_t i = 0; i < nsig; i++)
		sigaddset(&block, o->signals[i]);
	/* Blocked across fork, so a signal arriving before child_pid is set
	 * is held and forwarded afterwards rather than lost. */
	sigprocmask(SIG_BLOCK, &block, &saved);
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		int e = errno;

		sigprocmask(SIG_SETMASK, &saved, NULL);
		sigaction(SIGCHLD, &chld, NULL);
		fprintf(stderr, "%s: fork: %s\n", o->prog, strerror(e));
		return EX_OSERR;
	}
	if (pid == 0) {
		/* What the wrapper holds dies with it: COMMAND must not go on
		 * unprotected.  (Checked after the prctl: the parent may have
		 * died before it.) */
		if (o->pdeathsig && prctl(PR_SET_PDEATHSIG, o->pdeathsig) == 0 &&
		    getppid() != parent)
			_exit(128 + o->pdeathsig);
		sigaction(SIGCHLD, &chld, NULL);
		sigprocmask(SIG_SETMASK, &saved, NULL);
		execvp(cmd[0], cmd);
		int e = errno;

		fprintf(stderr, "%s: %s: %s\n", o->prog, cmd[0], strerror(e));
		/* The shell's convention: 127 not found, 126 found but not
		 * executable. */
		_exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
	}
	child_pid = pid;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = forward_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < nsig; i++) {
		if (sigaction(o->signals[i], NULL, &old[i]) < 0)
			continue;
		/* A signal ignored by whoever started us (nohup, a background
		 * job of a non-interactive shell) stays ignored: COMMAND
		 * inherited the ignore too. */
		if (old[i].sa_handler == SIG_IGN)
			continue;
		installed[i] = sigaction(o->signals[i], &sa, NULL) == 0;
	}
	sigprocmask(SIG_SETMASK, &saved, NULL);

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "%s: waitpid: %s\n", o->prog, strerror(errno));
			waited = false;
			break;
		}
	}
	child_pid = 0;
	for (size_t i = 0; i < nsig; i++) {
		if (installed[i])
			sigaction(o->signals[i], &old[i], NULL);
	}
	sigaction(SIGCHLD, &chld, NULL);
	if (!waited)
		return EX_OSERR;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return EX_SOFTWARE;
}

const char *run_resolve_path(struct bumba *b, const char *path, char *out, size_t len)
{
	char *cwds[2] = {NULL, NULL};
	const char *res = path;

	if (path[0] == '/')
		return path;
	/* The logical cwd ($PWD, when it names the cwd) first: roots are
	 * spelled lexically and may go through symlinks; then the physical. */
	cwds[0] = get_current_dir_name();
	cwds[1] = getcwd(NULL, 0);
	for (int c = 0; c < 2 && res == path; c++) {
		const char *cwd = cwds[c], *root;

		if (!cwd || cwd[0] != '/')
			continue;
		for (size_t r = 0; bumba_workspace_root(b, r, &root) == 0; r++) {
			size_t rl = strlen(root);

			while (rl > 1 && root[rl - 1] == '/')
				rl--;
			if (!(rl == 1 && root[0] == '/') &&
			    (strncmp(cwd, root, rl) != 0 || (cwd[rl] != '\0' && cwd[rl] != '/')))
				continue;
			res = (size_t)snprintf(out, len, "%s/%s", cwd, path) < len ? out : NULL;
			break;
		}
	}
	free(cwds[0]);
	free(cwds[1]);
	return res;
}

const char *run_socket_name(const char *socket, char *buf, size_t len)
{
	const char *env = getenv("BUMBA_SOCKET");

	if (socket)
		return socket;
	if (env && *env)
		return env;
	if (bumba_default_socket(buf, len) < 0)
		return "the default socket";
	return buf;
}

/* Did bumba_open try to join the agent named in the environment rather
 * than register one?  (shm/client.c's rule, but for the supervisor check,
 * which only lets it register: the join errors below cannot come from a
 * registration.) */
static bool would_join(void)
{
	const char *id = getenv("BUMBA_AGENT_ID"), *fd = getenv("BUMBA_AGENT_FD");
	const char *no = getenv("BUMBA_NO_JOIN");

	if ((!id || !*id) && (!fd || !*fd))
		return false;
	return !(no && *no && strcmp(no, "0") != 0);
}

int run_connect_failed(const char *prog, const char *socket, bool may_join, int err)
{
	char buf[PATH_MAX];
	const char *sock = run_socket_name(socket, buf, sizeof(buf));

	if (may_join && would_join()) {
		const char *id = getenv("BUMBA_AGENT_ID");

		switch (-err) {
		case EINVAL:
			fprintf(stderr,
				"%s: cannot join the agent of the environment: BUMBA_AGENT_ID and "
				"BUMBA_AGENT_FD must both be set, the latter to a descriptor "
				"number\n",
				prog);
			return EX_USAGE;
		case EBADF:
			fprintf(stderr,
				"%s: cannot join agent %s: BUMBA_AGENT_FD is not an open bumba "
				"segment descriptor (closed on the way?); BUMBA_NO_JOIN=1 "
				"registers "
				"a new agent instead\n",
				prog, id ? id : "?");
			return EX_UNAVAILABLE;
		case ESTALE:
			fprintf(stderr,
				"%s: cannot join agent %s: it is gone (its registering process "
				"ended), or its supervisor is\n",
				prog, id ? id : "?");
			return EX_UNAVAILABLE;
		}
	}
	switch (-err) {
	case ENOENT:
	case ECONNREFUSED:
		fprintf(stderr, "%s: no supervisor is listening on %s (%s)\n", prog, sock,
			strerror(-err));
		return EX_UNAVAILABLE;
	case ESTALE:
		fprintf(stderr, "%s: the supervisor behind %s is gone (stale segment)\n", prog,
			sock);
		return EX_UNAVAILABLE;
	case EPROTO:
		fprintf(stderr,
			"%s: the supervisor on %s speaks another protocol or segment ABI "
			"(this is %d.%d.%d, ABI %d)\n",
			prog, sock, BUMBA_VERSION_MAJOR, BUMBA_VERSION_MINOR, BUMBA_VERSION_PATCH,
			BUMBA_ABI_VERSION);
		return EX_UNAVAILABLE;
	case EACCES:
	case EPERM:
		fprintf(stderr, "%s: not allowed to talk to the supervisor on %s (%s)\n", prog,
			sock, strerror(-err));
		return EX_NOPERM;
	case ENOSPC:
		fprintf(stderr, "%s: the supervisor on %s has no free agent slot\n", prog, sock);
		return EX_TEMPFAIL;
	default:
		fprintf(stderr, "%s: cannot reach the supervisor on %s: %s\n", prog, sock,
			strerror(-err));
		return EX_UNAVAILABLE;
	}
}

int run_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

/* COMMAND's name, cut to fit what a field of n bytes holds on a UTF-8
 * boundary, with what the field may not hold replaced ('-' in a name
 * separates the parts of the agent id).  NULL if nothing usable is left. */
const char *run_command_name(const char *cmd, char *buf, size_t n, bool no_dash)
{
	const char *slash = strrchr(cmd, '/');
	size_t len;

	if (slash && slash[1])
		cmd = slash + 1;
	len = strlen(cmd);
	if (len >= n)
		len = n - 1;
	while (len > 0 && ((unsigned char)cmd[len] & 0xc0) == 0x80)
		len--; /* do not cut a character in two */
	memcpy(buf, cmd, len);
	buf[len] = '\0';
	for (size_t k = 0; no_dash && k < len; k++)
		if (buf[k] == '-')
			buf[k] = '_';
	return len && bumba_utf8_valid(buf, len) ? buf : NULL;
}

const char *run_territory_type_name(unsigned type)
{
	switch (type) {
	case BUMBA_TERRITORY_EXCLUSIVE:
		return "exclusive";
	case BUMBA_TERRITORY_SHARED:
		return "shared";
	case BUMBA_TERRITORY_MONITORED:
		return "monitored";
	case BUMBA_TERRITORY_LOCKED:
		return "lock";
	}
	return "unknown";
}
