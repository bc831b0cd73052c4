/* SPDX-License-Identifier: MIT */
/*
 * privilege.h - least privilege for bumbad (privilege.c): who may connect
 * to the agent socket, and which user and capabilities bumbad keeps once
 * start-up is over.  docs/security.md has the capability table.
 *
 * Start-up order (main.c): privilege_init (user looked up) ... the socket
 * is bound: privilege_socket (0660, group bumba) ... segment, keeper,
 * recovery, audit log, guard loaded: privilege_drop ... then HTTP and the
 * guard's enforcement thread start, so that every thread bumbad ever has
 * runs with the final credentials.
 */
#ifndef BUMBAD_PRIVILEGE_H
#define BUMBAD_PRIVILEGE_H

#include <stdbool.h>
#include <sys/socket.h>

struct bumbad;

/* The user a root-started bumbad switches to when nobody says otherwise
 * (--user, supervisor.user). */
#define PRIVILEGE_DEFAULT_USER "bumba"

/* Before anything is created.  As root: looks up the user to switch to
 * (--user, else supervisor.user, else "bumba"; "root" keeps root).  A
 * user named explicitly that does not exist is a configuration error; the
 * default one missing is a warning, and bumbad stays root.  Also finds the
 * socket's group.  Returns 0 or an exit status (78). */
int privilege_init(struct bumbad *d);

/* After the socket is bound: mode 0660 and the service group when there
 * is one we may give it (root, or a member), and a directory bumbad made
 * (0700, named "bumba") opened to the group (0750).  Else 0600. */
void privilege_socket(struct bumbad *d);

/* Once the guard is loaded, before any other thread exists: hands
 * bumbad's own files (socket, keeper socket, audit log, pin directory) to
 * the user, switches to it, sets no_new_privs, and keeps only the
 * capabilities still used (privilege_summary says which).  Also trims a
 * systemd-given ambient set the same way.  0, or -errno: bumbad must not
 * run on with privileges it meant to give up. */
int privilege_drop(struct bumbad *d);

/* In the segment keeper (forked before the drop): the same user, and no
 * capability at all. */
void privilege_drop_keeper(void);

/* May the peer of an accepted connection register?  Root, bumbad's own
 * user, and members of the socket's group (primary or supplementary,
 * from SO_PEERCRED/SO_PEERGROUPS) when bumbad runs as a service. */
bool privilege_peer_allowed(int fd, const struct ucred *cr);

/* "user bumba (999:995), capabilities cap_chown,..." for logs. */
const char *privilege_summary(void);

#endif /* BUMBAD_PRIVILEGE_H */
