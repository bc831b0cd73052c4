#!/usr/bin/env bash
# t_systemd_unit.sh - systemd/bumbad.service, bumba.sysusers and
# bumba.tmpfiles, checked offline (systemd need not be PID 1):
#   1. `systemd-analyze verify` passes on the unit as `make install` writes
#      it (ExecStart= pointing at the binary under test, the man pages of
#      Documentation= findable);
#   2. ExecStart='s options are options bumbad has (bumbad parses them,
#      then --help);
#   3. `systemd-analyze security --offline=yes`: the exposure score is
#      printed and must be at most 2.0;
#   4. the unit keeps the capability set docs/security.md promises and
#      bumbad keeps (no more);
#   5. systemd-sysusers and systemd-tmpfiles accept the two files, in a
#      scratch root: user and group bumba, /sys/fs/bpf/bumba owned by it.
#
# Exit 0 pass, 77 skip (reason printed), 1 fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(cd "$here/../.." && pwd)

command -v systemd-analyze >/dev/null 2>&1 || skip "systemd-analyze is not installed (apt-get install systemd)"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
MAX=${BUMBA_MAX_EXPOSURE:-2.0}

T=$(mktemp -d /tmp/bumba-unit.XXXXXX)
trap 'rm -rf "$T"' EXIT
unit=$T/bumbad.service
sed -e "s|/usr/local/sbin/bumbad|$BUILD/bumbad|" "$root/systemd/bumbad.service" >"$unit"
grep -q "^ExecStart=$BUILD/bumbad " "$unit" || fail "ExecStart= does not name /usr/local/sbin/bumbad (make install rewrites that path)"
for s in 1 3 5 8; do
	mkdir -p "$T/man/man$s"
	cp "$root"/docs/man/*."$s" "$T/man/man$s/" 2>/dev/null
done

# 1. verify
out=$(MANPATH=$T/man systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complains: $out"
echo "ok: systemd-analyze verify"

# 2. the command line
cmd=$(sed -n 's/^ExecStart=//p' "$unit")
# shellcheck disable=SC2086 # word splitting is the point
$cmd --help >/dev/null 2>"$T/err" || fail "bumbad refuses ExecStart's options ($cmd): $(cat "$T/err")"
echo "ok: ExecStart= options are bumbad's"

# 3. exposure
sec=$(systemd-analyze security --offline=yes "$unit" 2>&1)
line=$(echo "$sec" | grep 'Overall exposure level')
score=$(echo "$line" | sed -n 's/.*: \([0-9][0-9]*\.[0-9]\).*/\1/p')
[ -n "$score" ] || fail "no exposure score in: $(echo "$sec" | tail -5)"
echo "exposure: $score (at most $MAX)"
echo "$sec" | grep '✗' | sed 's/^/  /'
awk -v s="$score" -v m="$MAX" 'BEGIN { exit !(s <= m) }' ||
	fail "systemd-analyze security: exposure $score is above $MAX"

# 4. capabilities: the start-up pair and what bumbad keeps, nothing else.
want="CAP_BPF CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_PERFMON"
for key in AmbientCapabilities CapabilityBoundingSet; do
	got=$(sed -n "s/^$key=//p" "$unit" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')
	[ "$got" = "$want" ] || fail "$key=$got, expected $want"
done
for c in CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_BPF CAP_PERFMON CAP_SYS_ADMIN; do
	grep -q "$c" "$root/docs/security.md" || fail "docs/security.md does not mention $c"
done
echo "ok: capabilities $want"

# 5. sysusers and tmpfiles, in a scratch root
if command -v systemd-sysusers >/dev/null 2>&1 && command -v systemd-tmpfiles >/dev/null 2>&1; then
	R=$T/root
	mkdir -p "$R/etc" "$R/sys/fs/bpf"
	for f in passwd group shadow gshadow; do
		[ -e /etc/$f ] && grep -v '^bumba:' /etc/$f >"$R/etc/$f"
	done
	systemd-sysusers --root="$R" "$root/systemd/bumba.sysusers" >"$T/out" 2>&1 ||
		fail "systemd-sysusers: $(cat "$T/out")"
	uid=$(awk -F: '$1 == "bumba" {print $3}' "$R/etc/passwd")
	gid=$(awk -F: '$1 == "bumba" {print $3}' "$R/etc/group")
	[ -n "$uid" ] && [ -n "$gid" ] || fail "systemd-sysusers made no user or group bumba"
	awk -F: '$1 == "bumba" {exit !($4 == '"$gid"')}' "$R/etc/passwd" || fail "user bumba's group is not bumba"
	systemd-tmpfiles --root="$R" --create "$root/systemd/bumba.tmpfiles" >"$T/out" 2>&1 ||
		fail "systemd-tmpfiles: $(cat "$T/out")"
	[ "$(stat -c '%u:%g %a' "$R/sys/fs/bpf/bumba")" = "$uid:$gid 700" ] ||
		fail "/sys/fs/bpf/bumba: $(stat -c '%u:%g %a' "$R/sys/fs/bpf/bumba"), expected $uid:$gid 700"
	[ "$(stat -c '%u:%g %a' "$R/etc/bumba")" = "0:0 755" ] || fail "/etc/bumba: $(stat -c '%u:%g %a' "$R/etc/bumba")"
	echo "ok: sysusers (bumba $uid:$gid) and tmpfiles"
else
	echo "note: systemd-sysusers or systemd-tmpfiles missing: not checked"
fi
echo "ok: systemd unit"
