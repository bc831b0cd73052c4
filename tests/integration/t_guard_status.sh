#!/bin/bash
# t_guard_status.sh - the guard's count reaches the tools that read only
# the segment: `bumbactl status` shows no violations and SAFE before a
# bypassing write, then the violation (and an unsafe verdict) after it, in
# the human and the JSON form, agreeing with /dashboard/safety.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/guard_lib.sh"
guard_preflight

guard_tmp
echo "original" >"$WS/victim.txt"
start_guarded
CTL=$BUILD/bumbactl

j0=$("$CTL" status --json) || fail "bumbactl status --json failed"
v0=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["safety"]["violations"])' "$j0")
[ "$v0" = 0 ] || fail "violations before any bypass: $v0 (want 0)"

# A process that is no agent writes into the workspace.
echo "rogue" >>"$WS/victim.txt"
guard_sync
for _ in $(seq 100); do
	j1=$("$CTL" status --json)
	v1=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["safety"]["violations"])' "$j1")
	[ "$v1" -ge 1 ] 2>/dev/null && break
	sleep 0.05
done
[ "$v1" -ge 1 ] 2>/dev/null || fail "bumbactl status --json shows no violation after a bypass: $j1"
safe=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["safety"]["safe"])' "$j1")
[ "$safe" = False ] || fail "status still SAFE after a violation"
"$CTL" status | grep -q "Violations: [1-9]" || fail "human status has no Violations line"
echo "ok: bumbactl status shows the guard's violations ($v1)"
stop_bumbad
exit 0
