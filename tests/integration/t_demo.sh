#!/usr/bin/env bash
# tests/integration/t_demo.sh - `make demo` must keep working.
#
#   1. agents/demo.sh as `make demo` runs it (real bumbad, 8 contending
#      agents, a lock holder SIGKILLed): exit 0 and "demo: OK ... 0 lost"
#      within 60 s;
#   2. the negative control: the same demo with DEMO_NO_LOCK=1 (the agents
#      skip bumba's lock) must fail and name a lost update, or the checks
#      in (1) would prove nothing.
#
# Exit 0 pass, 1 fail.
set -u
cd "$(dirname "$0")/../.." || exit 1

out=$(mktemp /tmp/bumba-t_demo.XXXXXX)
trap 'rm -f "$out"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

echo "== bash agents/demo.sh"
timeout --kill-after=10 60 bash agents/demo.sh >"$out" 2>&1
rc=$?
cat "$out"
[ "$rc" -ne 124 ] || fail "the demo took longer than 60 s"
[ "$rc" -eq 0 ] || fail "the demo exited with status $rc"
grep -q '^demo: OK — ' "$out" || fail "no 'demo: OK' line in the demo's output"
grep -q '^demo: OK — .*, 0 lost' "$out" || fail "the demo did not report 0 lost updates"

echo
echo "== DEMO_NO_LOCK=1 bash agents/demo.sh (must fail)"
DEMO_NO_LOCK=1 timeout --kill-after=10 60 bash agents/demo.sh >"$out" 2>&1
rc=$?
# A failed demo keeps its directory for a look; not ours to keep.
kept=$(sed -n 's|^demo: kept \(/tmp/bumba-demo\.[A-Za-z0-9]*\) .*|\1|p' "$out")
[ -n "$kept" ] && rm -rf "$kept"
sed -n '/^== .*Verify/,$p' "$out"
[ "$rc" -eq 1 ] || fail "without the lock the demo exited with status $rc, expected 1"
grep -q 'lost update' "$out" || fail "without the lock the demo did not find a lost update"
grep -q '^demo: OK' "$out" && fail "without the lock the demo still said OK"

echo "PASS: t_demo"
