"""What went wrong with the store's file, in the user's words: corrupt, unreadable, read-only, disk full
or locked, each with the path and what to do. SQLite's own exceptions stop here (`store_error_for`);
programming errors (bad SQL, a broken constraint) are not faults of the file and pass unchanged, so
they still end as an internal error with a crash log.
"""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import GitError, StoreError, StoreProblem

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26
_SQLITE_PERM, _SQLITE_AUTH = 3, 23

# Below this much free space a write may fail at any moment (SQLite grows its WAL by whole pages).
LOW_SPACE_BYTES = 256 * 1024

_HINTS: dict[StoreProblem, str] = {
    "corrupt": "run `orchestrator doctor --repair`: it moves the damaged file aside (kept beside it) "
    "and starts a new store; the runs' branches and folders are not touched",
    "read_only": "the state folder is on a read-only file system: point ORCHESTRATOR_HOME at a "
    "writable folder, or remount it read-write",
    "unreadable": "check that the file is a regular file this user may read and write, or point "
    "ORCHESTRATOR_HOME at another folder; `orchestrator doctor` checks the state folder",
    "disk_full": "free some space on that disk (or point ORCHESTRATOR_HOME at another one), then "
    "`orchestrator doctor` to check",
    "busy": "another orchestrator process holds the store locked; wait for it, or find it with "
    "`orchestrator runs list`",
}


def free_bytes(folder: Path) -> int | None:
    """Free space for unprivileged users on the file system holding `folder` (or its nearest
    existing parent); None when it cannot be told."""
    probe = _existing(folder)
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(_existing(folder)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _existing(folder: Path) -> Path:
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def problem_of(exc: BaseException, path: Path) -> StoreProblem | None:
    """Which fault of the store's file (at `path`) `exc` stands for, or None for anything else."""
    folder = path.parent
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk_full"
        if exc.errno == errno.EROFS or read_only_fs(folder):
            return "read_only"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EIO):
            return "unreadable"
        return None
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return None
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    code = _primary_code(exc)
    text = str(exc).lower()
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return "corrupt"
    if code == _SQLITE_READONLY or read_only_fs(folder):
        return "read_only"
    space = free_bytes(folder)
    if code == _SQLITE_FULL or "disk is full" in text or (space is not None and space < LOW_SPACE_BYTES):
        return "disk_full"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return "busy"
    if code in (_SQLITE_CANTOPEN, _SQLITE_IOERR, _SQLITE_PERM, _SQLITE_AUTH) or "unable to open" in text:
        return "unreadable"
    return None


def describe(problem: StoreProblem, path: Path, exc: BaseException | None = None) -> str:
    """One sentence naming the file and the fault."""
    if problem == "corrupt":
        return f"the run store {path} is damaged (not a readable SQLite database)"
    if problem == "read_only":
        return f"the run store {path} cannot be written: its folder is on a read-only file system"
    if problem == "disk_full":
        space = free_bytes(path.parent)
        left = f" ({space // 1024} KiB free)" if space is not None else ""
        return f"the disk holding the run store {path} is full{left}"
    if problem == "busy":
        return f"the run store {path} is locked by another process"
    why = ""
    if path.is_dir():
        why = ": it is a folder, not a file"
    elif exc is not None:
        why = f": {getattr(exc, 'strerror', None) or exc}"
    return f"the run store {path} cannot be opened{why}"


def store_error(problem: StoreProblem, path: Path, exc: BaseException | None = None) -> StoreError:
    return StoreError(describe(problem, path, exc), path=str(path), problem=problem, hint=_HINTS[problem])


def store_error_for(exc: BaseException, path: Path) -> StoreError | None:
    """The StoreError a low-level failure stands for, or None when it is not a fault of the file."""
    if isinstance(exc, StoreError):
        return exc
    problem = problem_of(exc, path)
    return store_error(problem, path, exc) if problem is not None else None


def caused_by_full_disk(exc: BaseException, folder: Path) -> bool:
    """True when `exc` (or what caused it) is the disk running out of space: a store error, an
    OSError, git's own words, or simply no space left where the run's state lives."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StoreError) and seen.problem == "disk_full":
            return True
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, GitError) and "no space left on device" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    space = free_bytes(folder)
    return space is not None and space < LOW_SPACE_BYTES


F = TypeVar("F", bound=Callable[..., Any])


def _translating(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            mapped = self._backend.store_error_for(exc)
            if mapped is None or mapped is exc:
                raise
            raise mapped from exc

    wrapper.__store_translated__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def translate_store_errors(cls: C) -> C:
    """Every public method of the store class (from any of its table mixins, present or added later)
    turns a fault of the store into a StoreError at the boundary (the backend says which errors are
    faults), so no caller ever sees `sqlite3` or `psycopg`."""
    for name in dir(cls):
        if name.startswith("_") and name not in ("__enter__",):
            continue
        attr = getattr(cls, name)
        if callable(attr) and not isinstance(attr, type) and not getattr(attr, "__store_translated__", False):
            raw = next((vars(base)[name] for base in cls.__mro__ if name in vars(base)), None)
            if isinstance(raw, staticmethod | classmethod | property):
                continue
            setattr(cls, name, _translating(attr))
    return cls
