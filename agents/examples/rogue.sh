#!/bin/sh
# SPDX-License-Identifier: MIT
# rogue.sh - an example of what bumba is there to catch: a "quick fix"
# that edits a file with plain shell redirection, going around bumba.
#
#   rogue.sh FILE [LINE]
#
# It appends LINE (default: a C comment) to FILE with `>>`, that is
# open(O_WRONLY|O_APPEND) and write(2): no registration with bumbad, no
# lock, no territory, no safe write.  Nothing in user space stops it - bumba
# is cooperative - but when bumbad runs with the eBPF guard, the kernel
# reports both system calls, and bumbad, finding that the writer held
# neither a lock nor a territory covering FILE (another agent's territory
# does), records a violation: in the audit log (`bumbactl audit`), in
# bumba_violations_total and in the pinned map /sys/fs/bpf/bumba/violations.
#
# The demo (agents/demo.sh) runs it against a file in another agent's
# EXCLUSIVE territory.  The append also breaks that file's seal line (see
# refactor_agent.c): the demo's final check finds the file changed outside
# bumba even where no guard can load.
set -eu
[ $# -ge 1 ] || { echo "usage: rogue.sh FILE [LINE]" >&2; exit 64; }
printf '%s\n' "${2:-/* quick fix: skipped the lock, nobody will notice (rogue.sh) */}" >>"$1"
