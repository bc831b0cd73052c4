# tests/integration/guard_lib.sh - sourced by the guard's shell tests
# (t_guard_*.sh), on top of lib.sh:
#
#   guard_preflight                 skip (77, with the reason) unless root, the
#                                   guard built, BTF and bpffs there
#   start_guarded [bumbad options]  a private bumbad with the guard and an audit
#                                   log ($AUDIT); skips if the guard cannot load
#   guard_sync                      returns once every event before it is judged
#   vcount SELECT                   number of audit violations matching SELECT,
#                                   a python expression over `v` (one line)
#   mcount SELECT                   the same for MONITORED lines
#   GOP                             the helper, build/tests/guard_op
#
# Writes by the test script itself are violations too: fixtures are made
# before bumbad starts, or outside the workspace.

here=${here:-$(cd "$(dirname "$0")" && pwd)}
. "$here/lib.sh"

GOP=$BUILD/tests/guard_op
SYNC_N=0

guard_preflight() {
	[ "$(id -u)" -eq 0 ] || skip "the guard needs root (CAP_BPF and CAP_PERFMON)"
	[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
	[ -x "$GOP" ] || skip "$GOP is not built"
	[ -r /sys/kernel/btf/vmlinux ] || skip "no kernel BTF (/sys/kernel/btf/vmlinux)"
	[ -r "$BUILD/guard.skel.h" ] || skip "bumbad was built without the guard (no clang/bpftool at build time)"
	command -v python3 >/dev/null 2>&1 || skip "python3 is needed to read the audit log"
	if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
		mount -t bpf bpf /sys/fs/bpf 2>/dev/null || skip "cannot mount bpffs on /sys/fs/bpf"
	fi
	mountpoint -q /sys/kernel/tracing 2>/dev/null ||
		mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
	# Another bumbad owning the default pins: use a private directory.
	if [ -z "${BUMBA_BPF_PIN_DIR:-}" ] && [ -e /sys/fs/bpf/bumba ]; then
		export BUMBA_BPF_PIN_DIR=/sys/fs/bpf/bumba-test-$$
	fi
	PIN_DIR=${BUMBA_BPF_PIN_DIR:-/sys/fs/bpf/bumba}
	export PIN_DIR
}

# The workspace and fixtures come first: call guard_tmp, make files in $WS,
# then start_guarded.
guard_tmp() {
	TMPD=$(mktemp -d /tmp/bumba-test.XXXXXX)
	WS=$TMPD/ws
	OUT=$TMPD/out
	AUDIT=$TMPD/audit.log
	mkdir -p "$WS/sync" "$OUT"
	export TMPD WS OUT AUDIT BUMBA_SOCKET=$TMPD/bumba.sock
	trap _bumba_cleanup EXIT
}

START_N=0
start_guarded() {
	[ -n "${TMPD:-}" ] || guard_tmp
	START_N=$((START_N + 1))
	[ -e "$TMPD/bumbad.log" ] && mv "$TMPD/bumbad.log" "$TMPD/bumbad.log.$START_N"
	BUMBA_MONITORING_AUDITLOG=$AUDIT "$BUILD/bumbad" --foreground --socket "$BUMBA_SOCKET" \
		--workspace "$WS" --http off --keeper-linger 1 "$@" 2>"$TMPD/bumbad.log" &
	BUMBAD_PID=$!
	for _ in $(seq 200); do
		grep -q 'ready:' "$TMPD/bumbad.log" 2>/dev/null && break
		kill -0 "$BUMBAD_PID" 2>/dev/null || { cat "$TMPD/bumbad.log" >&2; fail "bumbad did not start"; }
		sleep 0.05
	done
	grep -q 'ready:' "$TMPD/bumbad.log" || fail "bumbad not ready after 10 s"
	if ! grep -q 'guard active' "$TMPD/bumbad.log"; then
		reason=$(grep -m1 'guard' "$TMPD/bumbad.log" | cut -c1-200)
		skip "the guard cannot run here: $reason"
	fi
}

# A violation of our own, and the wait for its line: the ring buffer is
# consumed in order, so every earlier event has been judged by then.  (A
# mkdir: no descriptor, so guard.enforce never refuses it.)
guard_sync() {
	SYNC_N=$((SYNC_N + 1))
	mkdir "$WS/sync/$SYNC_N"
	for _ in $(seq 250); do
		grep -q "\"path\":\"sync/$SYNC_N\"" "$AUDIT" 2>/dev/null && return 0
		sleep 0.02
	done
	cat "$TMPD/bumbad.log" >&2
	fail "the guard did not report the sync write sync/$SYNC_N within 5 s"
}

_acount() { # event select
	python3 - "$AUDIT" "$1" "$2" <<'EOF'
import json, sys
path, event, select = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
for line in open(path):
    try:
        v = json.loads(line)
    except ValueError:
        print("bad audit line: " + line, file=sys.stderr)
        sys.exit(2)
    if v.get("event") != event or str(v.get("path", "")).startswith("sync/"):
        continue
    if eval(select, {}, {"v": v}):
        n += v.get("count", 1)
print(n)
EOF
}

vcount() { _acount guard.violation "$1"; }
mcount() { _acount guard.monitored "$1"; }

# Lines (for failure messages).
alines() { grep -v '"path":"sync/' "$AUDIT" | grep '"guard\.' | tail -n "${1:-20}"; }
