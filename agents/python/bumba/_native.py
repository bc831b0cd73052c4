# SPDX-License-Identifier: MIT
"""Loading libbumba-shm and declaring its C API for ctypes.

Internal: the public API is the :mod:`bumba` package.  Every structure and
prototype here mirrors ``shm/bumba.h`` exactly; ``tests/test_bumba.py``
compiles a small C program against that header and compares its ``sizeof``
and ``offsetof`` values with the ones below.

The library is looked up, in order, at:

1. ``$BUMBA_LIBRARY`` (a path to the shared object), when set (nothing else
   is tried then);
2. in a source tree, its build: ``<repo>/build/libbumba-shm.so``; in a copy
   ``make install`` put in place, the library it installed beside it:
   ``<LIBDIR>/libbumba-shm.so.0`` (see ``INSTALLED_LIBDIR``);
3. the system: ``ctypes.util.find_library("bumba-shm")``, then the soname
   ``libbumba-shm.so.0`` (``LD_LIBRARY_PATH``, ldconfig's cache, /lib and
   /usr/lib: after ``make install`` to /usr/local/lib, run ``ldconfig``).
"""

import ctypes
import ctypes.util
import os

SOVERSION = 0

# The LIBDIR `make install` put libbumba-shm in: the installed copy of this
# file has it written here (the Makefile rewrites this line); None elsewhere.
INSTALLED_LIBDIR = None

# Mirrors of shm/bumba.h.  C enums are int-sized on every Linux ABI.
PATH_MAX = 4096
EXCLUSIVE, SHARED = 0, 1  # enum bumba_mode
PRIO_LOW, PRIO_NORMAL, PRIO_HIGH = 0, 1, 2  # enum bumba_priority
STATUS_IDLE, STATUS_ACTIVE, STATUS_BUSY, STATUS_BLOCKED = 0, 1, 2, 3
TERRITORY_EXCLUSIVE, TERRITORY_SHARED, TERRITORY_MONITORED, TERRITORY_LOCKED = 0, 1, 2, 3
WRITE_BACKUP, WRITE_VERIFY, WRITE_NOSYNC = 0x1, 0x2, 0x4

c_enum = ctypes.c_int


class AgentInfo(ctypes.Structure):
    """struct bumba_agent_info"""

    _fields_ = [
        ("type", ctypes.c_char_p),
        ("name", ctypes.c_char_p),
        ("department", ctypes.c_char_p),
        ("capabilities", ctypes.POINTER(ctypes.c_char_p)),
        ("n_capabilities", ctypes.c_size_t),
        ("parent_id", ctypes.c_char_p),
    ]


class LockStruct(ctypes.Structure):
    """struct bumba_lock"""

    _fields_ = [("fence", ctypes.c_uint64), ("opaque", ctypes.c_uint64 * 3)]


class LockOpts(ctypes.Structure):
    """struct bumba_lock_opts"""

    _fields_ = [
        ("mode", c_enum),
        ("timeout_ms", ctypes.c_int),
        ("prio", c_enum),
        ("lease_ms", ctypes.c_uint32),
    ]


class ConflictStruct(ctypes.Structure):
    """struct bumba_conflict"""

    _fields_ = [
        ("path", ctypes.c_char * 4096),
        ("holder_id", ctypes.c_char * 128),
        ("type", c_enum),
    ]


# name: (restype, argtypes)
_handle = ctypes.c_void_p
_cstr = ctypes.c_char_p
_paths = ctypes.POINTER(ctypes.c_char_p)
_conflicts = ctypes.POINTER(ConflictStruct)
_size = ctypes.c_size_t
_buf = ctypes.c_void_p
PROTOTYPES = {
    "bumba_open": (ctypes.c_int, [_cstr, ctypes.POINTER(AgentInfo), ctypes.POINTER(_handle)]),
    "bumba_close": (None, [_handle]),
    "bumba_agent_id": (ctypes.c_char_p, [_handle]),
    "bumba_set_status": (ctypes.c_int, [_handle, c_enum]),
    "bumba_workspace_root": (ctypes.c_int, [_handle, _size, ctypes.POINTER(ctypes.c_char_p)]),
    "bumba_path_normalize": (ctypes.c_int, [_handle, _cstr, _buf, _size]),
    "bumba_lock_acquire": (
        ctypes.c_int,
        [_handle, _cstr, c_enum, ctypes.c_int, c_enum, ctypes.POINTER(LockStruct)],
    ),
    "bumba_lock_acquire_opts": (
        ctypes.c_int,
        [_handle, _cstr, ctypes.POINTER(LockOpts), ctypes.POINTER(LockStruct)],
    ),
    "bumba_lock_renew": (ctypes.c_int, [_handle, ctypes.POINTER(LockStruct), ctypes.c_uint32]),
    "bumba_lock_release": (ctypes.c_int, [_handle, ctypes.POINTER(LockStruct)]),
    "bumba_lock_owner_died": (ctypes.c_int, [ctypes.POINTER(LockStruct)]),
    "bumba_territory_claim": (
        ctypes.c_int,
        [_handle, _cstr, _paths, _size, c_enum, ctypes.POINTER(ctypes.c_uint64),
         _conflicts, _size, ctypes.POINTER(_size)],
    ),
    "bumba_territory_add": (
        ctypes.c_int,
        [_handle, ctypes.c_uint64, _paths, _size, _conflicts, _size, ctypes.POINTER(_size)],
    ),
    "bumba_territory_remove": (ctypes.c_int, [_handle, ctypes.c_uint64, _paths, _size]),
    "bumba_territory_release": (ctypes.c_int, [_handle, ctypes.c_uint64]),
    "bumba_safe_write": (ctypes.c_int, [_handle, _cstr, _buf, _size, ctypes.c_uint]),
    "bumba_safe_read": (ctypes.c_int, [_handle, _cstr, _buf, _size, ctypes.POINTER(_size)]),
    "bumba_safe_delete": (ctypes.c_int, [_handle, _cstr, ctypes.c_uint]),
    "bumba_safe_move": (ctypes.c_int, [_handle, _cstr, _cstr, ctypes.c_uint]),
    "bumba_safe_restore": (ctypes.c_int, [_handle, _cstr, ctypes.c_int64, ctypes.c_uint]),
    "bumba_txn_begin": (ctypes.c_int, [_handle, ctypes.c_uint, ctypes.POINTER(_handle)]),
    "bumba_txn_write": (ctypes.c_int, [_handle, _cstr, _buf, _size]),
    "bumba_txn_delete": (ctypes.c_int, [_handle, _cstr]),
    "bumba_txn_move": (ctypes.c_int, [_handle, _cstr, _cstr]),
    "bumba_txn_commit": (ctypes.c_int, [_handle]),
    "bumba_txn_abort": (ctypes.c_int, [_handle]),
    "bumba_io_uring_available": (ctypes.c_int, []),
    # Joining (several processes, one agent).
    "bumba_open_ex": (
        ctypes.c_int, [_cstr, ctypes.POINTER(AgentInfo), ctypes.c_uint, ctypes.POINTER(_handle)],
    ),
    "bumba_join": (ctypes.c_int, [_cstr, ctypes.c_int, ctypes.POINTER(_handle)]),
    "bumba_join_fd": (ctypes.c_int, [_handle]),
    "bumba_is_joined": (ctypes.c_int, [_handle]),
}

# Functions a library built before joining existed lacks: the binding then
# loads anyway, and the features that need them raise NotImplementedError.
OPTIONAL = {"bumba_open_ex", "bumba_join", "bumba_join_fd", "bumba_is_joined"}

OPEN_NO_JOIN, OPEN_JOIN_ONLY = 0x1, 0x2  # BUMBA_OPEN_*


def _candidates():
    """Yields (description, name-or-path, skipped) in the order the library
    is tried; skipped, when not None, says why that place was not tried."""
    env = os.environ.get("BUMBA_LIBRARY")
    if env:
        yield "$BUMBA_LIBRARY", env, None
        return
    soname = "libbumba-shm.so.%d" % SOVERSION
    if INSTALLED_LIBDIR:
        yield "make install's LIBDIR", os.path.join(INSTALLED_LIBDIR, soname), None
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
        # Only a package in agents/python/ of a source tree has a build tree.
        if os.path.exists(os.path.join(repo, "shm", "bumba.h")):
            tree = os.path.join(repo, "build", "libbumba-shm.so")
            yield "the build tree", tree, (None if os.path.exists(tree) else "not built (make)")
    found = ctypes.util.find_library("bumba-shm")
    yield ("ctypes.util.find_library", found or "bumba-shm",
           None if found else "not in ldconfig's cache nor the linker's search path")
    yield "the soname, in LD_LIBRARY_PATH, ldconfig's cache, /lib, /usr/lib", soname, None


def load():
    """Loads libbumba-shm, declares every prototype and returns (lib, path).

    Raises ImportError naming every place tried when no candidate loads.
    """
    tried = []
    for how, name, skipped in _candidates():
        if skipped:
            tried.append("%s (%s): %s" % (name, how, skipped))
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            tried.append("%s (%s): %s" % (name, how, e))
            continue
        missing = [f for f in PROTOTYPES if f not in OPTIONAL and not hasattr(lib, f)]
        if missing:
            tried.append("%s (%s): not libbumba-shm, or too old (no %s)"
                         % (name, how, ", ".join(missing)))
            continue
        for fname, (restype, argtypes) in PROTOTYPES.items():
            fn = getattr(lib, fname, None)
            if fn is None:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
        return lib, name
    if os.environ.get("BUMBA_LIBRARY"):
        hint = ("BUMBA_LIBRARY is set, so nothing else was tried: point it at "
                "libbumba-shm.so, or unset it to search the system.")
    else:
        hint = ("Build it with `make` (build/libbumba-shm.so), install it (`make install`, "
                "then `ldconfig` as root), or set BUMBA_LIBRARY to its path.")
    raise ImportError("bumba: cannot load libbumba-shm.so.%d. Looked at:\n  %s\n%s"
                      % (SOVERSION, "\n  ".join(tried), hint))


# The sizes and offsets shm/bumba.h gives these structures on this ABI, as
# ctypes sees them; the test suite checks them against the C compiler.
def layout():
    """{"struct.field": offset, "struct": size} for every mirrored structure."""
    out = {}
    for cname, cls in (("bumba_agent_info", AgentInfo), ("bumba_lock", LockStruct),
                       ("bumba_lock_opts", LockOpts), ("bumba_conflict", ConflictStruct)):
        out[cname] = ctypes.sizeof(cls)
        for fname, _ in cls._fields_:
            out["%s.%s" % (cname, fname)] = getattr(cls, fname).offset
    return out
