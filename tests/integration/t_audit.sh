#!/bin/sh
# t_audit.sh - the audit log (monitoring.auditLog): JSON lines for the
# supervisor's start and stop and each agent's registration and exit (with
# the locks it still held when it died), reopened on SIGHUP after a
# logrotate-style move; and inactive agents (agentIdentity.inactiveTimeout)
# reported in the audit log, bumbad's log, /metrics and the dashboard.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/http_lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
need curl python3

CONF=$(mktemp /tmp/bumba-audit-conf.XXXXXX)
AUDIT_DIR=$(mktemp -d /tmp/bumba-audit.XXXXXX)
cat >"$CONF" <<EOF
[monitoring]
auditLog = $AUDIT_DIR/audit.jsonl
[agentIdentity]
cleanupInactiveAgents = true
inactiveTimeout = 1000
EOF
start_bumbad_http --config "$CONF"
cleanup() {
	_http_cleanup
	rm -rf "$CONF" "$AUDIT_DIR"
}
trap cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"
A=$AUDIT_DIR/audit.jsonl

# events FILE: the "event" fields, one per line.
events() {
	python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert d["ts"].endswith("Z") and d["event"], d
    print(d["event"])' "$1" || fail "$1 is not JSON lines: $(cat "$1")"
}

wait_until 5 test -s "$A" || fail "no audit log at $A"
[ "$(events "$A")" = "supervisor.started" ] || fail "first event: $(cat "$A")"

"$CTL" lock one.txt -- true || fail "lock one.txt"
# An agent killed while it holds a lock.
"$CTL" lock two.txt -- sh -c 'touch held; exec sleep 30' &
victim=$!
wait_until 10 test -e held || fail "the holder did not start"
# Inactive after 1 s without activity: reported once, in every channel.
wait_until 10 grep -q 'no activity for' "$TMPD/bumbad.log" || fail "bumbad never reported the idle agent"
[ "$(get /metrics "$TMPD/m")" = 200 ] || fail "/metrics"
grep -q '^bumba_agents_inactive 1$' "$TMPD/m" || fail "bumba_agents_inactive is not 1"
"$CTL" --config "$CONF" status >"$TMPD/status" || fail "status"
grep -q '^  Inactive: 1$' "$TMPD/status" || fail "the dashboard does not show the idle agent: $(cat "$TMPD/status")"
grep -q 'show no activity for over 1 s' "$TMPD/status" || fail "no recommendation about the idle agent"
kill -KILL "$(pgrep -P "$victim" sleep || echo none)" 2>/dev/null
kill -KILL "$victim"
wait "$victim" 2>/dev/null
wait_until 10 sh -c "grep -q agent.died_holding_locks '$A'" || fail "no died_holding_locks event: $(cat "$A")"

# logrotate: move the file away, SIGHUP, and the next events go to a new one.
mv "$A" "$A.1"
kill -HUP "$BUMBAD_PID"
wait_until 5 grep -q 'SIGHUP: reopened the audit log' "$TMPD/bumbad.log" || fail "no reopen on SIGHUP"
"$CTL" lock three.txt -- true || fail "lock three.txt"
wait_until 5 test -s "$A" || fail "no new audit log after SIGHUP"
stop_bumbad

events "$A.1" >"$TMPD/ev1"
events "$A" >"$TMPD/ev2"
for e in supervisor.started agent.registered agent.exited agent.inactive agent.died_holding_locks; do
	grep -qx "$e" "$TMPD/ev1" || fail "event $e missing before the rotation: $(cat "$TMPD/ev1")"
done
[ "$(grep -c '^agent.registered$' "$TMPD/ev1")" -eq 2 ] || fail "not 2 registrations before the rotation"
[ "$(cat "$TMPD/ev2" | tr '\n' ' ')" = "agent.registered agent.exited supervisor.stopped " ] ||
	fail "events after the rotation: $(cat "$TMPD/ev2")"
python3 - "$A.1" <<'EOF' || fail "event fields"
import json, re, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
reg = [e for e in ev if e["event"] == "agent.registered"]
for e in reg:
    assert re.fullmatch(r"Command-bumbactl-\d+-[0-9a-f]{8}", e["agent"]), e
    assert e["department"] == "operations" and e["pid"] > 0, e
died = [e for e in ev if e["event"] == "agent.died_holding_locks"][0]
assert died["locks_held"] == 1, died
idle = [e for e in ev if e["event"] == "agent.inactive"]
victim = [e for e in idle if e["agent"] == died["agent"]]
assert len(victim) == 1 and victim[0]["idle_ms"] >= 1000, idle
EOF

echo "ok: audit log"
exit 0
