#!/usr/bin/env bash
# t_install.sh - `make install` and `make uninstall` into a staging tree:
#   1. `make install DESTDIR=D PREFIX=/usr/local` puts every file where it
#      belongs: bumbad, bumbactl, bumba-run; libbumba-shm.so.VERSION with
#      its soname link .so.0 and the .so link, the soname inside the
#      library; the .a; bumba.h; bumba-shm.pc; the five man pages; the
#      unit (ExecStart= at the installed bumbad); sysusers.d and tmpfiles.d
#      files; the example configuration in /etc/bumba; the Python package
#      (its modules only) in /usr/local/lib/python3.X/dist-packages/bumba,
#      X that of /usr/bin/python3 (else python3), its loader told LIBDIR;
#   2. pkg-config against the staged tree (PKG_CONFIG_SYSROOT_DIR) gives
#      flags that build agents/examples/contend.c and a small agent of our
#      own: `cc agent.c $(pkg-config --cflags --libs bumba-shm)`; both run
#      against a live bumbad with the staged shared library
#      (LD_LIBRARY_PATH), and the agent's lock is seen by another agent;
#      python3 imports the staged package (PYTHONPATH, BUMBA_LIBRARY) and
#      registers an agent with that bumbad;
#   3. another PREFIX (/opt/bumba) ends up in the .pc, in ExecStart= and in
#      the Python package's place (lib/python3.X/site-packages);
#      PREFIX=/usr puts it in /usr/lib/python3/dist-packages, PYTHONDIR=
#      anywhere;
#   4. `make uninstall` with the same variables leaves no file behind (nor
#      the Python package's directory, byte-code included).
#
# Exit 0 pass, 77 skip (reason printed), 1 fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(cd "$here/../.." && pwd)

command -v make >/dev/null 2>&1 || skip "make is not installed"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config is not installed"
command -v cc >/dev/null 2>&1 || skip "no C compiler"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"

D=$(mktemp -d /tmp/bumba-destdir.XXXXXX)
D2=$(mktemp -d /tmp/bumba-destdir.XXXXXX)
A=$(mktemp -d /tmp/bumba-agent.XXXXXX)
cleanup() {
	_bumba_cleanup
	rm -rf "$D" "$D2" "$A"
}
trap cleanup EXIT
P=/usr/local
# The build directory under test, whatever BUILD says.
MK=(make -s -C "$root" O="$BUILD")

# 1. install
"${MK[@]}" install DESTDIR="$D" PREFIX=$P >"$A/install.log" 2>&1 ||
	fail "make install: $(tail -20 "$A/install.log")"
ver=$(sed -n 's/^VERSION *:= *//p' "$root/Makefile")
so=$(sed -n 's/^SOVERSION *:= *//p' "$root/Makefile")
files="$P/sbin/bumbad $P/bin/bumbactl $P/bin/bumba-run
$P/lib/libbumba-shm.so.$ver $P/lib/libbumba-shm.a $P/include/bumba.h $P/lib/pkgconfig/bumba-shm.pc
$P/share/man/man8/bumbad.8 $P/share/man/man1/bumbactl.1 $P/share/man/man1/bumba-run.1
$P/share/man/man3/libbumba-shm.3 $P/share/man/man5/bumba.conf.5
$P/lib/systemd/system/bumbad.service $P/lib/sysusers.d/bumba.conf $P/lib/tmpfiles.d/bumba.conf
/etc/bumba/bumba.conf.example"
# The python3 the Makefile installs for (Debian's before a pyenv one).
py=/usr/bin/python3
[ -x $py ] || py=$(command -v python3 || true)
pyver=
[ -n "$py" ] && pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pydir=$P/lib/python$pyver/dist-packages
pymods=$(cd "$root/agents/python/bumba" && find . -maxdepth 1 -name '*.py' | sed 's|^\./||' | sort)
if [ -n "$pyver" ]; then
	for m in $pymods; do files="$files $pydir/bumba/$m"; done
fi
for f in $files; do
	[ -f "$D$f" ] || fail "make install did not install $f"
done
for f in bumbad bumbactl bumba-run; do
	[ -x "$D$P/sbin/$f" ] || [ -x "$D$P/bin/$f" ] || fail "$f is not executable"
done
[ "$(readlink "$D$P/lib/libbumba-shm.so.$so")" = "libbumba-shm.so.$ver" ] ||
	fail "libbumba-shm.so.$so -> $(readlink "$D$P/lib/libbumba-shm.so.$so")"
[ "$(readlink "$D$P/lib/libbumba-shm.so")" = "libbumba-shm.so.$so" ] ||
	fail "libbumba-shm.so -> $(readlink "$D$P/lib/libbumba-shm.so")"
if command -v readelf >/dev/null 2>&1; then
	readelf -d "$D$P/lib/libbumba-shm.so.$ver" | grep -q "SONAME.*\[libbumba-shm.so.$so\]" ||
		fail "the library's SONAME is not libbumba-shm.so.$so"
fi
grep -q "^ExecStart=$P/sbin/bumbad " "$D$P/lib/systemd/system/bumbad.service" ||
	fail "the installed unit's ExecStart= is not $P/sbin/bumbad"
if [ -n "$pyver" ]; then
	got=$(cd "$D$pydir/bumba" && find . -mindepth 1 | sed 's|^\./||' | sort)
	[ "$got" = "$pymods" ] || fail "the Python package in $pydir/bumba holds: $got"
	grep -qx "INSTALLED_LIBDIR = \"$P/lib\"" "$D$pydir/bumba/_native.py" ||
		fail "the installed _native.py does not name LIBDIR $P/lib"
fi
n=$(find "$D" -type f -o -type l | wc -l)
echo "ok: make install: $n files and links, soname libbumba-shm.so.$so"

# 2. pkg-config against the staged tree, and agents built with it
export PKG_CONFIG_SYSROOT_DIR=$D PKG_CONFIG_LIBDIR=$D$P/lib/pkgconfig PKG_CONFIG_PATH=
pkg-config --exists bumba-shm || fail "pkg-config does not find bumba-shm in the staged tree"
[ "$(pkg-config --modversion bumba-shm)" = "$ver" ] || fail "pkg-config --modversion: $(pkg-config --modversion bumba-shm)"
flags=$(pkg-config --cflags --libs bumba-shm)
case $flags in *"-I$D$P/include"*) ;; *) fail "pkg-config --cflags lacks -I$D$P/include: $flags" ;; esac
case $flags in *"-L$D$P/lib"*"-lbumba-shm"*) ;; *) fail "pkg-config --libs: $flags" ;; esac
case $(pkg-config --static --libs bumba-shm) in *-luring*) ;; *) fail "pkg-config --static lacks -luring" ;; esac
echo "pkg-config: $flags"

cat >"$A/agent.c" <<'EOF'
/* A small agent: register, lock argv[1] for argv[2] ms, say so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bumba.h>

int main(int argc, char **argv)
{
	struct bumba_agent_info me = {.type = "Installed", .name = "Agent"};
	struct bumba *b;
	struct bumba_lock l;
	int rc = bumba_open(NULL, &me, &b);

	if (rc < 0) {
		fprintf(stderr, "bumba_open: %s\n", strerror(-rc));
		return 1;
	}
	rc = bumba_lock_acquire(b, argc > 1 ? argv[1] : "f", BUMBA_EXCLUSIVE, 0,
				BUMBA_PRIO_NORMAL, &l);
	if (rc < 0) {
		printf("busy: %s\n", strerror(-rc));
		bumba_close(b);
		return rc == -EBUSY ? 75 : 1;
	}
	printf("locked fence %llu as %s\n", (unsigned long long)l.fence, bumba_agent_id(b));
	fflush(stdout);
	long ms = argc > 2 ? atol(argv[2]) : 0;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	bumba_lock_release(b, &l);
	bumba_close(b);
	return 0;
}
EOF
# shellcheck disable=SC2086 # the flags are words
cc -Wall -Werror -o "$A/agent" "$A/agent.c" $flags || fail "cc agent.c \$(pkg-config --cflags --libs bumba-shm) failed"
# contend.c uses strerrorname_np(3), a GNU extension: -D_GNU_SOURCE, as
# the Makefile builds it.
# shellcheck disable=SC2086
cc -O2 -Wall -Werror -D_GNU_SOURCE -o "$A/contend" "$root/agents/examples/contend.c" $flags ||
	fail "cc agents/examples/contend.c \$(pkg-config ...) failed"
echo "ok: agents built with pkg-config"

export LD_LIBRARY_PATH=$D$P/lib
ldd "$A/agent" | grep -q "libbumba-shm.so.$so => $D$P/lib/" ||
	fail "the agent does not load the staged library: $(ldd "$A/agent" | grep bumba)"
start_bumbad
"$A/agent" shared.txt 1500 >"$A/holder.out" 2>&1 &
holder=$!
for _ in $(seq 100); do
	grep -q locked "$A/holder.out" && break
	sleep 0.02
done
grep -q 'locked fence 1 as Installed-Agent-' "$A/holder.out" || fail "the agent did not lock: $(cat "$A/holder.out")"
"$A/agent" shared.txt >"$A/second.out" 2>&1
rc=$?
[ "$rc" -eq 75 ] || fail "a second agent got the held lock (exit $rc: $(cat "$A/second.out"))"
wait "$holder" || fail "the holder failed: $(cat "$A/holder.out")"
echo "counter 0" >"$WS/c.txt"
"$A/contend" --rounds 20 c.txt >"$A/contend.out" 2>&1 || fail "contend failed: $(tail -5 "$A/contend.out")"
[ "$(head -1 "$WS/c.txt")" = "counter 20" ] || fail "contend's file says $(head -1 "$WS/c.txt")"
if [ -n "$pyver" ]; then
	# From another directory, writing byte-code (uninstall must remove it).
	(cd "$A" && env -u PYTHONDONTWRITEBYTECODE PYTHONPATH="$D$pydir" \
		BUMBA_LIBRARY="$D$P/lib/libbumba-shm.so.$so" "$py" -c '
import bumba
print(bumba.__file__)
print(bumba.library_path)
with bumba.connect(type="Installed", name="Py") as agent:
    print(agent.id)
') >"$A/py.out" 2>&1 || fail "python3 with the staged package: $(cat "$A/py.out")"
	{ read -r pyfile; read -r pylib; read -r pyid; } <"$A/py.out"
	[ "$pyfile" = "$D$pydir/bumba/__init__.py" ] || fail "bumba was imported from $pyfile"
	[ "$pylib" = "$D$P/lib/libbumba-shm.so.$so" ] || fail "bumba loaded $pylib"
	case $pyid in Installed-Py-*) ;; *) fail "the Python agent's id: $pyid" ;; esac
	echo "ok: python3 imported the staged package, agent $pyid"
fi
stop_bumbad
unset LD_LIBRARY_PATH
echo "ok: the staged agents ran against a live bumbad"

# 3. another prefix
"${MK[@]}" install DESTDIR="$D2" PREFIX=/opt/bumba >"$A/install2.log" 2>&1 ||
	fail "make install PREFIX=/opt/bumba: $(tail -20 "$A/install2.log")"
grep -qx 'prefix=/opt/bumba' "$D2/opt/bumba/lib/pkgconfig/bumba-shm.pc" ||
	fail "PREFIX=/opt/bumba: the .pc says $(grep prefix= "$D2/opt/bumba/lib/pkgconfig/bumba-shm.pc")"
[ "$(PKG_CONFIG_SYSROOT_DIR= PKG_CONFIG_LIBDIR=$D2/opt/bumba/lib/pkgconfig pkg-config --cflags bumba-shm | sed 's/ *$//')" = "-I/opt/bumba/include" ] ||
	fail "PREFIX=/opt/bumba: pkg-config --cflags is not -I/opt/bumba/include"
grep -q '^ExecStart=/opt/bumba/sbin/bumbad ' "$D2/opt/bumba/lib/systemd/system/bumbad.service" ||
	fail "PREFIX=/opt/bumba: ExecStart= is not /opt/bumba/sbin/bumbad"
if [ -n "$pyver" ]; then
	[ -f "$D2/opt/bumba/lib/python$pyver/site-packages/bumba/__init__.py" ] ||
		fail "PREFIX=/opt/bumba: no lib/python$pyver/site-packages/bumba"
	grep -qx 'INSTALLED_LIBDIR = "/opt/bumba/lib"' "$D2/opt/bumba/lib/python$pyver/site-packages/bumba/_native.py" ||
		fail "PREFIX=/opt/bumba: the installed _native.py does not name /opt/bumba/lib"
fi
"${MK[@]}" uninstall DESTDIR="$D2" PREFIX=/opt/bumba >/dev/null 2>&1 || fail "make uninstall PREFIX=/opt/bumba failed"
echo "ok: PREFIX=/opt/bumba"
if [ -n "$pyver" ]; then
	for v in "PREFIX=/usr|/usr/lib/python3/dist-packages" "PYTHONDIR=/srv/py|/srv/py"; do
		"${MK[@]}" install DESTDIR="$D2" "${v%|*}" >"$A/install3.log" 2>&1 ||
			fail "make install ${v%|*}: $(tail -20 "$A/install3.log")"
		[ -f "$D2${v#*|}/bumba/_native.py" ] || fail "${v%|*}: no ${v#*|}/bumba/_native.py"
		"${MK[@]}" uninstall DESTDIR="$D2" "${v%|*}" >/dev/null 2>&1 || fail "make uninstall ${v%|*} failed"
		[ ! -e "$D2${v#*|}/bumba" ] || fail "make uninstall ${v%|*} left ${v#*|}/bumba"
	done
	echo "ok: the Python package in /usr/lib/python3/dist-packages (PREFIX=/usr), or PYTHONDIR="
fi

# 4. uninstall
"${MK[@]}" uninstall DESTDIR="$D" PREFIX=$P >"$A/uninstall.log" 2>&1 ||
	fail "make uninstall: $(tail -20 "$A/uninstall.log")"
left=$(find "$D" "$D2" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
[ -z "$pyver" ] || [ ! -e "$D$pydir/bumba" ] || fail "make uninstall left $pydir/bumba"
echo "ok: make uninstall removed everything"
