/* SPDX-License-Identifier: MIT */
/*
 * main.c - bumbad: options, start-up (adopt a live segment or create one),
 * the event loop, and a clean stop on SIGTERM.
 *
 * bumbad's work is one epoll loop over the registration socket,
 * one pidfd per agent, a signalfd and a timerfd for the heartbeat.  Nothing
 * on the agents' fast path ever waits for it.  The one other thread is the
 * HTTP server's (ops.h), which only reads the segment.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <syslog.h>
#include <unistd.h>

#include "bumbad.h"
#include "guard.h"
#include "notify.h"
#include "ops.h"
#include "privilege.h"
#include "recovery.h"

static bool journal;
int bumbad_log_level = LOG_INFO;

void bumbad_log(int prio, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (prio > bumbad_log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* journald reads "<N>" as the syslog priority of the line. */
	if (journal)
		fprintf(stderr, "<%d>%s\n", prio, buf);
	else
		fprintf(stderr, "bumbad[%d]: %s\n", (int)getpid(), buf);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bumbad [--config FILE] [--socket PATH] [--workspace DIR]... "
		   "[--foreground]\n"
		   "              [--no-guard] [--http ADDR:PORT|off] [--max-agents N] "
		   "[--max-locks N]\n"
		   "              [--max-waiters N] [--holds-per-agent N] [--default-timeout MS] "
		   "[--max-timeout MS]\n"
		   "              [--keeper-linger S] [--user USER|root]\n"
		   "See bumbad(8).\n");
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct bumbad_opts *o)
{
	enum {
		O_SOCKET = 1000,
		O_WS,
		O_FG,
		O_NOGUARD,
		O_HTTP,
		O_MAXAG,
		O_MAXLK,
		O_MAXW,
		O_HOLDS,
		O_DEFTO,
		O_MAXTO,
		O_LINGER,
		O_CONFIG,
		O_USER,
		O_HELP,
	};
	static const struct option lo[] = {
		{"socket", required_argument, 0, O_SOCKET},
		{"workspace", required_argument, 0, O_WS},
		{"foreground", no_argument, 0, O_FG},
		{"no-guard", no_argument, 0, O_NOGUARD},
		{"http", required_argument, 0, O_HTTP},
		{"max-agents", required_argument, 0, O_MAXAG},
		{"max-locks", required_argument, 0, O_MAXLK},
		{"max-waiters", required_argument, 0, O_MAXW},
		{"holds-per-agent", required_argument, 0, O_HOLDS},
		{"default-timeout", required_argument, 0, O_DEFTO},
		{"max-timeout", required_argument, 0, O_MAXTO},
		{"keeper-linger", required_argument, 0, O_LINGER},
		{"config", required_argument, 0, O_CONFIG},
		{"user", required_argument, 0, O_USER},
		{"help", no_argument, 0, O_HELP},
		{0, 0, 0, 0},
	};
	uint32_t v;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o->socket_path = optarg;
			break;
		case O_WS:
			if (o->n_roots == BUMBA_MAX_ROOTS) {
				fprintf(stderr, "bumbad: at most %d workspaces\n", BUMBA_MAX_ROOTS);
				return -EINVAL;
			}
			o->roots[o->n_roots++] = optarg;
			break;
		case O_FG:
			/* bumbad never forks into the background. */
			break;
		case O_NOGUARD:
			o->no_guard = true;
			break;
		case O_HTTP: {
			char addr[BUMBA_CONFIG_ADDR_MAX];
			uint32_t port;

			if (strcmp(optarg, "off") != 0 &&
			    bumba_config_parse_listen(optarg, addr, sizeof(addr), &port) < 0) {
				fprintf(stderr,
					"bumbad: --http: want ADDR:PORT ([ADDR]:PORT for "
					"IPv6, numeric) or off, not '%s'\n",
					optarg);
				return -EINVAL;
			}
			o->http = optarg;
			break;
		}
		case O_CONFIG:
			o->config_path = optarg;
			break;
		case O_USER:
			if (!*optarg) {
				fprintf(stderr, "bumbad: --user: want a user name, or root\n");
				return -EINVAL;
			}
			o->user = optarg;
			break;
		case O_MAXAG:
		case O_MAXLK:
		case O_MAXW:
		case O_HOLDS:
		case O_DEFTO:
		case O_MAXTO:
		case O_LINGER:
			if (parse_u32(optarg, 1, 1u << 24, &v) < 0) {
				fprintf(stderr, "bumbad: bad number '%s'\n", optarg);
				return -EINVAL;
			}
			if (c == O_MAXAG)
				o->caps.max_agents = v;
			else if (c == O_MAXLK)
				o->caps.max_locks = v;
			else if (c == O_MAXW)
				o->caps.max_waiters = v;
			else if (c == O_HOLDS)
				o->caps.holds_per_agent = v;
			else if (c == O_DEFTO)
				o->default_timeout_ms = (int)v;
			else if (c == O_MAXTO)
				o->max_timeout_ms = (int)v;
			else
				o->keeper_linger_s = (int)v;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bumbad: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int make_dirs(const char *path)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int setup_paths(struct bumbad *d)
{
	char def[sizeof(d->socket_path)], dir[PATH_MAX];
	int rc;

	if (!d->o.socket_path) {
		rc = bumba_default_socket(def, sizeof(def));
		if (rc)
			return rc;
		d->o.socket_path = def;
	}
	if (strlen(d->o.socket_path) >= sizeof(d->socket_path) - 8) { /* room for ".keeper" */
		bumbad_log(LOG_ERR, "socket path too long: %s", d->o.socket_path);
		return -ENAMETOOLONG;
	}
	snprintf(d->socket_path, sizeof(d->socket_path), "%s", d->o.socket_path);
	memcpy(d->keeper_path, d->socket_path, strlen(d->socket_path));
	strcat(d->keeper_path, ".keeper");
	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	rc = make_dirs(dirname(dir));
	if (rc) {
		bumbad_log(LOG_ERR, "cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}

	if (d->o.n_roots == 0)
		d->o.roots[d->o.n_roots++] = ".";
	for (size_t i = 0; i < d->o.n_roots; i++) {
		char real[PATH_MAX];
		struct stat st;
		if (!realpath(d->o.roots[i], real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
			bumbad_log(LOG_ERR, "workspace %s: %s", d->o.roots[i],
				   errno ? strerror(errno) : "not a directory");
			return -EINVAL;
		}
		rc = bumba_path_norm_root(real, d->root_buf[i], PATH_MAX);
		if (rc < 0) {
			bumbad_log(LOG_ERR, "workspace %s: bad path", real);
			return rc;
		}
		d->roots[i] = d->root_buf[i];
	}
	return 0;
}

static bool same_roots(const struct bumbad *d)
{
	if (d->seg.hdr->n_roots != d->o.n_roots)
		return false;
	for (size_t i = 0; i < d->o.n_roots; i++) {
		if (strcmp(d->seg.roots[i], d->roots[i]) != 0)
			return false;
	}
	return true;
}

/* A restarted supervisor takes over the segment its predecessor left with
 * the keeper: live agents keep their locks, dead ones are reclaimed. */
static int try_adopt(struct bumbad *d)
{
	int fd, rc;

	rc = keeper_adopt(d, &fd);
	/* Under systemd the keeper dies with the unit; its file descriptor
	 * store kept the segment instead (notify.h). */
	if (rc)
		rc = notify_stored_segment(&fd);
	if (rc)
		return rc;
	rc = bumba_seg_map(fd, true, false, &d->seg);
	if (rc) {
		bumbad_log(LOG_WARNING, "keeper's segment refused (%s); starting fresh",
			   strerror(-rc));
		close(fd);
		keeper_quit(d);
		notify_forget_segment();
		return rc;
	}
	if (!same_roots(d)) {
		bumbad_log(LOG_WARNING, "keeper's segment serves other workspaces; starting fresh");
		bumba_seg_unmap(&d->seg);
		keeper_quit(d);
		notify_forget_segment();
		return -ESTALE;
	}
	d->adopted = true;
	return 0;
}

static void take_over(struct bumbad *d)
{
	struct seg_header *h = d->seg.hdr;
	uint32_t live = 0, dead = 0;

	atomic_store(&h->sup_pid, getpid());
	atomic_store(&h->sup_start_time, bumba_proc_start_time(getpid()));
	atomic_store(&h->heartbeat_ns, bumba_now_ns());
	atomic_fetch_add(&h->sup_generation, 1);
	if (!d->adopted)
		return;
	keeper_adopted(d);
	for (uint32_t i = 0; i < h->caps.max_agents; i++) {
		struct agent_slot *a = &d->seg.agents[i];
		uint32_t st = atomic_load(&a->state);
		if (st == AGENT_FREE)
			continue;
		if (st == AGENT_LIVE && registry_watch(d, i) == 0) {
			live++;
			continue;
		}
		recovery_agent_died(d, i); /* before its locks go */
		bumba_locks_reclaim_agent(&d->seg, i, atomic_load(&a->gen));
		dead++;
	}
	bumbad_log(LOG_NOTICE,
		   "adopted the live segment (generation %u): %u agents alive, %u "
		   "reclaimed",
		   atomic_load(&h->sup_generation), live, dead);
}

/* Per-agent supervisor state, sized by the segment actually in use (an
 * adopted one keeps the capacities it was made with). */
static int alloc_agent_state(struct bumbad *d)
{
	const uint32_t n = d->seg.hdr->caps.max_agents;

	d->pidfds = malloc(sizeof(int) * n);
	d->lease_killed = calloc(n, 1);
	d->is_agent_conn = calloc(BUMBAD_MAX_FDS, 1);
	d->conn_slot = calloc(BUMBAD_MAX_FDS, sizeof(uint32_t));
	d->conn_gen = calloc(BUMBAD_MAX_FDS, sizeof(uint32_t));
	if (!d->pidfds || !d->lease_killed || !d->is_agent_conn || !d->conn_slot || !d->conn_gen)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		d->pidfds[i] = -1;
	return 0;
}

static int setup_loop(struct bumbad *d)
{
	sigset_t mask;
	struct epoll_event ev;

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0)
		return -errno;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	d->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (d->sigfd < 0 || d->timerfd < 0)
		return -errno;
	struct itimerspec its = {
		.it_interval = {.tv_nsec = (long)d->seg.hdr->heartbeat_ms * 1000000L},
		.it_value = {.tv_nsec = (long)d->seg.hdr->heartbeat_ms * 1000000L},
	};
	timerfd_settime(d->timerfd, 0, &its, NULL);
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = EV(EV_SIGNAL, 0)};
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->sigfd, &ev);
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = EV(EV_TIMER, 0)};
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->timerfd, &ev);
	ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = EV(EV_LISTEN, 0)};
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->lfd, &ev);
	return 0;
}

static void run(struct bumbad *d)
{
	struct epoll_event evs[64];

	while (!d->stop) {
		int n = epoll_wait(d->epfd, evs, 64, -1);
		if (n < 0 && errno != EINTR) {
			bumbad_log(LOG_ERR, "epoll_wait: %s", strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32);
			uint32_t val = (uint32_t)evs[i].data.u64;
			switch (kind) {
			case EV_LISTEN:
				registry_accept(d);
				break;
			case EV_CONN:
				registry_conn_event(d, (int)val, evs[i].events);
				break;
			case EV_PIDFD:
				registry_pidfd_event(d, val);
				break;
			case EV_GUARD:
				guard_event(d);
				break;
			case EV_TIMER: {
				uint64_t ticks, now = bumba_now_ns();
				if (read(d->timerfd, &ticks, sizeof(ticks)) > 0) {
					/* Heartbeat every tick; the lock sweep every
					 * fileLocking.cleanupInterval. */
					if (ops_sweep_due(d, now))
						registry_sweep(d);
					ops_tick(d, now);
					recovery_tick(d, now);
					guard_tick(d, now);
					/* The watchdog: from the loop itself, so a
					 * wedged loop stops the pings. */
					notify_tick(d, now);
				}
				break;
			}
			case EV_SIGNAL: {
				struct signalfd_siginfo si;
				while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						ops_sighup(d);
						continue;
					}
					bumbad_log(LOG_NOTICE, "signal %u: stopping", si.ssi_signo);
					d->stop = true;
				}
				break;
			}
			}
		}
	}
}

int main(int argc, char **argv)
{
	static struct bumbad d;
	struct rlimit rl;
	int rc;

	journal = getenv("JOURNAL_STREAM") != NULL;
	signal(SIGPIPE, SIG_IGN);
	/* Left unset here: the command line wins, then the environment, the
	 * configuration file and the built-in defaults (ops_configure). */
	d.o.default_timeout_ms = -1;
	d.o.max_timeout_ms = -1;
	d.keeper_fd = d.lfd = d.epfd = d.sigfd = d.timerfd = -1;
	if (parse_args(argc, argv, &d.o) < 0)
		return 64;
	rc = ops_configure(&d);
	if (rc)
		return rc;
	rc = privilege_init(&d);
	if (rc)
		return rc;
	notify_init();
	if (d.o.caps.holds_per_agent & (d.o.caps.holds_per_agent - 1)) {
		fprintf(stderr, "bumbad: --holds-per-agent must be a power of two\n");
		return 64;
	}
	if (d.o.default_timeout_ms > d.o.max_timeout_ms) {
		fprintf(stderr, "bumbad: --default-timeout exceeds --max-timeout\n");
		return 64;
	}
	if (setup_paths(&d) < 0)
		return 1;

	/* One pidfd and one connection per agent. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	rc = registry_listen(&d);
	if (rc) {
		bumbad_log(LOG_ERR, "cannot listen on %s: %s", d.socket_path, strerror(-rc));
		return 1;
	}
	privilege_socket(&d);
	if (try_adopt(&d) != 0) {
		rc = bumba_seg_create(&d.o.caps, d.roots, d.o.n_roots, d.o.default_timeout_ms,
				      d.o.max_timeout_ms, &d.seg);
		if (rc) {
			bumbad_log(LOG_ERR, "cannot create the segment: %s", strerror(-rc));
			unlink(d.socket_path);
			return 1;
		}
		rc = keeper_start(&d);
		if (rc)
			bumbad_log(LOG_WARNING,
				   "no segment keeper (%s): a crash of bumbad will "
				   "lose the lock state",
				   strerror(-rc));
	}
	/* systemd keeps it across a crash of ours (FileDescriptorStoreMax=). */
	notify_store_segment(&d);
	/* The loop first: adopting registers a pidfd per live agent in it. */
	if (setup_loop(&d) < 0) {
		bumbad_log(LOG_ERR, "event loop: %s", strerror(errno));
		return 1;
	}
	if (alloc_agent_state(&d) < 0) {
		bumbad_log(LOG_ERR, "out of memory");
		return 1;
	}
	take_over(&d);
	/* Territories expire after territoryManagement.defaultTimeout (0:
	 * never); an adopted segment takes the running configuration's. */
	d.seg.hdr->terr_timeout_ms = d.ops->cfg.terr_default_timeout_ms;
	d.seg.hdr->max_txn_files = d.ops->cfg.max_transaction_size;
	/* Safe file operations dead agents left half done: before the first
	 * agent is accepted. */
	recovery_start(&d);
	/* The audit log; a failure (logged) stops cleanly below. */
	rc = ops_start(&d);
	if (rc == 0) {
		/* The kernel guard: after the audit log, before "ready". */
		guard_start(&d);
		atomic_store(&d.seg.hdr->guard_active, strncmp(guard_status(), "active", 6) == 0);
		/* Then the privileges go, before any thread exists: HTTP's
		 * and the guard's enforcement thread start with the final
		 * credentials. */
		if (privilege_drop(&d) < 0)
			rc = 1;
	}
	if (rc == 0)
		rc = ops_start_http(&d);
	if (rc)
		d.stop = true;
	else {
		guard_started(&d);
		bumbad_log(
			LOG_NOTICE,
			"ready: socket %s, workspace %s%s, segment %zu KiB, %u agents x %u locks, "
			"guard %s",
			d.socket_path, d.roots[0], d.o.n_roots > 1 ? " (+more)" : "",
			d.seg.size / 1024, d.seg.hdr->caps.max_agents, d.seg.hdr->caps.max_locks,
			guard_status());
		notify_ready(&d);
	}
	run(&d);
	notify_stopping(&d);
	atomic_store(&d.seg.hdr->guard_active, 0);
	guard_stop(&d);
	ops_stop(&d);

	/* Clean stop: agents keep their mappings; new ones cannot register. */
	close(d.lfd);
	unlink(d.socket_path);
	keeper_quit(&d);
	atomic_store(&d.seg.hdr->sup_pid, 0);
	bumbad_log(LOG_NOTICE, "stopped");
	return rc;
}
