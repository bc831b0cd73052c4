#!/bin/sh
# t_bumbactl_lock.sh - `bumbactl lock PATH -- COMMAND` used the way flock(1)
# is used in shell scripts: COMMAND's exit status passes through, two loops
# racing on a counter file end with the exact count, a timeout is 75, bad
# usage 64, no supervisor 69, a path outside the workspace 65, shared
# holders overlap, a missing command is 127, signals reach COMMAND.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"

# expect STATUS COMMAND...: runs COMMAND, stderr to $TMPD/err, and checks
# its exit status.
expect() {
	want=$1
	shift
	"$@" 2>"$TMPD/err"
	got=$?
	[ "$got" -eq "$want" ] || {
		cat "$TMPD/err" >&2
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

# stderr_has TEXT: the last expect's stderr contains TEXT.
stderr_has() {
	grep -qF -- "$1" "$TMPD/err" || {
		cat "$TMPD/err" >&2
		fail "stderr does not say '$1'"
	}
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

# --- 1. COMMAND's status is ours -------------------------------------------
expect 0 "$CTL" lock f -- true
expect 3 "$CTL" lock f -- sh -c 'exit 3'
expect 0 "$CTL" lock f -- sh -c 'test "$1" = "a b"' sh "a b"
# Killed by a signal: 128 + signal, as a shell reports it.
expect 143 "$CTL" lock f -- sh -c 'kill -TERM $$'
# COMMAND inherits stdin and stdout.
out=$(echo hello | "$CTL" lock f -- cat) || fail "lock -- cat failed"
[ "$out" = hello ] || fail "stdin/stdout not passed through: got '$out'"
# The fencing token reaches COMMAND and grows with every acquisition.
f1=$("$CTL" lock f -- sh -c 'echo "$BUMBA_LOCK_FENCE"')
f2=$("$CTL" lock f -- sh -c 'echo "$BUMBA_LOCK_FENCE"')
[ -n "$f1" ] && [ -n "$f2" ] && [ "$f2" -gt "$f1" ] ||
	fail "fencing tokens '$f1' then '$f2' do not increase"
p=$("$CTL" lock sub/../f -- sh -c 'echo "$BUMBA_LOCK_PATH"')
[ "$p" = "$WS/f" ] || fail "BUMBA_LOCK_PATH is '$p', want '$WS/f'"

# --- 2. mutual exclusion: two writers, 20 increments each ------------------
echo 0 >counter
worker() {
	i=0
	while [ $i -lt 20 ]; do
		# mkdir fails if the other writer is inside at the same time.
		"$CTL" lock counter -- sh -c \
			'mkdir inside.d || exit 9; n=$(cat counter); sleep 0.01; echo $((n + 1)) >counter; rmdir inside.d' ||
			exit 1
		i=$((i + 1))
	done
}
worker &
w1=$!
worker &
w2=$!
BG="$w1 $w2"
wait $w1 || fail "first writer failed (overlap or lock error)"
wait $w2 || fail "second writer failed (overlap or lock error)"
[ "$(cat counter)" = 40 ] || fail "counter is $(cat counter), want 40: lost updates"

# --- 3. timeout while another process holds the lock -----------------------
"$CTL" lock held -- sh -c 'touch held.ready; i=0; while [ ! -e held.go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done' &
holder=$!
BG=$holder
wait_for held.ready
expect 75 "$CTL" lock --timeout 200 held -- touch ran.1
stderr_has "timed out waiting for lock on held"
expect 75 "$CTL" lock --timeout 0 held -- touch ran.2
expect 75 "$CTL" lock --shared --timeout 100 held -- touch ran.3
for f in ran.1 ran.2 ran.3; do
	[ ! -e $f ] || fail "COMMAND ran without the lock ($f)"
done
touch held.go
wait $holder || fail "holder failed"
# Released when COMMAND ended: free at once.
expect 0 "$CTL" lock --timeout 0 held -- true

# --- 4. bad usage: 64, one-line reason, COMMAND not run --------------------
for args in "f touch ran.u" "--timeout abc f -- touch ran.u" "--timeout -5 f -- touch ran.u" \
	"--bogus f -- touch ran.u" "--priority urgent f -- touch ran.u" "f --" "" \
	"--timeout"; do
	# shellcheck disable=SC2086 # split on purpose
	expect 64 "$CTL" lock $args
	head -n 1 "$TMPD/err" | grep -q '^bumbactl: ' || fail "no reason for 'lock $args'"
done
expect 64 "$CTL" --no-such-option status
expect 64 "$CTL" no-such-command
[ ! -e ran.u ] || fail "COMMAND ran despite bad usage"
expect 0 "$CTL" lock --priority high --timeout=5000 --priority=low f -- true

# --- 5. no supervisor: 69 ---------------------------------------------------
BUMBA_SOCKET=$TMPD/nobody.sock expect 69 "$CTL" lock f -- touch ran.5
stderr_has "$TMPD/nobody.sock"
expect 69 "$CTL" --socket "$TMPD/nobody.sock" lock f -- touch ran.5
[ ! -e ran.5 ] || fail "COMMAND ran without a supervisor"

# --- 6. a path outside the workspace: 65 ------------------------------------
expect 65 "$CTL" lock /etc/passwd -- touch ran.6
expect 65 "$CTL" lock ../x -- touch ran.6
expect 65 "$CTL" lock "$WS/../x" -- touch ran.6
[ ! -e ran.6 ] || fail "COMMAND ran on a bad path"

# --- 7. shared holders run at the same time ---------------------------------
# Each sharer marks itself inside and waits (at most 5 s) for the other's
# mark: both succeed only if both held the lock at once.
sharer() {
	exec "$CTL" lock --shared --timeout 5000 sh.lock -- sh -c \
		'touch "$1.in"; i=0; while [ ! -e "$2.in" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done; [ -e "$2.in" ]' \
		sh "$1" "$2"
}
sharer a b &
s1=$!
sharer b a &
s2=$!
BG="$s1 $s2"
wait $s1 || fail "first sharer never saw the second inside: shared locks did not overlap"
wait $s2 || fail "second sharer never saw the first inside: shared locks did not overlap"

# --- 8. COMMAND cannot be run: 127 / 126 like the shell ---------------------
expect 127 "$CTL" lock f -- no-such-command-bumba-test
stderr_has "no-such-command-bumba-test"
printf 'echo hi\n' >not-executable
chmod 0644 not-executable
expect 126 "$CTL" lock f -- ./not-executable

# --- 9. SIGTERM to bumbactl reaches COMMAND, and the lock is released -------
"$CTL" lock sig -- sh -c 'trap "touch got.term; exit 5" TERM; touch sig.ready; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done' &
pid=$!
BG=$pid
wait_for sig.ready
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 5 ] || fail "after SIGTERM bumbactl exited $rc, want COMMAND's 5"
[ -e got.term ] || fail "COMMAND did not get the SIGTERM"
expect 0 "$CTL" lock --timeout 0 sig -- true

stop_bumbad
echo "ok: bumbactl lock"
exit 0
