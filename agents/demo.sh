#!/usr/bin/env bash
# agents/demo.sh - what `make demo` runs: bumba doing its main job, on
# built-in defaults, in a throw-away directory.
#
#   1. build the example agent (agents/examples/contend.c) if needed
#   2. seed a small workspace and start bumbad on it (no config file)
#   3. one operator takes src/main.c with `bumbactl lock` and is then
#      SIGKILLed while holding it: bumbad reclaims the lock, and the next
#      agent in line is told the previous owner died
#   4. 8 agents in three departments, at different priorities, do locked
#      read-modify-writes of the same 3 files, racing each other
#   5. `bumbactl status` while they run, `status` and `locks` at the end
#   6. verify: the files hold exactly as many appended lines as the agents
#      made updates (no update lost), in every file the counter on line 1
#      equals its appended lines (no torn or mixed write), fencing tokens
#      only grow down each file, and exactly one acquire was told that the
#      previous owner died
#
# Prints "demo: OK ..." and exits 0, or says what went wrong and exits 1.
# Leaves nothing running: bumbad, the agents and the holder are stopped on
# every way out.  The directory is removed, except after a failure.
#
# Environment: BUILD (default build), DEMO_ROUNDS (rounds per agent, 250),
# DEMO_NO_LOCK=1 (the agents skip bumba's lock: the checks must then find
# lost updates and the demo must fail - tests/integration/t_demo.sh uses it
# to show that the checks are not vacuous).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
ROUNDS=${DEMO_ROUNDS:-250}
CTL=$BUILD/bumbactl
CONTEND=$BUILD/examples/contend
FILES=(src/main.c src/util.c src/util.h)
CONTEND_FLAGS=()
[ "${DEMO_NO_LOCK:-0}" = 1 ] && CONTEND_FLAGS=(--no-lock)

step=0
bold='' plain=''
[ -t 1 ] && bold=$'\033[1m' plain=$'\033[0m'
section() {
	step=$((step + 1))
	printf '\n%s== %d. %s%s\n' "$bold" "$step" "$*" "$plain"
}
die() {
	echo "demo: FAILED: $*" >&2
	exit 1
}

TMPD=
BUMBAD_PID=
HOLDER_PID=
AGENT_PIDS=()
keep=1 # keep $TMPD for a look, unless all went well

cleanup() {
	local rc=$?

	set +e
	{
		for p in "${AGENT_PIDS[@]}" $HOLDER_PID; do
			kill -KILL "$p"
		done
		for p in "${AGENT_PIDS[@]}" $HOLDER_PID; do
			wait "$p"
		done
	} 2>/dev/null
	if [ -n "$BUMBAD_PID" ]; then
		kill -TERM "$BUMBAD_PID" 2>/dev/null
		for _ in $(seq 100); do
			kill -0 "$BUMBAD_PID" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$BUMBAD_PID" 2>/dev/null
		wait "$BUMBAD_PID" 2>/dev/null
	fi
	if [ -n "$TMPD" ]; then
		if [ "$keep" = 0 ]; then
			rm -rf "$TMPD"
		else
			echo "demo: kept $TMPD for a look (bumbad.log, agent-*.out, ws/)" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
# Ctrl-C is not a failure: nothing worth keeping.  SIGTERM more likely
# comes from a harness's timeout: keep the evidence.
trap 'keep=0; exit 130' INT
trap 'exit 143' TERM

for b in "$BUILD/bumbad" "$CTL" "$BUILD/libbumba-shm.a"; do
	[ -e "$b" ] || die "$b is missing: run 'make' first"
done

# -----------------------------------------------------------------------
section "Build the example agent ($CONTEND)"
if [ ! -x "$CONTEND" ] || [ agents/examples/contend.c -nt "$CONTEND" ] ||
	[ "$BUILD/libbumba-shm.a" -nt "$CONTEND" ]; then
	mkdir -p "$BUILD/examples"
	# Build beside the target and rename: two demos at once never run a
	# half-written binary.
	${CC:-cc} -O2 -std=gnu11 -Wall -Wextra -D_GNU_SOURCE -Ishm -o "$CONTEND.$$" \
		agents/examples/contend.c "$BUILD/libbumba-shm.a" -luring -lxxhash -lpthread
	mv -f "$CONTEND.$$" "$CONTEND"
	echo "compiled agents/examples/contend.c"
else
	echo "up to date"
fi

# -----------------------------------------------------------------------
section "Seed a workspace"
TMPD=$(mktemp -d /tmp/bumba-demo.XXXXXX)
WS=$TMPD/ws
mkdir -p "$WS/src" "$WS/docs"
# The contended files start with a counter line that every locked update
# increments; each update also appends one line.  An update lost to a
# racing writer takes its line with it: the files then hold fewer lines
# than the agents made updates (and the agent finds its line gone).
cat >"$WS/src/main.c" <<'EOF'
counter 0
#include "util.h"

int main(void)
{
	return util_answer() == 42 ? 0 : 1;
}
EOF
cat >"$WS/src/util.c" <<'EOF'
counter 0
#include "util.h"

int util_answer(void)
{
	return 42;
}
EOF
cat >"$WS/src/util.h" <<'EOF'
counter 0
#ifndef UTIL_H
#define UTIL_H
int util_answer(void);
#endif
EOF
printf '# demo project\n\nA tiny tree for bumba agents to fight over.\n' >"$WS/README.md"
printf 'Nothing to see here.\n' >"$WS/docs/notes.md"
(cd "$WS" && find . -type f | sort | sed 's|^\./|  |')

# -----------------------------------------------------------------------
section "Start bumbad (built-in defaults, no config file)"
export BUMBA_SOCKET=$TMPD/bumba.sock
echo "\$ bumbad --socket $BUMBA_SOCKET --workspace $WS --http off --keeper-linger 5"
# --keeper-linger 5: should bumbad ever die uncleanly here, its segment
# keeper goes away after 5 s instead of the default 300.
# The audit log (where the guard reports writes that go around bumba)
# through its environment override: still no config file.
BUMBA_MONITORING_AUDITLOG=$TMPD/audit.log \
	"$BUILD/bumbad" --socket "$BUMBA_SOCKET" --workspace "$WS" --http off --keeper-linger 5 \
	2>"$TMPD/bumbad.log" &
BUMBAD_PID=$!
for _ in $(seq 100); do
	"$CTL" status >/dev/null 2>&1 && break
	kill -0 "$BUMBAD_PID" 2>/dev/null || { cat "$TMPD/bumbad.log" >&2; die "bumbad exited"; }
	sleep 0.05
done
"$CTL" status >/dev/null 2>&1 || { cat "$TMPD/bumbad.log" >&2; die "bumbad not answering after 5 s"; }
sed -n '/ready:/p' "$TMPD/bumbad.log"

# -----------------------------------------------------------------------
section "An operator locks src/main.c (and will be SIGKILLed holding it)"
echo "\$ bumbactl lock --priority high src/main.c -- sleep 30 &"
# shellcheck disable=SC2016 # $0 is for the inner sh
"$CTL" lock --priority high src/main.c -- \
	sh -c ': >"$0"; exec sleep 30' "$TMPD/holder.ready" 2>"$TMPD/holder.err" &
HOLDER_PID=$!
for _ in $(seq 100); do
	[ -e "$TMPD/holder.ready" ] && break
	kill -0 "$HOLDER_PID" 2>/dev/null || { cat "$TMPD/holder.err" >&2; die "bumbactl lock failed"; }
	sleep 0.05
done
[ -e "$TMPD/holder.ready" ] || die "bumbactl lock did not get src/main.c within 5 s"
echo "bumbactl (pid $HOLDER_PID) holds src/main.c"

# -----------------------------------------------------------------------
section "Start 8 agents in 3 departments, all on ${FILES[*]}"
[ ${#CONTEND_FLAGS[@]} -eq 0 ] ||
	echo "DEMO_NO_LOCK=1: the agents will NOT take bumba's lock - expect lost updates"
# type name department priority
AGENTS=(
	"BackendEngineer Ada technical high"
	"FrontendEngineer Linus technical normal"
	"QAEngineer Grace technical normal"
	"DevOpsEngineer Ken technical low"
	"UXDesigner Dieter design high"
	"UIDesigner Paula design low"
	"ProductStrategist Peter strategic normal"
	"MarketAnalyst Marissa strategic low"
)
i=0
for a in "${AGENTS[@]}"; do
	read -r type name dept prio <<<"$a"
	printf '  %-18s %-8s %-10s priority %-6s %d rounds\n' "$type" "$name" "$dept" "$prio" "$ROUNDS"
	"$CONTEND" --type "$type" --name "$name" --department "$dept" --priority "$prio" \
		--rounds "$ROUNDS" "${CONTEND_FLAGS[@]}" "${FILES[@]}" \
		>"$TMPD/agent-$i.out" 2>"$TMPD/agent-$i.err" &
	AGENT_PIDS+=($!)
	i=$((i + 1))
done
sleep 0.5
echo
echo "\$ bumbactl locks      # everyone who drew src/main.c queues behind the holder"
"$CTL" locks

# -----------------------------------------------------------------------
section "SIGKILL the holder: bumbad reclaims src/main.c, the next waiter gets it"
echo "\$ kill -9 $HOLDER_PID"
# (Braces: bash's own "Killed" job notice goes to /dev/null too.)
{
	kill -KILL "$HOLDER_PID"
	wait "$HOLDER_PID"
} 2>/dev/null || true
HOLDER_PID=
sleep 0.3

# -----------------------------------------------------------------------
section "bumbactl status while the agents run"
"$CTL" status

# -----------------------------------------------------------------------
section "Wait for the agents"
failed=0
i=0
for p in "${AGENT_PIDS[@]}"; do
	if ! wait "$p"; then
		echo "agent $i (${AGENTS[$i]}) failed:" >&2
		sed 's/^/  | /' "$TMPD/agent-$i.err" "$TMPD/agent-$i.out" >&2
		failed=$((failed + 1))
	fi
	i=$((i + 1))
done
AGENT_PIDS=()
printf '%-46s %-6s %7s %9s %9s %10s\n' AGENT PRIO UPDATES "WAIT ms" "MAX ms" OWNER-DIED
cat "$TMPD"/agent-*.out | awk '
	/^contend: / {
		id = $2; sub(/:$/, "", id)
		for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%-46s %-6s %7d %9.1f %9.1f %10d\n", id, v["prio"], v["updates"],
			v["wait_total_ms"], v["wait_max_ms"], v["owner_died"]
	}'
grep -h 'died' "$TMPD"/agent-*.err | sed 's/^/  /' || true

# -----------------------------------------------------------------------
section "bumbactl status and bumbactl locks at the end"
"$CTL" status
echo
"$CTL" locks

# -----------------------------------------------------------------------
section "bumbad's log: the reclaim"
grep -E 'Command-bumbactl|signal' "$TMPD/bumbad.log" | tail -n 5 || true
grep -qE 'Command-bumbactl.*(died holding [0-9]+ lock\(s\)|exited); reclaimed' "$TMPD/bumbad.log" ||
	die "bumbad's log does not show the killed holder's lock being reclaimed"

# -----------------------------------------------------------------------
section "Verify: no lost update, no torn write, fences in order"
bad=0
total_lines=0
for f in "${FILES[@]}"; do
	path=$WS/$f
	counter=$(sed -n '1s/^counter \([0-9][0-9]*\)$/\1/p' "$path")
	lines=$(grep -cE '^[^ ]+ round [0-9]+ fence [0-9]+$' "$path" || true)
	# Fencing tokens down the file must strictly increase.
	backwards=$(awk '$2 == "round" && $4 == "fence" {
			if ($5 + 0 <= last) n++; last = $5 + 0 } END { print n + 0 }' "$path")
	printf '  %-12s counter %5s  appended lines %5s  fences out of order %s\n' \
		"$f" "${counter:-?}" "$lines" "$backwards"
	if [ -z "$counter" ] || [ "$counter" != "$lines" ]; then
		echo "  -> $f: counter ${counter:-missing} != $lines appended lines:" \
			"torn or mixed write" >&2
		bad=1
	fi
	[ "$backwards" -eq 0 ] || { echo "  -> $f: fencing tokens went backwards" >&2; bad=1; }
	total_lines=$((total_lines + lines))
done
reported=$(cat "$TMPD"/agent-*.out | sed -n 's/.* updates=\([0-9][0-9]*\) .*/\1/p' |
	awk '{ s += $1 } END { print s + 0 }')
died=$(cat "$TMPD"/agent-*.out | sed -n 's/.* owner_died=\([0-9][0-9]*\) .*/\1/p' |
	awk '{ s += $1 } END { print s + 0 }')
n_agents=$(cat "$TMPD"/agent-*.out | grep -c '^contend: ' || true)
expected=$((${#AGENTS[@]} * ROUNDS))
echo "  agents reported $reported updates ($expected expected), the files hold $total_lines;" \
	"owner-died seen $died time(s)"
[ "$failed" -eq 0 ] || { echo "  -> $failed agent(s) failed (see above)" >&2; bad=1; }
[ "$n_agents" -eq "${#AGENTS[@]}" ] || { echo "  -> only $n_agents agents reported" >&2; bad=1; }
if [ "$reported" -gt "$total_lines" ]; then
	echo "  -> the agents made $reported updates, the files hold $total_lines: LOST UPDATE" >&2
	bad=1
elif [ "$reported" -ne "$total_lines" ]; then
	echo "  -> the agents reported $reported updates, the files hold $total_lines" >&2
	bad=1
fi
[ "$reported" -eq "$expected" ] || { echo "  -> expected $expected updates" >&2; bad=1; }
[ "$died" -eq 1 ] || {
	echo "  -> exactly one acquire should have reported the killed owner, saw $died" >&2
	bad=1
}
[ "$bad" -eq 0 ] || die "verification failed"

# -----------------------------------------------------------------------
section "A rogue writer goes around bumba: the kernel guard catches it"
caught=0
if grep -q 'guard active' "$TMPD/bumbad.log"; then
	echo "\$ echo '// rogue edit' >> src/util.c      # a plain shell: no agent, no lock"
	echo '// rogue edit' >>"$WS/src/util.c"
	for _ in $(seq 100); do
		grep -q '"guard.violation".*src/util.c' "$TMPD/audit.log" 2>/dev/null && break
		sleep 0.05
	done
	echo "\$ bumbactl audit"
	"$CTL" audit --file "$TMPD/audit.log" | tail -n 5
	grep -q '"guard.violation".*src/util.c' "$TMPD/audit.log" ||
		die "the guard is loaded but did not report the rogue write"
	caught=1
else
	echo "  the guard is not loaded here, so a bypassing write would go unseen:"
	grep -o 'guard [a-z]*:.*' "$TMPD/bumbad.log" | head -n 1 | sed 's/^/  /'
	echo "  (run the demo as root on a kernel with BTF to see it caught)"
fi

# -----------------------------------------------------------------------
section "Stop bumbad (SIGTERM)"
kill -TERM "$BUMBAD_PID"
wait "$BUMBAD_PID" || die "bumbad exited with status $?"
BUMBAD_PID=
tail -n 2 "$TMPD/bumbad.log"

keep=0
echo
if [ "$caught" -eq 1 ]; then
	rogue="the rogue write caught by the guard"
else
	rogue="no guard here to catch a rogue write"
fi
echo "demo: OK — ${#AGENTS[@]} agents, $total_lines locked updates, 0 lost" \
	"(1 holder SIGKILLed, its lock reclaimed; $rogue)"
