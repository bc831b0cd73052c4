#!/usr/bin/env bash
# tests/integration/t_demo.sh - `make demo` must keep working, and its
# final check must mean something.
#
#   1. agents/demo.sh as `make demo` runs it: exit 0 within 60 s, the final
#      check passed ("final check: OK", "0 lost, 0 torn", one changelog
#      line per operation), the eight agents were all present in three
#      departments in `bumbactl status`, two each of C/Python through the
#      library/bumba-run finished, the transactions committed, the
#      SIGKILLed holder's lock was reclaimed, and - where the guard loads
#      (root, BTF) - the rogue write is in `bumbactl audit`, else the demo
#      said why there is no guard;
#   2. the negative control: the same demo with DEMO_NO_LOCK=1 (the agents
#      edit the shared files without bumba's lock) must fail, name a lost
#      update and never say OK - or the checks in (1) would prove nothing.
#
# Exit 0 pass, 1 fail.
set -u
cd "$(dirname "$0")/../.." || exit 1
export BUILD=${BUILD:-build}

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
grep -q '^final check: OK$' "$out" || fail "no 'final check: OK' line"
grep -q '^demo: OK — 8 agents in 3 departments, .*, 0 lost, 0 torn' "$out" ||
	fail "no 'demo: OK — 8 agents in 3 departments ... 0 lost, 0 torn' line"

# The dashboard, taken while every agent was registered.
status=$(sed -n '/bumbactl status: the dashboard/,/^== /p' "$out")
echo "$status" | grep -q '^  Active: 8/' || fail "bumbactl status did not show 8 active agents"
for d in 'technical: 4' 'design: 2' 'strategic: 2'; do
	echo "$status" | grep -q "^    $d\$" || fail "bumbactl status: no '$d' under By Department"
done
echo "$status" | grep -q '^TERRITORIES' || fail "bumbactl status: no TERRITORIES section"
echo "$status" | grep -q '^SAFETY STATUS' || fail "bumbactl status: no SAFETY STATUS section"

# Two C agents through the library, two through bumba-run, the same for
# Python: every one finished its work.
table=$(sed -n '/what each did/,/^$/p' "$out")
for how in 'C      library' 'C      bumba-run' 'Python library' 'Python bumba-run'; do
	[ "$(echo "$table" | grep -c "$how")" -eq 2 ] || fail "not two '$how' agents in the table"
done
grep -qE '^  transactions  [1-9][0-9]* committed' "$out" || fail "no transaction committed"
grep -qE '^  changelog     ([0-9]+) lines for \1 operations: 0 lost, 0 twice, 0 unexplained' "$out" ||
	fail "the changelog does not have exactly one line per operation"
grep -q 'died holding 1 lock(s); reclaimed' "$out" || fail "the SIGKILLed holder's lock was not reclaimed"

# The rogue write: caught by the guard where it loads, else said why not.
if grep -q 'the kernel guard saw it' "$out"; then
	sed -n '/== [0-9]*\. bumbactl audit/,/^== /p' "$out" | grep -q 'src/core/calc.c' ||
		fail "the guard is active but bumbactl audit does not show the rogue write"
	grep -q 'the rogue write caught by the guard)$' "$out" || fail "the summary does not say the guard caught it"
elif grep -q 'ready:.*guard active' "$out"; then
	fail "the guard is active but the demo did not report the rogue write caught"
else
	grep -q 'the guard is not loaded here' "$out" || fail "no guard, and no line saying why"
fi

echo
echo "== DEMO_NO_LOCK=1 bash agents/demo.sh (must fail)"
DEMO_NO_LOCK=1 timeout --kill-after=10 60 bash agents/demo.sh >"$out" 2>&1
rc=$?
# A failed demo keeps its directory for a look; not ours to keep.
kept=$(sed -n 's|^demo: kept \(/tmp/bumba-demo\.[A-Za-z0-9]*\) .*|\1|p' "$out")
[ -n "$kept" ] && rm -rf "$kept"
sed -n '/Final check/,$p' "$out"
[ "$rc" -eq 1 ] || fail "without the lock the demo exited with status $rc, expected 1"
grep -q 'LOST UPDATE' "$out" || fail "without the lock the final check did not find a lost update"
grep -q '^demo: OK' "$out" && fail "without the lock the demo still said OK"
grep -q '^final check: OK' "$out" && fail "without the lock the final check still said OK"

echo "PASS: t_demo"
