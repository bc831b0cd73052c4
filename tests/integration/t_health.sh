#!/bin/sh
# t_health.sh - /health and /ready of a live bumbad, healthy, then failing
# for real, then healthy again:
#
#   1. a healthy supervisor: 200, every component reported (segment,
#      supervisor, fileLocking, agentIdentity, territoryManager,
#      safeFileOps, guard, io_uring, dashboard) and the seed's figures;
#   2. the agent table full (bumbad started with --max-agents 2 and two
#      lock holders): agentIdentity unhealthy, /health and /ready 503, and a
#      third agent really is refused; the holders exit: 200 again;
#   3. the segment keeper killed (a crash of bumbad would now lose every
#      lock): supervisor degraded, /health 503, while /ready stays 200
#      because agents can still register.
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

# Inherited by bumbad and its keeper: how we find our own keeper.
BUMBA_TEST_TAG=t_health-$$-$(date +%s%N)
export BUMBA_TEST_TAG
start_bumbad_http --max-agents 2
trap _http_cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"

health_is() { # CODE: /health answers CODE
	[ "$(get /health "$TMPD/health")" = "$1" ]
}
ready_is() {
	[ "$(get /ready "$TMPD/ready")" = "$1" ]
}

# --- 1. healthy ------------------------------------------------------------
health_is 200 || { cat "$TMPD/health" >&2; fail "/health of an idle bumbad is not 200"; }
json "$TMPD/health" '
assert d["status"] == "healthy", d["status"]
c = d["components"]
for k in ("segment", "supervisor", "fileLocking", "agentIdentity", "territoryManager",
          "safeFileOps", "guard", "io_uring", "dashboard"):
    assert k in c and c[k]["status"], k
for k in ("segment", "supervisor", "fileLocking", "agentIdentity", "dashboard"):
    assert c[k]["status"] == "healthy", (k, c[k])
assert c["guard"]["status"] == "disabled", c["guard"]        # --no-guard
assert c["io_uring"]["status"] in ("available", "unavailable"), c["io_uring"]
assert c["supervisor"]["keeper"] == "alive", c["supervisor"]
assert c["agentIdentity"]["max"] == 2, c["agentIdentity"]
m = d["metrics"]
for k in ("activeAgents", "activeLocks", "memoryUsage", "cpuUsage"):
    assert k in m, k
assert m["activeAgents"] == 0 and m["memoryUsage"] > 0, m
assert d["timestamp"].endswith("Z") and d["version"], d
'
ready_is 200 || fail "/ready of an idle bumbad is not 200"
json "$TMPD/ready" 'assert d["ready"] is True, d'
[ "$(curl -s -m 5 -I -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] || fail "HEAD /health"

# --- 2. the agent table full, and back ------------------------------------
hold a.txt
hold b.txt
wait_until 15 health_is 503 || { cat "$TMPD/health" >&2; fail "/health never turned 503 with a full agent table"; }
json "$TMPD/health" '
assert d["status"] == "unhealthy", d["status"]
a = d["components"]["agentIdentity"]
assert a["status"] == "unhealthy" and a["active"] == 2, a
assert "full" in a["detail"], a
assert d["components"]["segment"]["status"] == "healthy", d
assert d["metrics"]["activeAgents"] == 2, d["metrics"]
'
ready_is 503 || fail "/ready is not 503 with a full agent table"
json "$TMPD/ready" 'assert d["ready"] is False and "full" in d["reason"], d'
# It is a real failure: a third agent cannot register.
"$CTL" lock c.txt -- true 2>"$TMPD/third"
rc=$?
[ $rc -eq 75 ] || fail "a third agent was not refused (exit $rc: $(cat "$TMPD/third"))"
grep -q "no free agent slot" "$TMPD/third" || fail "refusal not explained: $(cat "$TMPD/third")"

release_all
wait_until 15 health_is 200 || { cat "$TMPD/health" >&2; fail "/health did not come back to 200"; }
ready_is 200 || fail "/ready did not come back to 200"
"$CTL" lock c.txt -- true || fail "an agent cannot register after the others left"

# --- 3. the keeper killed ------------------------------------------------------
keeper=
for p in /proc/[0-9]*; do
	[ "$(cat "$p/comm" 2>/dev/null)" = bumbad-keeper ] || continue
	{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "BUMBA_TEST_TAG=$BUMBA_TEST_TAG" || continue
	keeper=${p#/proc/}
done
[ -n "$keeper" ] || fail "could not find this test's segment keeper"
kill -KILL "$keeper" || fail "cannot kill the keeper $keeper"
wait_until 10 health_is 503 || { cat "$TMPD/health" >&2; fail "/health still 200 without a keeper"; }
json "$TMPD/health" '
s = d["components"]["supervisor"]
assert d["status"] == "degraded", d["status"]
assert s["status"] == "degraded" and s["keeper"] == "gone", s
assert "keeper" in s["detail"], s
'
ready_is 200 || fail "/ready should stay 200 without a keeper: agents can still register"
"$CTL" lock d.txt -- true || fail "an agent cannot register without a keeper"

stop_bumbad
echo "ok: /health and /ready, failing and recovering"
exit 0
