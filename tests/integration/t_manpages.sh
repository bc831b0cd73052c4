#!/usr/bin/env bash
# t_manpages.sh - every man page in docs/man (docs/man/*.[0-9]) renders
# without a single warning from man-db and groff:
#   man --warnings -l -E UTF-8 -Tutf8 PAGE   (man-db's own check)
#   groff -ww -man -z PAGE                   (every groff warning)
# and each page is what its name says: .TH NAME SECTION matches the file
# name, it has NAME and SEE ALSO sections, `make install` installs it, and
# every bumba page it refers to (bumbad(8), libbumba-shm(3), ...) exists.
#
# Exit 0 pass, 77 skip (no man or groff), 1 fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
root=$(cd "$here/../.." && pwd)

command -v man >/dev/null 2>&1 || skip "man (man-db) is not installed"
command -v groff >/dev/null 2>&1 || skip "groff is not installed"

shopt -s nullglob
pages=("$root"/docs/man/*.[0-9])
[ ${#pages[@]} -gt 0 ] || fail "no man pages in docs/man"

errors=0
bad() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }

for page in "${pages[@]}"; do
	name=$(basename "$page")
	base=${name%.*} sect=${name##*.}
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l -E UTF-8 -Tutf8 "$page" 2>&1 >/dev/null)
	[ -z "$out" ] || bad "$name: man --warnings:"$'\n'"$out"
	out=$(groff -ww -man -z "$page" 2>&1)
	[ -z "$out" ] || bad "$name: groff -ww:"$'\n'"$out"
	# .TH NAME SECTION: the title in upper case, as man-pages(7) asks.
	th=$(grep -m1 '^\.TH ' "$page" | awk '{print $2, $3}')
	want="$(echo "$base" | tr '[:lower:]' '[:upper:]') $sect"
	[ "$th" = "$want" ] || bad "$name: .TH says '$th', expected '$want'"
	grep -q '^\.SH NAME' "$page" || bad "$name: no NAME section"
	grep -q '^\.SH "SEE ALSO"' "$page" || bad "$name: no SEE ALSO section"
	grep -q "docs/man/$name" "$root/Makefile" || bad "$name: not installed by make install"
	# References to bumba's own pages must resolve.
	for ref in $(grep -o '^\.BR \(bumba[a-z.\\-]*\|libbumba[a-z\\-]*\) ([0-9])' "$page" |
		sed -e 's/^\.BR //' -e 's/\\-/-/g' -e 's/ (\([0-9]\))/.\1/' | sort -u); do
		[ -e "$root/docs/man/$ref" ] || bad "$name: refers to $ref, which docs/man does not have"
	done
	echo "ok: $name"
done
[ "$errors" -eq 0 ] || fail "$errors problem(s) in the man pages"
echo "ok: ${#pages[@]} man pages, no warnings"
