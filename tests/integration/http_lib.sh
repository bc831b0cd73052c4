# tests/integration/http_lib.sh - sourced after lib.sh by the tests of
# bumbad's HTTP side (t_metrics, t_health, t_prometheus, t_http_fuzz, ...).
#
#   start_bumbad_http [extra bumbad options]   start_bumbad with --http
#                                              127.0.0.1:0; sets PORT, URL
#   get PATH [OUT]      GET URL/PATH into OUT ($TMPD/body); prints the status
#   need TOOL...        skip unless every TOOL is installed
#   wait_until SECONDS COMMAND...   retries COMMAND every 0.1 s
#   hold NAME           a `bumbactl lock NAME -- sleep` holder in the
#                       background until release_all (pids in HOLDERS)

need() {
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (make deps installs it)"
	done
}

start_bumbad_http() {
	start_bumbad --http 127.0.0.1:0 "$@"
	PORT=$(sed -n 's|.*http: serving http://127\.0\.0\.1:\([0-9][0-9]*\)/.*|\1|p' \
		"$TMPD/bumbad.log" | tail -n 1)
	[ -n "$PORT" ] || { cat "$TMPD/bumbad.log" >&2; fail "bumbad did not say its HTTP port"; }
	URL=http://127.0.0.1:$PORT
	export PORT URL
}

get() { # PATH [OUT]
	curl -s -m 10 -o "${2:-$TMPD/body}" -w '%{http_code}' "$URL$1"
}

wait_until() { # SECONDS COMMAND...
	_n=$(($1 * 10))
	shift
	while ! "$@"; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || return 1
		sleep 0.1
	done
	return 0
}

HOLDERS=
hold() { # NAME: holds lock NAME until $TMPD/release exists (60 s at most)
	"$BUILD/bumbactl" lock "$1" -- sh -c \
		'i=0; while [ ! -e "$0" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done' \
		"$TMPD/release" &
	HOLDERS="$HOLDERS $!"
}

release_all() {
	touch "$TMPD/release"
	for p in $HOLDERS; do wait "$p" 2>/dev/null; done
	HOLDERS=
	rm -f "$TMPD/release"
}

# Kills what this test started in the background, then lib.sh's cleanup.
_http_cleanup() {
	[ -n "$HOLDERS" ] && kill $HOLDERS 2>/dev/null
	[ -n "${EXTRA_PIDS:-}" ] && kill $EXTRA_PIDS 2>/dev/null
	_bumba_cleanup
}

# json FILE PYTHON: runs PYTHON with d = the JSON in FILE; fails on an
# AssertionError (or any error).
json() {
	python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
$2
" "$1" || { cat "$1" >&2; echo >&2; fail "JSON check failed on $1"; }
}
