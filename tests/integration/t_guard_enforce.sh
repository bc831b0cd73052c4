#!/bin/bash
# t_guard_enforce.sh - guard.enforce = true: on a workspace that is a mount
# point (a tmpfs here, so that nothing else on the host waits for bumbad),
# an open for writing by a process that holds nothing is denied (EPERM)
# and logged as guard.denied; the lock holder's open goes through; reads
# are never held up; a rename (no descriptor to deny) is still detected.
# Then a workspace that is not a mount point: bumbad says it cannot enforce
# there and keeps detecting.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/guard_lib.sh"
guard_preflight
command -v mount >/dev/null 2>&1 || skip "mount(8) is needed"

guard_tmp
mkdir -p "$WS"
MNT=$WS
mount -t tmpfs -o size=16m bumba-enforce "$MNT" 2>/dev/null || skip "cannot mount a tmpfs"
cleanup_mount() {
	[ -n "${BUMBAD_PID:-}" ] && kill -TERM "$BUMBAD_PID" 2>/dev/null && wait "$BUMBAD_PID" 2>/dev/null
	BUMBAD_PID=
	umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	_bumba_cleanup
}
trap cleanup_mount EXIT
mkdir -p "$WS/sync" "$WS/d"
for f in denied held read moved; do echo "old $f" >"$WS/d/$f"; done
export BUMBA_GUARD_ENFORCE=true
start_guarded
grep -q 'enforcing on' "$TMPD/bumbad.log" || fail "bumbad does not say it enforces: $(grep guard "$TMPD/bumbad.log")"

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }

# A stranger's write open: refused, the file untouched.
if out=$(timeout 10 "$GOP" --who none openat "$WS/d/denied" 2>&1); then
	bad "a stranger's open for writing went through: $out"
fi
case $out in *"Operation not permitted"*) ;; *) bad "not EPERM: $out" ;; esac
[ "$(cat "$WS/d/denied")" = "old denied" ] || bad "the denied file changed"

# The holder's: allowed.
timeout 10 "$GOP" --who holder openat "$WS/d/held" >/dev/null 2>"$TMPD/err" ||
	bad "the lock holder was refused: $(cat "$TMPD/err")"

# Reads: never refused, even by strangers.
[ "$(timeout 10 cat "$WS/d/read")" = "old read" ] || bad "a read was refused"

# A rename has no descriptor to refuse: detected.
pid=$(timeout 10 "$GOP" --who none rename "$WS/d/moved" "$WS/d/moved2") || bad "rename failed"
pid=${pid#pid=}
guard_sync

python3 - "$AUDIT" "$pid" <<'EOF' || bad "audit log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
denied = [v for v in lines if v.get("event") == "guard.denied"
          and not v["path"].startswith("sync/")]  # the script's own sync writes are refused too
assert len(denied) == 1 and denied[0]["path"] == "d/denied" and denied[0]["agent"] == "unregistered", denied
assert not [v for v in denied if v["path"] == "d/held"], denied
moved = [v for v in lines if v.get("event") == "guard.violation" and v["pid"] == int(sys.argv[2])]
assert len(moved) == 1 and moved[0]["op"] == "rename", moved
EOF
stop_bumbad

# Not a mount point: detect only, and say why.
mkdir -p "$TMPD/plain"
WS=$TMPD/plain
mkdir -p "$WS/sync"
start_guarded
grep -q 'not a mount point' "$TMPD/bumbad.log" || bad "no word that $WS cannot be enforced"
echo x >"$WS/file" || bad "a write was refused where nothing is enforced"
guard_sync
stop_bumbad

[ "$errors" = 0 ] || fail "$errors check(s) failed"
echo "ok: write opens denied on a mount, holders and readers pass, renames detected, detect-only elsewhere"
