#!/usr/bin/env bash
# t_privdrop.sh - bumbad started as root without systemd gives up root
# (supervisor/privilege.c, docs/security.md "Capabilities"):
#   1. with the guard, and again with --no-guard: once "ready", every
#      thread of bumbad runs as the user bumba (uid, gid, no other group),
#      with exactly cap_dac_override,cap_fowner,cap_kill permitted,
#      effective and bounding (decoded with capsh), nothing inheritable or
#      ambient, no_new_privs; the keeper runs as bumba with no capability;
#      the socket is bumba:bumba 0660;
#   2. it still works: bumbactl lock (a root client), the guard reports a
#      rogue write to the audit log (a file root owns, in a directory only
#      root may enter), and SIGTERM stops it cleanly (exit 0, socket and pin
#      directory gone);
#   3. --user root keeps root and every capability;
#   4. the systemd side (sd_notify_sim.py plays systemd): READY=1 only
#      once the socket exists and the privileges are gone, STATUS=,
#      WATCHDOG=1 every half of WATCHDOG_USEC (none when WATCHDOG_PID names
#      another process), FDSTORE=1 with the segment, and after a SIGKILL of
#      bumbad and its keeper a restart with LISTEN_FDS adopts the live
#      segment; STOPPING=1 on SIGTERM.
# Creates the system user bumba (useradd --system) if it is missing, as
# bumba.sysusers would; it stays, like any system user.
#
# Exit 0 pass, 77 skip (reason printed), 1 fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root (bumbad must start as root to drop it)"
[ -x "$BUILD/bumbad" ] && [ -x "$BUILD/bumbactl" ] || skip "bumbad/bumbactl not built"
command -v capsh >/dev/null 2>&1 || skip "capsh is not installed (apt-get install libcap2-bin)"
command -v python3 >/dev/null 2>&1 || skip "python3 is needed"
ensure_bumba_user
UID_B=$(id -u bumba) GID_B=$(id -g bumba)
WANT_CAPS="cap_dac_override,cap_fowner,cap_kill"

have_guard=0
if [ -r "$BUILD/guard.skel.h" ] && [ -r /sys/kernel/btf/vmlinux ] &&
	{ mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null; }; then
	have_guard=1
fi

TMPD=$(mktemp -d /tmp/bumba-test.XXXXXX) # 0700 root: bumba may not enter it
trap _bumba_cleanup EXIT
export BUMBA_BPF_PIN_DIR=/sys/fs/bpf/bumba-privdrop-$$
SOCK=$TMPD/bumba.sock
WS=$TMPD/ws
AUDIT=$TMPD/audit.log
mkdir -p "$WS/sync"
echo "root's own" >"$WS/rogue.txt"
chmod 0600 "$WS/rogue.txt"
export BUMBA_SOCKET=$SOCK

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }

start() { # bumbad options...
	: >"$TMPD/bumbad.log"
	BUMBA_MONITORING_AUDITLOG=$AUDIT "$BUILD/bumbad" --foreground --socket "$SOCK" \
		--workspace "$WS" --http 127.0.0.1:0 --keeper-linger 2 "$@" 2>"$TMPD/bumbad.log" &
	BUMBAD_PID=$!
	for _ in $(seq 200); do
		grep -q 'ready:' "$TMPD/bumbad.log" && return 0
		kill -0 "$BUMBAD_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$TMPD/bumbad.log" >&2
	fail "bumbad did not become ready"
}

field() { sed -n "s/^$1:[[:space:]]*//p" "$2"; } # tabs kept between the values
decode() { capsh --decode="$1" | sed 's/^0x[0-9a-f]*=\{0,1\}//'; }

keeper_pid() {
	python3 - "$SOCK.keeper" <<'EOF'
import os, sys
inode = None
for line in open("/proc/net/unix").readlines()[1:]:
    p = line.split()
    if len(p) >= 8 and p[7] == sys.argv[1]:
        inode = p[6]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]"
               for fd in os.listdir(f"/proc/{pid}/fd")):
            print(pid)
            break
    except OSError:
        pass
EOF
}

check_dropped() { # label
	local st=/proc/$BUMBAD_PID/status t
	for t in /proc/"$BUMBAD_PID"/task/*; do
		local s=$t/status name
		name=$(cat "$t/comm")
		[ "$(field Uid "$s")" = "$UID_B	$UID_B	$UID_B	$UID_B" ] || bad "$1: thread $name: Uid $(field Uid "$s")"
		[ "$(field Gid "$s")" = "$GID_B	$GID_B	$GID_B	$GID_B" ] || bad "$1: thread $name: Gid $(field Gid "$s")"
		[ "$(field Groups "$s" | tr -d ' \t')" = "$GID_B" ] || bad "$1: thread $name: Groups $(field Groups "$s")"
		for set in CapPrm CapEff CapBnd; do
			[ "$(decode "$(field $set "$s")")" = "$WANT_CAPS" ] ||
				bad "$1: thread $name: $set = $(decode "$(field $set "$s")"), expected $WANT_CAPS"
		done
		for set in CapInh CapAmb; do
			[ "$(field $set "$s")" = 0000000000000000 ] || bad "$1: thread $name: $set $(field $set "$s")"
		done
		[ "$(field NoNewPrivs "$s")" = 1 ] || bad "$1: thread $name: NoNewPrivs $(field NoNewPrivs "$s")"
	done
	echo "$1: bumbad $(field Uid "$st" | cut -f1):$(field Gid "$st" | cut -f1)," \
		"$(ls /proc/"$BUMBAD_PID"/task | wc -l) threads, CapEff $(decode "$(field CapEff "$st")")"
	local k
	k=$(keeper_pid)
	if [ -z "$k" ]; then
		bad "$1: no keeper found"
	else
		[ "$(field Uid "/proc/$k/status" | cut -f1)" = "$UID_B" ] || bad "$1: keeper uid $(field Uid "/proc/$k/status")"
		for set in CapPrm CapEff CapBnd CapAmb; do
			[ "$(field $set "/proc/$k/status")" = 0000000000000000 ] ||
				bad "$1: keeper $set $(decode "$(field $set "/proc/$k/status")")"
		done
	fi
	[ "$(stat -c '%U:%G %a' "$SOCK")" = "bumba:bumba 660" ] || bad "$1: socket $(stat -c '%U:%G %a' "$SOCK")"
	grep -q "privileges: user bumba ($UID_B), group bumba ($GID_B), capabilities $WANT_CAPS=ep" \
		"$TMPD/bumbad.log" || bad "$1: no privileges line: $(grep privileges "$TMPD/bumbad.log")"
}

check_works() { # label
	"$BUILD/bumbactl" lock notes.txt -- sh -c 'echo locked >>"$0"' "$WS/notes.txt" ||
		bad "$1: bumbactl lock failed after the drop"
	grep -q locked "$WS/notes.txt" 2>/dev/null || bad "$1: the locked command did not run"
}

check_stop() { # label
	local rc
	kill -TERM "$BUMBAD_PID"
	for _ in $(seq 100); do
		kill -0 "$BUMBAD_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$BUMBAD_PID" 2>/dev/null; then
		bad "$1: still running 5 s after SIGTERM"
		kill -KILL "$BUMBAD_PID"
	fi
	wait "$BUMBAD_PID"
	rc=$?
	BUMBAD_PID=
	[ "$rc" -eq 0 ] || bad "$1: exit $rc after SIGTERM"
	grep -q 'stopped$' "$TMPD/bumbad.log" || bad "$1: no 'stopped' line"
	[ ! -e "$SOCK" ] || bad "$1: the socket is left after a clean stop"
	[ ! -e "$BUMBA_BPF_PIN_DIR" ] || bad "$1: the pin directory is left after a clean stop"
	echo "$1: SIGTERM: exit $rc"
}

# 1+2, with the guard
if [ "$have_guard" = 1 ]; then
	start
	if grep -q 'guard active' "$TMPD/bumbad.log"; then
		check_dropped guard
		[ "$(stat -c %U "$BUMBA_BPF_PIN_DIR" 2>/dev/null)" = bumba ] ||
			bad "guard: the pin directory is not bumba's: $(stat -c '%U %a' "$BUMBA_BPF_PIN_DIR" 2>&1)"
		check_works guard
		# A rogue write to a file only root may touch: the guard reports it.
		echo rogue >>"$WS/rogue.txt"
		mkdir "$WS/sync/1"
		for _ in $(seq 250); do
			grep -q '"path":"sync/1"' "$AUDIT" 2>/dev/null && break
			sleep 0.02
		done
		grep '"event":"guard.violation"' "$AUDIT" 2>/dev/null | grep -q '"path":"rogue.txt"' ||
			bad "guard: no violation for the rogue write after the drop: $(tail -3 "$AUDIT" 2>&1)"
		[ "$(stat -c %U "$AUDIT")" = bumba ] || bad "guard: the audit log is not bumba's"
		kill -HUP "$BUMBAD_PID" # reopen the audit log, as bumba, in a root-only directory
		sleep 0.3
		grep -q 'reopened the audit log' "$TMPD/bumbad.log" || bad "guard: SIGHUP did not reopen the audit log"
		echo "guard: a rogue write reported after the drop"
	else
		echo "note: the guard does not load here ($(grep -m1 guard "$TMPD/bumbad.log" | cut -c1-160)): checked without it"
	fi
	check_stop guard
else
	echo "note: no guard in this build or kernel: checking --no-guard only"
fi

# 1+2, without the guard: the same set (the guard needs no capability
# once loaded on this kernel, so none is kept for it).
start --no-guard
check_dropped no-guard
check_works no-guard
check_stop no-guard

# 3. --user root
start --no-guard --user root
[ "$(field Uid "/proc/$BUMBAD_PID/status" | cut -f1)" = 0 ] || bad "--user root: not root"
[ "$(field CapEff "/proc/$BUMBAD_PID/status")" = "$(field CapBnd /proc/self/status)" ] ||
	bad "--user root: capabilities dropped: $(decode "$(field CapEff "/proc/$BUMBAD_PID/status")")"
check_stop user-root
echo "--user root: stays root with every capability"

# An unknown user named explicitly is a configuration error.
"$BUILD/bumbad" --socket "$SOCK" --workspace "$WS" --http off --no-guard \
	--user no-such-user-bumba >/dev/null 2>"$TMPD/err"
rc=$?
[ "$rc" -eq 78 ] || bad "--user no-such-user: exit $rc, expected 78 ($(cat "$TMPD/err"))"

# 4. systemd's side
[ "$errors" -eq 0 ] || fail "$errors problem(s)"
guard_opt=--no-guard
[ "$have_guard" = 1 ] && guard_opt=
# shellcheck disable=SC2086
python3 "$here/sd_notify_sim.py" --watchdog-usec 200000 --adopt -- "$BUILD/bumbad" --foreground \
	--socket "$SOCK" --workspace "$WS" --http off --keeper-linger 2 $guard_opt ||
	fail "the notification protocol"
python3 "$here/sd_notify_sim.py" --watchdog-usec 200000 --watchdog-pid-other -- "$BUILD/bumbad" \
	--foreground --socket "$SOCK" --workspace "$WS" --http off --keeper-linger 2 --no-guard ||
	fail "the notification protocol with WATCHDOG_PID"
echo "ok: privileges dropped, and bumbad works without them"
