#!/bin/sh
# t_http_fuzz.sh - bumbad's HTTP server under abuse, on loopback, while
# 2,000 agents register, lock and exit: a bounded series of malformed and
# hostile requests (garbage bytes, bad request lines, oversized and
# countless headers, bodies where none belong, wrong methods, slow clients
# holding connections, more connections than the server admits).  Every
# answer must be a 4xx (or 505 for an HTTP version it does not speak), the
# right one where it is specific, /health must keep answering 200 in the
# middle of it all, and bumbad must end alive and serving, with every agent
# counted.
#
# Exit 0 pass, 77 skip (reason printed), anything else fail.
set -u

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/http_lib.sh"

CTL=$BUILD/bumbactl
[ -x "$CTL" ] || skip "$CTL is not built"
[ -x "$BUILD/bumbad" ] || skip "$BUILD/bumbad is not built"
need curl python3

start_bumbad_http
trap _http_cleanup EXIT
cd "$WS" || fail "cannot cd to $WS"

# Agents churning meanwhile: 4 loops of 500 short-lived lock holders.
CHURN=
for i in 1 2 3 4; do
	(
		n=0
		while [ $n -lt 500 ]; do
			"$CTL" lock "churn$i" -- true || exit 1
			n=$((n + 1))
		done
	) &
	CHURN="$CHURN $!"
done
EXTRA_PIDS=$CHURN

python3 - "$PORT" <<'EOF' || fail "the HTTP server misbehaved under malformed requests"
import os, random, socket, sys, time

port = int(sys.argv[1])
random.seed(1234)
failures = []

def talk(data, timeout=3.0, read=True):
    """Sends data, returns the status code of the answer, or None if the
    server closed without one."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        if not read:
            return s
        # Nothing more is coming: an incomplete request ends here rather
        # than at the server's connection timeout.
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed already
        buf = b""
        while b"\r\n" not in buf:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
        if not buf.startswith(b"HTTP/1."):
            return None
        return int(buf.split(b" ", 2)[1])
    finally:
        if read:
            s.close()

def expect(name, data, allowed):
    try:
        code = talk(data)
    except (ConnectionResetError, BrokenPipeError):
        code = None
    if code not in allowed:
        failures.append((name, code, allowed))
    return code

def health_ok():
    t0 = time.time()
    code = talk(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    dt = time.time() - t0
    if code != 200 or dt > 2.0:
        failures.append(("health in between", code, dt))

BAD = set(range(400, 500)) | {505, None}

# Specific answers.
expect("unknown path", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", {404})
expect("trailing slash", b"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", {404})
expect("dot dot", b"GET /dashboard/../metrics HTTP/1.1\r\nHost: x\r\n\r\n", {200, 404})
expect("query string", b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", {200})
expect("POST", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", {405})
expect("DELETE", b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n", {405})
expect("PUT chunked", b"PUT /ready HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", {405})
expect("OPTIONS", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", {404, 405})
# Tolerated: a body on a GET (ignored), no Host (libmicrohttpd accepts it).
expect("GET with body", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", {200, 400})
expect("no Host in 1.1", b"GET /metrics HTTP/1.1\r\n\r\n", {200, 400})
expect("huge header", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", {413, 414, 431, None})
expect("huge url", b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {413, 414, 431, None})
expect("many headers", b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(4000)) + b"\r\n", {413, 431, None})
expect("version 9", b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n", {400, 505, None})
expect("header without colon", b"GET /metrics HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", BAD)
expect("bad content-length", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -7\r\n\r\n", BAD)
expect("huge content-length", b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", BAD)
expect("NUL in request line", b"GET /met\x00rics HTTP/1.1\r\nHost: x\r\n\r\n", BAD)
expect("bare LF garbage", b"\n\n\n\n", BAD)
health_ok()

# Random garbage and mutations of a good request, bounded: 1,200 of them,
# 16 at a time.  One the server waits on (incomplete) is given up on by the
# client after 0.5 s, as a real client would.
good = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
def mutant(i):
    kind = i % 4
    if kind == 0:
        return os.urandom(random.randint(1, 2000))
    if kind == 1:
        b = bytearray(good)
        for _ in range(random.randint(1, 8)):
            b[random.randrange(len(b))] = random.randrange(256)
        return bytes(b)
    if kind == 2:
        cut = random.randrange(1, len(good))
        return good[:cut] + os.urandom(random.randint(0, 64)) + b"\r\n\r\n"
    method = random.choice([b"GET", b"HEAD", b"POST", b"PATCH", b"BREW", b"G\x01T", b""])
    path = random.choice([b"/metrics", b"/health", b"/%%", b"/\xff\xfe", b"*", b"", b"//" * 50])
    return method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"

def one(item):
    i, data = item
    try:
        code = talk(data, timeout=0.5)
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        code = None
    if code is not None and code >= 500 and code != 505:
        return ("fuzz %d" % i, code, data[:80])
    return None

from concurrent.futures import ThreadPoolExecutor
cases = [(i, mutant(i)) for i in range(1200)]
with ThreadPoolExecutor(max_workers=16) as pool:
    for start in range(0, len(cases), 200):
        for r in pool.map(one, cases[start:start + 200]):
            if r:
                failures.append(r)
        health_ok()

# Slow clients: 60 connections sending half a request and waiting.
slow = []
for i in range(60):
    s = talk(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", read=False)
    slow.append(s)
health_ok()
# More connections than the server admits (256): the excess is turned away,
# and the server serves again once they are gone.
flood = []
for i in range(300):
    try:
        flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except OSError:
        break
for s in flood + slow:
    s.close()
time.sleep(0.3)
health_ok()
expect("metrics after all", good, {200})

# Serving all along the churn: /metrics answers within 2 s, every 0.2 s,
# until all 2,000 agents have come and gone.
import re
deadline = time.time() + 45
spawned = -1
while time.time() < deadline:
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        body += c
    s.close()
    dt = time.time() - t0
    if not body.startswith(b"HTTP/1.1 200") or dt > 2.0:
        failures.append(("metrics during churn", body[:40], dt))
        break
    m = re.search(rb"^bumba_agents_spawned_total (\d+)$", body, re.M)
    spawned = int(m.group(1)) if m else -1
    if spawned >= 2000:
        break
    time.sleep(0.2)
if spawned < 2000:
    failures.append(("churn did not finish", spawned))

if failures:
    for f in failures[:20]:
        print("FAILURE:", f)
    sys.exit(1)
print("http fuzz ok")
EOF

for p in $CHURN; do
	wait "$p" || fail "an agent of the churn failed"
done
EXTRA_PIDS=
kill -0 "$BUMBAD_PID" 2>/dev/null || fail "bumbad died"
[ "$(get /health "$TMPD/h")" = 200 ] || { cat "$TMPD/h" >&2; fail "/health is not 200 at the end"; }
get /metrics "$TMPD/m" >/dev/null
grep -q '^bumba_agents_spawned_total 2000$' "$TMPD/m" || fail "not every churned agent was counted: $(grep spawned "$TMPD/m")"
grep -q '^bumba_agents_active 0$' "$TMPD/m" || fail "agents left over"

stop_bumbad
echo "ok: malformed HTTP while agents churn"
exit 0
