#!/usr/bin/env python3
"""sd_notify_sim.py - plays systemd's part for t_privdrop.sh: the
notification socket, the watchdog and the file descriptor store.

    sd_notify_sim.py [--watchdog-usec N] [--watchdog-pid-other] [--adopt]
                     -- BUMBAD ARGS...

Starts BUMBAD ARGS with NOTIFY_SOCKET (a datagram socket of ours) and
WATCHDOG_USEC, and checks, failing with a message (exit 1) otherwise:
  - READY=1 arrives, and when it does the registration socket (--socket)
    exists and bumbad already runs as its final user (not root);
  - a STATUS= line comes with it;
  - FDSTORE=1 with FDNAME=bumba-segment brings a memfd;
  - WATCHDOG=1 arrives every half interval (or never, with
    --watchdog-pid-other, where WATCHDOG_PID names another process);
  - --adopt: with a live agent holding a lock, bumbad and its keeper are
    SIGKILLed; a bumbad started with the stored memfd as LISTEN_FDS
    adopts the live segment, and the agent's lock is still held;
  - SIGTERM: STOPPING=1 and FDSTOREREMOVE=1 arrive, bumbad exits 0.
Prints what it saw, one "ok: ..." line per check.
"""
import array
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def arg_after(args, flag):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def uid_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Notify:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path
        self.log = []  # (time, fields dict, fds)

    def recv(self, timeout):
        """One datagram as (fields, fds), or None after timeout seconds."""
        self.sock.settimeout(timeout)
        fds = array.array("i")
        try:
            msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
        except socket.timeout:
            return None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        fields = {}
        for line in msg.decode().split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        self.log.append((time.monotonic(), fields, list(fds)))
        return fields, list(fds)

    def wait_for(self, key, timeout, on_each=None):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.recv(max(0.01, end - time.monotonic()))
            if got is None:
                break
            if on_each:
                on_each(*got)
            if key in got[0]:
                return got
        return None


def keeper_pid(sock_path):
    """The process listening on SOCK.keeper, from /proc/net/unix."""
    want = sock_path + ".keeper"
    inode = None
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == want:
                inode = parts[6]
    if inode is None:
        return None
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}") == f"socket:[{inode}]":
                    return int(p)
        except OSError:
            continue
    return None


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        die("usage: sd_notify_sim.py [options] -- BUMBAD ARGS...")
    opts, cmd = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    wd_usec = 200000
    wd_other = "--watchdog-pid-other" in opts
    adopt = "--adopt" in opts
    if "--watchdog-usec" in opts:
        wd_usec = int(opts[opts.index("--watchdog-usec") + 1])
    sock_path = arg_after(cmd, "--socket")
    if not sock_path:
        die("bumbad needs --socket here")
    bctl = os.path.join(os.path.dirname(cmd[0]), "bumbactl")

    tmp = tempfile.mkdtemp(prefix="bumba-sdsim.")
    n = Notify(os.path.join(tmp, "notify"))
    env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC=str(wd_usec))
    if wd_other:
        env["WATCHDOG_PID"] = "1"
    log = open(os.path.join(tmp, "bumbad.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stderr=log)
    stored = []

    def note(fields, fds):
        if fields.get("FDSTORE") == "1":
            if fields.get("FDNAME") != "bumba-segment" or len(fds) != 1:
                die(f"FDSTORE without the segment: {fields} {fds}")
            stored.append(fds[0])
        else:
            for fd in fds:
                os.close(fd)

    def fail(msg):
        proc.kill()
        print(open(log.name).read(), file=sys.stderr)
        die(msg)

    got = n.wait_for("READY", 15, note)
    if got is None:
        fail("no READY=1 within 15 s")
    if not os.path.exists(sock_path):
        fail("READY=1 came before the socket " + sock_path + " existed")
    uid = uid_of(proc.pid)
    print(f"ok: READY=1 (socket there, bumbad uid {uid})")
    if os.getuid() == 0 and "--user" not in cmd and uid == 0:
        fail("READY=1 came while bumbad still ran as root")
    if "STATUS" not in got[0]:
        fail("READY=1 without a STATUS= line: " + str(got[0]))
    print("ok: STATUS=" + got[0]["STATUS"])
    if not stored:
        fail("no FDSTORE=1 with the segment before READY=1")
    link = os.readlink(f"/proc/self/fd/{stored[-1]}")
    if not link.startswith("/memfd:"):
        fail("the stored descriptor is not a memfd: " + link)
    print("ok: FDSTORE=1 FDNAME=bumba-segment: " + link)

    # The watchdog: every half interval, from the event loop.
    t0 = time.monotonic()
    pings = 0
    while time.monotonic() - t0 < 1.5:
        g = n.recv(0.1)
        if g and g[0].get("WATCHDOG") == "1":
            pings += 1
        elif g:
            note(*g)
    want = 0 if wd_other else int(1.5 / (wd_usec / 2e6) * 0.8)
    if wd_other and pings:
        fail(f"{pings} WATCHDOG=1 although WATCHDOG_PID names another process")
    if not wd_other and pings < max(2, want):
        fail(f"only {pings} WATCHDOG=1 in 1.5 s with WATCHDOG_USEC={wd_usec}")
    print(f"ok: {pings} WATCHDOG=1 in 1.5 s (WATCHDOG_USEC={wd_usec}"
          f"{', WATCHDOG_PID another' if wd_other else ''})")

    if adopt:
        # A live agent holds a lock across the crash.
        benv = dict(os.environ, BUMBA_SOCKET=sock_path)
        holder = subprocess.Popen([bctl, "lock", "held", "--", "sleep", "30"], env=benv)
        for _ in range(100):
            r = subprocess.run([bctl, "lock", "--timeout", "0", "held", "--", "true"],
                               env=benv, capture_output=True)
            if r.returncode == 75:
                break
            time.sleep(0.05)
        else:
            fail("the holder did not get its lock")
        kp = keeper_pid(sock_path)
        if kp is None:
            fail("no keeper listening on " + sock_path + ".keeper")
        # systemd kills the whole unit: bumbad and its keeper.
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(kp, signal.SIGKILL)
        proc.wait()
        fd = stored[-1]
        log2 = open(os.path.join(tmp, "bumbad2.log"), "w")
        env2 = dict(env, LISTEN_FDS="1", LISTEN_FDNAMES="bumba-segment")

        def to3():
            os.dup2(fd, 3)

        proc = subprocess.Popen(["sh", "-c", 'export LISTEN_PID=$$; exec "$0" "$@"'] + cmd,
                                env=env2, stderr=log2, preexec_fn=to3, pass_fds=(3,))
        log = log2
        if n.wait_for("READY", 15, note) is None:
            fail("the restarted bumbad did not become ready")
        text = open(log2.name).read()
        if "adopted the live segment" not in text:
            fail("the restarted bumbad did not adopt the stored segment:\n" + text)
        r = subprocess.run([bctl, "lock", "--timeout", "0", "held", "--", "true"],
                           env=benv, capture_output=True)
        if r.returncode != 75:
            fail(f"after the adoption the live agent's lock is gone (lock exit {r.returncode})")
        print("ok: restarted with LISTEN_FDS: adopted the live segment, the agent keeps its lock")
        holder.kill()
        holder.wait()

    proc.send_signal(signal.SIGTERM)
    stopping = n.wait_for("STOPPING", 10, note)
    if stopping is None:
        fail("no STOPPING=1 after SIGTERM")
    removed = stopping[0].get("FDSTOREREMOVE") == "1" or \
        n.wait_for("FDSTOREREMOVE", 2, note) is not None
    if not removed:
        fail("no FDSTOREREMOVE=1 for the segment at a clean stop")
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        fail("bumbad did not stop within 10 s of SIGTERM")
    if rc != 0:
        fail(f"bumbad exited {rc} after SIGTERM")
    print("ok: SIGTERM: STOPPING=1, FDSTOREREMOVE=1, exit 0")
    for fd in stored:
        try:
            os.close(fd)
        except OSError:
            pass
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
