#!/usr/bin/env bash
# t_perms.sh - who may register (docs/security.md, "Who may register"):
# the agent socket is bumba:bumba 0660, and bumbad checks the peer too.
#   1. a user who is not in the group bumba cannot connect (EACCES), so
#      neither register (bumbactl lock) nor observe (bumbactl status), and
#      cannot reach the segment another way (bumbad's and the keeper's
#      /proc/PID/fd are closed to it);
#   2. a user in the group (supplementary, or primary) registers, and the
#      agent is recorded with that user's uid (SO_PEERCRED);
#   3. with the socket opened to everyone by hand (chmod 0666), bumbad
#      itself still refuses the stranger (SO_PEERCRED/SO_PEERGROUPS);
#   4. the same with --user root (bumbad stays root): the socket's mode is
#      the gate.
# Users are made up with setpriv (no account needed); the group bumba is
# created with the system user bumba if missing, as bumba.sysusers would.
#
# Exit 0 pass, 77 skip (reason printed), 1 fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root (to start bumbad as root and act as other users)"
[ -x "$BUILD/bumbad" ] && [ -x "$BUILD/bumbactl" ] || skip "bumbad/bumbactl not built"
command -v setpriv >/dev/null 2>&1 || skip "setpriv (util-linux) is not installed"
# The system's python: a user's (pyenv, venv) may be closed to strangers.
PY=/usr/bin/python3
[ -x "$PY" ] || skip "$PY is needed"
ensure_bumba_user
GID_B=$(getent group bumba | cut -d: -f3)
[ -n "$GID_B" ] || fail "no group bumba"
STRANGER=48611 MEMBER=48612 PRIMARY=48613 # no account: setpriv needs none

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }

as_stranger() { setpriv --reuid=$STRANGER --regid=$STRANGER --clear-groups "$@"; }
as_member() { setpriv --reuid=$MEMBER --regid=$MEMBER --groups="$GID_B" "$@"; }
as_primary() { setpriv --reuid=$PRIMARY --regid="$GID_B" --clear-groups "$@"; }

# connect(2) on the socket as the calling user: prints ok or the errno name.
CONNECT='
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(sys.argv[1])
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
'

# The keeper of our bumbad: the process listening on SOCKET.keeper.
keeper_pid() {
	"$PY" - "$BUMBA_SOCKET.keeper" <<'EOF'
import os, sys
inode = None
for line in open("/proc/net/unix").readlines()[1:]:
    p = line.split()
    if len(p) >= 8 and p[7] == sys.argv[1]:
        inode = p[6]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if inode and any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]"
                         for fd in os.listdir(f"/proc/{pid}/fd")):
            print(pid)
            break
    except OSError:
        pass
EOF
}

round() { # label [bumbad options]
	local label=$1 out rc
	shift
	start_bumbad "$@"
	# lib.sh's directory is 0700 root: only its socket's own mode may
	# decide here.
	chmod 0711 "$TMPD"
	[ "$(stat -c '%G %a' "$BUMBA_SOCKET")" = "bumba 660" ] ||
		bad "$label: socket is $(stat -c '%U:%G %a' "$BUMBA_SOCKET")"

	# 1. the stranger
	out=$(as_stranger "$PY" -c "$CONNECT" "$BUMBA_SOCKET")
	[ "$out" = EACCES ] || bad "$label: a stranger's connect: $out, expected EACCES"
	out=$(as_stranger "$BUILD/bumbactl" lock x -- true 2>&1)
	rc=$?
	# 77 (EX_NOPERM): bumbactl's word for EACCES from bumba_open.
	[ "$rc" -eq 77 ] || bad "$label: a stranger's bumbactl lock: exit $rc ($out)"
	case $out in *"ermission denied"*) ;; *) bad "$label: stranger: no 'Permission denied' in: $out" ;; esac
	out=$(as_stranger "$BUILD/bumbactl" status 2>&1) && bad "$label: a stranger observed the segment: $out"
	# No other way to the segment: bumbad's and the keeper's descriptors
	# (both run as bumba, or root, and are not dumpable).
	keeper=$(keeper_pid)
	[ -n "$keeper" ] || bad "$label: no keeper found"
	found=0
	for pid in $BUMBAD_PID $keeper; do
		for fd in /proc/"$pid"/fd/*; do
			case $(readlink "$fd" 2>/dev/null) in
			*memfd:bumba-segment*)
				found=$((found + 1))
				if as_stranger head -c1 "$fd" >/dev/null 2>&1; then
					bad "$label: a stranger opened $fd (the segment)"
				fi
				;;
			esac
		done
	done
	[ "$found" -ge 2 ] || bad "$label: the segment's descriptors not found in bumbad and its keeper ($found)"
	echo "$label: a stranger gets EACCES, and cannot open the segment's $found descriptors"

	# 2. members
	out=$(as_member "$BUILD/bumbactl" lock x -- "$BUILD/bumbactl" agents --json 2>&1) ||
		bad "$label: a member of bumba could not register: $out"
	case $out in *"\"uid\":$MEMBER"*) ;; *) bad "$label: the member's agent is not recorded with uid $MEMBER: $out" ;; esac
	out=$(as_primary "$BUILD/bumbactl" lock x -- true 2>&1) ||
		bad "$label: a user whose primary group is bumba could not register: $out"
	echo "$label: members of bumba register"

	# 3. the socket opened by hand: bumbad still says no (when it is
	# not root itself; as root the socket's mode is all there is).
	chmod 0666 "$BUMBA_SOCKET"
	out=$(as_stranger "$BUILD/bumbactl" lock x -- true 2>&1)
	rc=$?
	if grep -q 'privileges: user bumba' "$TMPD/bumbad.log"; then
		# bumbad answers "peer not allowed" and hangs up at once.
		[ "$rc" -ne 0 ] || bad "$label: with the socket 0666 a stranger registered"
		[ "$(as_stranger "$PY" -c "$CONNECT" "$BUMBA_SOCKET")" = ok ] ||
			bad "$label: with the socket 0666 a stranger cannot even connect"
		echo "$label: with the socket 0666, bumbad itself refuses the stranger ($out)"
	fi
	chmod 0660 "$BUMBA_SOCKET"
	stop_bumbad
}

round dropped --user bumba
round root --user root
[ "$errors" -eq 0 ] || fail "$errors problem(s)"
echo "ok: only root, bumba and members of its group may register"
