#!/bin/bash
# t_guard_agents.sh - who the guard charges a write to, and when it is
# sanctioned:
#   - an agent's forked child is the agent: sanctioned under the agent's
#     lock, a violation named after the agent without one;
#   - a write just before the lock is released is sanctioned (the release
#     history in the segment);
#   - an EXCLUSIVE territory sanctions; a MONITORED one logs, no violation;
#   - a process with two agents is judged by both;
#   - a safe write (temporary, rename, backup in .bumba) by the holder is
#     sanctioned;
#   - a stranger trampling someone's lock or territory names the holder;
#   - bumbad's own writes (its audit log, here inside the workspace) are
#     never reported.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/guard_lib.sh"
guard_preflight

guard_tmp
AUDIT=$WS/audit.log # bumbad writes it: must never be a violation
mkdir -p "$WS/a" "$WS/m" "$WS/t" "$WS/x" "$WS/held"
for f in fork_holder fork_agent fork_stranger agent second excl adopt; do echo old >"$WS/a/$f"; done
for i in $(seq 20); do echo old >"$WS/a/rel$i"; done
echo old >"$WS/m/mon"
echo old >"$WS/t/terr"
echo old >"$WS/held/file"
echo old >"$WS/x/file"
start_guarded

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }
gop() { # NAME ARGS... : runs the helper, records "NAME pid"
	local name=$1 out
	shift
	out=$("$GOP" "$@" 2>"$TMPD/gop.err") || bad "$name: guard_op $*: $(cat "$TMPD/gop.err")"
	echo "$name ${out#pid=}" >>"$TMPD/pids"
}
: >"$TMPD/pids"

gop fork_holder --who holder --fork write "$WS/a/fork_holder"
gop fork_agent --who agent --fork write "$WS/a/fork_agent"
gop fork_stranger --who stranger --fork write "$WS/a/fork_stranger"
gop agent --who agent write "$WS/a/agent"
for i in $(seq 20); do gop "rel$i" --who holder --release-now write "$WS/a/rel$i"; done
gop excl --who territory write "$WS/a/excl"
gop mon --who monitored write "$WS/m/mon"
gop second --who second write "$WS/a/second"
gop safe --who holder safe_write "$WS/a/safe"
gop safe2 --who holder safe_write "$WS/a/safe"

# Someone else's lock and territory, trampled by a stranger.
"$BUILD/bumbactl" lock "$WS/held/file" -- sleep 4 &
lock_pid=$!
"$BUILD/bumbactl" claim --exclusive "$WS/t" -- sleep 4 &
claim_pid=$!
for _ in $(seq 100); do
	"$BUILD/bumbactl" locks --json 2>/dev/null | grep -q 'held/file' &&
		"$BUILD/bumbactl" territories --json 2>/dev/null | grep -q "$WS/t" && break
	sleep 0.05
done
gop trample_lock --who none write "$WS/held/file"
gop trample_terr --who none write "$WS/t/terr"
guard_sync
kill "$lock_pid" "$claim_pid" 2>/dev/null
wait "$lock_pid" "$claim_pid" 2>/dev/null

# bumbad restarts (SIGKILL, then a new one adopts the segment) while an
# agent's child runs: the child, forked before this guard started, is
# still the agent's.
"$BUILD/bumbactl" lock "$WS/a/adopt" -- sh -c "echo \$\$ >'$TMPD/adopt.pid'; sleep 1; echo new >>'$WS/a/adopt'" &
adopt_lock=$!
for _ in $(seq 100); do [ -s "$TMPD/adopt.pid" ] && break; sleep 0.02; done
kill -KILL "$BUMBAD_PID"
wait "$BUMBAD_PID" 2>/dev/null
BUMBAD_PID=
start_guarded
grep -q 'adopted the live segment' "$TMPD/bumbad.log" || bad "the restarted bumbad did not adopt the segment"
wait "$adopt_lock" || bad "bumbactl lock (adopt) exited $?"
echo "adopt $(cat "$TMPD/adopt.pid")" >>"$TMPD/pids"
guard_sync

python3 - "$AUDIT" "$TMPD/pids" <<'EOF' || bad "audit log checks"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
viol = [v for v in lines if v.get("event") == "guard.violation"
        and not v.get("path", "").startswith("sync/")]
mon = [v for v in lines if v.get("event") == "guard.monitored"]
pids = dict(l.split() for l in open(sys.argv[2]))
pids = {k: int(v) for k, v in pids.items()}
errors = []
def of(name, lst=viol):
    return [v for v in lst if v["pid"] == pids[name]]
def expect(cond, what):
    if not cond:
        errors.append(what)

expect(not of("fork_holder"), "a holder's child was reported: %s" % of("fork_holder"))
v = of("fork_agent")
expect(len(v) == 1 and v[0]["agent"].startswith("Test-guardop-") and v[0]["op"] == "write",
       "an agent's child without a lock: %s" % v)
v = of("fork_stranger")
expect(len(v) == 1 and v[0]["agent"] == "unregistered", "a stranger's child: %s" % v)
v = of("agent")
expect(len(v) == 1 and v[0]["agent"].startswith("Test-guardop-") and v[0]["path"] == "a/agent",
       "an agent without a lock: %s" % v)
for i in range(1, 21):
    expect(not of("rel%d" % i), "a write just before the release: %s" % of("rel%d" % i))
expect(not of("excl"), "an EXCLUSIVE territory's owner: %s" % of("excl"))
expect(not of("mon"), "a MONITORED territory's owner reported as a violation: %s" % of("mon"))
m = [v for v in of("mon", mon) if v["op"] == "write"]
expect(len(m) == 1 and m[0]["path"] == "m/mon" and m[0].get("territory"),
       "the MONITORED write was not logged once: %s" % of("mon", mon))
expect(not of("second"), "the second agent of a process holds the lock: %s" % of("second"))
expect(not of("safe") and not of("safe2"), "a safe write by the holder: %s %s" % (of("safe"), of("safe2")))
# (--who none: the stranger's open is a violation too)
v = [x for x in of("trample_lock") if x["op"] == "write"]
expect(len(v) == 1 and v[0].get("holder", "") and v[0]["holder"].startswith("Command-")
       and v[0]["holder_kind"] == "lock", "trampling a lock: %s" % v)
v = [x for x in of("trample_terr") if x["op"] == "write"]
expect(len(v) == 1 and v[0].get("holder") and v[0]["holder_kind"] == "exclusive"
       and v[0].get("territory"), "trampling an EXCLUSIVE territory: %s" % v)
expect(not of("adopt"), "an agent's child from before a bumbad restart: %s" % of("adopt"))
own = [v for v in viol if v["path"] == "audit.log"]
expect(not own, "bumbad's own audit log writes were reported: %s" % own[:2])
for e in errors:
    print("FAIL: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

stop_bumbad
[ "$errors" = 0 ] || fail "$errors check(s) failed"
echo "ok: fork inheritance, release history, territories, MONITORED, two agents, safe writes, holders named, bumbad exempt"
