# SPDX-License-Identifier: MIT
"""The Python binding's whole surface against a real bumbad.

Run from the repository root (tests/run.sh does, as part of `make check`):

    PYTHONPATH=agents/python python3 -m pytest -q -p no:cacheprovider agents/python/tests

BUILD (default: build) names the build directory with bumbad, bumba-run and
libbumba-shm.so.  Each test module starts one private bumbad in a temporary
directory (--no-guard --http off) and stops it with SIGTERM.
"""

import ctypes
import errno
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PYDIR))
BUILD = os.environ.get("BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(REPO, BUILD)
if "BUMBA_LIBRARY" not in os.environ and os.path.exists(os.path.join(BUILD, "libbumba-shm.so")):
    os.environ["BUMBA_LIBRARY"] = os.path.join(BUILD, "libbumba-shm.so")
sys.path.insert(0, PYDIR)

import bumba  # noqa: E402
from bumba import _native  # noqa: E402

ID_RE = re.compile(r"^[^-]+-[^-]+-\d{13}-[0-9a-f]{8}$")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

class Supervisor:
    """A private bumbad: .socket, .ws (workspace root), .tmp, .proc."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="bumba-pytest.")
        self.ws = os.path.join(self.tmp, "ws")
        os.mkdir(self.ws)
        self.socket = os.path.join(self.tmp, "bumba.sock")
        self.log = os.path.join(self.tmp, "bumbad.log")
        exe = os.path.join(BUILD, "bumbad")
        if not os.access(exe, os.X_OK):
            pytest.skip("%s is not built (run make)" % exe)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "--foreground", "--socket", self.socket, "--workspace", self.ws,
                 "--no-guard", "--http", "off", "--keeper-linger", "1"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                if b"ready:" in f.read():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        with open(self.log, "rb") as f:
            out = f.read().decode(errors="replace")
        raise RuntimeError("bumbad did not start:\n" + out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        """An environment for a child Python process using the binding."""
        env = dict(os.environ)
        env.pop("BUMBA_AGENT_ID", None)
        env.pop("BUMBA_AGENT_FD", None)
        env["BUMBA_SOCKET"] = self.socket
        env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra)
        return env


@pytest.fixture(scope="module")
def sup():
    s = Supervisor()
    yield s
    s.stop()


@pytest.fixture
def agent(sup):
    with bumba.connect(socket=sup.socket, type="Test", name="main") as a:
        yield a


@pytest.fixture
def other(sup):
    with bumba.connect(socket=sup.socket, type="Test", name="other") as a:
        yield a


_seq = [0]


@pytest.fixture
def d(sup):
    """A fresh directory inside the workspace; returns its relative name."""
    _seq[0] += 1
    name = "t%d" % _seq[0]
    os.mkdir(os.path.join(sup.ws, name))
    return name


def read(sup, rel):
    with open(os.path.join(sup.ws, rel), "rb") as f:
        return f.read()


def write(sup, rel, data):
    with open(os.path.join(sup.ws, rel), "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------
# the binding against the header
# --------------------------------------------------------------------------

def test_struct_layout_matches_c(tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to check the structure layouts against")
    layout = _native.layout()
    lines = []
    for key in layout:
        if "." in key:
            st, field = key.split(".")
            lines.append('printf("%s %%zu\\n", offsetof(struct %s, %s));' % (key, st, field))
        else:
            lines.append('printf("%s %%zu\\n", sizeof(struct %s));' % (key, key))
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <bumba.h>\n"
                   "int main(void) {\n%s\nreturn 0; }\n" % "\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", os.path.join(REPO, "shm"), "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    c = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    assert c == layout
    # enums are passed as int
    assert ctypes.sizeof(_native.c_enum) == 4


def test_every_header_function_is_declared():
    with open(os.path.join(REPO, "shm", "bumba.h")) as f:
        header = f.read()
    names = set(re.findall(r"^\w[\w \*]*?\b(bumba_\w+)\(", header, re.M))
    assert names, "no prototypes found in bumba.h"
    assert names <= set(_native.PROTOTYPES), names - set(_native.PROTOTYPES)


def test_library_from_env(sup):
    lib = os.path.join(BUILD, "libbumba-shm.so")
    r = subprocess.run([sys.executable, "-c", "import bumba; print(bumba.library_path)"],
                       env=sup.env(BUMBA_LIBRARY=lib), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == lib


def test_library_from_the_system_by_soname(sup, tmp_path):
    # A copy of the package outside the build tree finds the library by its
    # soname (here through LD_LIBRARY_PATH, as after `make install`).
    shutil.copytree(os.path.join(PYDIR, "bumba"), str(tmp_path / "pkg" / "bumba"))
    os.mkdir(str(tmp_path / "lib"))
    os.symlink(os.path.join(BUILD, "libbumba-shm.so"), str(tmp_path / "lib" / "libbumba-shm.so.0"))
    env = sup.env(PYTHONPATH=str(tmp_path / "pkg"), LD_LIBRARY_PATH=str(tmp_path / "lib"))
    env.pop("BUMBA_LIBRARY", None)
    r = subprocess.run([sys.executable, "-c", "import bumba; print(bumba.library_path); "
                        "a = bumba.connect(); print(a.id); a.close()"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    path, agent_id = r.stdout.split()
    assert path.startswith("libbumba-shm.so")
    assert ID_RE.match(agent_id)


def test_library_from_the_installed_libdir(sup, tmp_path):
    # The copy `make install` puts in place names its LIBDIR (it rewrites
    # INSTALLED_LIBDIR), and loads the library from there first.
    shutil.copytree(os.path.join(PYDIR, "bumba"), str(tmp_path / "pkg" / "bumba"))
    native = tmp_path / "pkg" / "bumba" / "_native.py"
    text = native.read_text()
    assert "\nINSTALLED_LIBDIR = None\n" in text
    native.write_text(text.replace("\nINSTALLED_LIBDIR = None\n",
                                   '\nINSTALLED_LIBDIR = "%s"\n' % (tmp_path / "lib")))
    os.mkdir(str(tmp_path / "lib"))
    lib = str(tmp_path / "lib" / "libbumba-shm.so.0")
    os.symlink(os.path.join(BUILD, "libbumba-shm.so"), lib)
    env = sup.env(PYTHONPATH=str(tmp_path / "pkg"))
    env.pop("BUMBA_LIBRARY", None)
    r = subprocess.run([sys.executable, "-c", "import bumba; print(bumba.library_path)"],
                       env=env, capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == lib


def test_library_missing_is_a_clear_import_error(sup):
    r = subprocess.run([sys.executable, "-c", "import bumba"],
                       env=sup.env(BUMBA_LIBRARY="/nonexistent/libbumba-shm.so"),
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "/nonexistent/libbumba-shm.so" in r.stderr and "BUMBA_LIBRARY" in r.stderr


def test_io_uring_available():
    assert bumba.io_uring_available() in (0, 1) or bumba.io_uring_available() < 0


# --------------------------------------------------------------------------
# agents
# --------------------------------------------------------------------------

def test_connect_close_and_context_manager(sup):
    a = bumba.connect(socket=sup.socket)
    assert not a.closed
    assert ID_RE.match(a.id)
    assert a.id.startswith("Agent-agent%d-" % os.getpid())
    a.close()
    assert a.closed
    a.close()  # idempotent
    with pytest.raises(ValueError):
        a.lock("x").acquire()
    with pytest.raises(ValueError):
        a.normalize("x")
    with bumba.connect(socket=sup.socket) as b:
        assert not b.closed
    assert b.closed
    assert "closed" in repr(b)


def test_id_format_and_info(sup):
    with bumba.connect(socket=sup.socket, type="Coder", name="py", department="technical",
                       capabilities=["edit", "test"]) as a:
        assert ID_RE.match(a.id), a.id
        typ, name, ms, rnd = a.id.split("-")
        assert (typ, name) == ("Coder", "py")
        assert abs(int(ms) - time.time() * 1000) < 60_000
        assert re.fullmatch(r"[0-9a-f]{8}", rnd)
        assert not a.joined
        with bumba.connect(socket=sup.socket, type="Child", name="c", parent=a) as c:
            assert c.id != a.id
        with bumba.connect(socket=sup.socket, capabilities="one") as c:
            assert ID_RE.match(c.id)


def test_connect_uses_bumba_socket_env(sup, monkeypatch):
    monkeypatch.setenv("BUMBA_SOCKET", sup.socket)
    with bumba.connect() as a:
        assert ID_RE.match(a.id)


def test_connect_bad_info(sup):
    with pytest.raises(bumba.Error) as ei:
        bumba.connect(socket=sup.socket, type="has-dash")
    assert ei.value.errno == errno.EINVAL
    assert ei.value.operation == "bumba_open"
    with pytest.raises(bumba.Error) as ei:
        bumba.connect(socket=sup.socket, name="x" * 40)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(bumba.Error):
        bumba.connect(socket=sup.socket, capabilities=["c%d" % i for i in range(17)])
    with pytest.raises(TypeError):
        bumba.connect(socket=sup.socket, type=5)
    with pytest.raises(TypeError):
        bumba.connect(socket=sup.socket, capabilities=[1])
    with pytest.raises(TypeError):
        bumba.connect(socket=sup.socket, capabilities=5)
    with pytest.raises(ValueError):
        bumba.connect(socket=sup.socket, name="a\0b")
    with pytest.raises(TypeError):
        bumba.connect(socket=5)


def test_no_supervisor(tmp_path):
    with pytest.raises(bumba.NoSupervisor) as ei:
        bumba.connect(socket=str(tmp_path / "missing.sock"))
    assert ei.value.errno == errno.ENOENT
    assert isinstance(ei.value, bumba.Error) and isinstance(ei.value, OSError)
    assert ei.value.path == str(tmp_path / "missing.sock")
    # a socket file nobody listens on
    import socket as pysock
    s = pysock.socket(pysock.AF_UNIX, pysock.SOCK_SEQPACKET)
    s.bind(str(tmp_path / "dead.sock"))
    s.close()
    with pytest.raises(bumba.NoSupervisor) as ei:
        bumba.connect(socket=str(tmp_path / "dead.sock"))
    assert ei.value.errno == errno.ECONNREFUSED


def test_workspace_root_and_normalize(sup, agent):
    assert agent.workspace_root() == sup.ws
    assert agent.workspace_root(0) == sup.ws
    assert agent.workspace_roots() == [sup.ws]
    with pytest.raises(IndexError):
        agent.workspace_root(1)
    with pytest.raises(TypeError):
        agent.workspace_root("0")
    assert agent.normalize("a//b/./c/../d/") == sup.ws + "/a/b/d"
    assert agent.normalize(sup.ws + "/x") == sup.ws + "/x"
    import pathlib
    assert agent.normalize(pathlib.PurePosixPath("p/q")) == sup.ws + "/p/q"
    assert agent.normalize(b"r") == sup.ws + "/r"
    for bad in ("../escape", "/etc/passwd", ""):
        with pytest.raises(bumba.Error) as ei:
            agent.normalize(bad)
        assert ei.value.errno == errno.EINVAL
        assert ei.value.path == bad


def test_set_status(agent):
    for st in ("idle", "active", "busy", "blocked"):
        agent.set_status(st)
    with pytest.raises(ValueError):
        agent.set_status("sleeping")
    with pytest.raises(TypeError):
        agent.set_status(1)


# --------------------------------------------------------------------------
# locks
# --------------------------------------------------------------------------

def test_lock_exclusive_and_timeout(agent, other, d):
    p = d + "/f"
    with agent.lock(p) as lk:
        assert lk.held and isinstance(lk.fence, int) and lk.fence > 0
        t0 = time.monotonic()
        with pytest.raises(bumba.LockTimeout) as ei:
            other.lock(p, timeout=0.2).acquire()
        waited = time.monotonic() - t0
        assert 0.15 < waited < 5
        e = ei.value
        assert e.errno == errno.ETIMEDOUT and e.operation == "bumba_lock_acquire"
        assert e.path == p and e.conflicts == []
        with pytest.raises(bumba.LockBusy) as ei:
            other.lock(p, timeout=0).acquire()
        assert ei.value.errno == errno.EBUSY
        assert isinstance(ei.value, bumba.ConflictError)
        assert isinstance(ei.value, bumba.LockTimeout)
    assert not lk.held and lk.fence is None
    with other.lock(p, timeout=0):
        pass


def test_lock_shared(sup, agent, other, d):
    p = d + "/s"
    with agent.lock(p, shared=True), other.lock(p, shared=True, timeout=0) as lk2:
        assert lk2.shared
        with bumba.connect(socket=sup.socket) as third:
            with pytest.raises(bumba.LockTimeout):
                third.lock(p, timeout=0.05).acquire()
    with agent.lock(p, timeout=0):
        pass


def test_fence_strictly_increasing(agent, other, d):
    p = d + "/fence"
    fences = []
    for i in range(10):
        who = agent if i % 2 else other
        with who.lock(p) as lk:
            fences.append(lk.fence)
    assert all(b > a for a, b in zip(fences, fences[1:])), fences


def test_lock_reentrant_and_manual(agent, d):
    lk = agent.lock(d + "/r")
    assert lk.acquire() is lk
    f1 = lk.fence
    with lk:  # a counted re-entry
        assert lk.held
    assert lk.held and lk.fence == f1
    lk.release()
    assert not lk.held
    with pytest.raises(RuntimeError):
        lk.release()
    assert "exclusive" in repr(lk)


def test_lock_argument_validation(agent, d):
    p = d + "/v"
    for prio in ("low", "normal", "high"):
        with agent.lock(p, priority=prio):
            pass
    with pytest.raises(ValueError):
        agent.lock(p, priority="urgent")
    with pytest.raises(TypeError):
        agent.lock(p, priority=2)
    with pytest.raises(ValueError):
        agent.lock(p, timeout=-1)
    with pytest.raises(ValueError):
        agent.lock(p, timeout=float("nan"))
    with pytest.raises(TypeError):
        agent.lock(p, timeout="1")
    with pytest.raises(TypeError):
        agent.lock(p, shared="yes")
    with pytest.raises(ValueError):
        agent.lock(p, lease=0)
    with agent.lock(p, timeout=None):  # the supervisor's default
        pass


def test_lock_priority_high_served_first(sup, agent, d):
    p = d + "/prio"
    order = []
    with bumba.connect(socket=sup.socket, name="low") as lo, \
            bumba.connect(socket=sup.socket, name="high") as hi:
        lk = agent.lock(p).acquire()

        def waiter(a, prio):
            with a.lock(p, timeout=10, priority=prio):
                order.append(prio)

        t_lo = threading.Thread(target=waiter, args=(lo, "low"))
        t_lo.start()
        time.sleep(0.2)
        t_hi = threading.Thread(target=waiter, args=(hi, "high"))
        t_hi.start()
        time.sleep(0.2)
        lk.release()
        t_lo.join(10)
        t_hi.join(10)
    assert order == ["high", "low"]


def test_lock_waiter_is_woken(agent, other, d):
    p = d + "/wake"
    got = []
    lk = agent.lock(p).acquire()
    t = threading.Thread(target=lambda: got.append(other.lock(p, timeout=10).acquire()))
    t.start()
    time.sleep(0.1)
    assert not got
    fence = lk.fence
    lk.release()
    t.join(10)
    assert got and got[0].fence > fence
    got[0].release()


def test_deadlock_reported_at_once(agent, other, d):
    x, y = d + "/x", d + "/y"
    lx = agent.lock(x).acquire()
    ly = other.lock(y).acquire()
    res = []

    def wait_x():
        try:
            res.append(other.lock(x, timeout=10).acquire())
        except Exception as e:  # pragma: no cover - reported below
            res.append(e)

    t = threading.Thread(target=wait_x)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    with pytest.raises(bumba.Deadlock) as ei:
        agent.lock(y, timeout=10).acquire()
    assert time.monotonic() - t0 < 2
    assert ei.value.errno == errno.EDEADLK
    lx.release()
    t.join(10)
    assert isinstance(res[0], bumba.Lock)
    res[0].release()
    ly.release()


def test_lock_lease_and_renew(agent, d):
    with agent.lock(d + "/lease", lease=10) as lk:
        lk.renew()
        lk.renew(20)
    with agent.lock(d + "/nolease") as lk:
        with pytest.raises(bumba.Error) as ei:
            lk.renew(1)
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(RuntimeError):
        lk.renew(1)


def test_lock_released_by_close(sup, other, d):
    p = d + "/c"
    a = bumba.connect(socket=sup.socket)
    lk = a.lock(p).acquire()
    a.close()
    assert not lk.held
    lk.release()  # a no-op: close released it
    with other.lock(p, timeout=0):
        pass


def test_lock_owner_died(sup, agent, d):
    p = d + "/died"
    code = textwrap.dedent("""
        import os, sys, bumba
        a = bumba.connect()
        a.lock(%r).acquire()
        print("held", flush=True)
        sys.stdin.read()
    """ % p)
    child = subprocess.Popen([sys.executable, "-c", code], env=sup.env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"held"
    child.kill()
    child.wait()
    with agent.lock(p, timeout=5) as lk:
        assert lk.owner_died
    with agent.lock(p, timeout=5) as lk:
        assert not lk.owner_died


def test_lock_inside_other_exclusive_territory(agent, other, d):
    with agent.territory(d):
        with pytest.raises(bumba.Error) as ei:
            other.lock(d + "/f", timeout=0).acquire()
        assert ei.value.errno == errno.EACCES


def test_close_waits_for_calls_in_progress(sup, agent, d):
    p = d + "/busy"
    a = bumba.connect(socket=sup.socket)
    lk = agent.lock(p).acquire()
    res = []
    t = threading.Thread(target=lambda: res.append(pytest.raises(
        bumba.LockTimeout, a.lock(p, timeout=0.5).acquire)))
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    a.close()
    assert time.monotonic() - t0 > 0.2  # waited for the acquire to time out
    t.join(5)
    assert res and a.closed
    lk.release()


def test_forked_child_close_keeps_parent_agent(agent, other, d):
    p = d + "/fork"
    lk = agent.lock(p).acquire()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            agent.close()
            os._exit(0)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not agent.closed and lk.held
    with pytest.raises(bumba.LockBusy):
        other.lock(p, timeout=0).acquire()
    lk.release()


# --------------------------------------------------------------------------
# territories
# --------------------------------------------------------------------------

def test_territory_claim_and_conflict(sup, agent, other, d):
    with agent.territory([d + "/a", d + "/b"], title="work") as t:
        assert isinstance(t.id, int) and t.id > 0
        assert t.kind == "exclusive" and t.title == "work"
        assert t.paths == [d + "/a", d + "/b"]
        with pytest.raises(bumba.ConflictError) as ei:
            other.territory(d)
        e = ei.value
        assert e.errno == errno.EBUSY and e.operation == "bumba_territory_claim"
        assert e.n_conflicts == 2
        assert sorted(e.conflicts) == sorted([
            bumba.Conflict(os.path.join(sup.ws, d, "a"), agent.id, "exclusive"),
            bumba.Conflict(os.path.join(sup.ws, d, "b"), agent.id, "exclusive")])
        assert agent.id in str(e)
        # all or nothing: the free path of a failed claim was not claimed
        with pytest.raises(bumba.ConflictError):
            other.territory([d + "/free", d + "/a/x"])
        with agent.territory(d + "/free"):
            pass
    assert t.released
    with other.territory(d):
        pass


def test_territory_kinds(sup, agent, other, d):
    with agent.territory(d + "/s", kind="shared"), other.territory(d + "/s", kind="shared"):
        with bumba.connect(socket=sup.socket) as third:
            with pytest.raises(bumba.ConflictError) as ei:
                third.territory(d + "/s/x", kind="exclusive")
            assert {c.kind for c in ei.value.conflicts} == {"shared"}
            assert ei.value.n_conflicts == 2
    with agent.territory(d + "/m", kind="monitored"), other.territory(d + "/m", kind="monitored"):
        pass
    with pytest.raises(ValueError):
        agent.territory(d, kind="private")
    with pytest.raises(TypeError):
        agent.territory(d, kind=0)


def test_territory_conflict_with_a_lock(agent, other, d):
    with agent.lock(d + "/locked"):
        with pytest.raises(bumba.ConflictError) as ei:
            other.territory(d)
        assert [c.kind for c in ei.value.conflicts] == ["locked"]
        assert ei.value.conflicts[0].holder == agent.id


def test_territory_many_conflicts_reports_total(sup, agent, other, d):
    n = bumba.MAX_CONFLICTS + 6
    paths = ["%s/f%03d" % (d, i) for i in range(n)]
    with agent.territory(paths):
        with pytest.raises(bumba.ConflictError) as ei:
            other.territory(d)
        assert ei.value.n_conflicts == n
        assert len(ei.value.conflicts) == bumba.MAX_CONFLICTS


def test_territory_add_remove(agent, other, d):
    t = agent.territory(d + "/a")
    try:
        t.add([d + "/b", d + "/c"])
        assert t.paths == [d + "/a", d + "/b", d + "/c"]
        with pytest.raises(bumba.ConflictError) as ei:
            other.territory(d + "/b/file")
        assert ei.value.conflicts[0].holder == agent.id
        t.remove(d + "/b")
        with other.territory(d + "/b/file") as ot:
            with pytest.raises(bumba.ConflictError) as ei:
                t.add(d + "/b")
            assert ei.value.conflicts[0].holder == other.id
            assert ei.value.operation == "bumba_territory_add"
            assert ot.paths == [d + "/b/file"]
        with pytest.raises(bumba.Error) as ei:
            t.remove(d + "/never")
        assert ei.value.errno == errno.ENOENT
        with pytest.raises(ValueError):
            t.add([])
    finally:
        t.release()
    t.release()  # idempotent
    with other.territory(d):
        pass


def test_territory_bad_paths(agent):
    with pytest.raises(bumba.Error) as ei:
        agent.territory("../outside")
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        agent.territory(42)
    with pytest.raises(TypeError):
        agent.territory([42])
    with pytest.raises(ValueError):
        agent.territory("a\0b")


# --------------------------------------------------------------------------
# safe file operations
# --------------------------------------------------------------------------

def test_safe_write_read_round_trip(sup, agent, d):
    p = d + "/round"
    with agent.lock(p):
        agent.safe_write(p, b"bytes\x00\xff")
        assert agent.safe_read(p) == b"bytes\x00\xff"
        assert read(sup, p) == b"bytes\x00\xff"
        agent.safe_write(p, "h\u00e9llo \u2603")
        assert agent.safe_read(p) == "h\u00e9llo \u2603".encode("utf-8")
        agent.safe_write(p, bytearray(b"ba"))
        assert agent.safe_read(p) == b"ba"
        agent.safe_write(p, memoryview(b"xmvx")[1:3])
        assert agent.safe_read(p) == b"mv"
        agent.safe_write(p, b"")
        assert agent.safe_read(p) == b""
        big = os.urandom(3 * 1024 * 1024 + 17)
        agent.safe_write(p, big, verify=True, sync=False, backup=False)
        assert agent.safe_read(p) == big
        with pytest.raises(TypeError):
            agent.safe_write(p, 12)
        with pytest.raises(TypeError):
            agent.safe_write(p, None)
    # reading needs no lock; a path given absolute works too
    assert agent.safe_read(os.path.join(sup.ws, p)) == big


def test_safe_write_not_holder(sup, agent, other, d):
    p = d + "/nh"
    with pytest.raises(bumba.NotHolder) as ei:
        agent.safe_write(p, b"x")
    assert ei.value.errno == errno.EPERM and ei.value.path == p
    assert ei.value.operation == "bumba_safe_write"
    assert not os.path.exists(os.path.join(sup.ws, p))
    with agent.lock(p, shared=True):
        with pytest.raises(bumba.NotHolder):
            agent.safe_write(p, b"x")
    with other.lock(p):
        with pytest.raises(bumba.NotHolder):
            agent.safe_write(p, b"x")
    with agent.territory(d):  # an EXCLUSIVE territory is authority enough
        agent.safe_write(p, b"ok")
    assert read(sup, p) == b"ok"


def test_safe_read_errors(agent, d):
    with pytest.raises(bumba.Error) as ei:
        agent.safe_read(d + "/missing")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(bumba.Error) as ei:
        agent.safe_read(d)
    assert ei.value.errno == errno.EISDIR


def test_safe_delete_move_restore(sup, agent, d):
    with agent.territory(d):
        agent.safe_write(d + "/a", b"v1")
        agent.safe_write(d + "/a", b"v2")
        agent.restore(d + "/a")  # undo: back to v1
        assert read(sup, d + "/a") == b"v1"
        agent.safe_move(d + "/a", d + "/b")
        assert not os.path.exists(os.path.join(sup.ws, d, "a"))
        assert read(sup, d + "/b") == b"v1"
        agent.safe_write(d + "/c", b"c")
        with pytest.raises(bumba.Error) as ei:
            agent.safe_move(d + "/b", d + "/c")
        assert ei.value.errno == errno.EEXIST
        agent.safe_delete(d + "/c")
        assert not os.path.exists(os.path.join(sup.ws, d, "c"))
        agent.restore(d + "/c")
        assert read(sup, d + "/c") == b"c"
        with pytest.raises(bumba.Error) as ei:
            agent.restore(d + "/never-existed")
        assert ei.value.errno == errno.ENOENT
        with pytest.raises(TypeError):
            agent.restore(d + "/c", at="yesterday")
        # at=: the content the file had at that instant
        agent.safe_write(d + "/t", b"t1")
        time.sleep(0.05)
        when = time.time()
        time.sleep(0.05)
        agent.safe_write(d + "/t", b"t2")
        agent.safe_write(d + "/t", b"t3")
        agent.restore(d + "/t", at=when)
        assert read(sup, d + "/t") == b"t1"
        import datetime
        agent.safe_write(d + "/t", b"t4")
        agent.restore(d + "/t", at=datetime.datetime.fromtimestamp(when))
        assert read(sup, d + "/t") == b"t1"
    with pytest.raises(bumba.NotHolder):
        agent.safe_delete(d + "/b")
    with pytest.raises(bumba.NotHolder):
        agent.safe_move(d + "/b", d + "/z")


# --------------------------------------------------------------------------
# transactions
# --------------------------------------------------------------------------

def test_transaction_commit(sup, agent, d):
    write(sup, d + "/del", b"gone soon")
    write(sup, d + "/mv", b"moved")
    with agent.territory(d):
        with agent.transaction() as tx:
            tx.write(d + "/a", b"A")
            tx.write(d + "/b", "B\u00e9")
            tx.delete(d + "/del")
            tx.move(d + "/mv", d + "/mv2")
            assert not os.path.exists(os.path.join(sup.ws, d, "a"))  # staged only
        assert tx.finished
    assert read(sup, d + "/a") == b"A"
    assert read(sup, d + "/b") == "B\u00e9".encode()
    assert not os.path.exists(os.path.join(sup.ws, d, "del"))
    assert read(sup, d + "/mv2") == b"moved"
    with pytest.raises(ValueError):
        tx.write(d + "/late", b"x")


def test_transaction_aborted_by_exception(sup, agent, d):
    write(sup, d + "/a", b"old a")

    class Boom(Exception):
        pass

    with agent.territory(d):
        with pytest.raises(Boom):
            with agent.transaction() as tx:
                tx.write(d + "/a", b"new a")
                tx.write(d + "/b", b"new b")
                raise Boom("in the middle")
        assert tx.finished
    assert read(sup, d + "/a") == b"old a"
    assert not os.path.exists(os.path.join(sup.ws, d, "b"))
    assert not [f for f in os.listdir(os.path.join(sup.ws, d)) if f.endswith(".tmp")]


def test_transaction_manual_and_errors(sup, agent, d):
    with agent.territory(d):
        tx = agent.transaction(backup=False, sync=False)
        tx.write(d + "/m", b"m")
        with pytest.raises(bumba.Error) as ei:
            tx.write(d + "/m", b"twice")
        assert ei.value.errno == errno.EINVAL
        tx.abort()
        tx.abort()  # a no-op once finished
        assert not os.path.exists(os.path.join(sup.ws, d, "m"))
        tx = agent.transaction()
        tx.write(d + "/m", b"m")
        tx.commit()
        assert read(sup, d + "/m") == b"m"
        with pytest.raises(ValueError):
            tx.commit()
    # staging checks authority at once
    with pytest.raises(bumba.NotHolder):
        with agent.transaction() as tx:
            tx.write(d + "/m", b"no authority")
    assert tx.finished
    assert read(sup, d + "/m") == b"m"


def test_transaction_left_open_is_aborted_by_close(sup, d):
    a = bumba.connect(socket=sup.socket)
    with a.territory(d):
        tx = a.transaction()
        tx.write(d + "/never", b"x")
        a.close()
    assert tx.finished
    assert not os.path.exists(os.path.join(sup.ws, d, "never"))


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

COUNTER = textwrap.dedent("""
    import sys, bumba
    path, n = sys.argv[1], int(sys.argv[2])
    with bumba.connect(type="Counter", name="p" + sys.argv[3]) as a:
        print("ready", flush=True)
        sys.stdin.readline()  # both start together
        for _ in range(n):
            with a.lock(path, timeout=60):
                v = int(a.safe_read(path))
                a.safe_write(path, str(v + 1), backup=False, sync=False)
""")


def test_two_processes_contend_for_a_lock(sup, d):
    n = 300
    p = d + "/counter"
    write(sup, p, b"0")
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, p, str(n), str(i)],
                              env=sup.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i in range(2)]
    for pr in procs:
        assert pr.stdout.readline() == b"ready\n", pr.stderr.read().decode()
    for pr in procs:
        pr.stdin.write(b"go\n")
        pr.stdin.flush()
    for pr in procs:
        _, err = pr.communicate(timeout=120)
        assert pr.returncode == 0, err.decode()
    assert int(read(sup, p)) == 2 * n


def test_errors_pickle():
    e = bumba.ConflictError(errno.EBUSY, None, "bumba_territory_claim", "p",
                            [bumba.Conflict("/w/p", "A-b-1-2", "exclusive")], 3)
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is bumba.ConflictError
    assert (e2.errno, e2.strerror, e2.operation, e2.path, e2.conflicts, e2.n_conflicts) == \
        (e.errno, e.strerror, e.operation, e.path, e.conflicts, e.n_conflicts)
    assert str(e2) == str(e)
    assert e2.filename == "p"


# --------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------

def test_bad_paths_everywhere(agent, d):
    for bad in ("../escape", "/etc/passwd", d + "/../../x"):
        with pytest.raises(bumba.Error) as ei:
            agent.lock(bad).acquire()
        assert ei.value.errno == errno.EINVAL, bad
        with pytest.raises(bumba.Error) as ei:
            agent.safe_write(bad, b"x")
        assert ei.value.errno == errno.EINVAL, bad
        assert type(ei.value) is bumba.Error
        with pytest.raises(bumba.Error) as ei:
            agent.safe_read(bad)
        assert ei.value.errno == errno.EINVAL, bad
    for nul in ("a\0b", d + "/x\0/../../../etc", b"a\0"):
        with pytest.raises(ValueError):
            agent.lock(nul)
        with pytest.raises(ValueError):
            agent.safe_write(nul, b"x")
        with pytest.raises(ValueError):
            agent.safe_read(nul)
        with pytest.raises(ValueError):
            agent.normalize(nul)
    for wrong in (None, 5, 1.5, ["a"], True):
        with pytest.raises(TypeError):
            agent.lock(wrong)
        with pytest.raises(TypeError):
            agent.safe_write(wrong, b"x")
        with pytest.raises(TypeError):
            agent.safe_read(wrong)
        with pytest.raises(TypeError):
            agent.normalize(wrong)


# --------------------------------------------------------------------------
# joining: bumba-run, and a Python parent handing its agent to a child
# --------------------------------------------------------------------------

JOIN = textwrap.dedent("""
    import os, sys, bumba
    a = bumba.connect(type="Ignored", name="ignored")
    print(a.id)
    print(os.environ.get("BUMBA_AGENT_ID", ""))
    print(a.joined)
    a.safe_write(sys.argv[1], b"written by a joined python agent")
    with a.lock(sys.argv[1], timeout=0) as lk:   # the agent's: re-entered at once
        print(lk.fence > 0)
    a.close()
""")


def test_join_bumba_run(sup, agent, other, d):
    run = os.path.join(BUILD, "bumba-run")
    if not os.access(run, os.X_OK):
        pytest.skip("%s is not built (make): joining under bumba-run is untested" % run)
    target = os.path.join(sup.ws, d, "joined.txt")
    r = subprocess.run([run, "--socket", sup.socket, "--type", "Runner", "--name", "py",
                        "--exclusive", os.path.join(sup.ws, d), "--",
                        sys.executable, "-c", JOIN, target],
                       env=sup.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    my_id, env_id, joined, fenced = r.stdout.split("\n")[:4]
    assert ID_RE.match(my_id) and my_id.startswith("Runner-py-"), my_id
    assert my_id == env_id
    assert joined == "True" and fenced == "True"
    assert read(sup, d + "/joined.txt") == b"written by a joined python agent"
    # everything was released when the command exited
    with other.territory(d):
        pass


def test_join_bumba_run_conflict_does_not_run(sup, agent, d):
    run = os.path.join(BUILD, "bumba-run")
    if not os.access(run, os.X_OK):
        pytest.skip("%s is not built (make)" % run)
    marker = os.path.join(sup.tmp, "ran-" + d)
    with agent.territory(d):
        r = subprocess.run([run, "--socket", sup.socket, "--exclusive", os.path.join(sup.ws, d),
                            "--", sys.executable, "-c", "open(%r, 'w')" % marker],
                           env=sup.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 73, r.stdout + r.stderr
    assert agent.id in r.stdout + r.stderr
    assert not os.path.exists(marker)


CHILD = textwrap.dedent("""
    import sys, bumba
    with bumba.connect() as a:
        print(a.id, a.joined, flush=True)
        a.safe_write(sys.argv[1], b"child")
""")


def test_join_fd_from_a_python_parent(sup, agent, other, d):
    if not hasattr(bumba._lib, "bumba_join_fd"):
        pytest.skip("this libbumba-shm has no joining")
    with agent.territory(d) as t:
        fd = agent.join_fd()
        try:
            env = sup.env(BUMBA_AGENT_ID=agent.id, BUMBA_AGENT_FD=str(fd))
            r = subprocess.run([sys.executable, "-c", CHILD, d + "/c"], env=env, pass_fds=[fd],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == [agent.id, "True"]
            # join=False: a new agent of its own, which is not the holder
            r = subprocess.run([sys.executable, "-c", CHILD.replace(
                "bumba.connect()", "bumba.connect(join=False)"), d + "/c2"],
                env=env, pass_fds=[fd], capture_output=True, text=True, timeout=60)
            assert r.returncode != 0 and "NotHolder" in r.stderr
            assert r.stdout.split()[0] != agent.id and r.stdout.split()[1] == "False"
            # a descriptor that is not a segment
            env["BUMBA_AGENT_FD"] = "0"
            r = subprocess.run([sys.executable, "-c", CHILD, d + "/c3"], env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=60)
            assert r.returncode != 0 and "[Errno %d]" % errno.EBADF in r.stderr, r.stderr
        finally:
            os.close(fd)
        # the child's close left the agent and its territory standing
        assert not t.released
        with pytest.raises(bumba.ConflictError):
            other.territory(d)
    assert read(sup, d + "/c") == b"child"
    assert not os.path.exists(os.path.join(sup.ws, d, "c2"))


def test_join_only_without_an_agent(sup, monkeypatch):
    if not hasattr(bumba._lib, "bumba_open_ex"):
        pytest.skip("this libbumba-shm has no joining")
    monkeypatch.delenv("BUMBA_AGENT_ID", raising=False)
    monkeypatch.delenv("BUMBA_AGENT_FD", raising=False)
    with pytest.raises(bumba.Error) as ei:
        bumba.connect(socket=sup.socket, join=True)
    assert ei.value.errno == errno.ENOENT
    assert not isinstance(ei.value, bumba.NoSupervisor)
    with bumba.connect(socket=sup.socket, join=False) as a:
        assert not a.joined
    with pytest.raises(TypeError):
        bumba.connect(socket=sup.socket, join="yes")


def test_every_public_name_has_a_docstring():
    import inspect
    missing = []
    for name in bumba.__all__:
        obj = getattr(bumba, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not inspect.getdoc(obj):
                missing.append(name)
            if inspect.isclass(obj):
                for mname, m in vars(obj).items():
                    if mname.startswith("_") and mname not in ("__init__",):
                        continue
                    if (inspect.isfunction(m) or isinstance(m, property)) and \
                            mname != "__init__" and not inspect.getdoc(m):
                        missing.append("%s.%s" % (name, mname))
    assert not missing, missing
    assert bumba.__doc__ and bumba.connect.__doc__
