#!/bin/sh
# t_safeio_bumbactl.sh - safe file operations seen from the shell:
#
#   - an agent written in Python (ctypes on build/libbumba-shm.so) makes
#     safe writes with backups; `bumbactl backups [--json] PATH` lists the
#     versions; `bumbactl restore PATH` undoes the last change and
#     `restore --at TIME` puts back what the file held at TIME;
#   - exit statuses: no backup 66, a path outside the workspace 65, bad
#     usage 64, the lock held by another agent 75;
#   - BUMBA_FAULT_STEP=N kills bumbactl in the middle of its restore: the
#     file is then exactly old or new and bumbad leaves no temporary;
#   - BUMBA_NO_IO_URING=1: the same restore on plain system calls;
#   - a stray temporary of a dead process is removed when bumbad starts.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

CTL=$BUILD/bumbactl
LIB=$BUILD/libbumba-shm.so
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
[ -r "$LIB" ] || skip "$LIB is not built"
command -v python3 >/dev/null || skip "no python3 for the ctypes agent"

start_bumbad

expect() {
	want=$1
	shift
	"$@" >"$TMPD/out" 2>"$TMPD/err"
	got=$?
	[ "$got" -eq "$want" ] || {
		cat "$TMPD/out" "$TMPD/err" >&2
		fail "'$*' exited $got, want $want"
	}
}

content() { cat "$WS/$1" 2>/dev/null || echo "<absent>"; }

# The Python agent: safe-writes its arguments in turn to FILE (each with a
# backup), printing the wall-clock ms after each; "hold" keeps the lock
# until stdin closes.
cat >"$TMPD/agent.py" <<'EOF'
import ctypes, os, sys, time
lib = ctypes.CDLL(os.environ["LIB"])
class Lock(ctypes.Structure):
    _fields_ = [("fence", ctypes.c_uint64), ("opaque", ctypes.c_uint64 * 3)]
b = ctypes.c_void_p()
rc = lib.bumba_open(None, None, ctypes.byref(b))
assert rc == 0, "bumba_open %d" % rc
path = sys.argv[1].encode()
lk = Lock()
rc = lib.bumba_lock_acquire(b, path, 0, 2000, 1, ctypes.byref(lk))
assert rc == 0, "lock %d" % rc
for v in sys.argv[2:]:
    if v == "hold":
        print("holding", flush=True)
        sys.stdin.read()
        continue
    data = v.encode()
    rc = lib.bumba_safe_write(b, path, data, len(data), 0x1)  # BUMBA_WRITE_BACKUP
    assert rc == 0, "safe_write %d" % rc
    time.sleep(0.02)
    print(int(time.time() * 1000), flush=True)
    time.sleep(0.02)
lib.bumba_lock_release(b, ctypes.byref(lk))
lib.bumba_close(b)
EOF
export LIB

agent() { python3 "$TMPD/agent.py" "$@"; }

# --- backups and restore ------------------------------------------------
agent f.txt v1 v2 v3 >"$TMPD/times" || fail "the ctypes agent failed"
[ "$(content f.txt)" = v3 ] || fail "f.txt holds '$(content f.txt)', want v3"
t1=$(sed -n 1p "$TMPD/times") # v1 written (new file: no backup)
t2=$(sed -n 2p "$TMPD/times") # v2 written: v1 kept

expect 0 "$CTL" backups f.txt
[ "$(grep -c ' write ' "$TMPD/out")" -eq 2 ] || { cat "$TMPD/out"; fail "want 2 versions of f.txt"; }
expect 0 "$CTL" --json backups "$WS/f.txt"
python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
assert len(v) == 2, v
assert all(x["op"] == "write" and x["path"].endswith("/f.txt") for x in v), v
assert v[0]["replaced_ms"] >= v[1]["replaced_ms"], "newest first"
' "$TMPD/out" || fail "backups --json"
expect 0 "$CTL" backups
grep -q "f.txt" "$TMPD/out" || fail "backups (all) does not list f.txt"

# Undo the last change: v2 again; what it replaced (v3) is kept.
expect 0 "$CTL" restore f.txt
[ "$(content f.txt)" = v2 ] || fail "after restore f.txt holds '$(content f.txt)', want v2"
grep -q "restored" "$TMPD/out" || fail "restore said: $(cat "$TMPD/out")"
# What it held between v1 and v2 being written: v1.
mid=$(((t1 + t2) / 2))
secs=$((mid / 1000)).$(printf '%03d' $((mid % 1000)))
expect 0 "$CTL" restore --at "@$secs" f.txt
[ "$(content f.txt)" = v1 ] || fail "restore --at: f.txt holds '$(content f.txt)', want v1"
expect 0 "$CTL" restore --at "-0s" f.txt
grep -q "nothing to restore" "$TMPD/out" || fail "restore --at now: $(cat "$TMPD/out")"

# --- exit statuses -------------------------------------------------------
expect 66 "$CTL" restore never-written
expect 65 "$CTL" restore /etc/passwd
expect 64 "$CTL" restore --at yesterday-ish f.txt
expect 64 "$CTL" restore
expect 64 "$CTL" backups --bogus
mkfifo "$TMPD/hold"
agent g.txt g1 hold <"$TMPD/hold" >"$TMPD/holding" &
holder=$!
exec 9>"$TMPD/hold"
n=0
until grep -q holding "$TMPD/holding" 2>/dev/null; do
	n=$((n + 1)); [ $n -le 200 ] || fail "the holder did not start"; sleep 0.05
done
expect 75 "$CTL" restore --timeout 100 g.txt
exec 9>&-
wait $holder

# --- a crash in the middle of a restore -----------------------------------
agent h.txt old new >/dev/null || fail "agent h.txt"
step=1
while :; do
	BUMBA_FAULT_STEP=$step "$CTL" restore h.txt >/dev/null 2>&1
	rc=$?
	c=$(content h.txt)
	[ "$c" = old ] || [ "$c" = new ] || fail "killed at step $step: h.txt holds '$c'"
	# bumbad recovers the dead agent before anyone gets its lock.
	expect 0 "$CTL" lock --timeout 5000 h.txt -- true
	tmps=$(find "$WS" -name '*.bumba-*.tmp' | wc -l)
	[ "$tmps" -eq 0 ] || fail "killed at step $step: $tmps temporaries left"
	[ $rc -eq 137 ] || break
	step=$((step + 1))
	[ $step -le 50 ] || fail "restore never finished"
	agent h.txt old new >/dev/null || fail "agent h.txt"
done
[ "$(content h.txt)" = old ] || fail "the finished restore left '$(content h.txt)', want old"
[ $step -ge 3 ] || fail "only $step fault points in a restore"

# --- the fallback -------------------------------------------------------
agent k.txt k1 k2 >/dev/null || fail "agent k.txt"
expect 0 env BUMBA_NO_IO_URING=1 "$CTL" restore k.txt
[ "$(content k.txt)" = k1 ] || fail "fallback restore: k.txt holds '$(content k.txt)'"

# --- stray temporaries at start ------------------------------------------
mkdir -p "$WS/sub/deeper"
stray="$WS/sub/deeper/.x.bumba-0123456789abcdef7ffffff0deadbeef.tmp"
echo half >"$stray"
stop_bumbad
"$BUILD/bumbad" --foreground --socket "$BUMBA_SOCKET" --workspace "$WS" --no-guard \
	--http off --keeper-linger 5 2>"$TMPD/bumbad2.log" &
BUMBAD_PID=$!
n=0
until grep -q 'ready:' "$TMPD/bumbad2.log" 2>/dev/null; do
	n=$((n + 1)); [ $n -le 100 ] || fail "bumbad did not restart"; sleep 0.05
done
[ ! -e "$stray" ] || fail "the stray temporary survived bumbad's start"
grep -q "recovery (start).*1 stray temporary removed" "$TMPD/bumbad2.log" ||
	{ cat "$TMPD/bumbad2.log" >&2; fail "bumbad did not report the removal"; }
echo "ok: backups, restore (--at, undo), exit statuses, crash at every step, fallback, start-up scan"
exit 0
