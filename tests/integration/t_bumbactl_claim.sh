#!/bin/sh
# t_bumbactl_claim.sh - `bumbactl claim PATH... -- COMMAND` and
# `bumbactl territories`: COMMAND's exit status passes through; a conflict
# is exit 73 with every conflict listed and COMMAND not run; shared claims
# overlap; a `bumbactl lock` holder in the way is listed as a lock, and a
# claim refuses another agent's exclusive lock inside it (77); a SIGKILLed
# claimer's territory is reclaimed; territoryManagement.defaultTimeout ends
# a claim through bumbad's sweep; bad usage 64, no supervisor 69, a path
# outside the workspace 65; `territories --json` is valid JSON with the
# documented members; `status` shows the real TERRITORIES counts.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
command -v python3 >/dev/null 2>&1 || skip "python3 is missing (JSON checks)"

# expect STATUS COMMAND...: runs COMMAND, stdout to $TMPD/out, stderr to
# $TMPD/err, and checks its exit status.
expect() {
	want=$1
	shift
	"$@" >"$TMPD/out" 2>"$TMPD/err"
	got=$?
	[ "$got" -eq "$want" ] || {
		cat "$TMPD/out" "$TMPD/err" >&2
		fail "'$*' exited $got, want $want"
	}
}

# wait_for FILE...: until every FILE exists, at most 10 s.
wait_for() {
	for f in "$@"; do
		n=0
		while [ ! -e "$f" ]; do
			n=$((n + 1))
			[ $n -le 200 ] || fail "$f did not appear within 10 s"
			sleep 0.05
		done
	done
}

# stderr_has TEXT: the last expect's stderr has a line equal to TEXT.
stderr_line() {
	grep -qxF -- "$1" "$TMPD/err" || {
		cat "$TMPD/err" >&2
		fail "stderr has no line '$1'"
	}
}

stderr_has() {
	grep -qF -- "$1" "$TMPD/err" || {
		cat "$TMPD/err" >&2
		fail "stderr does not say '$1'"
	}
}

# hold NAME ARGS...: runs `bumbactl ARGS... -- sh -c ...` in the background:
# COMMAND touches NAME.ready, then waits (at most 30 s) for NAME.go.  Its
# pid is in $held; wait_for NAME.ready before relying on it.
hold() {
	name=$1
	shift
	"$CTL" "$@" -- sh -c \
		'touch "$1.ready"; i=0; while [ ! -e "$1.go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done' \
		sh "$name" &
	held=$!
	BG="$BG $held"
}

# The id of the agent that holds the territory claiming PATH (absolute),
# from `territories --json`.
owner_of() {
	"$CTL" territories --json | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if sys.argv[1] in t["paths"]:
        print(t["owner"])
        break
' "$1"
}

# Background holders are killed on exit, so that a failing test leaves
# nothing behind.  Replaces lib.sh's EXIT trap, and calls it.
BG=
cleanup() {
	[ -z "$BG" ] || kill $BG 2>/dev/null
	if command -v _bumba_cleanup >/dev/null 2>&1; then _bumba_cleanup; else stop_bumbad; fi
}

start_bumbad
trap cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"
mkdir -p src/lib docs

# --- 1. COMMAND's status is ours; the territory is released after ---------
expect 0 "$CTL" claim src -- true
expect 3 "$CTL" claim src docs -- sh -c 'exit 3'
expect 0 "$CTL" claim --shared src -- sh -c 'test "$1" = "a b"' sh "a b"
expect 143 "$CTL" claim src -- sh -c 'kill -TERM $$'
out=$(echo hello | "$CTL" claim --monitored src -- cat) || fail "claim -- cat failed"
[ "$out" = hello ] || fail "stdin/stdout not passed through: got '$out'"
env=$("$CTL" claim --shared src -- sh -c 'echo "$BUMBA_TERRITORY_ID $BUMBA_TERRITORY_TYPE $BUMBA_TERRITORY_OWNER"')
set -- $env
[ $# -eq 3 ] && [ "$1" -gt 0 ] && [ "$2" = shared ] || fail "COMMAND's environment: '$env'"
case $3 in Command-bumbactl-*) ;; *) fail "BUMBA_TERRITORY_OWNER is '$3'" ;; esac
# Nothing is left behind by all of that.
n=$("$CTL" territories --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 0 ] || fail "$n territories left after the commands ended"

# --- 2. conflicts: 73, every conflict listed, COMMAND not run ---------------
hold A claim --title "holder A" src/lib docs/api.md
holderA=$held
wait_for A.ready
hold B claim --shared docs/guide
holderB=$held
wait_for B.ready
ownerA=$(owner_of "$WS/src/lib")
ownerB=$(owner_of "$WS/docs/guide")
[ -n "$ownerA" ] && [ -n "$ownerB" ] || fail "holders not found in 'territories --json'"

# Exclusive over both holders: three conflicts, one a line, in the
# contract's words.
expect 73 "$CTL" claim src docs free/x -- touch ran.1
stderr_line "bumbactl: conflict: $WS/src/lib held by $ownerA (exclusive)"
stderr_line "bumbactl: conflict: $WS/docs/api.md held by $ownerA (exclusive)"
stderr_line "bumbactl: conflict: $WS/docs/guide held by $ownerB (shared)"
[ "$(grep -c '^bumbactl: conflict: ' "$TMPD/err")" -eq 3 ] || {
	cat "$TMPD/err" >&2
	fail "want exactly 3 conflict lines"
}
[ ! -e ran.1 ] || fail "COMMAND ran despite the conflict"
# All or nothing: free/x was not claimed.
expect 0 "$CTL" claim free/x -- true
# A file below a claimed directory, and a directory above a claimed file.
expect 73 "$CTL" claim src/lib/a.c -- touch ran.2
stderr_line "bumbactl: conflict: $WS/src/lib held by $ownerA (exclusive)"
expect 73 "$CTL" claim --monitored docs -- touch ran.2
[ "$(grep -c '^bumbactl: conflict: ' "$TMPD/err")" -eq 2 ] || fail "want 2 conflicts under docs"
# A sibling with a common prefix is not a conflict.
expect 0 "$CTL" claim src/libx docs/api.mdx -- true
# SHARED joins SHARED, nothing else does.
expect 0 "$CTL" claim --shared docs/guide/ch1 -- true
expect 73 "$CTL" claim --monitored docs/guide -- touch ran.2
expect 73 "$CTL" claim --exclusive docs/guide -- touch ran.2
[ ! -e ran.2 ] || fail "COMMAND ran despite a conflict"
# --json: the list on stdout too.
expect 73 "$CTL" claim --json src docs -- touch ran.3
python3 - "$TMPD/out" "$WS" "$ownerA" "$ownerB" <<'EOF' || fail "claim --json conflict list is wrong: $(cat "$TMPD/out")"
import json, sys
d = json.load(open(sys.argv[1]))
ws, a, b = sys.argv[2:5]
assert d["claimed"] is False and d["total"] == 3 and d["listed"] == 3, d
got = {(c["path"], c["holder"], c["type"]) for c in d["conflicts"]}
assert got == {(ws + "/src/lib", a, "exclusive"), (ws + "/docs/api.md", a, "exclusive"),
               (ws + "/docs/guide", b, "shared")}, got
EOF
[ ! -e ran.3 ] || fail "COMMAND ran despite the conflict (--json)"

# --- 3. territories --json --------------------------------------------------
"$CTL" territories --json >"$TMPD/terr.json" || fail "territories --json failed"
python3 -m json.tool "$TMPD/terr.json" >/dev/null || fail "territories --json is not JSON: $(cat "$TMPD/terr.json")"
python3 - "$TMPD/terr.json" "$WS" "$ownerA" "$ownerB" <<'EOF' || fail "territories --json: wrong content"
import json, sys
ts = json.load(open(sys.argv[1]))
ws, a, b = sys.argv[2:5]
assert isinstance(ts, list) and len(ts) == 2, ts
keys = {"id", "type", "owner", "title", "n_paths", "paths", "created_at", "created_ms",
        "age_ms", "claim_ns", "conflicts_met", "writes_seen", "expires_in_ms"}
for t in ts:
    assert keys <= set(t), set(t) ^ keys
    assert isinstance(t["id"], int) and t["id"] > 0
    assert t["n_paths"] == len(t["paths"]), t
    assert t["age_ms"] >= 0 and t["claim_ns"] > 0 and t["expires_in_ms"] is None
    assert t["created_at"].endswith("Z")
ta = next(t for t in ts if t["owner"] == a)
tb = next(t for t in ts if t["owner"] == b)
assert ta["type"] == "exclusive" and ta["title"] == "holder A", ta
assert sorted(ta["paths"]) == [ws + "/docs/api.md", ws + "/src/lib"], ta
assert tb["type"] == "shared" and tb["paths"] == [ws + "/docs/guide"] and tb["title"] == "sh", tb
# Every failed claim above met A's territory, and B's most times.
assert ta["conflicts_met"] >= 4 and tb["conflicts_met"] >= 3, (ta, tb)
assert ts[0]["id"] < ts[1]["id"]
EOF
# The human table: a header and one line per territory.
"$CTL" territories >"$TMPD/terr.txt" || fail "territories failed"
head -n 1 "$TMPD/terr.txt" | grep -q '^ID  *TYPE  *OWNER  *TITLE  *PATHS  *AGE  *CONFLICTS  *WRITES  *CLAIMED' ||
	fail "territories header: $(head -n 1 "$TMPD/terr.txt")"
[ "$(wc -l <"$TMPD/terr.txt")" -eq 3 ] || fail "territories: want 3 lines, got $(cat "$TMPD/terr.txt")"
grep -q "holder A  *2 .*$WS/docs/api.md,$WS/src/lib\$" "$TMPD/terr.txt" ||
	fail "territories does not show A: $(cat "$TMPD/terr.txt")"
# status has the TERRITORIES section with the real counts.
"$CTL" status >"$TMPD/status.txt" || fail "status failed"
for line in "Active: 2" "Files Managed: 3" "Exclusive: 1" "Shared: 1" "Monitored: 0"; do
	sed -n '/^TERRITORIES/,/^$/p' "$TMPD/status.txt" | grep -qF "  $line" ||
		fail "status TERRITORIES lacks '$line': $(cat "$TMPD/status.txt")"
done
"$CTL" status --json | python3 -c '
import json, sys
t = json.load(sys.stdin)["territories"]
assert t["active"] == 2 and t["files"] == 3 and t["exclusive"] == 1 and t["shared"] == 1, t
assert t["conflicts"] >= 6 and t["claims"] >= 10, t
' || fail "status --json territories are wrong"

touch A.go B.go
wait $holderA || fail "holder A failed"
wait $holderB || fail "holder B failed"
expect 0 "$CTL" claim src docs -- true

# --- 4. two --shared claims run at the same time ----------------------------
# Each sharer marks itself inside and waits (at most 5 s) for the other's
# mark: both succeed only if both held their claims at once.
sharer() {
	exec "$CTL" claim --shared shared/tree -- sh -c \
		'touch "$1.in"; i=0; while [ ! -e "$2.in" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done; [ -e "$2.in" ]' \
		sh "$1" "$2"
}
sharer a b &
s1=$!
sharer b a &
s2=$!
BG="$BG $s1 $s2"
wait $s1 || fail "first sharer never saw the second inside: shared claims did not overlap"
wait $s2 || fail "second sharer never saw the first inside: shared claims did not overlap"

# --- 5. locks and claims ----------------------------------------------------
# A claim over another agent's exclusive lock: listed as a lock.
hold L lock src/locked.c
holderL=$held
wait_for L.ready
expect 73 "$CTL" claim src -- touch ran.5
grep -Eqx "bumbactl: conflict: $WS/src/locked.c held by Command-bumbactl-[^ ]+ \(lock\)" "$TMPD/err" || {
	cat "$TMPD/err" >&2
	fail "the lock holder is not listed as a lock"
}
# So does a SHARED claim; a MONITORED claim lives with file locks.
expect 73 "$CTL" claim --shared src/locked.c -- touch ran.5
stderr_has "(lock)"
expect 0 "$CTL" claim --monitored src -- true
touch L.go
wait $holderL || fail "lock holder failed"
# Another agent's shared lock (a reader) is no conflict.
hold R lock --shared src/read.c
holderR=$held
wait_for R.ready
expect 0 "$CTL" claim src -- true
touch R.go
wait $holderR || fail "shared lock holder failed"
# A claim refuses another agent's exclusive lock inside it: lock exits 77
# (EX_NOPERM) at once, without waiting for its timeout; shared locks (reads)
# are fine.
hold C claim src
holderC=$held
wait_for C.ready
expect 77 "$CTL" lock --timeout 5000 src/deep/file.c -- touch ran.5
stderr_has "lies in another agent's exclusive territory"
expect 0 "$CTL" lock --shared --timeout 0 src/deep/file.c -- true
[ ! -e ran.5 ] || fail "COMMAND ran despite the territory"
touch C.go
wait $holderC || fail "claim holder C failed"
expect 0 "$CTL" lock --timeout 0 src/deep/file.c -- true
# Inside a SHARED claim nobody writes: exclusive locks are refused too.
hold S claim --shared docs
holderS=$held
wait_for S.ready
expect 77 "$CTL" lock docs/x -- touch ran.5
touch S.go
wait $holderS || fail "shared holder failed"

# --- 6. a SIGKILLed claimer's territory is reclaimed ------------------------
hold K claim kill/zone
holderK=$held
wait_for K.ready
expect 73 "$CTL" claim kill -- true
# (stderr away meanwhile: bash reports a job killed by a signal)
exec 3>&2 2>/dev/null
kill -KILL $holderK
wait $holderK
exec 2>&3 3>&-
# bumbad reclaims on the pidfd; COMMAND gets SIGTERM (PDEATHSIG).  Another
# claim succeeds within about a second.
ok=
for _ in $(seq 20); do
	if "$CTL" claim kill -- true 2>/dev/null; then
		ok=1
		break
	fi
	sleep 0.05
done
[ -n "$ok" ] || fail "the SIGKILLed claimer's territory was not reclaimed within 1 s"

# --- 7. bad usage: 64; no supervisor: 69; bad path: 65 ----------------------
for args in "src touch ran.u" "src --" "-- -- true" "" "--bogus src -- true" "--title" \
	"--title $(printf '%070d' 0) src -- true"; do
	# shellcheck disable=SC2086 # split on purpose
	expect 64 "$CTL" claim $args
	head -n 1 "$TMPD/err" | grep -q '^bumbactl: ' || fail "no reason for 'claim $args'"
done
[ ! -e ran.u ] || fail "COMMAND ran despite bad usage"
BUMBA_SOCKET=$TMPD/nobody.sock expect 69 "$CTL" claim src -- touch ran.7
expect 69 "$CTL" --socket "$TMPD/nobody.sock" territories
expect 65 "$CTL" claim src /etc/passwd -- touch ran.7
stderr_has "bad claim path /etc/passwd: not inside the workspace"
expect 65 "$CTL" claim ../x -- touch ran.7
[ ! -e ran.7 ] || fail "COMMAND ran on a bad path or without a supervisor"
# A path may start with '-' after a first '--'.
expect 0 "$CTL" claim -- -odd src -- true
expect 127 "$CTL" claim src -- no-such-command-bumba-test

# --- 8. over 64 conflicts: 64 listed, then "… and N more" -------------------
i=0
paths=
while [ $i -lt 70 ]; do
	paths="$paths many/f$i"
	i=$((i + 1))
done
# shellcheck disable=SC2086
hold M claim $paths
holderM=$held
wait_for M.ready
# shellcheck disable=SC2086
expect 73 "$CTL" claim $paths -- touch ran.8
[ "$(grep -c '^bumbactl: conflict: ' "$TMPD/err")" -eq 64 ] || fail "want 64 conflict lines"
stderr_line "bumbactl: … and 6 more"
touch M.go
wait $holderM || fail "holder M failed"

stop_bumbad

# --- 9. territoryManagement.defaultTimeout: bumbad's sweep ends a claim -----
cfg=$(mktemp /tmp/bumba-claim-conf.XXXXXX) || fail "mktemp"
printf '[territoryManagement]\ndefaultTimeout = 700\n' >"$cfg"
rm -rf "$TMPD"
start_bumbad --config "$cfg"
trap 'rm -f "$cfg"; cleanup' EXIT
cd "$WS" || fail "cannot cd to $WS"
hold T claim --title expiring tmo 2>"$TMPD/T.err"
holderT=$held
wait_for T.ready
"$CTL" territories --json | python3 -c '
import json, sys
t = json.load(sys.stdin)
assert len(t) == 1 and t[0]["title"] == "expiring", t
assert t[0]["expires_in_ms"] is not None and 0 < t[0]["expires_in_ms"] <= 700, t
' || fail "territories --json does not show the expiry"
expect 73 "$CTL" claim tmo -- true
# Expired after 0.7 s (the sweep runs every heartbeat): free within 3 s,
# while the first COMMAND still runs.
ok=
for _ in $(seq 60); do
	if "$CTL" claim tmo -- true 2>/dev/null; then
		ok=1
		break
	fi
	sleep 0.05
done
[ -n "$ok" ] || fail "the territory did not expire after territoryManagement.defaultTimeout"
kill -0 $holderT 2>/dev/null || fail "the first claimer ended early"
touch T.go
wait $holderT || fail "the expired claimer failed"
# The claimer says that its territory lapsed under it.
grep -q '^bumbactl: warning: releasing territory [0-9]*: ' "$TMPD/T.err" ||
	fail "the expired claimer did not warn: $(cat "$TMPD/T.err")"
grep -q 'timed out' "$TMPD/bumbad.log" || fail "bumbad did not log the expiry"
stop_bumbad
echo "ok: bumbactl claim, territories"
exit 0
