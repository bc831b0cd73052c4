#!/bin/bash
# t_guard_bumba_run.sh - the guard sees COMMAND's whole process tree under
# bumba-run as the agent bumba-run registered:
#   - a shell pipeline (and a background grandchild) under
#     `bumba-run --exclusive DIR` writes files inside DIR: no violation;
#   - the same tree writing outside DIR: a violation charged to that agent
#     (not to "unregistered"): the tree is the agent, it just holds nothing
#     there;
#   - a joined `bumbactl lock` in the tree sanctions a write outside DIR;
#   - the same pipeline run outside bumba-run, into DIR while bumba-run
#     holds it: a violation by an unregistered writer naming the holder;
#   - after bumba-run is SIGKILLed, a process it left behind is no longer
#     the agent.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/guard_lib.sh"
guard_preflight
RUN=$BUILD/bumba-run
CTL=$BUILD/bumbactl
[ -x "$RUN" ] || skip "$RUN is not built"

guard_tmp
mkdir -p "$WS/d/sub" "$WS/x"
echo old >"$WS/d/existing"
start_guarded

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }

# The agent's tree: a pipeline, a subshell, a background grandchild, a
# redirection by the shell itself, an append to an existing file.
"$RUN" --name pipeline --exclusive "$WS/d" -- sh -c '
	echo "$BUMBA_AGENT_ID" >"$0/id"
	echo hello | tr a-z A-Z >"$1/d/upper"
	seq 20 | sort -rn | tee "$1/d/sub/sorted" >/dev/null
	(echo sub >"$1/d/sub/subshell")
	(sleep 0.2; echo deep >"$1/d/deep") &
	echo more >>"$1/d/existing"
	echo out | cat >"$1/x/outside"
	"$2" lock "$1/x/locked" -- sh -c "echo locked >\"\$0\"" "$1/x/locked"
	wait' "$TMPD" "$WS" "$CTL"
rc=$?
[ "$rc" = 0 ] || bad "the pipeline under bumba-run exited $rc"
id=$(cat "$TMPD/id")
[ "$(cat "$WS/d/upper")" = HELLO ] || bad "the pipeline did not write d/upper"
[ -s "$WS/d/deep" ] || bad "the grandchild did not write d/deep"
guard_sync

# A stranger: the same pipeline outside bumba-run, into DIR while a
# bumba-run holds it.
"$RUN" --name holder --exclusive "$WS/d" -- sh -c 'echo "$BUMBA_AGENT_ID" >"$0/hid"; exec sleep 30' "$TMPD" &
holder=$!
for _ in $(seq 100); do [ -s "$TMPD/hid" ] && break; sleep 0.05; done
sh -c 'echo hello | tr a-z A-Z >"$0/d/stranger"' "$WS"
kill -TERM "$holder"
wait "$holder" 2>/dev/null

# A process left behind by a SIGKILLed bumba-run is no longer the agent.
"$RUN" --name killed --exclusive "$WS/d" -- sh -c '
	echo "$BUMBA_AGENT_ID" >"$0/kid"
	(trap "" TERM; while [ ! -e "$0/go" ]; do sleep 0.05; done; echo late >"$1/d/late") &
	echo $! >"$0/orphan"
	exec sleep 30' "$TMPD" "$WS" &
k=$!
for _ in $(seq 100); do [ -s "$TMPD/orphan" ] && break; sleep 0.05; done
{ kill -KILL "$k"; wait "$k"; } 2>/dev/null
for _ in $(seq 100); do
	[ "$("$CTL" agents --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ] && break
	sleep 0.05
done
touch "$TMPD/go"
for _ in $(seq 100); do [ -e "$WS/d/late" ] && break; sleep 0.05; done
guard_sync

python3 - "$AUDIT" "$id" "$(cat "$TMPD/hid")" "$(cat "$TMPD/kid")" <<'EOF' || bad "audit log checks"
import json, sys
audit, agent, holder, killed = sys.argv[1:5]
viol = [v for v in map(json.loads, open(audit))
        if v.get("event") == "guard.violation" and not v.get("path", "").startswith("sync/")]
errors = []
def expect(cond, what):
    if not cond:
        errors.append(what)
def at(path):
    return [v for v in viol if v["path"] == path]

for p in ("d/upper", "d/sub/sorted", "d/sub/subshell", "d/deep", "d/existing", "x/locked"):
    expect(not at(p), "the agent's tree writing %s was reported: %s" % (p, at(p)))
v = at("x/outside")
expect(v and all(x["agent"] == agent for x in v),
       "the tree's write outside its territory is not charged to %s: %s" % (agent, v))
v = at("d/stranger")
expect(v and all(x["agent"] == "unregistered" and x.get("holder") == holder
                 and x.get("holder_kind") == "exclusive" for x in v),
       "the stranger's pipeline into the held territory: %s" % v)
v = at("d/late")
expect(v and all(x["agent"] != killed for x in v),
       "a process left by a SIGKILLed bumba-run still counts as its agent: %s" % v)
for e in errors:
    print("FAIL: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF

[ "$errors" = 0 ] || { alines 40 >&2; }
stop_bumbad
[ "$errors" = 0 ] || fail "$errors check(s) failed"
echo "ok: bumba-run's process tree is its agent for the guard: sanctioned inside, charged outside, strangers named"
