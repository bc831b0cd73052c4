# SPDX-License-Identifier: MIT
"""bumba: file locks, territories and safe file writes for AI coding agents.

A Python binding of libbumba-shm (``shm/bumba.h``) using only the standard
library (:mod:`ctypes`).  An agent connects to the supervisor ``bumbad``,
then takes locks on workspace paths, claims territories and replaces files
atomically::

    import bumba

    with bumba.connect(type="Coder", name="py") as agent:
        with agent.territory("src/", kind="exclusive"):
            with agent.lock("src/main.c") as lk:
                old = agent.safe_read("src/main.c")
                agent.safe_write("src/main.c", old + b"/* edited */\\n")
        with agent.transaction() as tx:
            tx.write("a.txt", "one")
            tx.write("b.txt", "two")

Under ``bumba-run`` (which sets ``BUMBA_AGENT_ID``), :func:`connect` joins
the agent ``bumba-run`` registered instead of registering a new one.

Paths are absolute paths inside a workspace root of the supervisor, or paths
relative to its first root (never to the current directory).  Every failure
of the C library is raised as :class:`Error` (an :class:`OSError`) or one of
its subclasses.  See ``docs/python.md`` for the full guide.

Threads: an :class:`Agent` may be used from several threads at once, as the
C library allows for a handle; :meth:`Agent.close` waits for calls in
progress on other threads to return.  :class:`Lock`, :class:`Territory` and
:class:`Transaction` objects are safe to share too, but a transaction's
operations are serialised.  Blocking calls (lock waits, safe writes) release
the GIL.

Fork: a forked child may keep using an inherited agent (it acts as that
agent), but :meth:`Agent.close` in the child only forgets the handle: it
never unregisters the parent's agent.  A child that needs its own identity
calls :func:`connect` itself (with ``parent=`` to work inside the parent's
territories).
"""

import collections
import ctypes
import datetime as _dt
import errno as _errno
import math
import os
import threading
import weakref

from . import _native

__all__ = [
    "connect", "Agent", "Lock", "Territory", "Transaction", "Conflict",
    "Error", "ConflictError", "LockTimeout", "LockBusy", "Deadlock", "NotHolder",
    "NoSupervisor", "io_uring_available", "library_path", "MAX_CONFLICTS",
]

__version__ = "0.1.0"

#: The path (or name) libbumba-shm was loaded from.
_lib, library_path = _native.load()

#: How many conflicts of one claim are reported in detail (the total is
#: always in :attr:`Error.n_conflicts`).
MAX_CONFLICTS = 64

_PRIORITIES = {"low": _native.PRIO_LOW, "normal": _native.PRIO_NORMAL,
               "high": _native.PRIO_HIGH}
_KINDS = {"exclusive": _native.TERRITORY_EXCLUSIVE, "shared": _native.TERRITORY_SHARED,
          "monitored": _native.TERRITORY_MONITORED}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}
_KIND_NAMES[_native.TERRITORY_LOCKED] = "locked"
_STATUSES = {"idle": _native.STATUS_IDLE, "active": _native.STATUS_ACTIVE,
             "busy": _native.STATUS_BUSY, "blocked": _native.STATUS_BLOCKED}
_INT_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

Conflict = collections.namedtuple("Conflict", "path holder kind")
Conflict.__doc__ = """One conflict of a territory claim.

path    the path in the way (the other agent's claimed path, or the
        requested path it covers), as a str
holder  the id of the agent holding it
kind    how it is held: "exclusive", "shared" or "monitored" (a territory),
        or "locked" (another agent's exclusive file lock)
"""


class Error(OSError):
    """A libbumba-shm call failed.

    Attributes: ``errno`` and ``strerror`` (as for any :class:`OSError`),
    ``operation`` (the C function that failed, e.g. ``"bumba_lock_acquire"``),
    ``path`` (the path concerned, or None; also in ``filename``),
    ``conflicts`` (a list of :class:`Conflict`, empty unless a territory
    claim conflicted) and ``n_conflicts`` (their total number, which may
    exceed ``len(conflicts)`` when more than :data:`MAX_CONFLICTS` were found).
    """

    def __init__(self, errno, strerror=None, operation=None, path=None, conflicts=(),
                 n_conflicts=None):
        if strerror is None:
            strerror = os.strerror(errno)
        super().__init__(errno, strerror)
        self.operation = operation
        self.path = path
        self.filename = path
        self.conflicts = list(conflicts)
        self.n_conflicts = len(self.conflicts) if n_conflicts is None else n_conflicts

    def __str__(self):
        s = "[Errno %s] %s" % (self.errno, self.strerror)
        if self.operation:
            s += ": " + self.operation
        if self.path is not None:
            s += " %r" % (self.path,)
        if self.n_conflicts:
            s += " (%d conflict%s: %s%s)" % (
                self.n_conflicts, "" if self.n_conflicts == 1 else "s",
                "; ".join("%s held %s by %s" % (c.path, c.kind, c.holder)
                          for c in self.conflicts[:8]),
                ", ..." if self.n_conflicts > min(8, len(self.conflicts)) else "")
        return s

    def __reduce__(self):
        return (type(self), (self.errno, self.strerror, self.operation, self.path,
                             self.conflicts, self.n_conflicts))


class ConflictError(Error):
    """EBUSY: a territory claim (or add) conflicts with other agents' claims
    (listed in ``conflicts``), a lock tried with ``timeout=0`` is held (see
    :class:`LockBusy`), or a transaction found a target changed under it."""


class LockTimeout(Error):
    """ETIMEDOUT: a lock was not granted within its timeout."""


class LockBusy(ConflictError, LockTimeout):
    """EBUSY from a lock tried once (``timeout=0``) while another agent holds
    it.  Both a :class:`ConflictError` and a :class:`LockTimeout`."""


class Deadlock(Error):
    """EDEADLK: waiting for this lock would close a wait-for cycle between
    agents (or two shared holders would both upgrade), reported at once."""


class NotHolder(Error):
    """EPERM from a safe file operation: the agent holds neither an exclusive
    lock nor an EXCLUSIVE territory covering the path (or the path is in the
    state directory ``.bumba``)."""


class NoSupervisor(Error):
    """No supervisor answers at the socket when connecting (ECONNREFUSED,
    or ENOENT: no socket there)."""


def _raise(rc, operation, path=None, conflicts=(), n_conflicts=None, kind=None):
    err = -rc
    cls = Error
    if err == _errno.ETIMEDOUT:
        cls = LockTimeout
    elif err == _errno.EDEADLK:
        cls = Deadlock
    elif err == _errno.EBUSY:
        cls = LockBusy if kind == "lock" else ConflictError
    elif err == _errno.EPERM and kind == "safe":
        cls = NotHolder
    elif kind == "connect":
        cls = NoSupervisor
    raise cls(err, os.strerror(err), operation, path, conflicts, n_conflicts)


# --------------------------------------------------------------------------
# Argument conversion
# --------------------------------------------------------------------------

def _path(p, what="path"):
    """str/bytes/PathLike -> bytes for C, refusing embedded NULs."""
    if isinstance(p, bool) or not isinstance(p, (str, bytes, os.PathLike)):
        raise TypeError("%s must be str, bytes or os.PathLike, not %s"
                        % (what, type(p).__name__))
    b = os.fsencode(p)
    if b"\0" in b:
        raise ValueError("embedded null byte in %s" % what)
    return b


def _text(s, what):
    """An optional str argument -> bytes (UTF-8) or None."""
    if s is None:
        return None
    if not isinstance(s, str):
        raise TypeError("%s must be a str or None, not %s" % (what, type(s).__name__))
    b = s.encode("utf-8")
    if b"\0" in b:
        raise ValueError("embedded null byte in %s" % what)
    return b


def _path_list(paths):
    """One path or an iterable of paths -> (list of bytes, ctypes array)."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    else:
        try:
            paths = list(paths)
        except TypeError:
            raise TypeError("paths must be a path or an iterable of paths, not %s"
                            % type(paths).__name__) from None
    if not paths:
        raise ValueError("paths is empty")
    enc = [_path(p) for p in paths]
    arr = (ctypes.c_char_p * len(enc))(*enc)
    return enc, arr


def _data(data):
    """bytes-like or str -> (object ctypes accepts as void *, length)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        return data, len(data)
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError("data must be bytes-like or str, not %s" % type(data).__name__) from None
    mv = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
    if mv.readonly or mv.nbytes == 0:
        return mv.tobytes(), mv.nbytes
    return (ctypes.c_char * mv.nbytes).from_buffer(mv), mv.nbytes


def _seconds_to_ms(value, what, none=-1, maximum=_INT_MAX):
    """A duration in seconds (int/float, or None) -> whole milliseconds."""
    if value is None:
        return none
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number of seconds or None, not %s"
                        % (what, type(value).__name__))
    if math.isnan(value) or value < 0:
        raise ValueError("%s must be >= 0 seconds, not %r" % (what, value))
    if math.isinf(value):
        return maximum
    ms = math.ceil(value * 1000)  # 0.0001 s waits 1 ms, it does not become "try once"
    return min(ms, maximum)


def _choice(value, table, what):
    if not isinstance(value, str):
        raise TypeError("%s must be a str, one of %s" % (what, ", ".join(table)))
    try:
        return table[value]
    except KeyError:
        raise ValueError("%s must be one of %s, not %r" % (what, ", ".join(table), value)) from None


def _flags(backup=False, verify=False, sync=True):
    f = 0
    if backup:
        f |= _native.WRITE_BACKUP
    if verify:
        f |= _native.WRITE_VERIFY
    if not sync:
        f |= _native.WRITE_NOSYNC
    return f


def _conflict_list(arr, n):
    out = []
    for i in range(min(n, len(arr))):
        c = arr[i]
        out.append(Conflict(os.fsdecode(c.path), c.holder_id.decode("utf-8", "replace"),
                            _KIND_NAMES.get(c.type, str(c.type))))
    return out


def io_uring_available():
    """1 if safe file operations run on io_uring in this process, 0 if
    BUMBA_NO_IO_URING=1 turns it off, else a negative errno saying why the
    kernel refuses it (see bumba_io_uring_available in shm/bumba.h)."""
    return _lib.bumba_io_uring_available()


# --------------------------------------------------------------------------
# Agent
# --------------------------------------------------------------------------

def connect(socket=None, type=None, name=None, department=None, capabilities=(), parent=None,
            join=None):
    """Registers an agent with the supervisor and returns an :class:`Agent`.

    socket        path of bumbad's socket; None: ``$BUMBA_SOCKET``, else
                  ``$XDG_RUNTIME_DIR/bumba/bumba.sock`` (a user) or
                  ``/run/bumba/bumba.sock`` (root)
    type, name    the first parts of the agent id (no '-', at most 31 bytes);
                  None: "Agent" and "agent<pid>"
    department    None: "general"
    capabilities  a str or an iterable of str (at most 16)
    parent        the parent agent (an :class:`Agent` or an id str): this
                  agent then claims inside the parent's territories

    join          None: join the surrounding agent when the environment names
                  one, else register (the library's default); True: join or
                  fail; False: always register a new agent

    Under ``bumba-run`` (``BUMBA_AGENT_ID`` and ``BUMBA_AGENT_FD`` set), this
    joins the agent ``bumba-run`` registered instead (unless ``parent`` is
    given, ``socket`` names another supervisor, ``BUMBA_NO_JOIN=1`` or
    ``join=False``); the info arguments are then ignored.

    Raises :class:`NoSupervisor` if nothing listens at the socket,
    :class:`Error` (EINVAL) for bad info, (EPROTO) for a foreign supervisor,
    and, joining, (EBADF) for an unusable BUMBA_AGENT_FD, (ESTALE) when the
    agent to join is gone, (ENOENT with ``join=True``) if there is none.
    Use the agent as a context manager, or call :meth:`Agent.close`.
    """
    return Agent(socket=socket, type=type, name=name, department=department,
                 capabilities=capabilities, parent=parent, join=join)


class Agent:
    """One registered agent: the handle of the C library.

    Create it with :func:`connect`.  Use it in a ``with`` block (closed on
    exit) or call :meth:`close`; an agent dropped without closing is closed
    by the garbage collector on a best-effort basis only.
    """

    def __init__(self, socket=None, type=None, name=None, department=None, capabilities=(),
                 parent=None, join=None):
        self._h = None
        self._cv = threading.Condition(threading.Lock())
        self._inflight = 0
        self._txns = weakref.WeakSet()
        self._pid = os.getpid()
        sock = None if socket is None else _path(socket, "socket")
        if isinstance(parent, Agent):
            parent = parent.id
        if isinstance(capabilities, str):
            capabilities = (capabilities,)
        if capabilities is None:
            capabilities = ()
        try:
            caps = [_text(c, "capability") for c in capabilities]
        except TypeError as e:
            raise TypeError("capabilities must be a str or an iterable of str: %s" % e) from None
        if any(c is None for c in caps):
            raise TypeError("capabilities must be str, not None")
        caps_arr = (ctypes.c_char_p * max(1, len(caps)))(*caps)
        info = _native.AgentInfo(_text(type, "type"), _text(name, "name"),
                                 _text(department, "department"),
                                 ctypes.cast(caps_arr, ctypes.POINTER(ctypes.c_char_p)),
                                 len(caps), _text(parent, "parent"))
        if join is not None and not isinstance(join, bool):
            raise TypeError("join must be None, True or False")
        env_id = os.environ.get("BUMBA_AGENT_ID")
        h = ctypes.c_void_p()
        if join is None:
            op = "bumba_open"
            rc = _lib.bumba_open(sock, ctypes.byref(info), ctypes.byref(h))
        else:
            op = "bumba_open_ex"
            if not hasattr(_lib, "bumba_open_ex"):
                raise NotImplementedError("this libbumba-shm cannot join (no bumba_open_ex)")
            rc = _lib.bumba_open_ex(sock, ctypes.byref(info),
                                    _native.OPEN_JOIN_ONLY if join else _native.OPEN_NO_JOIN,
                                    ctypes.byref(h))
        if rc:
            no_sup = rc == -_errno.ECONNREFUSED or (rc == -_errno.ENOENT and not join)
            _raise(rc, op, None if socket is None else os.fsdecode(socket),
                   kind="connect" if no_sup else None)
        self._h = h.value
        self.id = _lib.bumba_agent_id(self._h).decode("utf-8", "replace")
        """The agent id, "<Type>-<Name>-<unix ms>-<8 hex>"."""
        if hasattr(_lib, "bumba_is_joined"):
            joined = bool(_lib.bumba_is_joined(self._h))
        else:
            joined = bool(env_id) and env_id == self.id
        self.joined = joined
        """True if this handle joined an agent another process registered
        (``bumba-run``'s, or a parent's that passed :meth:`join_fd`)."""

    # -- lifetime -----------------------------------------------------------

    def _use(self):
        """Marks a call in progress and returns the handle."""
        with self._cv:
            if self._h is None:
                raise ValueError("operation on a closed bumba.Agent")
            self._inflight += 1
            return self._h

    def _done(self):
        with self._cv:
            self._inflight -= 1
            if self._inflight == 0:
                self._cv.notify_all()

    @property
    def closed(self):
        """True once :meth:`close` has been called."""
        return self._h is None

    def close(self):
        """Releases every lock and territory the agent holds, aborts its open
        transactions, unregisters and unmaps.  Waits for calls in progress
        on other threads to return first.  Idempotent.

        On a joined handle (:attr:`joined`) it releases only the lock counts
        and territories taken through this handle; the agent lives on.

        In a forked child this only forgets the inherited handle: closing it
        there would unregister the parent's agent."""
        with self._cv:
            h = self._h
            if h is None:
                return
            self._h = None
            while self._inflight:
                self._cv.wait()
        forked = os.getpid() != self._pid
        for tx in list(self._txns):
            tx._drop(abort=not forked)
        if not forked:
            _lib.bumba_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<bumba.Agent %s%s>" % (getattr(self, "id", "?"),
                                       " closed" if self._h is None else "")

    # -- identity and paths ---------------------------------------------------

    def join_fd(self):
        """A new descriptor (int) of the segment, inheritable, for programs
        this process starts to join this agent: export it as
        ``BUMBA_AGENT_FD`` with ``BUMBA_AGENT_ID=agent.id`` (and
        ``BUMBA_SOCKET``), pass it to :mod:`subprocess` with ``pass_fds``,
        and ``os.close`` it when no more children need it."""
        if not hasattr(_lib, "bumba_join_fd"):
            raise NotImplementedError("this libbumba-shm cannot join (no bumba_join_fd)")
        h = self._use()
        try:
            fd = _lib.bumba_join_fd(h)
        finally:
            self._done()
        if fd < 0:
            _raise(fd, "bumba_join_fd")
        return fd

    def set_status(self, status):
        """Publishes the agent's status: "idle", "active", "busy" or
        "blocked" (and bumps its last-activity time).  No system call."""
        st = _choice(status, _STATUSES, "status")
        h = self._use()
        try:
            rc = _lib.bumba_set_status(h, st)
        finally:
            self._done()
        if rc:
            _raise(rc, "bumba_set_status")

    def workspace_root(self, index=0):
        """The supervisor's workspace root number ``index`` (a str); root 0 is
        the one relative paths are taken against.  IndexError past the last."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError("index must be an int")
        if index < 0:
            raise IndexError("workspace root index out of range")
        out = ctypes.c_char_p()
        h = self._use()
        try:
            rc = _lib.bumba_workspace_root(h, index, ctypes.byref(out))
            root = out.value
        finally:
            self._done()
        if rc == -_errno.ENOENT:
            raise IndexError("workspace root index out of range")
        if rc:
            _raise(rc, "bumba_workspace_root")
        return os.fsdecode(root)

    def workspace_roots(self):
        """Every workspace root of the supervisor, as a list of str."""
        roots = []
        while True:
            try:
                roots.append(self.workspace_root(len(roots)))
            except IndexError:
                return roots

    def normalize(self, path):
        """``path`` as bumba sees it: absolute, lexically normalised inside a
        workspace root.  Error EINVAL if it leaves every root or is empty."""
        p = _path(path)
        buf = ctypes.create_string_buffer(_native.PATH_MAX + 1)
        h = self._use()
        try:
            rc = _lib.bumba_path_normalize(h, p, buf, len(buf))
        finally:
            self._done()
        if rc < 0:
            _raise(rc, "bumba_path_normalize", os.fsdecode(p))
        return os.fsdecode(buf.raw[:rc])

    # -- locks and territories ------------------------------------------------

    def lock(self, path, shared=False, timeout=30.0, priority="normal", lease=None):
        """A :class:`Lock` on ``path``, not yet acquired: use it in a ``with``
        block, or call :meth:`Lock.acquire` and :meth:`Lock.release`.

        shared    False: exclusive; True: shared (readers)
        timeout   seconds to wait (float); 0: try once (:class:`LockBusy` if
                  held); None: the supervisor's default
        priority  "low", "normal" or "high": waiters are served highest
                  priority first, FIFO within one
        lease     None, or seconds: unless :meth:`Lock.renew` is called within
                  that time, the supervisor treats the agent as hung, kills it
                  and reclaims everything it held
        """
        return Lock(self, path, shared=shared, timeout=timeout, priority=priority, lease=lease)

    def territory(self, paths, kind="exclusive", title=None):
        """Claims ``paths`` (a path or an iterable of paths; a directory
        covers its subtree) as one territory and returns the
        :class:`Territory`; use it in a ``with`` block to release it on exit.

        kind   "exclusive" (only this agent writes), "shared" (read-only for
               everyone) or "monitored" (anyone writes, every write logged)
        title  an optional label shown by ``bumbactl territories``

        All or nothing: on conflict nothing is claimed and
        :class:`ConflictError` lists every conflict (path, holder, kind).
        """
        return Territory(self, paths, kind=kind, title=title)

    # -- safe file operations -------------------------------------------------

    def _safe(self, fn, opname, path, *args):
        h = self._use()
        try:
            rc = fn(h, *args)
        finally:
            self._done()
        if rc:
            _raise(rc, opname, path, kind="safe")

    def safe_write(self, path, data, backup=True, verify=False, sync=True):
        """Replaces (or creates) ``path`` with ``data`` atomically: a crash at
        any instant leaves the old or the new content, never a mix.

        data    bytes-like, or str (written as UTF-8)
        backup  keep the old content as a backup version (see :meth:`restore`)
        verify  read the new content back and compare checksums before
                publishing it (Error EIO on a mismatch, nothing changed)
        sync    fsync the file and its directory (False: atomic, not durable)

        The agent must hold an exclusive lock on ``path`` or an EXCLUSIVE
        territory covering it: :class:`NotHolder` otherwise."""
        p = _path(path)
        buf, n = _data(data)
        self._safe(_lib.bumba_safe_write, "bumba_safe_write", os.fsdecode(p), p, buf, n,
                   _flags(backup, verify, sync))

    def safe_read(self, path):
        """The whole content of ``path`` as bytes, one version of it (safe
        writes replace files whole).  Needs no lock."""
        p = _path(path)
        cap = 64 * 1024
        while True:
            buf = ctypes.create_string_buffer(cap)
            n = ctypes.c_size_t()
            h = self._use()
            try:
                rc = _lib.bumba_safe_read(h, p, buf, cap, ctypes.byref(n))
            finally:
                self._done()
            if rc == -_errno.ENOBUFS and n.value >= cap:
                cap = max(n.value + 4096, cap * 2)
                continue
            if rc:
                _raise(rc, "bumba_safe_read", os.fsdecode(p), kind="safe")
            return ctypes.string_at(buf, n.value)

    def safe_delete(self, path, sync=True):
        """Removes ``path``, keeping its content as a backup version.  Needs
        the same authority as :meth:`safe_write`."""
        p = _path(path)
        self._safe(_lib.bumba_safe_delete, "bumba_safe_delete", os.fsdecode(p), p,
                   _flags(sync=sync))

    def safe_move(self, src, dst, sync=True):
        """Renames ``src`` to ``dst``; never clobbers (Error EEXIST if ``dst``
        exists).  Needs authority over both paths."""
        s, d = _path(src, "src"), _path(dst, "dst")
        self._safe(_lib.bumba_safe_move, "bumba_safe_move", os.fsdecode(s), s, d,
                   _flags(sync=sync))

    def restore(self, path, at=None, sync=True):
        """Puts an old version of ``path`` back, as a safe write (with a backup
        of what it replaces).

        at  None: the version the last change replaced (undo); else the
            content ``path`` had at that instant: a :class:`datetime.datetime`
            or unix seconds (int/float, as :func:`time.time` gives).
        Error ENOENT if there is no such version."""
        p = _path(path)
        if at is None:
            at_ms = -1
        elif isinstance(at, _dt.datetime):
            at_ms = int(at.timestamp() * 1000)
        elif isinstance(at, (int, float)) and not isinstance(at, bool):
            if math.isnan(at) or math.isinf(at) or at < 0:
                raise ValueError("at must be a finite time >= 0")
            at_ms = int(at * 1000)
        else:
            raise TypeError("at must be None, a datetime or unix seconds")
        self._safe(_lib.bumba_safe_restore, "bumba_safe_restore", os.fsdecode(p), p, at_ms,
                   _flags(sync=sync))

    def transaction(self, backup=True, verify=False, sync=True):
        """Begins a :class:`Transaction`: staged writes, deletes and moves of
        up to ``safeFileOps.maxTransactionSize`` files (100 by default),
        applied all or nothing.  In a ``with`` block it commits on normal
        exit and aborts if an exception escapes (the exception propagates).
        The flags apply to every file, as for :meth:`safe_write`."""
        return Transaction(self, _flags(backup, verify, sync))


# --------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------

class Lock:
    """A lock on one workspace path, made by :meth:`Agent.lock`.

    ``with agent.lock(path) as lk:`` acquires on entry and releases on exit;
    ``lk.acquire()`` / ``lk.release()`` do the same by hand.  Acquiring again
    while held is a counted re-entry (release as many times).  Locks are
    reentrant per agent, so two :class:`Lock` objects of one agent on one
    path do not exclude each other (nor do two threads of one agent).

    Like the C library's ``struct bumba_lock``, a hold lasts until it is
    released or the agent closes: dropping the object does not release it.
    """

    def __init__(self, agent, path, shared=False, timeout=30.0, priority="normal", lease=None):
        if not isinstance(agent, Agent):
            raise TypeError("agent must be a bumba.Agent")
        self._agent = agent
        self._p = _path(path)
        self.path = os.fsdecode(self._p)
        """The path as given (str)."""
        if not isinstance(shared, bool):
            raise TypeError("shared must be a bool")
        self.shared = shared
        """True for a shared lock, False for an exclusive one."""
        self._mode = _native.SHARED if shared else _native.EXCLUSIVE
        self._timeout_ms = _seconds_to_ms(timeout, "timeout")
        self._prio = _choice(priority, _PRIORITIES, "priority")
        self._lease_ms = _seconds_to_ms(lease, "lease", none=0, maximum=_UINT32_MAX)
        if lease is not None and self._lease_ms == 0:
            raise ValueError("lease must be > 0 seconds")
        self._held = []  # one struct bumba_lock per counted hold, innermost last
        self._mu = threading.Lock()

    @property
    def held(self):
        """True while at least one acquisition of this object is held."""
        return bool(self._held) and not self._agent.closed

    @property
    def fence(self):
        """The fencing token (int) of the latest acquisition still held:
        strictly greater than every token handed out before for this path.
        None when not held."""
        with self._mu:
            return self._held[-1].fence if self._held else None

    @property
    def owner_died(self):
        """True if the previous holder died while holding the lock, so that
        what it protected should be checked."""
        with self._mu:
            if not self._held:
                return False
            return bool(_lib.bumba_lock_owner_died(ctypes.byref(self._held[-1])))

    def acquire(self):
        """Acquires the lock (waiting at most the timeout) and returns self.

        Raises :class:`LockTimeout`, :class:`LockBusy` (timeout 0),
        :class:`Deadlock`, :class:`Error` EACCES (inside another agent's
        EXCLUSIVE territory), EINVAL (bad path), ENOSPC (table full)."""
        st = _native.LockStruct()
        h = self._agent._use()
        try:
            if self._lease_ms:
                opts = _native.LockOpts(self._mode, self._timeout_ms, self._prio, self._lease_ms)
                rc = _lib.bumba_lock_acquire_opts(h, self._p, ctypes.byref(opts),
                                                  ctypes.byref(st))
            else:
                rc = _lib.bumba_lock_acquire(h, self._p, self._mode, self._timeout_ms,
                                             self._prio, ctypes.byref(st))
        finally:
            self._agent._done()
        if rc:
            _raise(rc, "bumba_lock_acquire", self.path, kind="lock")
        with self._mu:
            self._held.append(st)
        return self

    def release(self):
        """Releases one count of the lock.  RuntimeError if this object holds
        nothing; a no-op if the agent was closed (that released it).
        Error ENOLCK if it was reclaimed (after a lease expiry)."""
        with self._mu:
            if not self._held:
                raise RuntimeError("release of an unheld bumba.Lock on %r" % self.path)
            st = self._held.pop()
        try:
            h = self._agent._use()
        except ValueError:
            return  # closed: bumba_close released it
        try:
            rc = _lib.bumba_lock_release(h, ctypes.byref(st))
        finally:
            self._agent._done()
        if rc:
            _raise(rc, "bumba_lock_release", self.path)

    def renew(self, lease=None):
        """Extends the lease of the latest held acquisition by ``lease``
        seconds from now (None: the lease it was taken with).  Error EINVAL
        if the lock has no lease, ENOLCK if it is no longer held."""
        ms = self._lease_ms if lease is None else _seconds_to_ms(lease, "lease",
                                                                 maximum=_UINT32_MAX)
        with self._mu:
            if not self._held:
                raise RuntimeError("renew of an unheld bumba.Lock on %r" % self.path)
            st = self._held[-1]
        h = self._agent._use()
        try:
            rc = _lib.bumba_lock_renew(h, ctypes.byref(st), ms)
        finally:
            self._agent._done()
        if rc:
            _raise(rc, "bumba_lock_renew", self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        try:
            self.release()
        except Exception:
            if exc_type is None:
                raise
        return False

    def __repr__(self):
        return "<bumba.Lock %r %s%s>" % (
            self.path, "shared" if self.shared else "exclusive",
            " held fence=%d" % self._held[-1].fence if self._held else "")


# --------------------------------------------------------------------------
# Territories
# --------------------------------------------------------------------------

class Territory:
    """A claimed territory, made by :meth:`Agent.territory` (which claims it).

    ``with agent.territory(paths) as t:`` releases it on exit; else call
    :meth:`release`.  A territory also ends with its agent (dropping the
    object does not release it).
    """

    def __init__(self, agent, paths, kind="exclusive", title=None):
        if not isinstance(agent, Agent):
            raise TypeError("agent must be a bumba.Agent")
        self._agent = agent
        self.kind = kind
        """"exclusive", "shared" or "monitored"."""
        ktype = _choice(kind, _KINDS, "kind")
        self.title = title
        """The title given, or None."""
        t = _text(title, "title")
        enc, arr = _path_list(paths)
        tid = ctypes.c_uint64()
        conflicts = (_native.ConflictStruct * MAX_CONFLICTS)()
        n = ctypes.c_size_t()
        h = agent._use()
        try:
            rc = _lib.bumba_territory_claim(h, t, arr, len(enc), ktype, ctypes.byref(tid),
                                            conflicts, MAX_CONFLICTS, ctypes.byref(n))
        finally:
            agent._done()
        if rc:
            self._released = True
            _raise(rc, "bumba_territory_claim", os.fsdecode(enc[0]),
                   _conflict_list(conflicts, n.value) if rc == -_errno.EBUSY else (),
                   n.value if rc == -_errno.EBUSY else 0)
        self.id = tid.value
        """The territory id (int)."""
        self.paths = [os.fsdecode(p) for p in enc]
        """The paths claimed, as given (list of str), updated by add/remove."""
        self._released = False

    @property
    def released(self):
        """True once released (by :meth:`release` or the agent's close)."""
        return self._released or self._agent.closed

    def add(self, paths):
        """Grows the territory by ``paths`` (a path or an iterable), all or
        nothing, with the same conflict reporting as the claim."""
        enc, arr = _path_list(paths)
        conflicts = (_native.ConflictStruct * MAX_CONFLICTS)()
        n = ctypes.c_size_t()
        h = self._agent._use()
        try:
            rc = _lib.bumba_territory_add(h, self.id, arr, len(enc), conflicts, MAX_CONFLICTS,
                                          ctypes.byref(n))
        finally:
            self._agent._done()
        if rc:
            _raise(rc, "bumba_territory_add", os.fsdecode(enc[0]),
                   _conflict_list(conflicts, n.value) if rc == -_errno.EBUSY else (),
                   n.value if rc == -_errno.EBUSY else 0)
        self.paths.extend(os.fsdecode(p) for p in enc)

    def remove(self, paths):
        """Shrinks the territory: every path must be one it claimed (Error
        ENOENT otherwise, and nothing is removed)."""
        enc, arr = _path_list(paths)
        h = self._agent._use()
        try:
            rc = _lib.bumba_territory_remove(h, self.id, arr, len(enc))
        finally:
            self._agent._done()
        if rc:
            _raise(rc, "bumba_territory_remove", os.fsdecode(enc[0]))
        for p in enc:
            s = os.fsdecode(p)
            if s in self.paths:
                self.paths.remove(s)

    def release(self):
        """Ends the territory (and those of child agents inside it).  A no-op
        if already released or the agent is closed; Error ENOENT if it had
        ended otherwise (its timeout)."""
        if self._released:
            return
        self._released = True
        try:
            h = self._agent._use()
        except ValueError:
            return
        try:
            rc = _lib.bumba_territory_release(h, self.id)
        finally:
            self._agent._done()
        if rc:
            _raise(rc, "bumba_territory_release")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.release()
        except Error as e:
            if exc_type is None and e.errno != _errno.ENOENT:
                raise
        return False

    def __repr__(self):
        return "<bumba.Territory %s %s %r%s>" % (getattr(self, "id", "?"), self.kind,
                                                  getattr(self, "paths", []),
                                                  " released" if self.released else "")


# --------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------

class Transaction:
    """Staged file changes applied all or nothing, made by
    :meth:`Agent.transaction`.

    Staging (:meth:`write`, :meth:`delete`, :meth:`move`) copies the data and
    checks authority at once (:class:`NotHolder`); nothing on disk changes
    until :meth:`commit`.  In a ``with`` block: commit on normal exit, abort
    if an exception escapes (and the exception propagates).  Each path may
    be staged once (Error EINVAL for a second time, E2BIG past the size
    limit, EXDEV for paths in two workspace roots).
    """

    def __init__(self, agent, flags=_native.WRITE_BACKUP):
        if not isinstance(agent, Agent):
            raise TypeError("agent must be a bumba.Agent")
        self._agent = agent
        self._mu = threading.Lock()
        t = ctypes.c_void_p()
        h = agent._use()
        try:
            rc = _lib.bumba_txn_begin(h, flags, ctypes.byref(t))
        finally:
            agent._done()
        if rc:
            self._t = None
            _raise(rc, "bumba_txn_begin")
        self._t = t.value
        agent._txns.add(self)

    @property
    def finished(self):
        """True once committed or aborted."""
        return self._t is None

    def _call(self, fn, opname, path, *args):
        with self._mu:
            if self._t is None:
                raise ValueError("operation on a finished bumba.Transaction")
            self._agent._use()
            try:
                rc = fn(self._t, *args)
            finally:
                self._agent._done()
        if rc:
            _raise(rc, opname, path, kind="safe")

    def write(self, path, data):
        """Stages replacing (or creating) ``path`` with ``data`` (bytes-like,
        or str as UTF-8)."""
        p = _path(path)
        buf, n = _data(data)
        self._call(_lib.bumba_txn_write, "bumba_txn_write", os.fsdecode(p), p, buf, n)

    def delete(self, path):
        """Stages removing ``path`` (its content is kept as a backup)."""
        p = _path(path)
        self._call(_lib.bumba_txn_delete, "bumba_txn_delete", os.fsdecode(p), p)

    def move(self, src, dst):
        """Stages renaming ``src`` to ``dst``."""
        s, d = _path(src, "src"), _path(dst, "dst")
        self._call(_lib.bumba_txn_move, "bumba_txn_move", os.fsdecode(s), s, d)

    def commit(self):
        """Applies every staged change, all or nothing, and finishes the
        transaction.  An error before the commit point changed nothing; an
        error after it (EIO, rare) leaves the transaction to be finished by
        the library or bumbad; :class:`ConflictError` (EBUSY): it was applied
        but a target had changed under it (its new content was set aside in
        ``.bumba/conflicts``)."""
        with self._mu:
            if self._t is None:
                raise ValueError("commit of a finished bumba.Transaction")
            t, self._t = self._t, None
            self._agent._txns.discard(self)
            self._agent._use()
            try:
                rc = _lib.bumba_txn_commit(t)
            finally:
                self._agent._done()
        if rc:
            _raise(rc, "bumba_txn_commit", kind="safe")

    def abort(self):
        """Drops every staged change; nothing on disk changes.  A no-op once
        finished."""
        self._drop(abort=True)

    def _drop(self, abort=True):
        with self._mu:
            t, self._t = self._t, None
            if t is None:
                return
            self._agent._txns.discard(self)
            if abort and os.getpid() == self._agent._pid:
                _lib.bumba_txn_abort(t)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            if self._t is not None:
                self.commit()
        else:
            self.abort()
        return False

    def __del__(self):
        try:
            if self._t is not None and not self._agent.closed:
                self._drop(abort=True)
        except Exception:
            pass

    def __repr__(self):
        return "<bumba.Transaction%s>" % (" finished" if self._t is None else "")
