/* SPDX-License-Identifier: MIT */
/*
 * test_join.c - joining an agent registered by another process (bumba-run's
 * children), against a real bumbad: the same id and slot; the environment
 * rules of bumba_open (join, opt-outs, errors); locks and territories shared
 * by the agent's processes and re-entrant across them; bumba_close of a
 * joined handle giving back only its own and leaving the agent registered;
 * a joined process that exits without closing; a join after the owner died
 * refused; an agent of another supervisor than the caller's not joined;
 * a joined handle that outlives its agent failing cleanly
 * without touching the agent that reuses the slot; and processes of one
 * agent hammering the hold table together while one of them, then the
 * agent itself, is SIGKILLed.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"
#include "unit_bumbad.h"

static char dir[64], sock_path[96], ws[96];
static pid_t sup;

/* Our own supervisor, its log in the test directory. */
static pid_t start_bumbad(const char *sock, const char *root)
{
	char log[160];

	snprintf(log, sizeof(log), "%s/bumbad.log", dir);
	return unit_start_bumbad(sock, root, log, NULL);
}

static void clear_env(void)
{
	unsetenv("BUMBA_AGENT_ID");
	unsetenv("BUMBA_AGENT_FD");
	unsetenv("BUMBA_NO_JOIN");
	unsetenv("BUMBA_SOCKET");
}

static int group_setup(void **state)
{
	clear_env();
	snprintf(dir, sizeof(dir), "/tmp/bumba-join.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/bumba.sock", dir);
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	mkdir(ws, 0700);
	sup = start_bumbad(sock_path, ws);
	return sup > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	if (sup > 0) {
		kill(sup, SIGTERM);
		waitpid(sup, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int test_teardown(void **state)
{
	clear_env();
	return 0;
}

/* The environment bumba-run gives COMMAND, for owner o through fd. */
static void export_env(const struct bumba *o, int fd)
{
	char num[16];

	snprintf(num, sizeof(num), "%d", fd);
	setenv("BUMBA_AGENT_ID", bumba_agent_id(o), 1);
	setenv("BUMBA_AGENT_FD", num, 1);
	setenv("BUMBA_SOCKET", sock_path, 1);
}

static struct bumba *owner(const char *name)
{
	struct bumba_agent_info in = {.type = "Runner", .name = name};
	struct bumba *b;

	assert_int_equal(bumba_open_ex(sock_path, &in, BUMBA_OPEN_NO_JOIN, &b), 0);
	return b;
}

static void test_same_agent(void **state)
{
	struct bumba *o = owner("same"), *j, *j2;
	int fd = bumba_join_fd(o);

	assert_true(fd >= 3);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	assert_int_equal(bumba_join(bumba_agent_id(o), fd, &j), 0);
	assert_string_equal(bumba_agent_id(j), bumba_agent_id(o));
	assert_int_equal(bumba_handle_slot(j), bumba_handle_slot(o));
	assert_int_equal(bumba_is_joined(j), 1);
	assert_int_equal(bumba_is_joined(o), 0);
	/* The descriptor is not consumed: a second join (a grandchild). */
	assert_int_equal(fcntl(fd, F_GETFD), 0);
	assert_int_equal(bumba_join(bumba_agent_id(o), fd, &j2), 0);
	assert_string_equal(bumba_agent_id(j2), bumba_agent_id(o));
	/* Status is the agent's. */
	assert_int_equal(bumba_set_status(j, BUMBA_STATUS_BLOCKED), 0);
	assert_int_equal(atomic_load(&bumba_handle_seg(o)->agents[bumba_handle_slot(o)].status),
			 BUMBA_STATUS_BLOCKED);
	bumba_close(j2);
	bumba_close(j);
	bumba_close(o);
	close(fd);
}

static void test_open_env_rules(void **state)
{
	const char *caps[] = {"x"};
	struct bumba_agent_info in = {
		.type = "Other", .name = "new", .capabilities = caps, .n_capabilities = 1};
	struct bumba *o = owner("env"), *b;
	int fd = bumba_join_fd(o);

	/* Nothing in the environment: a new agent; JOIN_ONLY refuses. */
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_JOIN_ONLY, &b), -ENOENT);
	assert_int_equal(bumba_open_ex(sock_path, NULL, 3, &b), -EINVAL);

	export_env(o, fd);
	/* NULL socket, or the one in BUMBA_SOCKET: join (info ignored). */
	assert_int_equal(bumba_open(NULL, &in, &b), 0);
	assert_int_equal(bumba_is_joined(b), 1);
	assert_string_equal(bumba_agent_id(b), bumba_agent_id(o));
	bumba_close(b);
	assert_int_equal(bumba_open(sock_path, NULL, &b), 0);
	assert_int_equal(bumba_is_joined(b), 1);
	bumba_close(b);
	assert_int_equal(bumba_open_ex(NULL, NULL, BUMBA_OPEN_JOIN_ONLY, &b), 0);
	assert_int_equal(bumba_is_joined(b), 1);
	bumba_close(b);

	/* Opt-outs: a flag, BUMBA_NO_JOIN, a child agent, another socket. */
	assert_int_equal(bumba_open_ex(NULL, &in, BUMBA_OPEN_NO_JOIN, &b), 0);
	assert_int_equal(bumba_is_joined(b), 0);
	assert_string_not_equal(bumba_agent_id(b), bumba_agent_id(o));
	assert_memory_equal(bumba_agent_id(b), "Other-new-", 10);
	bumba_close(b);
	setenv("BUMBA_NO_JOIN", "0", 1); /* "0": no opt-out */
	assert_int_equal(bumba_open(NULL, NULL, &b), 0);
	assert_int_equal(bumba_is_joined(b), 1);
	bumba_close(b);
	setenv("BUMBA_NO_JOIN", "1", 1);
	assert_int_equal(bumba_open(NULL, NULL, &b), 0);
	assert_int_equal(bumba_is_joined(b), 0);
	bumba_close(b);
	unsetenv("BUMBA_NO_JOIN");
	struct bumba_agent_info child = {.parent_id = bumba_agent_id(o)};
	assert_int_equal(bumba_open(NULL, &child, &b), 0);
	assert_int_equal(bumba_is_joined(b), 0);
	assert_int_equal(bumba_handle_seg(b)->agents[bumba_handle_slot(b)].parent1,
			 bumba_handle_slot(o) + 1);
	bumba_close(b);
	char other[128];
	snprintf(other, sizeof(other), "%s/none.sock", dir);
	assert_int_equal(bumba_open(other, NULL, &b), -ENOENT); /* tried to register there */

	/* Set but unusable: an error, never a silent new agent. */
	setenv("BUMBA_AGENT_FD", "12x", 1);
	assert_int_equal(bumba_open(NULL, NULL, &b), -EINVAL);
	unsetenv("BUMBA_AGENT_FD");
	assert_int_equal(bumba_open(NULL, NULL, &b), -EINVAL);
	setenv("BUMBA_AGENT_FD", "1000", 1);
	assert_int_equal(bumba_open(NULL, NULL, &b), -EBADF);
	/* A regular file in its place (the number reused): still -EBADF. */
	char path[128], num[16];
	snprintf(path, sizeof(path), "%s/reused", dir);
	int plain = open(path, O_RDWR | O_CREAT, 0600);
	assert_int_equal(write(plain, "0123456789abcdef", 16), 16);
	snprintf(num, sizeof(num), "%d", plain);
	setenv("BUMBA_AGENT_FD", num, 1);
	assert_int_equal(bumba_open(NULL, NULL, &b), -EBADF);
	close(plain);
	setenv("BUMBA_AGENT_FD", "1000", 1);
	setenv("BUMBA_AGENT_FD", "1000", 1);
	setenv("BUMBA_NO_JOIN", "yes", 1);
	assert_int_equal(bumba_open(NULL, NULL, &b), 0); /* opted out: registers */
	assert_int_equal(bumba_is_joined(b), 0);
	bumba_close(b);

	bumba_close(o);
	close(fd);
}

static void test_bad_descriptors(void **state)
{
	struct bumba *o = owner("bad"), *b;
	int fd = bumba_join_fd(o);
	char id[BUMBA_ID_MAX], path[128];
	struct bumba_seg obs;

	snprintf(id, sizeof(id), "%s", bumba_agent_id(o)); /* outlives o */
	assert_int_equal(bumba_join(id, -1, &b), -EBADF);
	assert_int_equal(bumba_join(id, 1000, &b), -EBADF);
	int null = open("/dev/null", O_RDWR);
	assert_int_equal(bumba_join(id, null, &b), -EBADF);
	close(null);
	snprintf(path, sizeof(path), "%s/plain", dir);
	int plain = open(path, O_RDWR | O_CREAT, 0600);
	assert_int_equal(write(plain, "not a segment, just some bytes", 30), 30);
	assert_int_equal(bumba_join(id, plain, &b), -EBADF);
	close(plain);
	/* An observer's read-only descriptor is no membership proof. */
	assert_int_equal(bumba_observe(sock_path, &obs), 0);
	assert_int_equal(bumba_join(id, obs.fd, &b), -EBADF);
	bumba_seg_unmap(&obs);
	/* The right segment, an agent that does not exist. */
	assert_int_equal(bumba_join("Nobody-none-1700000000000-00000000", fd, &b), -ESTALE);
	assert_int_equal(bumba_join("", fd, &b), -EINVAL);
	assert_int_equal(bumba_join(NULL, fd, &b), -EINVAL);
	assert_int_equal(bumba_join(id, fd, NULL), -EINVAL);
	bumba_close(o);
	/* The owner closed: the agent is gone. */
	assert_int_equal(bumba_join(id, fd, &b), -ESTALE);
	close(fd);
}

static void test_locks_shared_by_the_agent(void **state)
{
	struct bumba *o = owner("locks"), *j, *stranger;
	struct bumba_lock lo, lj, lj2, ls, lg;
	int fd = bumba_join_fd(o);

	assert_int_equal(bumba_join(bumba_agent_id(o), fd, &j), 0);
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &stranger), 0);

	/* The owner's lock is the agent's: the joined process re-enters it
	 * at once (same fencing token), a stranger is kept out. */
	assert_int_equal(bumba_lock_acquire(o, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &lo), 0);
	assert_int_equal(bumba_lock_acquire(j, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &lj), 0);
	assert_true(lj.fence == lo.fence);
	assert_int_equal(
		bumba_lock_acquire(stranger, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ls),
		-EBUSY);
	assert_int_equal(bumba_lock_release(j, &lj), 0);
	assert_int_equal(
		bumba_lock_acquire(stranger, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ls),
		-EBUSY); /* the owner's count stands */

	/* The joined handle's own lock, and one more count on the owner's:
	 * closing it gives back exactly those. */
	assert_int_equal(bumba_lock_acquire(j, "g", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &lg), 0);
	assert_int_equal(bumba_lock_acquire(j, "g", BUMBA_SHARED, 0, BUMBA_PRIO_NORMAL, &lj2), 0);
	assert_int_equal(bumba_lock_acquire(j, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &lj), 0);
	assert_int_equal(bumba_lock_acquire(o, "g", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ls),
			 0); /* the owner re-enters the joined one's lock too */
	assert_int_equal(bumba_lock_release(o, &ls), 0);
	bumba_close(j);
	assert_int_equal(
		bumba_lock_acquire(stranger, "g", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ls), 0);
	assert_int_equal(bumba_lock_release(stranger, &ls), 0);
	assert_int_equal(
		bumba_lock_acquire(stranger, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ls),
		-EBUSY);
	/* ... and the agent is still registered and holds its lock. */
	assert_int_equal(bumba_set_status(o, BUMBA_STATUS_IDLE), 0);
	assert_int_equal(bumba_lock_release(o, &lo), 0);
	assert_int_equal(bumba_lock_release(o, &lo), -ENOLCK); /* once only */
	assert_int_equal(
		bumba_lock_acquire(stranger, "f", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ls), 0);
	assert_int_equal(bumba_lock_release(stranger, &ls), 0);

	bumba_close(stranger);
	bumba_close(o);
	close(fd);
}

static void test_territories_shared_by_the_agent(void **state)
{
	struct bumba *o = owner("terr"), *j, *stranger;
	const char *mine[] = {"src"}, *theirs[] = {"docs"};
	struct bumba_conflict c[4];
	struct bumba_lock l;
	uint64_t t1, t2, t3;
	size_t nc;
	int fd = bumba_join_fd(o);

	assert_int_equal(bumba_join(bumba_agent_id(o), fd, &j), 0);
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &stranger), 0);
	assert_int_equal(bumba_territory_claim(o, "owner", mine, 1, BUMBA_TERRITORY_EXCLUSIVE, &t1,
					       c, 4, &nc),
			 0);
	/* Inside the agent's EXCLUSIVE territory: a lock for every process
	 * of the agent, refused to anyone else. */
	assert_int_equal(
		bumba_lock_acquire(j, "src/a.c", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l), 0);
	assert_int_equal(bumba_lock_release(j, &l), 0);
	assert_int_equal(
		bumba_lock_acquire(stranger, "src/a.c", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l),
		-EACCES);
	/* The joined handle's claims never conflict with the agent's own. */
	assert_int_equal(bumba_territory_claim(j, "joined", mine, 1, BUMBA_TERRITORY_EXCLUSIVE, &t2,
					       c, 4, &nc),
			 0);
	assert_int_equal(bumba_territory_claim(j, "joined", theirs, 1, BUMBA_TERRITORY_EXCLUSIVE,
					       &t3, c, 4, &nc),
			 0);
	/* A conflict names the agent, whichever process claimed. */
	assert_int_equal(bumba_territory_claim(stranger, NULL, theirs, 1, BUMBA_TERRITORY_EXCLUSIVE,
					       &t2, c, 4, &nc),
			 -EBUSY);
	assert_int_equal(nc, 1);
	assert_string_equal(c[0].holder_id, bumba_agent_id(o));
	/* Closing the joined handle ends its own territories only. */
	bumba_close(j);
	assert_int_equal(bumba_territory_claim(stranger, NULL, theirs, 1, BUMBA_TERRITORY_EXCLUSIVE,
					       &t2, c, 4, &nc),
			 0);
	assert_int_equal(
		bumba_lock_acquire(stranger, "src/a.c", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l),
		-EACCES);
	assert_int_equal(bumba_territory_release(o, t1), 0);
	bumba_close(stranger);
	bumba_close(o);
	close(fd);
}

/* A joined process (forked, joining from the environment as a program of
 * bumba-run would) that exits without closing: what it took stays with the
 * agent, which is still there, until the agent ends. */
static void test_joined_process_exits(void **state)
{
	struct bumba *o = owner("proc"), *stranger;
	struct bumba_lock l;
	int fd = bumba_join_fd(o), p[2], st;
	char buf[BUMBA_ID_MAX] = {0};

	export_env(o, fd);
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct bumba *cb;
		struct bumba_lock cl;
		if (bumba_open(NULL, NULL, &cb) || !bumba_is_joined(cb) ||
		    bumba_lock_acquire(cb, "h", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &cl))
			_exit(1);
		if (write(p[1], bumba_agent_id(cb), strlen(bumba_agent_id(cb))) <= 0)
			_exit(1);
		_exit(0); /* no bumba_close */
	}
	close(p[1]);
	assert_true(read(p[0], buf, sizeof(buf) - 1) > 0);
	close(p[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_string_equal(buf, bumba_agent_id(o));
	clear_env();

	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &stranger), 0);
	/* The child is gone but the agent is not: nothing was reclaimed. */
	usleep(100000);
	assert_int_equal(bumba_set_status(o, BUMBA_STATUS_ACTIVE), 0);
	assert_int_equal(
		bumba_lock_acquire(stranger, "h", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l),
		-EBUSY);
	assert_int_equal(bumba_lock_acquire(o, "h", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l), 0);
	assert_int_equal(bumba_lock_release(o, &l), 0);
	/* The agent's end releases it. */
	bumba_close(o);
	assert_int_equal(
		bumba_lock_acquire(stranger, "h", BUMBA_EXCLUSIVE, 2000, BUMBA_PRIO_NORMAL, &l), 0);
	assert_int_equal(bumba_lock_owner_died(&l), 0);
	assert_int_equal(bumba_lock_release(stranger, &l), 0);
	bumba_close(stranger);
	close(fd);
}

/* The owner (bumba-run) SIGKILLed: bumbad reclaims the agent; the joined
 * handle fails cleanly, a new join is refused, and the agent that reuses
 * the slot is never touched by the stale handle. */
static void test_owner_killed(void **state)
{
	struct bumba *anchor = owner("anchor"), *j, *stranger, *next;
	struct bumba_lock l, lj, ln;
	struct bumba_conflict c[2];
	const char *paths[] = {"kdir"};
	char id[BUMBA_ID_MAX] = {0};
	uint64_t tid;
	size_t nc;
	int p[2], fd = bumba_join_fd(anchor); /* the segment: any agent's copy */

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct bumba *cb;
		close(p[0]);
		if (bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &cb))
			_exit(1);
		if (write(p[1], bumba_agent_id(cb), strlen(bumba_agent_id(cb))) <= 0)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_true(read(p[0], id, sizeof(id) - 1) > 0);
	close(p[0]);
	assert_int_equal(bumba_join(id, fd, &j), 0);
	uint32_t slot = bumba_handle_slot(j);
	assert_int_equal(bumba_lock_acquire(j, "k", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &lj), 0);
	assert_int_equal(bumba_territory_claim(j, NULL, paths, 1, BUMBA_TERRITORY_EXCLUSIVE, &tid,
					       c, 2, &nc),
			 0);

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &stranger), 0);
	/* Reclaimed: the joined process's lock goes with the agent. */
	assert_int_equal(
		bumba_lock_acquire(stranger, "k", BUMBA_EXCLUSIVE, 5000, BUMBA_PRIO_NORMAL, &l), 0);
	assert_int_equal(bumba_lock_owner_died(&l), 1);
	assert_int_equal(bumba_lock_release(stranger, &l), 0);
	bumba_close(stranger);

	/* A join now is refused. */
	struct bumba *late;
	assert_int_equal(bumba_join(id, fd, &late), -ESTALE);

	/* The next agent takes the lowest free slot: the dead one's. */
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &next), 0);
	assert_int_equal(bumba_handle_slot(next), slot);
	assert_int_equal(bumba_lock_acquire(next, "n", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &ln),
			 0);

	/* Everything on the stale handle fails, and changes nothing. */
	assert_int_equal(bumba_lock_acquire(j, "m", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l),
			 -ENOLINK);
	assert_int_equal(bumba_lock_acquire(j, "n", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l),
			 -ENOLINK);
	assert_int_equal(bumba_lock_release(j, &lj), -ENOLCK);
	assert_int_equal(bumba_territory_claim(j, NULL, paths, 1, BUMBA_TERRITORY_EXCLUSIVE, &tid,
					       c, 2, &nc),
			 -ENOLINK);
	assert_int_equal(bumba_territory_release(j, tid), -ENOLINK);
	assert_int_equal(bumba_set_status(j, BUMBA_STATUS_BUSY), -ENOLINK);
	assert_int_equal(bumba_safe_write(j, "kdir/x", "x", 1, BUMBA_WRITE_NOSYNC), -EPERM);
	bumba_close(j);
	/* The slot's new agent still holds its lock and is still live. */
	struct bumba *probe;
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &probe), 0);
	assert_int_equal(bumba_lock_acquire(probe, "n", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &l),
			 -EBUSY);
	assert_int_equal(bumba_set_status(next, BUMBA_STATUS_ACTIVE), 0);
	assert_int_equal(bumba_lock_release(next, &ln), 0);
	bumba_close(probe);
	bumba_close(next);
	bumba_close(anchor);
	close(fd);
}

/* A joined process waiting for a lock when its agent is reclaimed: it
 * wakes (within the liveness interval) with -ENOLINK and the queue is not
 * left blocked. */
static void test_waiter_outlives_agent(void **state)
{
	struct bumba *anchor = owner("anchor2"), *holder, *after;
	struct bumba_lock lh, l;
	char id[BUMBA_ID_MAX] = {0};
	int p[2], q[2], fd = bumba_join_fd(anchor), st;

	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &holder), 0);
	assert_int_equal(
		bumba_lock_acquire(holder, "w", BUMBA_EXCLUSIVE, 0, BUMBA_PRIO_NORMAL, &lh), 0);
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct bumba *cb;
		close(p[0]);
		if (bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &cb))
			_exit(1);
		if (write(p[1], bumba_agent_id(cb), strlen(bumba_agent_id(cb))) <= 0)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_true(read(p[0], id, sizeof(id) - 1) > 0);
	close(p[0]);
	/* The joined waiter, in a process of its own. */
	assert_int_equal(pipe(q), 0);
	pid_t wpid = fork();
	if (wpid == 0) {
		struct bumba *cb;
		close(q[0]);
		if (bumba_join(id, fd, &cb))
			_exit(1);
		if (write(q[1], "j", 1) != 1)
			_exit(1);
		int rc = bumba_lock_acquire(cb, "w", BUMBA_EXCLUSIVE, 20000, BUMBA_PRIO_NORMAL, &l);
		bumba_close(cb);
		_exit(rc == -ENOLINK ? 0 : 10 + (rc < 0 ? -rc : 0) % 100);
	}
	close(q[1]);
	char c;
	assert_int_equal(read(q[0], &c, 1), 1);
	close(q[0]);
	usleep(100000); /* queued */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(waitpid(wpid, &st, 0), wpid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* The lock goes on normally. */
	assert_int_equal(bumba_lock_release(holder, &lh), 0);
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &after), 0);
	assert_int_equal(
		bumba_lock_acquire(after, "w", BUMBA_EXCLUSIVE, 2000, BUMBA_PRIO_NORMAL, &l), 0);
	assert_int_equal(bumba_lock_release(after, &l), 0);
	bumba_close(after);
	bumba_close(holder);
	bumba_close(anchor);
	close(fd);
}

/* The environment names an agent of another supervisor than the one the
 * caller talks to (a test suite with its own bumbad, run under bumba-run):
 * register there, do not join. */
static void test_other_supervisor(void **state)
{
	char sock2[128], ws2[128];
	struct bumba *o = owner("far"), *b;
	int fd = bumba_join_fd(o);

	snprintf(sock2, sizeof(sock2), "%s/second.sock", dir);
	snprintf(ws2, sizeof(ws2), "%s/ws2", dir);
	mkdir(ws2, 0700);
	pid_t sup2 = start_bumbad(sock2, ws2);
	assert_true(sup2 > 0);

	export_env(o, fd);
	setenv("BUMBA_SOCKET", sock2, 1);
	assert_int_equal(bumba_open(NULL, NULL, &b), 0);
	assert_int_equal(bumba_is_joined(b), 0);
	const char *root;
	assert_int_equal(bumba_workspace_root(b, 0, &root), 0);
	assert_string_equal(root, ws2);
	bumba_close(b);
	/* Naming the agent's own supervisor explicitly still joins. */
	assert_int_equal(bumba_open(sock_path, NULL, &b), 0);
	assert_int_equal(bumba_is_joined(b), 1);
	bumba_close(b);
	/* JOIN_ONLY does not ask: it joins what the environment names. */
	assert_int_equal(bumba_open_ex(NULL, NULL, BUMBA_OPEN_JOIN_ONLY, &b), 0);
	assert_string_equal(bumba_agent_id(b), bumba_agent_id(o));
	bumba_close(b);

	kill(sup2, SIGTERM);
	waitpid(sup2, NULL, 0);
	bumba_close(o);
	close(fd);
}

/* One joined process hammering acquire/release: common (every process of
 * the agent: "same") and its own path, exclusive and shared, re-entered every
 * fifth time.  Counts successful acquires and releases in *ops.  With
 * until_gone, stops cleanly when the agent is reclaimed under it. */
static int hammer(const char *id, int fd, const char *common, int who, int n, bool until_gone,
		  _Atomic uint64_t *ops)
{
	struct bumba *cb;
	char own[16];

	int jrc = bumba_join(id, fd, &cb);
	if (jrc) /* the owner may be killed before we even join (phase 3) */
		return until_gone && jrc == -ESTALE ? 0 : 1;
	snprintf(own, sizeof(own), "own%d", who);
	for (int i = 0; n < 0 || i < n; i++) {
		struct bumba_lock l, l2;
		const char *p = (i & 1) ? common : own;
		enum bumba_mode m = i % 7 == 3 ? BUMBA_SHARED : BUMBA_EXCLUSIVE;
		int rc = bumba_lock_acquire(cb, p, m, 5000, BUMBA_PRIO_NORMAL, &l);
		if (rc)
			return until_gone && rc == -ENOLINK ? 0 : 10 + (-rc % 50);
		atomic_fetch_add(&ops[0], 1);
		if (i % 5 == 0) {
			rc = bumba_lock_acquire(cb, p, m, 5000, BUMBA_PRIO_NORMAL, &l2);
			if (rc)
				return until_gone && rc == -ENOLINK ? 0 : 60 + (-rc % 50);
			atomic_fetch_add(&ops[0], 1);
			if ((rc = bumba_lock_release(cb, &l2)))
				return until_gone && rc == -ENOLCK ? 0 : 110 + (-rc % 50);
			atomic_fetch_add(&ops[1], 1);
		}
		if ((rc = bumba_lock_release(cb, &l)))
			return until_gone && rc == -ENOLCK ? 0 : 160 + (-rc % 50);
		atomic_fetch_add(&ops[1], 1);
	}
	bumba_close(cb);
	return 0;
}

static pid_t spawn_hammer(const char *id, int fd, int who, int n, bool until_gone,
			  _Atomic uint64_t *ops)
{
	pid_t pid = fork();

	/* The one that gets killed (who 3) keeps to a path of its own. */
	if (pid == 0)
		_exit(hammer(id, fd, who == 3 ? "own3" : "same", who, n, until_gone, ops));
	return pid;
}

static void expect_exit0(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* The uncontended acquire activates its hold and counts under the agent
 * mutex (locks.c, acquire_common): processes of one agent sharing the hold
 * table, one of them SIGKILLed at any instruction (the robust mutex's
 * EOWNERDEAD), and the agent reclaimed while the others still run. */
static void test_joined_hammer_kill(void **state)
{
	struct bumba *o = owner("hammer"), *stranger, *anchor;
	struct bumba_lock l;
	const struct bumba_seg *seg = bumba_handle_seg(o);
	const struct agent_slot *ag = &seg->agents[bumba_handle_slot(o)];
	int fd = bumba_join_fd(o);
	char id[BUMBA_ID_MAX] = {0};
	_Atomic uint64_t *ops =
		mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(ops != MAP_FAILED);
	assert_int_equal(bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &stranger), 0);

	/* 1. Two processes, no deaths: the counters changed under the agent
	 * mutex are exact, and nothing is left held. */
	uint64_t acq0 = atomic_load(&ag->acquired), rel0 = atomic_load(&ag->released);
	pid_t p1 = spawn_hammer(bumba_agent_id(o), fd, 1, 20000, false, ops);
	pid_t p2 = spawn_hammer(bumba_agent_id(o), fd, 2, 20000, false, ops);
	expect_exit0(p1);
	expect_exit0(p2);
	assert_int_equal(atomic_load(&ag->acquired) - acq0, atomic_load(&ops[0]));
	/* released counts a hold's last release only (a count taken by
	 * the other process on the same hold is not one). */
	assert_true(atomic_load(&ag->released) - rel0 <= atomic_load(&ops[1]));
	assert_true(atomic_load(&ag->released) - rel0 >= 20000);
	assert_int_equal(atomic_load(&ops[0]), atomic_load(&ops[1]));
	const char *paths[] = {"same", "own1", "own2", "own3"};
	for (int k = 0; k < 3; k++) {
		assert_int_equal(bumba_lock_acquire(stranger, paths[k], BUMBA_EXCLUSIVE, 0,
						    BUMBA_PRIO_NORMAL, &l),
				 0);
		assert_int_equal(bumba_lock_release(stranger, &l), 0);
	}

	/* 2. A third process of the agent SIGKILLed while all three run (on
	 * its own path only: a process killed between making its hold and
	 * the outcome leaves a PENDING hold the others would wait for until
	 * the agent ends).  The other two go on without an error. */
	for (int round = 0; round < 5; round++) {
		p1 = spawn_hammer(bumba_agent_id(o), fd, 1, 20000, false, ops);
		p2 = spawn_hammer(bumba_agent_id(o), fd, 2, 20000, false, ops);
		pid_t p3 = spawn_hammer(bumba_agent_id(o), fd, 3, -1, false, ops);
		usleep(2000 + 3000 * round);
		kill(p3, SIGKILL);
		waitpid(p3, NULL, 0);
		expect_exit0(p1);
		expect_exit0(p2);
	}
	for (int k = 0; k < 3; k++) {
		assert_int_equal(bumba_lock_acquire(stranger, paths[k], BUMBA_EXCLUSIVE, 0,
						    BUMBA_PRIO_NORMAL, &l),
				 0);
		assert_int_equal(bumba_lock_release(stranger, &l), 0);
	}
	bumba_close(o); /* gives back whatever the killed ones held */
	for (int k = 0; k < 4; k++) {
		assert_int_equal(bumba_lock_acquire(stranger, paths[k], BUMBA_EXCLUSIVE, 2000,
						    BUMBA_PRIO_NORMAL, &l),
				 0);
		assert_int_equal(bumba_lock_release(stranger, &l), 0);
	}

	/* 3. The agent's owner SIGKILLed while two joined processes hammer:
	 * bumbad's reclaim races them; they stop with -ENOLINK/-ENOLCK and
	 * nothing stays held. */
	anchor = owner("anchor3");
	int afd = bumba_join_fd(anchor);
	for (int round = 0; round < 3; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t opid = fork();
		if (opid == 0) {
			struct bumba *cb;
			close(p[0]);
			if (bumba_open_ex(sock_path, NULL, BUMBA_OPEN_NO_JOIN, &cb))
				_exit(1);
			if (write(p[1], bumba_agent_id(cb), strlen(bumba_agent_id(cb))) <= 0)
				_exit(1);
			pause();
			_exit(0);
		}
		close(p[1]);
		memset(id, 0, sizeof(id));
		assert_true(read(p[0], id, sizeof(id) - 1) > 0);
		close(p[0]);
		p1 = spawn_hammer(id, afd, 1, -1, true, ops);
		p2 = spawn_hammer(id, afd, 2, -1, true, ops);
		usleep(5000 + 5000 * round);
		kill(opid, SIGKILL);
		waitpid(opid, NULL, 0);
		expect_exit0(p1);
		expect_exit0(p2);
		for (int k = 0; k < 3; k++) {
			assert_int_equal(bumba_lock_acquire(stranger, paths[k], BUMBA_EXCLUSIVE,
							    5000, BUMBA_PRIO_NORMAL, &l),
					 0);
			assert_int_equal(bumba_lock_release(stranger, &l), 0);
		}
	}
	bumba_close(anchor);
	close(afd);
	bumba_close(stranger);
	close(fd);
	munmap((void *)ops, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_same_agent, test_teardown),
		cmocka_unit_test_teardown(test_open_env_rules, test_teardown),
		cmocka_unit_test_teardown(test_bad_descriptors, test_teardown),
		cmocka_unit_test_teardown(test_other_supervisor, test_teardown),
		cmocka_unit_test_teardown(test_locks_shared_by_the_agent, test_teardown),
		cmocka_unit_test_teardown(test_territories_shared_by_the_agent, test_teardown),
		cmocka_unit_test_teardown(test_joined_process_exits, test_teardown),
		cmocka_unit_test_teardown(test_owner_killed, test_teardown),
		cmocka_unit_test_teardown(test_waiter_outlives_agent, test_teardown),
		cmocka_unit_test_teardown(test_joined_hammer_kill, test_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
