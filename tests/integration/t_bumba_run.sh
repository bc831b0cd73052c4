#!/bin/bash
# t_bumba_run.sh - bumba-run against a real bumbad:
#   - the agent it registers (type, name, department, capabilities) and the
#     environment COMMAND gets (BUMBA_AGENT_ID, BUMBA_AGENT_FD, BUMBA_SOCKET);
#   - COMMAND's exit status, 128+N for a signal death, 126/127, 64, 69;
#   - conflicting claims: exit 73, every conflict (path, holder, type) on
#     stderr, COMMAND not run, nothing of the failed run left; --timeout
#     waiting for a conflict to clear;
#   - signals sent to bumba-run reach COMMAND (TERM, HUP, USR1);
#   - programs in COMMAND's tree join its agent: `bumbactl lock` inside
#     `bumba-run --exclusive DIR` locks a file in DIR as the same agent (and,
#     with BUMBA_NO_JOIN=1, as a stranger it is refused);
#   - SIGKILL of bumba-run: bumbad reclaims its territories and the lock a
#     joined child held, COMMAND gets SIGTERM, another bumba-run can claim
#     the same paths.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

RUN=$BUILD/bumba-run
CTL=$BUILD/bumbactl
[ -x "$RUN" ] || skip "$RUN is not built"
[ -x "$CTL" ] || skip "$CTL is not built"
command -v python3 >/dev/null 2>&1 || skip "python3 is needed to read --json output"

start_bumbad
mkdir -p "$WS/a" "$WS/b" "$WS/k" "$WS/j" "$WS/w"
errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }
# json EXPR: evaluates a python expression over `d`, the JSON on stdin.
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
# wait_for CMD...: up to 5 s for CMD to succeed.
wait_for() {
	for _ in $(seq 100); do "$@" && return 0; sleep 0.05; done
	return 1
}
n_agents() { "$CTL" agents --json | json 'len(d)'; }
n_terrs() { "$CTL" territories --json | json 'len(d)'; }
n_locks() { "$CTL" locks --json | json 'len(d)'; }

# --- the agent and COMMAND's environment -------------------------------------
"$RUN" --type Coder --name alice --department design --capability c --capability py \
	--exclusive "$WS/a" -- sh -c '
	echo "$BUMBA_AGENT_ID" >"$0/id"
	echo "$BUMBA_SOCKET" >"$0/sock"
	readlink "/proc/self/fd/$BUMBA_AGENT_FD" >"$0/fdlink"
	"$1" agents --json >"$0/agents.json"
	"$1" territories --json >"$0/terrs.json"' "$TMPD" "$CTL"
rc=$?
[ "$rc" = 0 ] || bad "a plain run exited $rc"
id=$(cat "$TMPD/id")
case $id in Coder-alice-*) ;; *) bad "BUMBA_AGENT_ID is '$id'" ;; esac
[ "$(cat "$TMPD/sock")" = "$BUMBA_SOCKET" ] || bad "BUMBA_SOCKET is '$(cat "$TMPD/sock")'"
grep -q 'memfd:bumba' "$TMPD/fdlink" || bad "BUMBA_AGENT_FD is not the segment: $(cat "$TMPD/fdlink")"
got=$(json '[(a["id"], a["department"], a["capabilities"], a["status"]) for a in d]' <"$TMPD/agents.json")
[ "$got" = "[('$id', 'design', ['c', 'py'], 'busy')]" ] || bad "agents while running: $got"
got=$(json '[(t["owner"], t["type"], t["paths"], t["title"]) for t in d]' <"$TMPD/terrs.json")
[ "$got" = "[('$id', 'exclusive', ['$WS/a'], 'sh')]" ] || bad "territories while running: $got"
[ "$(n_agents)" = 0 ] && [ "$(n_terrs)" = 0 ] || bad "the agent or its territory outlived bumba-run"
# The default name is COMMAND's ('-' is not allowed in it).
"$RUN" -- sh -c 'echo "$BUMBA_AGENT_ID" >"$0/id"' "$TMPD" || bad "a run with no options"
case $(cat "$TMPD/id") in Agent-sh-*) ;; *) bad "default type and name: $(cat "$TMPD/id")" ;; esac

# --- exit status ----------------------------------------------------------------
"$RUN" -- sh -c 'exit 3'
rc=$?; [ "$rc" = 3 ] || bad "exit 3 came back as $rc"
"$RUN" -- sh -c 'kill -TERM $$'
rc=$?; [ "$rc" = 143 ] || bad "COMMAND killed by SIGTERM: $rc, want 143"
"$RUN" -- sh -c 'kill -KILL $$'
rc=$?; [ "$rc" = 137 ] || bad "COMMAND killed by SIGKILL: $rc, want 137"
"$RUN" -- "$TMPD/no-such-command" 2>"$TMPD/err"
rc=$?; [ "$rc" = 127 ] || bad "command not found: $rc, want 127"
grep -q 'no-such-command' "$TMPD/err" || bad "no message for a missing command: $(cat "$TMPD/err")"
printf 'x' >"$TMPD/notexec"; chmod 0644 "$TMPD/notexec"
"$RUN" -- "$TMPD/notexec" 2>/dev/null
rc=$?; [ "$rc" = 126 ] || bad "command not executable: $rc, want 126"
for args in "--bogus -- true" "true" "--exclusive" "--" "--type a-b -- true" \
	"--timeout x -- true" "--name= -- true"; do
	# shellcheck disable=SC2086
	"$RUN" $args 2>"$TMPD/err" >/dev/null
	rc=$?; [ "$rc" = 64 ] || bad "bumba-run $args: $rc, want 64"
	[ -s "$TMPD/err" ] || bad "bumba-run $args: no message"
done
BUMBA_SOCKET=$TMPD/none.sock "$RUN" -- touch "$TMPD/nosup" 2>"$TMPD/err"
rc=$?; [ "$rc" = 69 ] || bad "no supervisor: $rc, want 69"
[ -e "$TMPD/nosup" ] && bad "COMMAND ran without a supervisor"
"$RUN" --exclusive /elsewhere -- touch "$TMPD/outside" 2>"$TMPD/err"
rc=$?; [ "$rc" = 65 ] || bad "a path outside the workspace: $rc, want 65"
grep -q '/elsewhere' "$TMPD/err" || bad "the bad path is not named: $(cat "$TMPD/err")"
[ -e "$TMPD/outside" ] && bad "COMMAND ran with a bad claim"

# --- conflicts: exit 73, every one listed, COMMAND not run -------------------------
"$RUN" --name holder --exclusive "$WS/a" -- sh -c 'echo "$BUMBA_AGENT_ID" >"$0/h1"; exec sleep 30' "$TMPD" &
h1=$!
"$CTL" claim --shared "$WS/b" -- sleep 30 &
h2=$!
wait_for test -s "$TMPD/h1" || bad "the first holder did not start"
wait_for sh -c "[ \"\$('$CTL' territories --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')\" = 2 ]" ||
	bad "the holders' territories did not appear"
h2id=$("$CTL" territories --json | json '[t["owner"] for t in d if t["type"] == "shared"][0]')
"$RUN" --exclusive "$WS/a/x" --exclusive "$WS/b" --monitored "$WS/j" --shared "$WS/a" \
	-- touch "$TMPD/marker" 2>"$TMPD/conflicts"
rc=$?
[ "$rc" = 73 ] || bad "conflicting claims: exit $rc, want 73"
[ -e "$TMPD/marker" ] && bad "COMMAND ran despite the conflicts"
grep -qx "bumba-run: conflict: $WS/a held by $(cat "$TMPD/h1") (exclusive)" "$TMPD/conflicts" ||
	bad "the conflict on $WS/a is not listed: $(cat "$TMPD/conflicts")"
grep -qx "bumba-run: conflict: $WS/b held by $h2id (shared)" "$TMPD/conflicts" ||
	bad "the conflict on $WS/b is not listed: $(cat "$TMPD/conflicts")"
[ "$(grep -c 'conflict:' "$TMPD/conflicts")" = 2 ] || bad "want exactly 2 conflict lines: $(cat "$TMPD/conflicts")"
# The MONITORED claim on $WS/j went through before the conflicts were known:
# released again, and the agent gone.
[ "$(n_terrs)" = 2 ] || bad "the failed run left a territory: $("$CTL" territories)"
[ "$(n_agents)" = 2 ] || bad "the failed run left its agent: $("$CTL" agents)"
# --timeout: waits for the conflict to clear.
kill -TERM "$h1"
wait "$h1"
rc=$?; [ "$rc" = 143 ] || bad "the holder, SIGTERMed, exited $rc (want 143: sleep's death)"
kill -TERM "$h2"; wait "$h2" 2>/dev/null
"$RUN" --name slow --exclusive "$WS/w" -- sleep 0.7 &
slow=$!
wait_for sh -c "'$CTL' territories --json | grep -q '$WS/w'" || bad "the slow holder did not claim"
"$RUN" --exclusive "$WS/w" -- true 2>/dev/null
rc=$?; [ "$rc" = 73 ] || bad "without --timeout: $rc, want 73"
"$RUN" --timeout 10000 --exclusive "$WS/w" -- touch "$TMPD/waited"
rc=$?; [ "$rc" = 0 ] && [ -e "$TMPD/waited" ] || bad "--timeout did not wait for the conflict to clear: $rc"
wait "$slow"

# --- signals reach COMMAND --------------------------------------------------------
"$RUN" -- sh -c '
	trap "echo usr1 >>\"$0/sig\"" USR1
	trap "echo hup >>\"$0/sig\"" HUP
	trap "echo term >>\"$0/sig\"; exit 5" TERM
	echo ready >"$0/ready"
	while :; do sleep 0.05; done' "$TMPD" &
r=$!
wait_for test -s "$TMPD/ready" || bad "the trapping COMMAND did not start"
kill -USR1 "$r"
wait_for grep -q usr1 "$TMPD/sig" || bad "SIGUSR1 did not reach COMMAND"
kill -HUP "$r"
wait_for grep -q hup "$TMPD/sig" || bad "SIGHUP did not reach COMMAND"
kill -TERM "$r"
wait "$r"
rc=$?
[ "$rc" = 5 ] || bad "after SIGTERM: exit $rc, want COMMAND's 5"
grep -q term "$TMPD/sig" || bad "SIGTERM did not reach COMMAND"

# --- joining: programs in COMMAND's tree are the agent -----------------------------
"$RUN" --exclusive "$WS/j" -- sh -c '
	"$1" lock "$2/f" -- sh -c "\"\$0\" locks --json >\"\$1\"" "$1" "$0/locks.json" &&
	"$1" claim --exclusive "$2/sub" -- true' "$TMPD" "$CTL" "$WS/j"
rc=$?
[ "$rc" = 0 ] || bad "bumbactl lock/claim inside the run's own territory: exit $rc"
got=$(json '[(l["path"], l["holders"][0][:6]) for l in d]' <"$TMPD/locks.json")
[ "$got" = "[('$WS/j/f', 'Agent-')]" ] || bad "the lock inside: $got (want the run's own agent)"
BUMBA_NO_JOIN=1 "$RUN" --exclusive "$WS/j" -- "$CTL" lock "$WS/j/f" -- true 2>/dev/null
rc=$?; [ "$rc" = 77 ] || bad "with BUMBA_NO_JOIN=1, a lock in the territory: $rc, want 77 (a stranger)"
# A nested bumba-run is an agent of its own.
"$RUN" -- sh -c 'echo "$BUMBA_AGENT_ID" >"$0/outer"; "$1" -- sh -c "echo \"\$BUMBA_AGENT_ID\" >\"\$0/inner\"" "$0"' \
	"$TMPD" "$RUN" || bad "nested bumba-run"
[ -s "$TMPD/inner" ] && [ "$(cat "$TMPD/inner")" != "$(cat "$TMPD/outer")" ] ||
	bad "a nested bumba-run shares the outer agent"

# --- SIGKILL of bumba-run: everything reclaimed ------------------------------------
"$RUN" --exclusive "$WS/k" -- sh -c '
	echo "$BUMBA_AGENT_ID" >"$0/kid"
	echo $$ >"$0/kpid"
	exec "$1" lock "$2/f" -- sh -c "echo locked >\"\$0/locked\"; exec sleep 30" "$0"' \
	"$TMPD" "$CTL" "$WS/k" 2>"$TMPD/k.err" &
k=$!
wait_for test -s "$TMPD/locked" || bad "the joined lock holder did not start"
got=$("$CTL" locks --json | json '[(l["path"], l["holders"]) for l in d]')
[ "$got" = "[('$WS/k/f', ['$(cat "$TMPD/kid")'])]" ] || bad "the joined child's lock: $got"
[ "$(n_agents)" = 1 ] || bad "the joined bumbactl registered an agent of its own: $("$CTL" agents)"
kill -KILL "$k"
wait "$k" 2>/dev/null
wait_for sh -c "[ \"\$('$CTL' locks --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')\" = 0 ]" ||
	bad "the lock was not reclaimed: $("$CTL" locks)"
[ "$(n_terrs)" = 0 ] || bad "the territory was not reclaimed: $("$CTL" territories)"
[ "$(n_agents)" = 0 ] || bad "the agent was not reclaimed: $("$CTL" agents)"
"$RUN" --exclusive "$WS/k" -- "$CTL" lock "$WS/k/f" -- true 2>/dev/null
rc=$?; [ "$rc" = 0 ] || bad "claiming the dead run's paths again: exit $rc"
# COMMAND (the joined bumbactl) got SIGTERM when bumba-run died.
kpid=$(cat "$TMPD/kpid")
wait_for sh -c "! kill -0 $kpid 2>/dev/null" || bad "COMMAND outlived a SIGKILLed bumba-run"

stop_bumbad
[ "$errors" = 0 ] || fail "$errors check(s) failed"
echo "ok: bumba-run agent, environment, exit codes, conflicts, --timeout, signals, joining, SIGKILL reclaim"
