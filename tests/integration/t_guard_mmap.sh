#!/bin/bash
# t_guard_mmap.sh - stores through a shared writable mapping, on an ext4
# loop image (tmpfs pages are never "dirtied", so there only the mmap call
# itself is seen, which t_guard_ops.sh checks):
#   - an agent maps a file under its lock (sanctioned), releases the lock,
#     then stores: exactly one violation, mmap_store, named after the agent;
#   - the holder storing under its lock: nothing;
#   - a process that holds nothing maps and stores: the mmap and the store.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/guard_lib.sh"
guard_preflight
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.ext4 ] || skip "mkfs.ext4 is needed"
PATH=$PATH:/usr/sbin:/sbin

guard_tmp
MNT=$WS
truncate -s 32M "$TMPD/ext4.img"
mkfs.ext4 -q -F "$TMPD/ext4.img" >/dev/null 2>&1 || skip "mkfs.ext4 failed"
mount -o loop "$TMPD/ext4.img" "$MNT" 2>/dev/null || skip "cannot mount an ext4 loop image"
cleanup_mount() {
	[ -n "${BUMBAD_PID:-}" ] && kill -TERM "$BUMBAD_PID" 2>/dev/null && wait "$BUMBAD_PID" 2>/dev/null
	BUMBAD_PID=
	umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	_bumba_cleanup
}
trap cleanup_mount EXIT
mkdir -p "$WS/sync" "$WS/m"
for f in late held none; do head -c 8192 /dev/zero >"$WS/m/$f"; done
sync -f "$WS/m/late" # clean pages: the first store dirties them
start_guarded
grep -q 'mmap stores' "$TMPD/bumbad.log" || skip "no writeback_dirty_folio tracepoint on this kernel"

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }
gop() {
	local out
	out=$("$GOP" "$@" 2>"$TMPD/err") || bad "guard_op $*: $(cat "$TMPD/err")"
	echo "${out#pid=}"
}
late=$(gop --who holder mmap_late "$WS/m/late")
held=$(gop --who holder mmap "$WS/m/held")
none=$(gop --who none mmap "$WS/m/none")
guard_sync

python3 - "$AUDIT" "$late" "$held" "$none" <<'EOF' || bad "audit log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
viol = [v for v in lines if v.get("event") == "guard.violation"]
late, held, none = (int(x) for x in sys.argv[2:5])
v = [x for x in viol if x["pid"] == late]
assert len(v) == 1 and v[0]["op"] == "mmap_store" and v[0]["path"] == "m/late" \
    and v[0]["agent"].startswith("Test-guardop-"), ("late store", v)
assert not [x for x in viol if x["pid"] == held], ("holder", [x for x in viol if x["pid"] == held])
ops = sorted(x["op"] for x in viol if x["pid"] == none)
assert ops in (["mmap", "mmap_store"], ["mmap", "mmap_store", "openat"]), ("stranger", ops)
EOF
stop_bumbad
[ "$errors" = 0 ] || fail "$errors check(s) failed"
echo "ok: a store after the release is caught (mmap_store), the holder's is not"
