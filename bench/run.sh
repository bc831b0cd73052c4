#!/usr/bin/env bash
# bench/run.sh - what `make bench` runs: starts a throw-away bumbad, runs
# every build/bench/bench_* against it, and cleans up on every way out.
#
#   bash bench/run.sh            (after make all and the bench binaries)
#
# Prints the machine first (cores, kernel, CPU), then each benchmark's
# tables.  Benchmarks never fail on a number: the exit status is non-zero
# only when a benchmark binary itself fails, or bumbad will not start.
#
# Environment: BUILD (default build), and what bench_locks reads: BENCH_MS,
# BENCH_RECLAIM_SAMPLES, BENCH_MAX_PROCS (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
BUMBAD=$BUILD/bumbad

tmp=$(mktemp -d /tmp/bumba-bench.XXXXXX)
bumbad_pid=

cleanup() {
	local rc=$?
	set +e
	if [ -n "$bumbad_pid" ] && kill -0 "$bumbad_pid" 2>/dev/null; then
		kill -TERM "$bumbad_pid"
		for _ in $(seq 50); do
			kill -0 "$bumbad_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$bumbad_pid" 2>/dev/null; then
			echo "bench: bumbad did not stop on SIGTERM within 5 s; killing it" >&2
			kill -KILL "$bumbad_pid"
		fi
		wait "$bumbad_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the machine -------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
[ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}"
echo "kernel:  $(uname -srm)"
if [ -r /etc/os-release ]; then
	echo "os:      $(. /etc/os-release && echo "${PRETTY_NAME:-$ID}")"
fi
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
# Other work on the machine skews every figure: say how busy it was.
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) before the run"

# --- the supervisor ----------------------------------------------------------
mkdir -p "$tmp/ws"
if [ -x "$BUMBAD" ]; then
	"$BUMBAD" --foreground --socket "$tmp/bumba.sock" --workspace "$tmp/ws" --no-guard \
		--http off 2>"$tmp/bumbad.log" &
	bumbad_pid=$!
	for _ in $(seq 50); do
		[ -S "$tmp/bumba.sock" ] && break
		kill -0 "$bumbad_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -S "$tmp/bumba.sock" ]; then
		export BUMBA_SOCKET="$tmp/bumba.sock"
		echo "bumbad:  pid $bumbad_pid, socket $BUMBA_SOCKET"
	else
		echo "bench: bumbad did not create its socket within 5 s; its log:" >&2
		sed 's/^/  | /' "$tmp/bumbad.log" >&2
		exit 1
	fi
else
	echo "bench: $BUMBAD is missing (run make first)" >&2
	exit 1
fi

# --- the benchmarks ----------------------------------------------------------
export BENCH_DIR="$tmp/anchors"
status=0
shopt -s nullglob
benches=("$BUILD"/bench/bench_*)
if [ ${#benches[@]} -eq 0 ]; then
	echo "bench: no $BUILD/bench/bench_* binaries (make bench builds them)" >&2
	exit 1
fi
for b in "${benches[@]}"; do
	[ -x "$b" ] || continue
	echo
	echo "=== $(basename "$b")"
	start=$(date +%s%N)
	if ! "$b"; then
		echo "bench: $(basename "$b") failed" >&2
		status=1
	fi
	ms=$((($(date +%s%N) - start) / 1000000))
	printf '(%s took %d.%d s)\n' "$(basename "$b")" $((ms / 1000)) $((ms % 1000 / 100))
done

echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) after the run (the benchmark's own processes count)"

if ! kill -0 "$bumbad_pid" 2>/dev/null; then
	echo "bench: bumbad died during the run; its log:" >&2
	sed 's/^/  | /' "$tmp/bumbad.log" >&2
	status=1
fi
exit "$status"
