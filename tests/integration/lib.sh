# tests/integration/lib.sh - sourced by the shell tests: a private bumbad per
# test, in a temporary directory that is removed on exit.
#
#   start_bumbad [extra bumbad options]   exports BUMBA_SOCKET, WS, TMPD, BUMBAD_PID
#   stop_bumbad                           SIGTERM, wait (SIGKILL after 5 s)
#   skip "reason"                         exit 77 with the reason
#   ensure_bumba_user                     the system user bumba (made if missing)
#   fail "reason"                         exit 1 with the reason

BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
export BUILD

skip() { echo "skip: $*"; exit 77; }

# The system user and group bumba, made as bumba.sysusers would if
# missing (as root); like any system user, it stays.
ensure_bumba_user() {
	getent passwd bumba >/dev/null && return 0
	command -v useradd >/dev/null 2>&1 || skip "no user bumba and no useradd to make one"
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --comment "bumba supervisor" bumba ||
		fail "useradd bumba failed"
	echo "note: created the system user bumba"
}
fail() { echo "FAIL: $*" >&2; exit 1; }

_bumba_cleanup() {
	[ -n "${BUMBAD_PID:-}" ] && kill -TERM "$BUMBAD_PID" 2>/dev/null && wait "$BUMBAD_PID" 2>/dev/null
	[ -n "${TMPD:-}" ] && rm -rf "$TMPD"
	return 0
}

start_bumbad() {
	TMPD=$(mktemp -d /tmp/bumba-test.XXXXXX)
	WS=$TMPD/ws
	mkdir -p "$WS"
	export BUMBA_SOCKET=$TMPD/bumba.sock WS TMPD
	trap _bumba_cleanup EXIT
	"$BUILD/bumbad" --foreground --socket "$BUMBA_SOCKET" --workspace "$WS" --no-guard \
		--http off --keeper-linger 5 "$@" 2>"$TMPD/bumbad.log" &
	BUMBAD_PID=$!
	for _ in $(seq 100); do
		grep -q 'ready:' "$TMPD/bumbad.log" 2>/dev/null && return 0
		kill -0 "$BUMBAD_PID" 2>/dev/null || { cat "$TMPD/bumbad.log" >&2; fail "bumbad did not start"; }
		sleep 0.05
	done
	fail "bumbad not ready after 5 s"
}

stop_bumbad() {
	[ -n "${BUMBAD_PID:-}" ] || return 0
	kill -TERM "$BUMBAD_PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$BUMBAD_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$BUMBAD_PID" 2>/dev/null || true
	wait "$BUMBAD_PID" 2>/dev/null || true
	BUMBAD_PID=
}
