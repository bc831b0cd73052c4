#!/bin/sh
# t_metrics.sh - /metrics of a live bumbad: `promtool check metrics`, every
# metric name of DESIGN.md decision 9 present with HELP and TYPE, counters
# and the wait histogram following real lock traffic, HEAD; then the shipped
# alerting rules (`promtool check rules`, `promtool test rules`) and the
# Grafana dashboard, whose every metric must exist on the live /metrics.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
. "$here/http_lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
need curl python3 promtool

start_bumbad_http
trap _http_cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"

# --- the exposition of an idle supervisor -----------------------------------
[ "$(get /metrics "$TMPD/m0")" = 200 ] || fail "GET /metrics did not answer 200"
promtool check metrics <"$TMPD/m0" >"$TMPD/lint" 2>&1 || {
	cat "$TMPD/lint" >&2
	fail "promtool check metrics found problems"
}
ctype=$(curl -s -m 5 -o /dev/null -w '%{content_type}' "$URL/metrics")
case $ctype in
"text/plain; version=0.0.4"*) ;;
*) fail "content type of /metrics is '$ctype'" ;;
esac
[ "$(curl -s -m 5 -I -o /dev/null -w '%{http_code}' "$URL/metrics")" = 200 ] || fail "HEAD /metrics"

# name [type]: the family is there with HELP and TYPE.
python3 - "$TMPD/m0" <<'EOF' || fail "metric families missing or malformed"
import re, sys
text = open(sys.argv[1]).read()
types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
want = {
    # DESIGN.md decision 9 (the seed's names)
    "bumba_file_locks_active": "gauge",
    "bumba_file_locks_acquired_total": "counter",
    "bumba_file_locks_conflicts_total": "counter",
    "bumba_file_lock_wait_time_seconds": "histogram",
    "bumba_agents_active": "gauge",
    "bumba_agents_spawned_total": "counter",
    "bumba_memory_usage_bytes": "gauge",
    "bumba_violations_total": "counter",
    # extras
    "bumba_up": "gauge",
    "bumba_segment_size_bytes": "gauge",
    "bumba_memory_limit_bytes": "gauge",
    "bumba_file_lock_timeouts_total": "counter",
    "bumba_file_lock_deadlocks_total": "counter",
    "bumba_file_lock_owner_died_total": "counter",
    "bumba_file_lock_leases_expired_total": "counter",
    "bumba_supervisor_generation": "gauge",
    "bumba_supervisor_heartbeat_age_seconds": "gauge",
    "process_cpu_seconds_total": "counter",
}
want.update({
    "bumba_territories_active": "gauge",
    "bumba_territory_conflicts_total": "counter",
    "bumba_territory_allocation_duration_seconds": "histogram",
    "bumba_territory_allocation_failures_total": "counter",
    "bumba_territory_claims_total": "counter",
})
for name, t in want.items():
    assert types.get(name) == t, (name, types.get(name))
    assert name in helps, name
ops = set(re.findall(r'^bumba_violations_total\{op="([a-z_]+)"\} 0$', text, re.M))
assert {"write", "truncate", "rename", "unlink", "mmap", "io_uring"} <= ops, ops
assert re.search(r"^bumba_up 1$", text, re.M)
assert re.search(r"^bumba_agents_active 0$", text, re.M)
print("families ok")
EOF

# --- real traffic -------------------------------------------------------------
hold a.txt
wait_until 10 sh -c "'$CTL' locks --json | grep -q a.txt" || fail "the holder never held a.txt"
# A waiter (a conflict), a try that times out, and an uncontended lock.
"$CTL" lock --timeout 20000 a.txt -- true &
waiter=$!
EXTRA_PIDS=$waiter
wait_until 10 sh -c "curl -s '$URL/metrics' | grep -q '^bumba_file_locks_waiting 1$'" ||
	fail "bumba_file_locks_waiting never showed the waiter"
"$CTL" lock --timeout 0 a.txt -- true 2>/dev/null
[ $? -eq 75 ] || fail "a try on a held lock did not time out"
"$CTL" lock b.txt -- true || fail "lock b.txt"
get /metrics "$TMPD/m1" >/dev/null
grep -q '^bumba_agents_active 2$' "$TMPD/m1" || fail "bumba_agents_active is not 2 (holder + waiter)"
grep -q '^bumba_file_locks_active 1$' "$TMPD/m1" || fail "bumba_file_locks_active is not 1"
grep -q '^bumba_agents_by_department{department="operations"} 2$' "$TMPD/m1" ||
	fail "bumba_agents_by_department does not count the two bumbactl agents"
release_all
wait $waiter || fail "the waiter failed"
EXTRA_PIDS=
get /metrics "$TMPD/m2" >/dev/null
promtool check metrics <"$TMPD/m2" >/dev/null 2>&1 || fail "promtool check metrics after traffic"
python3 - "$TMPD/m2" <<'EOF' || fail "counters do not match the traffic"
import re, sys
text = open(sys.argv[1]).read()
def v(name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, name
    return float(m.group(1))
acq = v("bumba_file_locks_acquired_total")
assert acq == 3, acq  # holder, waiter, b.txt
assert v("bumba_file_locks_conflicts_total") >= 1
assert v("bumba_file_lock_timeouts_total") == 1
assert v("bumba_agents_spawned_total") == 4
assert v("bumba_agents_active") == 0
assert v("bumba_file_locks_active") == 0
assert v("bumba_file_locks_released_total") == 3
# The histogram: cumulative, +Inf == _count == granted acquisitions, and
# the waiter's wait (> 1 ms) in the sum.
buckets = [(b, float(c)) for b, c in re.findall(
    r'^bumba_file_lock_wait_time_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)]
assert buckets[-1][0] == "+Inf", buckets
counts = [c for _, c in buckets]
assert counts == sorted(counts), counts
assert counts[-1] == v("bumba_file_lock_wait_time_seconds_count") == acq, (counts, acq)
assert v("bumba_file_lock_wait_time_seconds_sum") > 0.001
print("counters ok: %d acquisitions" % acq)
EOF

# /dashboard/status is `bumbactl status --json`; /dashboard/safety its safety.
[ "$(get /dashboard/status "$TMPD/ds")" = 200 ] || fail "/dashboard/status"
"$CTL" status --json >"$TMPD/cs" || fail "bumbactl status --json"
[ "$(get /dashboard/safety "$TMPD/dsafe")" = 200 ] || fail "/dashboard/safety"
python3 - "$TMPD/ds" "$TMPD/cs" "$TMPD/dsafe" <<'PY' || fail "/dashboard/status differs from bumbactl status --json"
import json, sys
a, b, safety = (json.load(open(f)) for f in sys.argv[1:4])
for d in (a, b):
    d["supervisor"].pop("heartbeat_age_ms")
# Violations are counted in bumbad: known to it, unknown (null) to a reader
# of the segment alone.
assert a["safety"]["violations"] == 0 and b["safety"]["violations"] is None, (a, b)
b["safety"]["violations"] = 0
assert a == b, (a, b)
assert safety == a["safety"], (safety, a["safety"])
assert a["safe"] is True and a["safety"]["overall"] in ("SAFE", "WARNING"), a
assert a["safety"]["issue_count"] == 1 and a["safety"]["issues"][0]["kind"] == "timeouts", a
PY

# --- territories (when this bumbactl can claim) ---------------------------------
if "$CTL" claim --help >/dev/null 2>&1; then
	mkdir -p src
	"$CTL" claim --exclusive src -- sh -c 'touch claimed; i=0; while [ ! -e unclaim ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done' &
	claimer=$!
	EXTRA_PIDS=$claimer
	wait_until 10 test -e claimed || fail "the claim never started"
	"$CTL" claim --exclusive src/a.c -- true 2>/dev/null && fail "a conflicting claim succeeded"
	get /metrics "$TMPD/m3" >/dev/null
	touch unclaim
	wait $claimer || fail "the claimer failed"
	EXTRA_PIDS=
	promtool check metrics <"$TMPD/m3" >/dev/null 2>&1 || fail "promtool check metrics with territories"
	python3 - "$TMPD/m3" <<'PY' || fail "territory metrics do not match the claims"
import re, sys
text = open(sys.argv[1]).read()
def v(name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, name
    return float(m.group(1))
assert v("bumba_territories_active") == 1
assert v('bumba_territories_by_type{type="exclusive"}') == 1
assert v("bumba_territory_paths") == 1
assert v("bumba_territory_claims_total") >= 1
assert v("bumba_territory_conflicts_total") >= 1
assert v("bumba_territory_allocation_failures_total") >= 1
inf = v('bumba_territory_allocation_duration_seconds_bucket{le="+Inf"}')
assert inf == v("bumba_territory_allocation_duration_seconds_count") >= 1
print("territory metrics ok")
PY
fi

# --- the shipped rules and dashboard -------------------------------------------
promtool check rules "$root/docs/prometheus/bumba-rules.yml" >"$TMPD/rules" 2>&1 || {
	cat "$TMPD/rules" >&2
	fail "promtool check rules"
}
(cd "$root/docs/prometheus" && promtool test rules bumba-rules.test.yml) >"$TMPD/rtest" 2>&1 || {
	cat "$TMPD/rtest" >&2
	fail "promtool test rules"
}
python3 - "$TMPD/m2" "$root/docs/prometheus/bumba-rules.yml" \
	"$root/docs/grafana/bumba-dashboard.json" <<'EOF' || fail "rules or dashboard use metrics bumbad does not export"
import json, re, sys
text = open(sys.argv[1]).read()
families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
def base(n):
    for s in ("_bucket", "_sum", "_count"):
        if n.endswith(s) and n[: -len(s)] in families:
            return n[: -len(s)]
    return n
rules = open(sys.argv[2]).read()
exprs = re.findall(r"expr: (.*?)(?=\n\s+(?:for|labels):)", rules, re.S)
dash = json.load(open(sys.argv[3]))
assert dash["title"] and dash["panels"], "empty dashboard"
for p in dash["panels"]:
    for t in p.get("targets", []):
        exprs.append(t["expr"])
used = set()
for e in exprs:
    used |= set(re.findall(r"\b((?:bumba|process)_[a-z_]+)", e))
missing = sorted(n for n in used if base(n) not in families)
assert not missing, missing
print("%d metric names used by rules and dashboard, all exported" % len(used))
EOF

stop_bumbad
echo "ok: /metrics, rules and dashboard"
exit 0
