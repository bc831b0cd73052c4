#!/bin/sh
# t_config.sh - bumba.conf end to end:
#   - `bumbactl config validate`: the shipped example is ok (exit 0), a bad
#     file gets one FILE:LINE message per problem (exit 65), a missing one
#     exit 66;
#   - `bumbactl config show`: the values in effect and where each came from;
#   - bumbad reads the file, the environment wins over it and the command
#     line over both (capacities seen in `bumbactl status --json`, the
#     default lock timeout seen as a real timeout), and bumbactl finds the
#     socket the file names;
#   - bumbad refuses to start on a bad or missing --config (exit 78) and a
#     bad --http (exit 64).
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
need python3

TMPD=$(mktemp -d /tmp/bumba-config.XXXXXX)
WS=$TMPD/ws
mkdir -p "$WS"
unset BUMBA_SOCKET BUMBA_CONFIG
BUMBAD_PID=
trap _http_cleanup EXIT

# --- validate ----------------------------------------------------------------
"$CTL" config validate "$root/systemd/bumba.conf.example" >"$TMPD/out" 2>&1 ||
	{ cat "$TMPD/out" >&2; fail "the shipped example does not validate"; }
grep -q "bumba.conf.example: ok$" "$TMPD/out" || fail "validate did not say ok: $(cat "$TMPD/out")"
grep -q warning "$TMPD/out" && fail "the example (all defaults) draws warnings: $(cat "$TMPD/out")"

cat >"$TMPD/bad.conf" <<'EOF'
[fileLocking]
defaultTimeout = 30s
maxTimeout = 0
enablePriorityQueue = sometimes
[dashboard]
webPort = 65536
listenAddress = example.org
[agentIdentity]
maxAgent = 5
[logging]
level = info
[monitoring]
alertingThresholds.conflictRate = -0.1
auditLog = audit.jsonl
no equals sign here
EOF
"$CTL" config validate "$TMPD/bad.conf" >"$TMPD/out" 2>&1
rc=$?
[ $rc -eq 65 ] || { cat "$TMPD/out" >&2; fail "validate of a bad file exited $rc, want 65"; }
f=$TMPD/bad.conf
for want in \
	"$f:2: fileLocking.defaultTimeout: '30s' is not a whole number" \
	"$f:3: fileLocking.maxTimeout: 0 is out of range" \
	"$f:4: fileLocking.enablePriorityQueue: 'sometimes' is not a boolean" \
	"$f:6: dashboard.webPort: 65536 is out of range (0..65535)" \
	"$f:7: dashboard.listenAddress: 'example.org' is not a numeric" \
	"$f:9: unknown key 'maxAgent' in [agentIdentity]; did you mean 'maxAgents'?" \
	"$f:11: unknown section [logging]" \
	"$f:13: monitoring.alertingThresholds.conflictRate: -0.1 is out of range" \
	"$f:14: monitoring.auditLog: 'audit.jsonl' is not an absolute path" \
	"$f:15: expected 'key = value'" \
	"$f: 10 errors"; do
	grep -qF -- "$want" "$TMPD/out" || { cat "$TMPD/out" >&2; fail "validate did not say: $want"; }
done
[ "$(grep -c "^$f:[0-9]*: " "$TMPD/out")" -eq 10 ] || { cat "$TMPD/out" >&2; fail "not one line per problem"; }

"$CTL" config validate "$TMPD/nonexistent.conf" >/dev/null 2>&1
[ $? -eq 66 ] || fail "validate of a missing file did not exit 66"
# The environment is checked too, and names the variable.
BUMBA_DASHBOARD_REFRESHINTERVAL=fast "$CTL" config validate "$root/systemd/bumba.conf.example" \
	>"$TMPD/out" 2>&1
[ $? -eq 65 ] || fail "a bad BUMBA_* variable passed validation"
grep -q "^environment: BUMBA_DASHBOARD_REFRESHINTERVAL: dashboard.refreshInterval: 'fast'" \
	"$TMPD/out" || fail "the bad variable is not named: $(cat "$TMPD/out")"

# Every key is documented, in docs/configuration.md and bumba.conf(5).
"$CTL" config show "$root/systemd/bumba.conf.example" 2>/dev/null |
	sed -n 's/^\([A-Za-z.]*\) = .*/\1/p' >"$TMPD/keys"
[ "$(wc -l <"$TMPD/keys")" -ge 35 ] || fail "config show lists too few keys"
for k in $(cat "$TMPD/keys"); do
	grep -q "\`$k\`" "$root/docs/configuration.md" || fail "docs/configuration.md does not document $k"
	grep -qF "$k" "$root/docs/man/bumba.conf.5" || fail "bumba.conf(5) does not document $k"
	grep -qE "^;?$k +=" "$root/systemd/bumba.conf.example" ||
		fail "systemd/bumba.conf.example does not show $k"
done

# --- a configured supervisor ---------------------------------------------------
cat >"$TMPD/bumba.conf" <<EOF
[supervisor]
socket = $TMPD/conf.sock
workspaces = $WS
keeperLinger = 5
[fileLocking]
defaultTimeout = 1500
maxActiveLocks = 33
[agentIdentity]
maxAgents = 7
[dashboard]
enableWebInterface = false
refreshInterval = 250
EOF
"$CTL" config validate "$TMPD/bumba.conf" >/dev/null || fail "the test's configuration does not validate"
BUMBA_FILELOCKING_MAXACTIVELOCKS=44 "$CTL" config show "$TMPD/bumba.conf" >"$TMPD/show" ||
	fail "config show failed"
grep -qx "maxAgents = 7  ; $TMPD/bumba.conf:9" "$TMPD/show" || fail "show: maxAgents: $(cat "$TMPD/show")"
grep -qx "maxActiveLocks = 44  ; BUMBA_FILELOCKING_MAXACTIVELOCKS" "$TMPD/show" ||
	fail "show: the environment does not win over the file"
grep -qx "maxWaiters = 16384  ; default" "$TMPD/show" || fail "show: defaults"
# What show prints is a configuration that reads back the same.
"$CTL" config validate "$TMPD/show" >/dev/null 2>&1 || fail "config show's output does not validate"

(cd / && BUMBA_FILELOCKING_MAXACTIVELOCKS=44 exec "$BUILD/bumbad" --config "$TMPD/bumba.conf" \
	--max-agents 9 --no-guard 2>"$TMPD/bumbad.log") &
BUMBAD_PID=$!
wait_until 10 grep -q 'ready:' "$TMPD/bumbad.log" || { cat "$TMPD/bumbad.log" >&2; fail "bumbad did not start"; }
grep -q "configuration: $TMPD/bumba.conf" "$TMPD/bumbad.log" || fail "bumbad does not say which file it read"
grep -q "http: off" "$TMPD/bumbad.log" || fail "dashboard.enableWebInterface = false did not turn HTTP off"
# bumbactl finds the socket through the same file.
"$CTL" --config "$TMPD/bumba.conf" status --json >"$TMPD/status" 2>"$TMPD/err" ||
	{ cat "$TMPD/err" >&2; fail "bumbactl did not reach the socket named by the configuration"; }
json "$TMPD/status" '
assert d["agents"]["max"] == 9, d["agents"]     # command line over file (7)
assert d["locks"]["max"] == 44, d["locks"]      # environment over file (33)
'
# The file's defaultTimeout (1.5 s) is what an acquire without a timeout waits.
export BUMBA_CONFIG="$TMPD/bumba.conf"
cd "$WS" || fail "cd"
"$CTL" lock held -- sh -c 'touch ready; i=0; while [ ! -e go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done' &
HOLDERS=$!
wait_until 10 test -e ready || fail "the holder did not start"
t0=$(date +%s%N)
"$CTL" lock held -- true 2>/dev/null
rc=$?
t1=$(date +%s%N)
touch go
wait $HOLDERS
HOLDERS=
ms=$(((t1 - t0) / 1000000))
[ $rc -eq 75 ] || fail "the second lock did not time out (exit $rc)"
[ $ms -ge 1300 ] && [ $ms -lt 10000 ] || fail "the default timeout was ${ms} ms, want about 1500"
# watch takes its refresh interval from the file: 3 frames in about 0.5 s.
t0=$(date +%s%N)
"$CTL" watch --count 3 >/dev/null || fail "watch --count 3"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -ge 450 ] && [ $ms -lt 5000 ] || fail "watch with refreshInterval = 250 took ${ms} ms for 3 frames"
unset BUMBA_CONFIG
cd / || fail "cd /"
stop_bumbad

# --- refusals --------------------------------------------------------------------
"$BUILD/bumbad" --config "$TMPD/bad.conf" --socket "$TMPD/x.sock" --workspace "$WS" \
	>/dev/null 2>"$TMPD/err"
rc=$?
[ $rc -eq 78 ] || fail "bumbad with a bad configuration exited $rc, want 78"
grep -qF "$TMPD/bad.conf:2: fileLocking.defaultTimeout" "$TMPD/err" ||
	fail "bumbad does not say what is wrong: $(cat "$TMPD/err")"
"$BUILD/bumbad" --config "$TMPD/missing.conf" --socket "$TMPD/x.sock" --workspace "$WS" \
	>/dev/null 2>&1
[ $? -eq 78 ] || fail "bumbad with a missing --config did not exit 78"
for bad in 127.0.0.1 localhost:80 127.0.0.1:99999 on; do
	"$BUILD/bumbad" --http "$bad" --socket "$TMPD/x.sock" --workspace "$WS" >/dev/null 2>&1
	[ $? -eq 64 ] || fail "bumbad --http $bad was accepted"
done
BUMBA_FILELOCKING_DEFAULTTIMEOUT=never "$BUILD/bumbad" --socket "$TMPD/x.sock" \
	--workspace "$WS" >/dev/null 2>"$TMPD/err"
[ $? -eq 78 ] || fail "bumbad with a bad BUMBA_* variable did not exit 78"
grep -q "BUMBA_FILELOCKING_DEFAULTTIMEOUT" "$TMPD/err" || fail "the bad variable is not named"

echo "ok: configuration"
exit 0
