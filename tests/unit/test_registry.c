/* SPDX-License-Identifier: MIT */
/*
 * test_registry.c - registration against a real bumbad: agent ids and
 * metadata, the segment handed over (sealed, read-only for observers,
 * refused when stale or foreign), malformed and oversized messages, a full
 * agent table, socket permissions, and reclaim on SIGKILL through the pidfd.
 */
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handle.h"
#include "unit_bumbad.h"

static char dir[64], sock_path[96], ws[96];
static pid_t sup;

/* Our own supervisor; extra: an option taking the value 2, or NULL. */
static pid_t start_bumbad(const char *extra)
{
	const char *more[] = {extra, "2", NULL};
	char log[160];

	snprintf(log, sizeof(log), "%s/bumbad.log", dir);
	return unit_start_bumbad(sock_path, ws, log, extra ? more : NULL);
}

static void stop_bumbad(pid_t pid, int sig)
{
	unit_stop_bumbad(pid, sig);
}

static int group_setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/bumba-reg.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/bumba.sock", dir);
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	mkdir(ws, 0700);
	sup = start_bumbad(NULL);
	return sup > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[128];

	if (sup > 0)
		stop_bumbad(sup, SIGTERM);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int raw_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Sends raw bytes, expects an ERROR reply carrying err. */
static void expect_error(int fd, const void *buf, size_t len, int err)
{
	struct bumba_msg m;

	assert_int_equal(send(fd, buf, len, 0), (ssize_t)len);
	assert_int_equal(bumba_wire_recv(fd, &m, NULL, 3000), 0);
	assert_int_equal(m.type, BUMBA_MSG_ERROR);
	assert_int_equal(m.err, err);
}

static void test_register_metadata(void **state)
{
	const char *caps[] = {"api-development", "security"};
	struct bumba_agent_info in = {.type = "BackendEngineer",
				      .name = "ApiSpecialist",
				      .department = "technical",
				      .capabilities = caps,
				      .n_capabilities = 2};
	struct bumba *b, *child;
	regex_t re;

	assert_int_equal(bumba_open(sock_path, &in, &b), 0);
	assert_int_equal(regcomp(&re, "^BackendEngineer-ApiSpecialist-[0-9]{13}-[0-9a-f]{8}$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	assert_int_equal(regexec(&re, bumba_agent_id(b), 0, NULL, 0), 0);
	regfree(&re);
	const struct bumba_seg *s = bumba_handle_seg(b);
	const struct agent_slot *a = &s->agents[bumba_handle_slot(b)];
	assert_string_equal(a->type, "BackendEngineer");
	assert_string_equal(a->name, "ApiSpecialist");
	assert_string_equal(a->department, "technical");
	assert_int_equal(a->n_caps, 2);
	assert_string_equal(a->caps[1], "security");
	assert_int_equal(a->pid, getpid());
	assert_int_equal(a->uid, getuid());
	assert_true(a->registered_ms > 1700000000000ull);
	assert_int_equal(atomic_load(&a->status), BUMBA_STATUS_ACTIVE);
	assert_int_equal(bumba_set_status(b, BUMBA_STATUS_BUSY), 0);
	assert_int_equal(atomic_load(&a->status), BUMBA_STATUS_BUSY);
	assert_int_equal(bumba_set_status(b, 42), -EINVAL);

	/* A child agent names its parent; an unknown parent is refused. */
	struct bumba_agent_info ci = {.type = "Helper", .parent_id = bumba_agent_id(b)};
	assert_int_equal(bumba_open(sock_path, &ci, &child), 0);
	assert_int_equal(s->agents[bumba_handle_slot(child)].parent1, bumba_handle_slot(b) + 1);
	bumba_close(child);
	ci.parent_id = "Nobody-x-1-00000000";
	assert_int_equal(bumba_open(sock_path, &ci, &child), -ESRCH);

	/* Default metadata. */
	struct bumba *d;
	assert_int_equal(bumba_open(sock_path, NULL, &d), 0);
	assert_true(strncmp(bumba_agent_id(d), "Agent-agent", 11) == 0);
	bumba_close(d);
	bumba_close(b);
}

static void test_bad_info(void **state)
{
	struct bumba *b;
	struct bumba_agent_info in = {.type = "Has-Dash"};
	const char *caps[17];

	assert_int_equal(bumba_open(sock_path, &in, &b), -EINVAL);
	in = (struct bumba_agent_info){.name = "\xc3\x28"};
	assert_int_equal(bumba_open(sock_path, &in, &b), -EINVAL);
	in = (struct bumba_agent_info){.department = "0123456789012345678901234567890123456789"};
	assert_int_equal(bumba_open(sock_path, &in, &b), -EINVAL);
	for (int i = 0; i < 17; i++)
		caps[i] = "c";
	in = (struct bumba_agent_info){.capabilities = caps, .n_capabilities = 17};
	assert_int_equal(bumba_open(sock_path, &in, &b), -EINVAL);
	in = (struct bumba_agent_info){.type = "tab\there"};
	assert_int_equal(bumba_open(sock_path, &in, &b), -EINVAL);
}

static void test_malformed_messages(void **state)
{
	int fd = raw_connect();
	unsigned char buf[BUMBA_MSG_MAX * 2];
	struct bumba_msg m = {.type = BUMBA_MSG_REGISTER};
	int len;

	/* Garbage, a truncated header, an oversized datagram. */
	memset(buf, 0xa5, sizeof(buf));
	expect_error(fd, buf, 64, EPROTO);
	expect_error(fd, buf, 3, EPROTO);
	expect_error(fd, buf, sizeof(buf), EMSGSIZE);
	/* A valid header whose TLV runs past the end. */
	m.abi = BUMBA_ABI_VERSION;
	m.present = 1u << BUMBA_TAG_ABI;
	len = bumba_msg_encode(&m, buf, sizeof(buf));
	assert_true(len > 0);
	expect_error(fd, buf, (size_t)len - 1, EBADMSG);
	/* A server-side rule: no '-' in type (a client that skips our checks). */
	snprintf(m.type_s, sizeof(m.type_s), "a-b");
	m.present |= 1u << BUMBA_TAG_TYPE;
	len = bumba_msg_encode(&m, buf, sizeof(buf));
	expect_error(fd, buf, (size_t)len, EINVAL);
	/* Another segment ABI. */
	m.present = 1u << BUMBA_TAG_ABI;
	m.abi = BUMBA_ABI_VERSION + 1;
	len = bumba_msg_encode(&m, buf, sizeof(buf));
	expect_error(fd, buf, (size_t)len, EPROTO);
	/* An unexpected type for a server. */
	m = (struct bumba_msg){.type = BUMBA_MSG_PONG};
	len = bumba_msg_encode(&m, buf, sizeof(buf));
	expect_error(fd, buf, (size_t)len, EBADMSG);
	/* The same connection still works: a ping. */
	m = (struct bumba_msg){.type = BUMBA_MSG_PING, .seq = 7};
	assert_int_equal(bumba_wire_send(fd, &m, -1), 0);
	assert_int_equal(bumba_wire_recv(fd, &m, NULL, 3000), 0);
	assert_int_equal(m.type, BUMBA_MSG_PONG);
	assert_int_equal(m.seq, 7);
	close(fd);
	/* And so does the supervisor. */
	struct bumba *b;
	assert_int_equal(bumba_open(sock_path, NULL, &b), 0);
	bumba_close(b);
}

static void test_segment_protection(void **state)
{
	struct bumba *b;
	struct bumba_seg obs;
	struct stat st;

	/* The socket is ours alone, or, for root with a "bumba" group, that
	 * group's too (docs/security.md); never anyone else's. */
	assert_int_equal(stat(sock_path, &st), 0);
	const struct group *gr = geteuid() == 0 ? getgrnam("bumba") : NULL;
	if (gr) {
		assert_int_equal(st.st_mode & 0777, 0660);
		assert_int_equal(st.st_gid, gr->gr_gid);
	} else {
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	assert_int_equal(bumba_open(sock_path, NULL, &b), 0);
	int fd = bumba_handle_seg(b)->fd;
	int seals = fcntl(fd, F_GET_SEALS);
	assert_true(seals & F_SEAL_SHRINK);
	assert_true(seals & F_SEAL_GROW);
	assert_int_equal(ftruncate(fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	/* Observers get a descriptor that cannot write. */
	assert_int_equal(bumba_observe(sock_path, &obs), 0);
	assert_int_equal(fcntl(obs.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_ptr_equal(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, obs.fd, 0),
			 MAP_FAILED);
	bumba_seg_unmap(&obs);

	/* A foreign memfd and another ABI version are refused. */
	struct bumba_seg s;
	int mf = memfd_create("foreign", MFD_CLOEXEC);
	assert_int_equal(ftruncate(mf, 1 << 20), 0);
	assert_int_equal(bumba_seg_map(mf, false, false, &s), -EPROTO);
	void *src = mmap(NULL, bumba_handle_seg(b)->size, PROT_READ, MAP_SHARED, fd, 0);
	struct seg_header h;
	memcpy(&h, src, sizeof(h));
	h.abi_version++;
	assert_int_equal(pwrite(mf, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	assert_int_equal(bumba_seg_map(mf, false, false, &s), -EPROTO);
	munmap(src, bumba_handle_seg(b)->size);
	close(mf);
	bumba_close(b);
}

static void test_reclaim_on_sigkill(void **state)
{
	int p[2];
	struct bumba *b;
	struct bumba_lock l;
	char c;

	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct bumba *cb;
		struct bumba_lock cl;
		if (bumba_open(sock_path, NULL, &cb) ||
		    bumba_lock_acquire(cb, "held", BUMBA_EXCLUSIVE, 0, 1, &cl))
			_exit(1);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(bumba_open(sock_path, NULL, &b), 0);
	assert_int_equal(bumba_lock_acquire(b, "held", BUMBA_EXCLUSIVE, 0, 1, &l), -EBUSY);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* Blocked until bumbad reclaims the dead holder, then owner-died. */
	assert_int_equal(bumba_lock_acquire(b, "held", BUMBA_EXCLUSIVE, 5000, 1, &l), 0);
	assert_int_equal(bumba_lock_owner_died(&l), 1);
	assert_int_equal(bumba_lock_release(b, &l), 0);
	bumba_close(b);
	close(p[0]);
	close(p[1]);
}

static void test_table_full_and_stale(void **state)
{
	struct bumba *a[3];
	struct bumba_seg obs;

	/* A second supervisor on its own socket with room for two agents. */
	stop_bumbad(sup, SIGTERM);
	sup = start_bumbad("--max-agents");
	assert_true(sup > 0);
	assert_int_equal(bumba_open(sock_path, NULL, &a[0]), 0);
	assert_int_equal(bumba_open(sock_path, NULL, &a[1]), 0);
	assert_int_equal(bumba_open(sock_path, NULL, &a[2]), -ENOSPC);
	bumba_close(a[1]);
	assert_int_equal(bumba_open(sock_path, NULL, &a[2]), 0);
	bumba_close(a[2]);

	/* A second bumbad on the same socket refuses to start. */
	char bin[PATH_MAX];
	snprintf(bin, sizeof(bin), "%s/bumbad", getenv("BUILD") ? getenv("BUILD") : "build");
	pid_t p2 = fork();
	if (p2 == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		execl(bin, "bumbad", "--socket", sock_path, "--workspace", ws, "--http", "off",
		      (char *)NULL);
		_exit(127);
	}
	int st;
	waitpid(p2, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);

	/* Once the supervisor is gone, its segment is stale to a new mapper. */
	assert_int_equal(bumba_observe(sock_path, &obs), 0);
	stop_bumbad(sup, SIGKILL);
	sup = -1;
	int fd = dup(obs.fd);
	struct bumba_seg s2;
	assert_int_equal(bumba_seg_map(fd, false, true, &s2), -ESTALE);
	close(fd);
	bumba_seg_unmap(&obs);
	/* No supervisor answers. */
	struct bumba *x;
	assert_true(bumba_open(sock_path, NULL, &x) < 0);
	/* The agent still holding the segment closes cleanly without it. */
	bumba_close(a[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_metadata),
		cmocka_unit_test(test_bad_info),
		cmocka_unit_test(test_malformed_messages),
		cmocka_unit_test(test_segment_protection),
		cmocka_unit_test(test_reclaim_on_sigkill),
		cmocka_unit_test(test_table_full_and_stale),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
