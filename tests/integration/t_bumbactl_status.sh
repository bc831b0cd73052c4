#!/bin/sh
# t_bumbactl_status.sh - the read-only views: `bumbactl status`, `agents`
# and `locks`, human and --json, against a live bumbad with an exclusive
# lock, a shared lock with two holders and a waiter, then after they are
# gone.  The JSON is checked with python3 (json.tool for syntax, then the
# fields), the human output with grep.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
command -v python3 >/dev/null 2>&1 || skip "python3 is needed to check the JSON"

# run NAME ARGS...: bumbactl ARGS > $TMPD/NAME, must exit 0; --json output
# must be valid JSON.
run() {
	name=$1
	shift
	"$CTL" "$@" >"$TMPD/$name" 2>"$TMPD/err" || {
		cat "$TMPD/err" >&2
		fail "'bumbactl $*' exited $?"
	}
	case " $* " in
	*" --json "*)
		python3 -m json.tool "$TMPD/$name" >/dev/null ||
			fail "'bumbactl $*' printed invalid JSON: $(cat "$TMPD/$name")"
		;;
	esac
}

# has NAME REGEX: the output NAME has a line matching REGEX (grep -E).
has() {
	grep -qE -- "$2" "$TMPD/$1" || {
		cat "$TMPD/$1" >&2
		fail "output of $1 has no line matching '$2'"
	}
}

# check NAME PYTHON: runs PYTHON with `d` bound to the parsed JSON of NAME,
# and env variables as `E`; an AssertionError fails the test.
check() {
	python3 -c "
import json, os, re, sys
E = os.environ
d = json.load(open(sys.argv[1]))
$2
" "$TMPD/$1" || {
		cat "$TMPD/$1" >&2
		fail "JSON check on $1 failed"
	}
}

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

# Background holders are killed on exit (bumbactl passes the SIGTERM on to
# COMMAND), so a failing test leaves nothing behind holding the pipe of
# whoever runs it.  Replaces lib.sh's EXIT trap, and calls it.
BG=
cleanup() {
	[ -z "$BG" ] || kill $BG 2>/dev/null
	if command -v _bumba_cleanup >/dev/null 2>&1; then _bumba_cleanup; else stop_bumbad; fi
}

start_bumbad
trap cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"
export BUMBAD_PID WS

# --- an idle supervisor -----------------------------------------------------
run status0 status
has status0 '^AGENTS$'
has status0 '^  Active: 0/[0-9,]+$'
has status0 '^FILE LOCKS$'
has status0 '^  Active Locks: 0$'
has status0 '^  Success Rate: 100\.0%$'
has status0 '^SUPERVISOR$'
has status0 "^  PID: $BUMBAD_PID\$"
run status0j status --json
check status0j '
assert d["agents"]["active"] == 0 and d["agents"]["max"] > 0, d
assert d["agents"]["by_department"] == {}, d
assert d["locks"]["active"] == 0 and d["locks"]["waiting"] == 0, d
assert d["supervisor"]["pid"] == int(E["BUMBAD_PID"]), d
assert d["supervisor"]["abi"] >= 1 and d["supervisor"]["segment_bytes"] > 0, d
assert 0 <= d["supervisor"]["heartbeat_age_ms"] < 5000, d
'
run agents0j agents --json
check agents0j 'assert d == [], d'
run locks0j locks --json
check locks0j 'assert d == [], d'
# --json also before the subcommand.
run locks0j2 --json locks
check locks0j2 'assert d == [], d'

# --- one exclusive holder, two sharers, one waiter ---------------------------
hold() { # hold MODE-OPTION PATH READY-FILE: until ./go exists (30 s at most)
	exec "$CTL" lock $1 "$2" -- sh -c \
		'touch "$1"; i=0; while [ ! -e go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done' \
		sh "$3"
}
hold --exclusive held.txt ex.ready &
p1=$!
hold --shared shared.txt sh1.ready &
p2=$!
hold --shared shared.txt sh2.ready &
p3=$!
wait_for ex.ready sh1.ready sh2.ready
"$CTL" lock --timeout 20000 held.txt -- true &
p4=$!
BG="$p1 $p2 $p3 $p4"
# The waiter registers and queues asynchronously: poll until it shows.
n=0
while :; do
	run locksw locks --json
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if any(l["waiters"] == 1 for l in d) else 1)' "$TMPD/locksw" && break
	n=$((n + 1))
	[ $n -le 100 ] || fail "the waiter never showed up in 'bumbactl locks'"
	sleep 0.05
done

run status1 status
has status1 '^  Active: 4/[0-9,]+$'
has status1 '^    operations: 4$'
has status1 '^  Active Locks: 2$'
has status1 '^  Waiting: 1$'
run status1j status --json
check status1j '
assert d["agents"]["active"] == 4, d
assert d["agents"]["by_department"] == {"operations": 4}, d
l = d["locks"]
assert l["active"] == 2 and l["waiting"] == 1, d
assert l["total"] >= 3 and l["conflicts"] >= 1, d
'

run agents1 agents
has agents1 '^ID +TYPE +DEPARTMENT +STATUS +PID +UID +REGISTERED +IDLE +LOCKS$'
[ "$(grep -c '^Command-bumbactl-[0-9]*-[0-9a-f]\{8\} ' "$TMPD/agents1")" -eq 4 ] ||
	fail "agents does not list the 4 bumbactl agents: $(cat "$TMPD/agents1")"
has agents1 ' operations +busy +[0-9]+ +[0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +[0-9.a-z]+ +1$'
run agents1j agents --json
check agents1j '
assert len(d) == 4, d
for a in d:
    assert re.fullmatch(r"Command-bumbactl-\d+-[0-9a-f]{8}", a["id"]), a
    assert a["type"] == "Command" and a["name"] == "bumbactl", a
    assert a["department"] == "operations", a
    assert a["status"] in ("idle", "active", "busy", "blocked"), a
    assert a["pid"] > 0 and a["uid"] == os.getuid(), a
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["registered_at"]), a
    assert a["idle_ms"] >= 0 and a["registered_ms"] > 0, a
holding = [a for a in d if a["locks_held"] == 1]
assert len(holding) == 3 and all(a["status"] == "busy" for a in holding), d
assert len([a for a in d if a["locks_held"] == 0]) == 1, d
'

run locks1 locks
has locks1 '^PATH +MODE +FENCE +WAITERS +HELD +OWNER-DIED +HOLDERS$'
has locks1 "^$WS/held.txt +exclusive +[0-9]+ +1 +[0-9.a-z]+ +no +Command-bumbactl-[0-9]+-[0-9a-f]{8}\$"
has locks1 "^$WS/shared.txt +shared +[0-9]+ +0 +[0-9.a-z]+ +no +2: Command-bumbactl-.*, Command-bumbactl-"
run locks1j locks --json
cp "$TMPD/agents1j" "$TMPD/agents_for_locks"
check locks1j '
agents = json.load(open(os.path.join(E["TMPD"], "agents_for_locks")))
holders = {a["id"] for a in agents if a["locks_held"] == 1}
by = {l["path"]: l for l in d}
assert set(by) == {E["WS"] + "/held.txt", E["WS"] + "/shared.txt"}, d
ex, sh = by[E["WS"] + "/held.txt"], by[E["WS"] + "/shared.txt"]
assert ex["mode"] == "exclusive" and ex["holder_count"] == 1 and len(ex["holders"]) == 1, ex
assert ex["waiters"] == 1 and ex["fence"] >= 1 and ex["owner_died"] is False, ex
assert ex["held_ms"] >= 0, ex
assert sh["mode"] == "shared" and sh["holder_count"] == 2 and len(sh["holders"]) == 2, sh
assert sh["waiters"] == 0, sh
assert set(ex["holders"]) | set(sh["holders"]) == holders, (d, agents)
'

# --- everything released ----------------------------------------------------
touch go
for p in $p1 $p2 $p3 $p4; do
	wait $p || fail "a lock holder or the waiter failed"
done
"$CTL" lock held.txt -- sh -c \
	'touch t.ready; i=0; while [ ! -e t.go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done' &
p5=$!
BG=$p5
wait_for t.ready
"$CTL" lock --timeout 50 held.txt -- true 2>/dev/null
[ $? -eq 75 ] || fail "expected a timeout"
touch t.go
wait $p5 || fail "holder failed"

run status2 status
has status2 '^  Active: 0/[0-9,]+$'
has status2 '^  Active Locks: 0$'
has status2 '^  Timeouts: 1$'
run status2j status --json
check status2j '
l = d["locks"]
assert d["agents"]["active"] == 0 and l["active"] == 0 and l["waiting"] == 0, d
assert l["timeouts"] == 1 and l["deadlocks"] == 0, d
want = round(100.0 * l["total"] / (l["total"] + l["timeouts"] + l["deadlocks"]), 1)
assert abs(l["success_rate"] - want) < 0.051 and l["success_rate"] < 100, d
'
run agents2j agents --json
check agents2j 'assert d == [], d'
run locks2j locks --json
check locks2j 'assert d == [], d'
run locks2 locks
[ "$(wc -l <"$TMPD/locks2")" -eq 1 ] || fail "locks lists something after release: $(cat "$TMPD/locks2")"

# --- --socket, and no supervisor ---------------------------------------------
sock=$BUMBA_SOCKET
(
	unset BUMBA_SOCKET
	"$CTL" --socket "$sock" status >/dev/null 2>&1
) || fail "--socket PATH did not reach the supervisor"
for v in status agents locks; do
	BUMBA_SOCKET=$TMPD/nobody.sock "$CTL" $v --json >/dev/null 2>&1
	rc=$?
	[ $rc -eq 69 ] || fail "'bumbactl $v' without a supervisor exited $rc, want 69"
done
"$CTL" status --bogus >/dev/null 2>&1
rc=$?
[ $rc -eq 64 ] || fail "'bumbactl status --bogus' exited $rc, want 64"

stop_bumbad
echo "ok: bumbactl status, agents, locks"
exit 0
