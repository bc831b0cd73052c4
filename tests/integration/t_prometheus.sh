#!/bin/sh
# t_prometheus.sh - a real Prometheus server (Debian's prometheus package)
# on loopback, in its own temporary directory, scraping a live bumbad every
# second with the shipped alerting rules loaded; its HTTP API is queried
# until bumba_agents_active shows the three agents this test registered
# (bumbactl lock holders), then 0 once they are gone.
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
need curl python3 prometheus

start_bumbad_http
trap _http_cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$TMPD/prom/data"
cat >"$TMPD/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/docs/prometheus/bumba-rules.yml
scrape_configs:
  - job_name: bumba
    static_configs:
      - targets: ['127.0.0.1:$PORT']
EOF

# A port picked free may be taken before Prometheus binds it: retry.
PROM_PID=
for attempt in 1 2 3; do
	PPORT=$(free_port)
	prometheus --config.file="$TMPD/prom/prometheus.yml" \
		--storage.tsdb.path="$TMPD/prom/data" \
		--web.listen-address="127.0.0.1:$PPORT" \
		--log.level=warn >"$TMPD/prom/log" 2>&1 &
	PROM_PID=$!
	EXTRA_PIDS=$PROM_PID
	if wait_until 20 sh -c "curl -s -m 2 http://127.0.0.1:$PPORT/-/ready | grep -q Ready"; then
		break
	fi
	kill "$PROM_PID" 2>/dev/null
	wait "$PROM_PID" 2>/dev/null
	PROM_PID=
done
[ -n "$PROM_PID" ] || { cat "$TMPD/prom/log" >&2; fail "Prometheus did not start"; }
PROM=http://127.0.0.1:$PPORT

# value EXPR: the value of an instant query (one series), "" if none.
value() {
	curl -s -m 5 --get --data-urlencode "query=$1" "$PROM/api/v1/query" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["data"]["result"] if d.get("status") == "success" else []
print(r[0]["value"][1] if len(r) == 1 else "")'
}
value_is() { [ "$(value "$1")" = "$2" ]; }

wait_until 30 value_is 'up{job="bumba"}' 1 || { cat "$TMPD/prom/log" >&2; fail "Prometheus never scraped bumbad"; }
wait_until 10 value_is 'bumba_agents_active' 0 || fail "bumba_agents_active is not 0 before the agents"

hold one.txt
hold two.txt
hold three.txt
wait_until 30 value_is 'bumba_agents_active' 3 ||
	fail "Prometheus never saw the 3 agents (last: '$(value bumba_agents_active)')"
value_is 'bumba_file_locks_active' 3 || fail "bumba_file_locks_active is not 3 in Prometheus"
value_is 'sum(bumba_agents_by_department{department="operations"})' 3 ||
	fail "bumba_agents_by_department is not 3 in Prometheus"
value_is 'bumba_agents_spawned_total' 3 || fail "bumba_agents_spawned_total is not 3"

# The shipped rules are loaded and evaluated without errors.
curl -s -m 5 "$PROM/api/v1/rules" | python3 -c '
import json, sys
d = json.load(sys.stdin)
groups = {g["name"]: g for g in d["data"]["groups"]}
assert {"bumba_safety_alerts", "bumba_availability"} <= set(groups), groups.keys()
for g in groups.values():
    for r in g["rules"]:
        assert r.get("health") in ("ok", "unknown"), (r["name"], r.get("health"), r.get("lastError"))
' || fail "the alerting rules are not loaded cleanly in Prometheus"

release_all
wait_until 30 value_is 'bumba_agents_active' 0 || fail "Prometheus never saw the agents leave"
value_is 'bumba_agents_spawned_total' 3 || fail "bumba_agents_spawned_total changed"
value_is 'increase(bumba_file_locks_acquired_total[1m]) >= 0' "" &&
	fail "no bumba_file_locks_acquired_total history in Prometheus"

kill "$PROM_PID"
wait "$PROM_PID" 2>/dev/null
EXTRA_PIDS=
stop_bumbad
echo "ok: Prometheus scraped bumbad and saw the agents come and go"
exit 0
