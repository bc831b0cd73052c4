/* SPDX-License-Identifier: MIT */
/*
 * ctl_guard.c - `bumbactl audit` and `bumbactl doctor` (see ctl_guard.h,
 * docs/audit.md).
 *
 * audit reads two sources and says which it could not read: the audit log
 * (monitoring.auditLog of the configuration, or --file), whose guard.*
 * lines name every violation with its path and holder; and the pinned map
 * <pin dir>/violations, which counts every violating event per (file,
 * process, operation) even when the log folds repeats.
 *
 * doctor runs each probe in this process, with this process's privileges:
 * run it as the user bumbad runs as.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../bpf/guard.h"
#include "../supervisor/config.h"
#include "ctl_guard.h"
#include "internal.h"

#ifdef BUMBA_GUARD
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#endif

#define PROG "bumbactl"

static const char *pin_dir(void)
{
	const char *e = getenv("BUMBA_BPF_PIN_DIR");

	return e && *e ? e : "/sys/fs/bpf/bumba";
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* "2026-01-02T03:04:05.678Z" (seconds and fraction optional, "Z"
 * optional, ' ' for 'T') as unix ms; 0 if it is not one. */
static uint64_t parse_iso(const char *s)
{
	struct tm tm;
	unsigned ms = 0;
	int n = 0;
	char sep;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep,
		   &tm.tm_hour, &tm.tm_min, &n) != 6 ||
	    (sep != 'T' && sep != ' '))
		return 0;
	s += n;
	if (*s == ':') {
		int k = 0;
		if (sscanf(s, ":%2d%n", &tm.tm_sec, &k) != 1)
			return 0;
		s += k;
		if (*s == '.') {
			unsigned scale = 100;
			for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
				ms += (unsigned)(*s - '0') * scale;
		}
	}
	if (*s == 'Z')
		s++;
	if (*s)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t < 0 ? 0 : (uint64_t)t * 1000 + ms;
}

/* --since T: "90s", "15m", "2h", "7d" ago, an ISO time (UTC), or unix
 * seconds.  0 and -EINVAL for nonsense. */
static int parse_since(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if ((*out = parse_iso(s)))
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -EINVAL;
	if (!*end) {
		*out = v * 1000;
		return 0;
	}
	if (end[1])
		return -EINVAL;
	switch (*end) {
	case 's':
		v *= 1000;
		break;
	case 'm':
		v *= 60 * 1000;
		break;
	case 'h':
		v *= 3600 * 1000;
		break;
	case 'd':
		v *= 86400 * 1000;
		break;
	default:
		return -EINVAL;
	}
	uint64_t now = wall_ms();
	*out = v > now ? 0 : now - v;
	return 0;
}

static void iso(uint64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + strlen(out), cap - strlen(out), ".%03uZ", (unsigned)(ms % 1000));
}

/* A string for a terminal: control bytes become '?'. */
static void term(char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
	}
}

static const char *jstr(const cJSON *o, const char *k, const char *def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : def;
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* ---------------------------------------------------------------------
 * audit
 * ------------------------------------------------------------------- */

static void quiet(void *ctx, bool error, const char *msg)
{
	(void)ctx;
	if (error)
		fprintf(stderr, PROG ": %s\n", msg);
}

/* The guard.* lines of the audit log since since_ms, into arr. */
static int read_log(const char *path, uint64_t since_ms, cJSON *arr, char *why, size_t cap)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t n = 0;

	if (!f) {
		snprintf(why, cap, "%.300s: %.100s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &n, f) > 0) {
		cJSON *o;
		const char *ev;

		if (!strstr(line, "\"guard."))
			continue;
		o = cJSON_Parse(line);
		if (!o)
			continue;
		ev = jstr(o, "event", "");
		if (strncmp(ev, "guard.", 6) != 0 ||
		    (since_ms && parse_iso(jstr(o, "ts", "")) < since_ms)) {
			cJSON_Delete(o);
			continue;
		}
		cJSON_AddItemToArray(arr, o);
	}
	free(line);
	fclose(f);
	return 0;
}

#ifdef BUMBA_GUARD
/* The pinned violations map, into arr (rows with since_ms <= last seen). */
static int read_pinned(uint64_t since_ms, cJSON *arr, char *why, size_t cap)
{
	char p[PATH_MAX];
	struct guard_vkey k, next, *prev = NULL;
	struct guard_vval v;
	uint64_t now_ms = wall_ms(), now_ns = mono_ns();
	int fd;

	snprintf(p, sizeof(p), "%s/violations", pin_dir());
	fd = bpf_obj_get(p);
	if (fd < 0) {
		int e = errno;
		snprintf(why, cap, "%.300s: %.60s%s", p, strerror(e),
			 e == EACCES || e == EPERM ? " (the pinned maps are root's)"
			 : e == ENOENT		   ? " (no guard running, or it is not pinned)"
						   : "");
		return -1;
	}
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		k = next;
		prev = &k;
		if (bpf_map_lookup_elem(fd, &k, &v) < 0)
			continue;
		uint64_t last_ms =
			now_ms - (now_ns > v.last_ns ? (now_ns - v.last_ns) / 1000000 : 0);
		uint64_t first_ms =
			now_ms - (now_ns > v.first_ns ? (now_ns - v.first_ns) / 1000000 : 0);
		if (since_ms && last_ms < since_ms)
			continue;
		cJSON *o = cJSON_CreateObject();
		char ts[40], dev[24];
		v.comm[sizeof(v.comm) - 1] = v.agent[sizeof(v.agent) - 1] =
			v.holder[sizeof(v.holder) - 1] = v.path[sizeof(v.path) - 1] = '\0';
		snprintf(dev, sizeof(dev), "%u:%u", k.dev >> 20, k.dev & 0xfffff);
		cJSON_AddStringToObject(o, "dev", dev);
		cJSON_AddNumberToObject(o, "ino", (double)k.ino);
		cJSON_AddNumberToObject(o, "pid", k.tgid);
		cJSON_AddStringToObject(o, "op", guard_op_name(k.op));
		cJSON_AddNumberToObject(o, "count", (double)v.count);
		iso(first_ms, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "first", ts);
		iso(last_ms, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "last", ts);
		cJSON_AddNumberToObject(o, "uid", v.uid);
		cJSON_AddStringToObject(o, "comm", v.comm);
		cJSON_AddStringToObject(o, "agent", v.agent);
		cJSON_AddStringToObject(o, "holder", v.holder);
		cJSON_AddStringToObject(o, "path", v.path);
		cJSON_AddItemToArray(arr, o);
	}
	close(fd);
	return 0;
}
#else
static int read_pinned(uint64_t since_ms, cJSON *arr, char *why, size_t cap)
{
	(void)since_ms, (void)arr;
	snprintf(why, cap, "this bumbactl was built without libbpf");
	return -1;
}
#endif

static int cmp_last(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
	int c = strcmp(jstr(x, "last", ""), jstr(y, "last", ""));

	return c ? c : (int)(jnum(y, "count") - jnum(x, "count"));
}

static void print_row(const char *const *cols, const int *w, int n)
{
	for (int i = 0; i < n; i++) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", cols[i] && *cols[i] ? cols[i] : "-");
		term(buf);
		if (i == n - 1)
			printf("%s\n", buf);
		else
			printf("%-*s  ", w[i], buf);
	}
}

int bumba_ctl_audit(bool json, const char *config, int argc, char **argv)
{
	const char *synopsis = "bumbactl audit [--json] [--since T] [--file PATH]";
	const char *file = NULL, *since = NULL;
	char log_why[512] = "", pin_why[512] = "";
	struct bumba_config c;
	uint64_t since_ms = 0;
	int log_rc, pin_rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--since") && i + 1 < argc) {
			since = argv[++i];
		} else if (!strncmp(argv[i], "--since=", 8)) {
			since = argv[i] + 8;
		} else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
			file = argv[++i];
		} else if (!strncmp(argv[i], "--file=", 7)) {
			file = argv[i] + 7;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("Usage: %s\n"
			       "  T: 90s, 15m, 2h, 7d ago; an ISO time (UTC); or unix seconds\n",
			       synopsis);
			return EX_OK;
		} else {
			fprintf(stderr, PROG ": audit: bad argument '%s'\nUsage: %s\n", argv[i],
				synopsis);
			return EX_USAGE;
		}
	}
	if (since && parse_since(since, &since_ms) < 0) {
		fprintf(stderr,
			PROG ": audit: --since '%s': not a time (90s, 15m, 2h, 7d, "
			     "2026-01-02T03:04:05Z, or unix seconds)\n",
			since);
		return EX_USAGE;
	}
	if (!file) {
		if (!config)
			config = getenv("BUMBA_CONFIG");
		if (bumba_config_load(&c, config && *config ? config : NULL, quiet, NULL) == 0 &&
		    c.audit_log[0])
			file = c.audit_log;
	}

	cJSON *events = cJSON_CreateArray(), *pinned = cJSON_CreateArray();
	if (file)
		log_rc = read_log(file, since_ms, events, log_why, sizeof(log_why));
	else {
		log_rc = -1;
		snprintf(
			log_why, sizeof(log_why),
			"no audit log configured (monitoring.auditLog, BUMBA_MONITORING_AUDITLOG)");
	}
	pin_rc = read_pinned(since_ms, pinned, pin_why, sizeof(pin_why));

	if (json) {
		cJSON *o = cJSON_CreateObject();
		if (file)
			cJSON_AddStringToObject(o, "audit_log", file);
		else
			cJSON_AddNullToObject(o, "audit_log");
		if (log_rc < 0)
			cJSON_AddStringToObject(o, "audit_log_error", log_why);
		cJSON_AddItemToObject(o, "events", events);
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/violations", pin_dir());
		cJSON_AddStringToObject(o, "pinned_map", p);
		if (pin_rc < 0) {
			cJSON_AddStringToObject(o, "pinned_error", pin_why);
			cJSON_Delete(pinned);
			cJSON_AddNullToObject(o, "pinned");
		} else {
			cJSON_AddItemToObject(o, "pinned", pinned);
		}
		char *s = cJSON_PrintUnformatted(o);
		if (s)
			printf("%s\n", s);
		cJSON_free(s);
		cJSON_Delete(o);
	} else {
		int n = cJSON_GetArraySize(events);
		printf("AUDIT LOG %s\n", file ? file : "(none)");
		if (log_rc < 0) {
			printf("  unavailable: %s\n", log_why);
		} else if (!n) {
			printf("  no guard events%s\n", since ? " in that time" : "");
		} else {
			static const int w[] = {24, 9, 34, 7, 15, 18, 24};
			const char *hdr[] = {"TIME", "EVENT", "AGENT", "PID",
					     "COMM", "OP",    "PATH",  "HOLDER"};
			print_row(hdr, w, 8);
			for (int i = 0; i < n; i++) {
				const cJSON *e = cJSON_GetArrayItem(events, i);
				const char *ev = jstr(e, "event", "") + 6;
				char pid[16], path[1024], kind[24];
				double cnt = jnum(e, "count");
				snprintf(pid, sizeof(pid), "%.0f", jnum(e, "pid"));
				snprintf(kind, sizeof(kind), "%s", ev);
				if (cnt > 1)
					snprintf(path, sizeof(path), "%s (x%.0f)",
						 jstr(e, "path", ""), cnt);
				else
					snprintf(path, sizeof(path), "%s", jstr(e, "path", ""));
				if (!strcmp(ev, "events_lost"))
					snprintf(path, sizeof(path), "%.0f events lost", cnt);
				const char *cols[] = {jstr(e, "ts", ""),
						      kind,
						      jstr(e, "agent", ""),
						      pid,
						      jstr(e, "comm", ""),
						      jstr(e, "op", ""),
						      path,
						      jstr(e, "holder", "")};
				print_row(cols, w, 8);
			}
		}
		printf("\nPINNED MAP %s/violations\n", pin_dir());
		n = cJSON_GetArraySize(pinned);
		if (pin_rc < 0) {
			printf("  unavailable: %s\n", pin_why);
		} else if (!n) {
			printf("  no violations%s\n", since ? " in that time" : "");
		} else {
			cJSON **rows = calloc((size_t)n, sizeof(*rows));
			static const int w[] = {7, 24, 7, 15, 18, 34, 24};
			const char *hdr[] = {"COUNT", "LAST",  "PID",  "COMM",
					     "OP",    "AGENT", "PATH", "HOLDER"};
			for (int i = 0; rows && i < n; i++)
				rows[i] = cJSON_GetArrayItem(pinned, i);
			if (rows)
				qsort(rows, (size_t)n, sizeof(*rows), cmp_last);
			print_row(hdr, w, 8);
			for (int i = 0; rows && i < n; i++) {
				char cnt[24], pid[16];
				snprintf(cnt, sizeof(cnt), "%.0f", jnum(rows[i], "count"));
				snprintf(pid, sizeof(pid), "%.0f", jnum(rows[i], "pid"));
				const char *cols[] = {cnt,
						      jstr(rows[i], "last", ""),
						      pid,
						      jstr(rows[i], "comm", ""),
						      jstr(rows[i], "op", ""),
						      jstr(rows[i], "agent", ""),
						      jstr(rows[i], "path", ""),
						      jstr(rows[i], "holder", "")};
				print_row(cols, w, 8);
			}
			free(rows);
		}
		cJSON_Delete(events);
		cJSON_Delete(pinned);
	}
	if (fflush(stdout) != 0)
		return EX_IOERR;
	return log_rc < 0 && pin_rc < 0 ? EX_NOINPUT : EX_OK;
}

/* ---------------------------------------------------------------------
 * doctor
 * ------------------------------------------------------------------- */

struct probe {
	const char *name;
	int ok; /* 1 yes, 0 no, -1 not applicable / unknown */
	char detail[320];
};

static struct probe probes[40];
static int nprobes;

static void add(const char *name, int ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;
	struct probe *p;

	if (nprobes >= (int)(sizeof(probes) / sizeof(probes[0])))
		return;
	p = &probes[nprobes++];
	p->name = name;
	p->ok = ok;
	va_start(ap, fmt);
	vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
	va_end(ap);
}

static void read_first_line(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "re");

	out[0] = '\0';
	if (!f)
		return;
	if (fgets(out, (int)cap, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static bool fs_is(const char *path, unsigned long magic)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == magic;
}

static uint64_t cap_eff(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long v = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "CapEff: %llx", &v) == 1)
			break;
	}
	fclose(f);
	return v;
}

static void probe_basics(void)
{
	struct utsname u;
	char buf[256];
	uint64_t caps = cap_eff();
	int fd;

	uname(&u);
	add("kernel", 1, "%s %s %s", u.sysname, u.release, u.machine);
	add("privileges", -1, "uid %u; CAP_SYS_ADMIN %s, CAP_BPF %s, CAP_PERFMON %s",
	    (unsigned)geteuid(), caps >> 21 & 1 ? "yes" : "no", caps >> 39 & 1 ? "yes" : "no",
	    caps >> 38 & 1 ? "yes" : "no");

	fd = memfd_create("bumba-doctor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		add("memfd seals", 0, "memfd_create: %s", strerror(errno));
	else {
		int rc = ftruncate(fd, 4096) == 0 &&
			 fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0;
		add("memfd seals", rc,
		    rc ? "memfd_create + F_SEAL_SHRINK|F_SEAL_GROW (the segment)"
		       : "F_ADD_SEALS: %s",
		    strerror(errno));
		close(fd);
	}

	fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (fd < 0)
		add("pidfd", 0, "pidfd_open: %s (agent death detection)", strerror(errno));
	else {
		int rc = syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0;
		add("pidfd", rc,
		    rc ? "pidfd_open, pidfd_send_signal (agent death, lease kills)"
		       : "pidfd_send_signal: %s",
		    strerror(errno));
		close(fd);
	}

	int sv[2];
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		add("SO_PEERPIDFD", 0, "socketpair: %s", strerror(errno));
	else {
		int pfd = -1;
		socklen_t len = sizeof(pfd);
		int rc = getsockopt(sv[0], SOL_SOCKET, SO_PEERPIDFD, &pfd, &len) == 0 && pfd >= 0;
		add("SO_PEERPIDFD", rc,
		    rc ? "the peer's pidfd at registration (Linux >= 6.5)"
		       : "%s: bumbad falls back to pidfd_open(SO_PEERCRED pid)",
		    strerror(errno));
		if (pfd >= 0)
			close(pfd);
		close(sv[0]);
		close(sv[1]);
	}

	read_first_line("/proc/sys/kernel/io_uring_disabled", buf, sizeof(buf));
	struct {
		uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features,
			wq_fd, resv[3];
		uint8_t offsets[80];
	} params;
	memset(&params, 0, sizeof(params));
	fd = (int)syscall(SYS_io_uring_setup, 1, &params);
	if (fd < 0)
		add("io_uring", 0,
		    "io_uring_setup: %s (kernel.io_uring_disabled = %s): safe file "
		    "operations use plain system calls",
		    strerror(errno), buf[0] ? buf : "?");
	else {
		add("io_uring", 1, "io_uring_setup works (kernel.io_uring_disabled = %s)",
		    buf[0] ? buf : "?");
		close(fd);
	}

	add("bpffs", fs_is("/sys/fs/bpf", 0xcafe4a11), "/sys/fs/bpf %s",
	    fs_is("/sys/fs/bpf", 0xcafe4a11) ? "is a BPF filesystem (pinned maps)"
					     : "is not mounted: bumbad mounts it as root");
	add("tracefs", fs_is("/sys/kernel/tracing", 0x74726163), "/sys/kernel/tracing %s",
	    fs_is("/sys/kernel/tracing", 0x74726163) ? "mounted (syscall tracepoint ids)"
						     : "not mounted (not needed by tp_btf)");
	add("BTF", access("/sys/kernel/btf/vmlinux", R_OK) == 0, "/sys/kernel/btf/vmlinux %s",
	    access("/sys/kernel/btf/vmlinux", R_OK) == 0 ? "readable (CO-RE, tp_btf)"
							 : "missing: no guard");
	read_first_line("/sys/kernel/security/lockdown", buf, sizeof(buf));
	add("lockdown", -1, "%s",
	    buf[0] ? buf : "unknown (securityfs not mounted or no lockdown LSM)");
	read_first_line("/sys/kernel/security/lsm", buf, sizeof(buf));
	add("LSMs", -1, "%s", buf[0] ? buf : "unknown (securityfs not mounted)");
}

static void probe_fanotify(void)
{
	char tmpl[] = "/tmp/bumba-doctor.XXXXXX";
	int fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY);

	if (fd < 0) {
		add("fanotify permission events", 0, "fanotify_init: %s%s", strerror(errno),
		    errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
		return;
	}
	/* An inode mark on a file of our own: nobody else's open can wait on
	 * us while the mark exists. */
	int tfd = mkstemp(tmpl);
	int rc = tfd >= 0 && fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, tmpl) == 0;
	add("fanotify permission events", rc,
	    rc ? "FAN_OPEN_PERM works (guard.enforce)" : "FAN_OPEN_PERM: %s", strerror(errno));
	close(fd);
	if (tfd >= 0) {
		close(tfd);
		unlink(tmpl);
	}
	fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_REPORT_DFID_NAME, O_RDONLY);
	add("fanotify names", fd >= 0,
	    fd >= 0 ? "FAN_REPORT_DFID_NAME (a detector without BPF)" : "%s", strerror(errno));
	if (fd >= 0)
		close(fd);
}

#ifdef BUMBA_GUARD
static int ret0(enum bpf_prog_type type, const struct bpf_prog_load_opts *o)
{
	struct bpf_insn insns[2] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};

	return bpf_prog_load(type, "bumba_doctor", "GPL", insns, 2, o);
}

static int libbpf_quiet(enum libbpf_print_level l, const char *f, va_list ap)
{
	(void)l, (void)f, (void)ap;
	return 0;
}

static void probe_btf_prog(const char *name, struct btf *vm, const char *target, int kind,
			   enum bpf_prog_type type, enum bpf_attach_type at, const char *use)
{
	int id = vm ? btf__find_by_name_kind(vm, target, kind) : -1;

	if (id < 0) {
		add(name, 0, "%s not in the kernel's BTF", target);
		return;
	}
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = at, .attach_btf_id = id);
	int fd = ret0(type, &o);
	if (fd < 0) {
		add(name, 0, "load: %s (%s)", strerror(errno), use);
		return;
	}
	int lfd = bpf_raw_tracepoint_open(NULL, fd);
	if (lfd < 0)
		add(name, 0, "attach: %s (%s)", strerror(errno), use);
	else {
		add(name, 1, "loads and attaches (%s)", use);
		close(lfd);
	}
	close(fd);
}

static void probe_bpf(void)
{
	struct btf *vm;
	char buf[64];
	int fd;

	libbpf_set_print(libbpf_quiet);
	fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "bumba_doctor", 0, 0, 64 * 1024, NULL);
	if (fd < 0) {
		add("BPF", 0, "bpf(): %s%s: no guard", strerror(errno),
		    errno == EPERM ? " (needs root, or CAP_BPF + CAP_PERFMON)" : "");
		return;
	}
	add("BPF ring buffer", 1, "BPF_MAP_TYPE_RINGBUF (the guard's event channel)");
	close(fd);

	/* Syscall tracepoint, through perf. */
	LIBBPF_OPTS(bpf_prog_load_opts, none);
	fd = ret0(BPF_PROG_TYPE_TRACEPOINT, &none);
	read_first_line("/sys/kernel/tracing/events/syscalls/sys_enter_getpid/id", buf,
			sizeof(buf));
	if (fd < 0)
		add("BPF tracepoints", 0, "load: %s", strerror(errno));
	else if (!buf[0])
		add("BPF tracepoints", -1, "loads; attach not probed (tracefs not mounted)");
	else {
		struct perf_event_attr a = {.type = PERF_TYPE_TRACEPOINT,
					    .size = sizeof(a),
					    .config = strtoull(buf, NULL, 10),
					    .sample_period = 1};
		int pfd = (int)syscall(SYS_perf_event_open, &a, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
		int rc = pfd >= 0 && ioctl(pfd, PERF_EVENT_IOC_SET_BPF, fd) == 0;
		add("BPF tracepoints", rc, rc ? "syscalls:sys_enter_getpid attaches" : "attach: %s",
		    strerror(errno));
		if (pfd >= 0)
			close(pfd);
	}
	if (fd >= 0)
		close(fd);

	fd = ret0(BPF_PROG_TYPE_RAW_TRACEPOINT, &none);
	if (fd < 0)
		add("BPF raw tracepoints", 0, "load: %s", strerror(errno));
	else {
		int lfd = bpf_raw_tracepoint_open("sys_enter", fd);
		add("BPF raw tracepoints", lfd >= 0,
		    lfd >= 0 ? "raw_tp/sys_enter attaches" : "attach: %s", strerror(errno));
		if (lfd >= 0)
			close(lfd);
		close(fd);
	}

	vm = btf__load_vmlinux_btf();
	probe_btf_prog("BPF tp_btf", vm, "btf_trace_sys_enter", BTF_KIND_TYPEDEF,
		       BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, "the guard's hooks");
	probe_btf_prog("BPF tp_btf io_uring", vm, "btf_trace_io_uring_submit_req", BTF_KIND_TYPEDEF,
		       BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, "io_uring submissions");
	probe_btf_prog("BPF fentry", vm, "vfs_write", BTF_KIND_FUNC, BPF_PROG_TYPE_TRACING,
		       BPF_TRACE_FENTRY, "not needed: the guard uses tracepoints");
	read_first_line("/sys/kernel/security/lsm", buf, sizeof(buf));
	probe_btf_prog("BPF LSM", vm, "bpf_lsm_file_open", BTF_KIND_FUNC, BPF_PROG_TYPE_LSM,
		       BPF_LSM_MAC, "would let guard.enforce deny in the kernel");
	btf__free(vm);
	add("kprobes", access("/sys/bus/event_source/devices/kprobe/type", F_OK) == 0,
	    access("/sys/bus/event_source/devices/kprobe/type", F_OK) == 0
		    ? "kprobe PMU present (not needed)"
		    : "no kprobe PMU (not needed: the guard uses tracepoints)");
}

/* What the running guard left in its pins. */
static void probe_guard(void)
{
	char p[PATH_MAX];
	int fd;

	snprintf(p, sizeof(p), "%s/stats", pin_dir());
	fd = bpf_obj_get(p);
	if (fd < 0) {
		add("guard", -1, "%s: %s", p,
		    errno == ENOENT ? "no pinned maps: no guard running (or it runs unpinned)"
				    : strerror(errno));
		return;
	}
	int ncpu = libbpf_num_possible_cpus();
	struct guard_stats *per = calloc(ncpu > 0 ? (size_t)ncpu : 1, sizeof(*per)), s = {0};
	uint32_t zero = 0;
	if (per && bpf_map_lookup_elem(fd, &zero, per) == 0) {
		for (int i = 0; i < ncpu; i++) {
			s.events += per[i].events;
			s.drops += per[i].drops;
			s.inherited += per[i].inherited;
			s.uring += per[i].uring;
			s.too_deep += per[i].too_deep;
		}
		add("guard", 1,
		    "running (pins in %s): %llu events reported, %llu lost, %llu "
		    "io_uring, %llu agent forks followed, %llu too deep",
		    pin_dir(), (unsigned long long)s.events, (unsigned long long)s.drops,
		    (unsigned long long)s.uring, (unsigned long long)s.inherited,
		    (unsigned long long)s.too_deep);
	}
	free(per);
	close(fd);

	snprintf(p, sizeof(p), "%s/roots", pin_dir());
	fd = bpf_obj_get(p);
	if (fd >= 0) {
		for (uint32_t i = 0; i < GUARD_MAX_ROOTS; i++) {
			struct guard_root r;
			if (bpf_map_lookup_elem(fd, &i, &r) == 0 && r.ino) {
				r.path[sizeof(r.path) - 1] = '\0';
				add("guard root", 1, "%s (dev %u:%u ino %llu)", r.path, r.dev >> 20,
				    r.dev & 0xfffff, (unsigned long long)r.ino);
			}
		}
		close(fd);
	}
}
#else
static void probe_bpf(void)
{
	add("BPF", 0, "this bumbactl was built without libbpf: BPF not probed");
}
static void probe_guard(void)
{
}
#endif

int bumba_ctl_doctor(bool json, const char *config, int argc, char **argv)
{
	(void)config;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("Usage: bumbactl doctor [--json]\n");
			return EX_OK;
		} else {
			fprintf(stderr, PROG ": doctor takes no argument ('%s')\n", argv[i]);
			return EX_USAGE;
		}
	}
	probe_basics();
	probe_bpf();
	probe_fanotify();
	probe_guard();

	/* What it means for bumba. */
	bool bpf_ok = false, lsm = false, fan = false, tp = false;
	for (int i = 0; i < nprobes; i++) {
		if (!strcmp(probes[i].name, "BPF tp_btf"))
			tp = probes[i].ok == 1;
		if (!strcmp(probes[i].name, "BPF ring buffer"))
			bpf_ok = probes[i].ok == 1;
		if (!strcmp(probes[i].name, "BPF LSM"))
			lsm = probes[i].ok == 1;
		if (!strcmp(probes[i].name, "fanotify permission events"))
			fan = probes[i].ok == 1;
	}
	const char *guard = bpf_ok && tp
				    ? "can run (tracepoints and tp_btf load here)"
				    : "cannot run with these privileges or this kernel: bumbad "
				      "runs without it";
	const char *enforce = lsm   ? "possible in the kernel (BPF LSM)"
			      : fan ? "BPF LSM refused; guard.enforce = true denies write opens "
				      "through fanotify FAN_OPEN_PERM on workspaces that are mount "
				      "points (renames, unlinks, io_uring opens: detected only)"
				    : "not possible here: bumbad detects only";

	if (json) {
		cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "features");
		for (int i = 0; i < nprobes; i++) {
			cJSON *f = cJSON_CreateObject();
			cJSON_AddStringToObject(f, "name", probes[i].name);
			if (probes[i].ok < 0)
				cJSON_AddNullToObject(f, "ok");
			else
				cJSON_AddBoolToObject(f, "ok", probes[i].ok);
			cJSON_AddStringToObject(f, "detail", probes[i].detail);
			cJSON_AddItemToArray(arr, f);
		}
		cJSON_AddStringToObject(o, "guard", guard);
		cJSON_AddStringToObject(o, "enforcement", enforce);
		char *s = cJSON_PrintUnformatted(o);
		if (s)
			printf("%s\n", s);
		cJSON_free(s);
		cJSON_Delete(o);
	} else {
		printf("%-28s %-4s %s\n", "FEATURE", "OK", "DETAIL");
		for (int i = 0; i < nprobes; i++)
			printf("%-28s %-4s %s\n", probes[i].name,
			       probes[i].ok == 1   ? "yes"
			       : probes[i].ok == 0 ? "NO"
						   : "-",
			       probes[i].detail);
		printf("\nguard: %s\nenforcement: %s\n", guard, enforce);
	}
	return fflush(stdout) ? EX_IOERR : EX_OK;
}
