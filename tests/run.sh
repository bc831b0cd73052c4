#!/usr/bin/env bash
# tests/run.sh - the whole test suite, as `make check` runs it:
#   1. cmocka unit tests (build/tests/test_*)
#   2. the same units under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. the lock-table units under ThreadSanitizer
#   4. multi-process tests (build/tests/mp_*): real bumbad, real SIGKILLs
#      and the Python binding under pytest (agents/python/tests)
#   5. shell tests (tests/integration/t_*.sh): bumbactl, the demo
#   6. libFuzzer smoke runs of every fuzz target
# Each step prints PASS/FAIL/SKIP (with the reason) per test; the last line
# is "N passed, N failed, N skipped".  Exit status 1 if anything failed.
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
pass=0 failn=0 skipn=0
failed=()
logdir=$(mktemp -d /tmp/bumba-check.XXXXXX)

record() { # name status(0 pass, 77 skip, else fail) logfile
	local name=$1 rc=$2 log=$3
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1)); echo "PASS  $name"
	elif [ "$rc" -eq 77 ]; then
		skipn=$((skipn + 1)); echo "SKIP  $name: $(grep -m1 -i 'skip' "$log" | cut -c1-200)"
	else
		failn=$((failn + 1)); failed+=("$name"); echo "FAIL  $name (exit $rc)"
		tail -n 40 "$log" | sed 's/^/      | /'
	fi
}

run() { # name timeout command...
	local name=$1 t=$2; shift 2
	local log=$logdir/$(echo "$name" | tr '/ ' '__').log
	timeout --kill-after=10 "$t" "$@" >"$log" 2>&1
	record "$name" $? "$log"
}

echo "== unit tests"
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] && run "unit/$(basename "$t")" 300 "$t"
done

echo "== unit tests under ASan+UBSan"
if make -s check-asan >"$logdir/asan-build.log" 2>&1; then
	for t in build/asan/tests/test_*; do
		[ -x "$t" ] && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			BUILD=$BUILD run "asan/$(basename "$t")" 600 "$t"
	done
else
	record "asan/build" 1 "$logdir/asan-build.log"
fi

echo "== lock table under TSan"
if make -s check-tsan >"$logdir/tsan-build.log" 2>&1; then
	TSAN_OPTIONS=halt_on_error=1 run "tsan/test_locks" 600 build/tsan/tests/test_locks
else
	record "tsan/build" 1 "$logdir/tsan-build.log"
fi

echo "== multi-process tests"
for t in "$BUILD"/tests/mp_*; do
	[ -x "$t" ] && run "mp/$(basename "$t")" 300 "$t"
done

echo "== python binding (pytest)"
# The first python3 with pytest (Debian's python3-pytest is /usr/bin's).
py=
for p in python3 /usr/bin/python3; do
	command -v "$p" >/dev/null && "$p" -m pytest --version >/dev/null 2>&1 && { py=$p; break; }
done
if [ -n "$py" ]; then
	PYTHONPATH=$(pwd)/agents/python${PYTHONPATH:+:$PYTHONPATH} PYTHONDONTWRITEBYTECODE=1 \
		run "py/pytest" 600 "$py" -m pytest -q -p no:cacheprovider agents/python/tests
else
	echo "skip: python3-pytest is not installed (make deps)" >"$logdir/py_pytest.log"
	record "py/pytest" 77 "$logdir/py_pytest.log"
fi

echo "== shell tests"
for t in tests/integration/t_*.sh; do
	[ -f "$t" ] && run "sh/$(basename "$t" .sh)" 300 bash "$t"
done

echo "== fuzz smoke (${FUZZ_SMOKE_SECONDS:-15} s each)"
for src in tests/fuzz/fuzz_*.c; do
	[ -f "$src" ] || continue
	name=$(basename "$src" .c)
	if ! make -s "$BUILD/fuzz/$name" >"$logdir/$name-build.log" 2>&1; then
		record "fuzz/$name" 1 "$logdir/$name-build.log"; continue
	fi
	corpus=tests/fuzz/corpus/${name#fuzz_}
	work=$(mktemp -d)
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
	# libFuzzer's own exit code for a finding is 77, our "skip": make it 1.
	run "fuzz/$name" 300 "$BUILD/fuzz/$name" -max_total_time="${FUZZ_SMOKE_SECONDS:-15}" \
		-rss_limit_mb=1024 -error_exitcode=1 -timeout_exitcode=1 \
		-artifact_prefix="$logdir/$name-" "$work"
	rm -rf "$work"
done

echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "logs: $logdir"
echo "$pass passed, $failn failed, $skipn skipped"
[ "$failn" -eq 0 ]
