/* SPDX-License-Identifier: MIT */
/*
 * privilege.c - least privilege for bumbad (see privilege.h): the agent
 * socket's permissions and who may register, and the switch from root (or
 * from systemd's ambient capabilities) to the service user with only the
 * capabilities bumbad still uses after start-up.
 *
 * What start-up needs and the rest of the run does not:
 *   CAP_BPF, CAP_PERFMON   loading and attaching the guard.  Afterwards
 *                          bumbad only uses the maps and the ring buffer
 *                          through descriptors it holds, which needs no
 *                          capability since Linux 6.4; on older kernels
 *                          with kernel.unprivileged_bpf_disabled every
 *                          bpf(2) call does, and a probe keeps CAP_BPF.
 *   CAP_SYS_ADMIN          fanotify_init and the mount marks of
 *                          guard.enforce; answering permission events
 *                          needs none.  Mounting bpffs when it is missing.
 *   CAP_SETUID/SETGID,     the switch itself.
 *   CAP_SETPCAP
 * What the whole run needs (docs/security.md, "Capabilities"):
 *   CAP_DAC_OVERRIDE       recovery (renames, deletions), conflicts and
 *                          backup retention in workspaces and directories
 *                          owned by the agents' users;
 *   CAP_FOWNER             the same in sticky directories (a tmpfs root is
 *                          1777) and on files bumbad does not own;
 *   CAP_KILL               SIGKILL to an agent of another user whose lease
 *                          expired (pidfd_send_signal checks like kill(2));
 *   CAP_NET_BIND_SERVICE   only when the HTTP port is below 1024.
 * Capabilities belong to each thread: the drop happens before bumbad has
 * any thread but the main one (HTTP and the guard's enforcement thread
 * start after it), so that every thread runs with the final set.
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "guard.h"
#include "ops.h"
#include "privilege.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

static struct {
	bool switch_user; /* root-started: become uid/gid */
	uid_t uid;
	gid_t gid;
	char name[BUMBA_CONFIG_USER_MAX];
	gid_t sock_gid; /* the socket's group, (gid_t)-1 if none */
	/* The names bumbad will run under, looked up early: once guard.enforce
	 * has marked a mount, opening /etc/passwd there would wait for an
	 * answer nobody gives until start-up is over. */
	char uname[64], gname[64];
	char summary[512];
} P = {.sock_gid = (gid_t)-1};

static bool in_groups(gid_t g)
{
	gid_t list[256];
	int n;

	if (getegid() == g)
		return true;
	n = getgroups(256, list);
	for (int i = 0; i < n; i++) {
		if (list[i] == g)
			return true;
	}
	return false;
}

int privilege_init(struct bumbad *d)
{
	const struct bumba_config *c = &d->ops->cfg;
	const char *name = d->o.user ? d->o.user : c->user;
	bool explicit =
		d->o.user || bumba_config_source_of(c, "supervisor.user") != BUMBA_CFG_DEFAULT;
	struct passwd *pw = NULL;
	struct group *gr;

	if (name && *name && strcmp(name, "root") != 0)
		pw = getpwnam(name);
	if (geteuid() == 0 && name && *name && strcmp(name, "root") != 0) {
		if (!pw && explicit) {
			fprintf(stderr,
				"bumbad: user '%s' (%s) does not exist: create it "
				"(systemd-sysusers, or useradd --system --user-group %s), "
				"or say --user root to stay root\n",
				name, d->o.user ? "--user" : "supervisor.user", name);
			return 78; /* EX_CONFIG */
		}
		if (!pw)
			bumbad_log(LOG_WARNING,
				   "there is no user '%s': running as root with every "
				   "capability.  Create it (systemd-sysusers bumba.conf, or "
				   "useradd --system --user-group %s), or say --user root",
				   name, name);
		else if (pw->pw_uid != 0) {
			P.switch_user = true;
			P.uid = pw->pw_uid;
			P.gid = pw->pw_gid;
			snprintf(P.name, sizeof(P.name), "%s", name);
			P.sock_gid = pw->pw_gid;
		}
	}
	/* A service started as its user (systemd's User=): its own group.
	 * Anyone else's bumbad keeps its socket to itself (0600). */
	if (geteuid() != 0 && pw && pw->pw_uid == geteuid() && in_groups(pw->pw_gid))
		P.sock_gid = pw->pw_gid;
	/* Root staying root: the group "bumba", if there is one. */
	if (geteuid() == 0 && P.sock_gid == (gid_t)-1 && (gr = getgrnam(PRIVILEGE_DEFAULT_USER)))
		P.sock_gid = gr->gr_gid;

	struct passwd *me = getpwuid(P.switch_user ? P.uid : geteuid());
	struct group *mg = getgrgid(P.switch_user ? P.gid : getegid());
	snprintf(P.uname, sizeof(P.uname), "%s", me ? me->pw_name : "?");
	snprintf(P.gname, sizeof(P.gname), "%s", mg ? mg->gr_name : "?");
	return 0;
}

void privilege_socket(struct bumbad *d)
{
	char dir[PATH_MAX], base[PATH_MAX];
	struct stat st;
	struct group *gr;

	if (P.sock_gid == (gid_t)-1)
		return; /* 0600: only our own user (and root) */
	if (chown(d->socket_path, (uid_t)-1, P.sock_gid) < 0 || chmod(d->socket_path, 0660) < 0) {
		bumbad_log(LOG_WARNING, "socket %s: cannot open it to group %u: %s", d->socket_path,
			   (unsigned)P.sock_gid, strerror(errno));
		return;
	}
	/* A directory we made for it (make_dirs: 0700) must let the group
	 * through; anything else is the operator's to set. */
	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	snprintf(base, sizeof(base), "%s", dirname(dir));
	if (stat(base, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
	    (st.st_mode & 07777) == 0700 && !strcmp(basename(dir), "bumba")) {
		if (chown(base, (uid_t)-1, P.sock_gid) < 0 || chmod(base, 0750) < 0)
			bumbad_log(LOG_WARNING, "%s: cannot open it to group %u: %s", base,
				   (unsigned)P.sock_gid, strerror(errno));
	}
	gr = getgrgid(P.sock_gid);
	bumbad_log(LOG_INFO, "socket %s: mode 0660, group %s: members may register", d->socket_path,
		   gr ? gr->gr_name : "?");
}

bool privilege_peer_allowed(int fd, const struct ucred *cr)
{
	gid_t stack[64], *groups = stack;
	socklen_t len = sizeof(stack);
	bool ok = false;

	if (geteuid() == 0 || cr->uid == 0 || cr->uid == geteuid())
		return true;
	if (P.sock_gid == (gid_t)-1)
		return false;
	if (cr->gid == P.sock_gid)
		return true;
	/* Supplementary groups, as they were when the peer connected. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		if (errno != ERANGE || !(groups = malloc(len)))
			return false;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
			free(groups);
			return false;
		}
	}
	for (size_t i = 0; i < len / sizeof(gid_t) && !ok; i++)
		ok = groups[i] == P.sock_gid;
	if (groups != stack)
		free(groups);
	return ok;
}

/* ------------------------------------------------------------------ */
/* capabilities                                                        */

#define MAX_KEEP 8

struct keep {
	cap_value_t caps[MAX_KEEP];
	size_t n;
};

static void keep_add(struct keep *k, cap_value_t c)
{
	for (size_t i = 0; i < k->n; i++) {
		if (k->caps[i] == c)
			return;
	}
	if (k->n < MAX_KEEP)
		k->caps[k->n++] = c;
}

static bool kept(const struct keep *k, cap_value_t c)
{
	for (size_t i = 0; i < k->n; i++) {
		if (k->caps[i] == c)
			return true;
	}
	return false;
}

static bool has(cap_t c, cap_value_t v, cap_flag_t f)
{
	cap_flag_value_t val = CAP_CLEAR;

	return cap_get_flag(c, v, f, &val) == 0 && val == CAP_SET;
}

/* permitted = want ∩ what we have; effective = eff ∩ permitted;
 * inheritable empty. */
static int set_caps(const struct keep *want, const struct keep *eff)
{
	cap_t now = cap_get_proc(), next = cap_init();
	int rc = 0;

	if (!now || !next) {
		rc = -errno;
		goto out;
	}
	for (size_t i = 0; i < want->n; i++) {
		cap_value_t v = want->caps[i];
		if (!has(now, v, CAP_PERMITTED))
			continue;
		cap_set_flag(next, CAP_PERMITTED, 1, &v, CAP_SET);
		if (kept(eff, v))
			cap_set_flag(next, CAP_EFFECTIVE, 1, &v, CAP_SET);
	}
	if (cap_set_proc(next) < 0)
		rc = -errno;
out:
	cap_free(now);
	cap_free(next);
	return rc;
}

static bool permitted(cap_value_t v)
{
	cap_t now = cap_get_proc();
	bool r = now && has(now, v, CAP_PERMITTED);

	cap_free(now);
	return r;
}

static bool any_permitted(void)
{
	cap_t now = cap_get_proc();
	bool r = false;

	for (cap_value_t v = 0; now && !r && v < (cap_value_t)cap_max_bits(); v++)
		r = has(now, v, CAP_PERMITTED);
	cap_free(now);
	return r;
}

/* Every capability bumbad may still use after start-up (above). */
static void final_set(struct bumbad *d, struct keep *k)
{
	const struct bumbad_ops *x = d->ops;

	k->n = 0;
	keep_add(k, CAP_DAC_OVERRIDE);
	keep_add(k, CAP_FOWNER);
	keep_add(k, CAP_KILL);
	if (x->http_on && x->http_port > 0 && x->http_port < 1024)
		keep_add(k, CAP_NET_BIND_SERVICE);
}

/* Root-started: the files bumbad keeps writing change hands first. */
static void chown_own(struct bumbad *d)
{
	const char *pin = guard_pin_dir();
	char dir[PATH_MAX], base[PATH_MAX];
	struct stat st;

	if (chown(d->socket_path, P.uid, P.sock_gid) < 0)
		bumbad_log(LOG_WARNING, "chown %s: %s", d->socket_path, strerror(errno));
	if (lstat(d->keeper_path, &st) == 0 && chown(d->keeper_path, P.uid, P.gid) < 0)
		bumbad_log(LOG_WARNING, "chown %s: %s", d->keeper_path, strerror(errno));
	/* Its directory, when it is bumba's own (the default /run/bumba):
	 * a clean stop removes the socket from it. */
	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	snprintf(base, sizeof(base), "%s", dirname(dir));
	if (stat(base, &st) == 0 && st.st_uid == 0 && !strcmp(basename(dir), "bumba") &&
	    chown(base, P.uid, st.st_gid) < 0)
		bumbad_log(LOG_WARNING, "chown %s: %s", base, strerror(errno));
	/* The audit log, by its descriptor (never a path swapped since). */
	pthread_mutex_lock(&d->ops->audit_mu);
	if (d->ops->audit_fd >= 0 && fchown(d->ops->audit_fd, P.uid, P.gid) < 0)
		bumbad_log(LOG_WARNING, "chown %s: %s", d->ops->cfg.audit_log, strerror(errno));
	pthread_mutex_unlock(&d->ops->audit_mu);
	/* ... and a directory of bumba's own holding it (/var/log/bumba):
	 * after logrotate, SIGHUP creates the file anew there. */
	if (d->ops->cfg.audit_log[0]) {
		snprintf(dir, sizeof(dir), "%s", d->ops->cfg.audit_log);
		snprintf(base, sizeof(base), "%s", dirname(dir));
		if (stat(base, &st) == 0 && st.st_uid == 0 && !strcmp(basename(dir), "bumba") &&
		    chown(base, P.uid, P.gid) < 0)
			bumbad_log(LOG_WARNING, "chown %s: %s", base, strerror(errno));
	}
	/* The guard's pin directory: a clean stop unpins and removes it. */
	if (pin && chown(pin, P.uid, P.gid) < 0)
		bumbad_log(LOG_WARNING, "chown %s: %s", pin, strerror(errno));
}

static int switch_user(void)
{
	uid_t r, e, s;

	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(1, &P.gid) < 0 ||
	    setresgid(P.gid, P.gid, P.gid) < 0 || setresuid(P.uid, P.uid, P.uid) < 0) {
		int e2 = errno;
		bumbad_log(LOG_ERR, "cannot switch to user %s (%u:%u): %s", P.name, (unsigned)P.uid,
			   (unsigned)P.gid, strerror(e2));
		return -e2;
	}
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* There must be no way back. */
	if (getresuid(&r, &e, &s) < 0 || r != P.uid || e != P.uid || s != P.uid ||
	    setresuid(0, 0, 0) == 0) {
		bumbad_log(LOG_ERR, "the switch to user %s did not stick", P.name);
		return -EPERM;
	}
	return 0;
}

static void summarize(void)
{
	cap_t now = cap_get_proc();
	char *txt = now ? cap_to_text(now, NULL) : NULL;

	snprintf(P.summary, sizeof(P.summary), "user %s (%u), group %s (%u), capabilities %s",
		 P.uname, (unsigned)geteuid(), P.gname, (unsigned)getegid(),
		 txt && strcmp(txt, "=") ? txt : "none");
	cap_free(txt);
	cap_free(now);
}

int privilege_drop(struct bumbad *d)
{
	struct keep fin, probe, eff;
	bool setpcap, need_bpf = false;
	int rc;

	if (geteuid() == 0 && !P.switch_user) {
		summarize();
		bumbad_log(LOG_NOTICE, "privileges: staying root with every capability");
		return 0;
	}
	if (!P.switch_user && !any_permitted()) {
		summarize();
		return 0; /* an ordinary user's bumbad: nothing to give up */
	}
	final_set(d, &fin);
	if (P.switch_user) {
		chown_own(d);
		rc = switch_user();
		if (rc)
			return rc;
	}

	/* The bounding set (root-started only: systemd's unit bounds a
	 * service already): nothing outside the final set, CAP_BPF until
	 * the probe below has spoken, CAP_SETPCAP to do it. */
	setpcap = permitted(CAP_SETPCAP);
	probe = fin;
	keep_add(&probe, CAP_BPF);
	eff = fin;
	if (setpcap) {
		keep_add(&probe, CAP_SETPCAP);
		keep_add(&eff, CAP_SETPCAP);
		rc = set_caps(&probe, &probe);
		for (cap_value_t v = 0; rc == 0 && v < (cap_value_t)cap_max_bits(); v++) {
			if (!kept(&probe, v) && cap_get_bound(v) > 0 && cap_drop_bound(v) < 0)
				rc = -errno;
		}
		if (rc) {
			bumbad_log(LOG_ERR, "cannot drop the capability bounding set: %s",
				   strerror(-rc));
			return rc;
		}
	}
	/* Does the guard still work without CAP_BPF in effect? */
	rc = set_caps(&probe, &eff);
	if (rc) {
		bumbad_log(LOG_ERR, "cannot set the capabilities: %s", strerror(-rc));
		return rc;
	}
	rc = guard_probe_maps();
	if (rc == -EPERM && permitted(CAP_BPF)) {
		need_bpf = true;
		keep_add(&fin, CAP_BPF);
		bumbad_log(LOG_INFO, "privileges: this kernel wants CAP_BPF for every map "
				     "look-up: keeping it");
	} else if (rc && rc != -ENOENT) {
		bumbad_log(LOG_WARNING, "guard: its maps do not answer (%s)", strerror(-rc));
	}
	if (setpcap) {
		if (!need_bpf && cap_get_bound(CAP_BPF) > 0)
			cap_drop_bound(CAP_BPF);
		if (cap_drop_bound(CAP_SETPCAP) < 0)
			bumbad_log(LOG_WARNING, "cannot drop CAP_SETPCAP from the bounding set: %s",
				   strerror(errno));
	}
	rc = set_caps(&fin, &fin);
	if (rc) {
		bumbad_log(LOG_ERR, "cannot set the capabilities: %s", strerror(-rc));
		return rc;
	}
	cap_reset_ambient();
	/* bumbad never executes anything: nothing may gain privileges. */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	summarize();
	bumbad_log(LOG_NOTICE, "privileges: %s", P.summary);
	return 0;
}

void privilege_drop_keeper(void)
{
	cap_t none;

	if (permitted(CAP_SETPCAP)) {
		for (cap_value_t v = 0; v < (cap_value_t)cap_max_bits(); v++) {
			if (cap_get_bound(v) > 0)
				cap_drop_bound(v);
		}
	}
	if (P.switch_user && (setgroups(1, &P.gid) < 0 || setresgid(P.gid, P.gid, P.gid) < 0 ||
			      setresuid(P.uid, P.uid, P.uid) < 0)) {
		bumbad_log(LOG_WARNING, "keeper: cannot switch to user %s: %s", P.name,
			   strerror(errno));
		return;
	}
	none = cap_init();
	if (none && cap_set_proc(none) < 0)
		bumbad_log(LOG_WARNING, "keeper: cannot drop its capabilities: %s",
			   strerror(errno));
	cap_free(none);
	cap_reset_ambient();
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

const char *privilege_summary(void)
{
	if (!P.summary[0])
		summarize();
	return P.summary;
}
