#!/bin/sh
# t_watch.sh - `bumbactl watch` in a real terminal (a private tmux server):
# the dashboard redrawn in place shows the agent and lock counts change as
# lock holders come and go, and 'q' quits it, restoring the terminal.
# Also the non-terminal forms: --count with plain text, and --json lines.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/http_lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
need tmux python3

start_bumbad
cd "$WS" || fail "cannot cd to $WS"

# A tmux server of our own (its own socket name), killed on exit.
TM="tmux -L bumba-watch-$$ -f /dev/null"
cleanup() {
	$TM kill-server 2>/dev/null
	_http_cleanup
}
trap cleanup EXIT

S=watch
screen() { $TM capture-pane -p -t $S 2>/dev/null; }
shows() { # REGEX: the pane has a line matching REGEX
	screen >"$TMPD/pane" && grep -qE -- "$1" "$TMPD/pane"
}
expect() { # SECONDS REGEX WHAT
	wait_until "$1" shows "$2" || {
		cat "$TMPD/pane" >&2
		fail "$3"
	}
}

# --- non-terminal output ----------------------------------------------------
"$CTL" watch --count 2 --interval 100 >"$TMPD/plain" || fail "watch --count 2 failed"
[ "$(grep -c '^AGENTS$' "$TMPD/plain")" -eq 2 ] || fail "watch --count 2 did not print 2 frames"
grep -q "$(printf '\033')" "$TMPD/plain" && fail "watch wrote escape sequences to a file"
"$CTL" watch --json --count 3 --interval 100 >"$TMPD/jsonl" || fail "watch --json failed"
python3 -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 3, lines
for l in lines:
    d = json.loads(l)
    assert d["agents"]["active"] == 0 and "safety" in d, d
' "$TMPD/jsonl" || fail "watch --json did not print 3 JSON documents"
"$CTL" watch --interval 5 >/dev/null 2>&1
[ $? -eq 64 ] || fail "watch --interval 5 was accepted"

# --- in a terminal ------------------------------------------------------------
$TM new-session -d -s watch -x 100 -y 50 \
	"BUMBA_SOCKET='$BUMBA_SOCKET' '$CTL' watch --interval 200; echo watch-exited=\$?; sleep 30" ||
	fail "cannot start tmux"
expect 10 '^  Active: 0/' "the dashboard never showed 0 agents"
shows '^bumba dashboard - every 0\.2s' || fail "no header line"
shows '^SAFETY STATUS$' || fail "no SAFETY STATUS section"
shows '^  Overall: SAFE$' || fail "an idle supervisor is not SAFE"

hold one.txt
hold two.txt
expect 10 '^  Active: 2/' "the dashboard never showed the 2 agents"
expect 5 '^  Active Locks: 2$' "the dashboard never showed the 2 locks"
expect 5 '^    operations: 2$' "the dashboard never showed the department"
# In place: one frame on the screen, not a scrolling log.
[ "$(grep -c '^AGENTS$' "$TMPD/pane")" -eq 1 ] || fail "more than one frame on the screen"

hold three.txt
expect 10 '^  Active: 3/' "the dashboard never showed the third agent"
release_all
expect 10 '^  Active: 0/' "the dashboard never showed the agents leave"
expect 5 '^  Active Locks: 0$' "the dashboard never showed the locks released"
expect 5 '^  Total Operations: 3$' "the dashboard does not count 3 acquisitions"

$TM send-keys -t $S q
expect 5 '^watch-exited=0$' "'q' did not end watch with status 0"
# The terminal is back in canonical mode with echo: typed text echoes.
$TM send-keys -t $S 'echoed-text'
expect 5 'echoed-text' "the terminal was not restored (no echo)"

# Ctrl-C ends it too (a second session; the first goes after).
$TM new-session -d -s watch2 -x 100 -y 50 \
	"BUMBA_SOCKET='$BUMBA_SOCKET' '$CTL' watch --interval 200; echo watch-exited=\$?; sleep 30" ||
	fail "cannot start a second tmux session"
$TM kill-session -t watch
S=watch2
expect 10 '^  Active: 0/' "the dashboard never came up the second time"
$TM send-keys -t $S C-c
expect 5 '^watch-exited=0$' "Ctrl-C did not end watch"

stop_bumbad
echo "ok: bumbactl watch"
exit 0
