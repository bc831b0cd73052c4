#!/bin/bash
# t_guard_lifecycle.sh - the guard's life: loaded and unloaded many times
# with no pinned map or program left behind after a clean stop; a SIGKILLed
# bumbad's stale pins are cleared by the next one; a second bumbad cannot
# take the pins and runs its guard unpinned; the pinned roots map reads
# with field names in bpftool; `bumbactl audit` (human, --json, --since)
# and `bumbactl doctor` against a live guard.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/guard_lib.sh"
guard_preflight
BPFTOOL=$(command -v bpftool || echo /usr/sbin/bpftool)
[ -x "$BPFTOOL" ] || skip "bpftool is needed to look at the pins"

guard_tmp
errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }
# Programs of *our* guard: those using our agents map (other bumbads may run).
map_id() { "$BPFTOOL" map show pinned "$PIN_DIR/agents" 2>/dev/null | sed -n 's/^\([0-9]*\):.*/\1/p'; }
progs() { # map id
	"$BPFTOOL" prog show 2>/dev/null | grep -cE "map_ids ([0-9]+,)*$1(,|\$)" || true
}

# Load and unload, many times.
cycles=${GUARD_CYCLES:-8}
for i in $(seq "$cycles"); do
	start_guarded
	for m in violations roots agents stats; do
		[ -e "$PIN_DIR/$m" ] || bad "cycle $i: $PIN_DIR/$m not pinned"
	done
	id=$(map_id)
	[ -n "$id" ] && [ "$(progs "$id")" -ge 4 ] || bad "cycle $i: the guard's programs are not loaded"
	stop_bumbad
	[ -e "$PIN_DIR" ] && bad "cycle $i: $PIN_DIR left after a clean stop: $(ls "$PIN_DIR")"
	# Programs are freed after an RCU grace period: give them a moment.
	for _ in $(seq 100); do [ "$(progs "$id")" = 0 ] && break; sleep 0.02; done
	[ "$(progs "$id")" = 0 ] || bad "cycle $i: guard programs left after a clean stop"
	grep -q 'guard: stopped' "$TMPD/bumbad.log" || bad "cycle $i: no 'guard: stopped' in the log"
done

# A crash leaves the pins; the next bumbad clears them and carries on.
start_guarded
id=$(map_id)
kill -KILL "$BUMBAD_PID"
wait "$BUMBAD_PID" 2>/dev/null
BUMBAD_PID=
[ -e "$PIN_DIR/violations" ] || bad "no stale pins after SIGKILL (expected some)"
# The pinned maps keep the programs' maps, not the programs: links die
# with the process.
for _ in $(seq 100); do [ "$(progs "$id")" = 0 ] && break; sleep 0.02; done
[ "$(progs "$id")" = 0 ] || bad "programs still loaded after bumbad was SIGKILLed"
start_guarded
grep -q 'removed 4 stale pinned map' "$TMPD/bumbad.log" || bad "stale pins not reported as removed"

# The roots map, with field names.
"$BPFTOOL" -j map dump pinned "$PIN_DIR/roots" >"$TMPD/roots.json" || bad "bpftool dump of roots"
python3 - "$TMPD/roots.json" "$(realpath "$WS")" <<'EOF' || bad "the roots map does not show the workspace"
import json, sys
rows = [e["formatted"] for e in json.load(open(sys.argv[1]))]
live = [r["value"] for r in rows if r["value"]["ino"]]
assert len(live) == 1, live
assert live[0]["path"] == sys.argv[2] and live[0]["dev"] > 0, live
EOF

# A second supervisor: its own guard, not pinned.
mkdir -p "$TMPD/ws2"
BUMBA_MONITORING_AUDITLOG=$TMPD/audit2.log "$BUILD/bumbad" --foreground --socket "$TMPD/b2.sock" \
	--workspace "$TMPD/ws2" --http off --keeper-linger 1 2>"$TMPD/b2.log" &
b2=$!
for _ in $(seq 200); do grep -q 'ready:' "$TMPD/b2.log" && break; sleep 0.05; done
grep -q 'in use by another bumbad' "$TMPD/b2.log" || bad "second bumbad: no word about the pins in use"
grep -q 'guard active.*maps not pinned' "$TMPD/b2.log" || bad "second bumbad: guard not active unpinned"
echo x >"$TMPD/ws2/file2"
kill -TERM "$b2"
wait "$b2" 2>/dev/null
[ -e "$PIN_DIR/violations" ] || bad "the second bumbad's stop removed the first one's pins"
grep -q '"path":"file2"' "$TMPD/audit2.log" || bad "the unpinned guard did not report"

# bumbactl audit and doctor against the live guard.
"$GOP" --who stranger write "$WS/sync/../victim" >/dev/null 2>&1 || echo old >"$WS/victim"
guard_sync
export BUMBA_MONITORING_AUDITLOG=$AUDIT
"$BUILD/bumbactl" audit >"$TMPD/audit.txt" || bad "bumbactl audit exited $?"
grep -q 'victim' "$TMPD/audit.txt" || bad "bumbactl audit does not show the violation: $(cat "$TMPD/audit.txt")"
grep -q "PINNED MAP $PIN_DIR/violations" "$TMPD/audit.txt" || bad "bumbactl audit: no pinned map section"
"$BUILD/bumbactl" audit --json --since 1h >"$TMPD/audit.json" || bad "bumbactl audit --json exited $?"
"$BUILD/bumbactl" audit --json --since 2099-01-01T00:00:00Z >"$TMPD/audit-future.json" ||
	bad "bumbactl audit --since (future) exited $?"
"$BUILD/bumbactl" audit --since yesterday >/dev/null 2>&1 && bad "bumbactl audit --since yesterday accepted"
python3 - "$TMPD/audit.json" "$TMPD/audit-future.json" <<'EOF' || bad "bumbactl audit --json content"
import json, sys
a = json.load(open(sys.argv[1]))
f = json.load(open(sys.argv[2]))
assert any(e["path"] == "victim" and e["event"] == "guard.violation" for e in a["events"]), a
assert a["pinned"] and any(p["path"] == "victim" and p["count"] >= 1 for p in a["pinned"]), a
assert f["events"] == [] and f["pinned"] == [], f
EOF
"$BUILD/bumbactl" doctor >"$TMPD/doctor.txt" || bad "bumbactl doctor exited $?"
grep -q '^guard .*running' "$TMPD/doctor.txt" || bad "doctor does not see the running guard: $(cat "$TMPD/doctor.txt")"
"$BUILD/bumbactl" doctor --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
names = {f["name"] for f in d["features"]}
need = {"memfd seals", "pidfd", "SO_PEERPIDFD", "io_uring", "BPF tracepoints", "BPF tp_btf", "BTF", "BPF LSM", "fanotify permission events"}
assert need <= names, need - names
' || bad "bumbactl doctor --json"

stop_bumbad
[ -e "$PIN_DIR" ] && bad "pins left after the last clean stop"
[ "$errors" = 0 ] || fail "$errors check(s) failed"
echo "ok: $cycles load/unload cycles, stale pins after a crash, second supervisor, audit, doctor"
