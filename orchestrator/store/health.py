"""Checks of the state folder and the store's file for `orchestrator doctor`, and the repair of a
damaged store (moved aside, never deleted, and a new one started).

The checks open the file with plain sqlite3, read-only where they can, so a damaged or locked store is
described rather than raised, and nothing is migrated or written by looking.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from orchestrator.store.faults import LOW_SPACE_BYTES, describe, free_bytes, problem_of, read_only_fs

Level = Literal["ok", "warning", "error"]

# Less than this much free space is worth a warning: one run's clone, transcripts and logs.
WARN_SPACE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "detail": self.detail, "fix": self.fix}


def check_state_folder(home: Path) -> Check:
    """The state folder exists (or can be made) and a file can be written in it."""
    if read_only_fs(home):
        return Check(
            "state folder",
            "error",
            f"{home} is on a read-only file system",
            "point ORCHESTRATOR_HOME at a writable folder",
        )
    probe = home / f".doctor-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        return Check(
            "state folder",
            "error",
            f"{home} cannot be written: {exc.strerror or exc}",
            "fix its permissions, or point ORCHESTRATOR_HOME at a writable folder",
        )
    return Check("state folder", "ok", f"{home} (writable)")


def check_free_space(home: Path) -> Check:
    space = free_bytes(home)
    if space is None:
        return Check("free space", "warning", f"cannot tell how much space is free at {home}")
    text = f"{_size(space)} free at {home}"
    if space < LOW_SPACE_BYTES:
        return Check("free space", "error", text, "free some space; runs stop when the disk fills up")
    if space < WARN_SPACE_BYTES:
        return Check("free space", "warning", text, "a run needs room for a clone, transcripts and logs")
    return Check("free space", "ok", text)


def check_store(path: Path) -> Check:
    """The store's file: absent (made on first use), or readable, writable and intact."""
    if not path.exists():
        return Check("store", "ok", f"{path} does not exist yet (it is made on first use)")
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            return _damaged(path, f"the integrity check says: {result}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if version else 0
        if not read_only_fs(path.parent):
            conn.execute("BEGIN IMMEDIATE")  # takes the write lock, writes nothing
            conn.execute("ROLLBACK")
    except (sqlite3.Error, OSError) as exc:
        problem = problem_of(exc, path)
        if problem == "corrupt":
            return _damaged(path, str(exc))
        return Check(
            "store",
            "error",
            describe(problem, path, exc) if problem else f"{path}: {exc}",
            "`orchestrator doctor` again once that is fixed",
        )
    finally:
        if conn is not None:
            conn.close()
    if read_only_fs(path.parent):
        return Check("store", "error", describe("read_only", path), "point ORCHESTRATOR_HOME elsewhere")
    return Check("store", "ok", f"{path} (schema {version}, {runs} runs, intact)")


def check_server_store(location: str) -> Check:
    """A PostgreSQL store: reachable, its schema known to this version, how many runs it holds.
    Opening it migrates it forward, as any command's first use would."""
    from orchestrator.errors import OrchestratorError
    from orchestrator.store import Store

    try:
        with Store(location) as store:
            runs = store.run_count()
            return Check(
                "store", "ok", f"{store.location} (PostgreSQL, schema {store.schema_version()}, {runs} runs)"
            )
    except OrchestratorError as exc:
        return Check("store", "error", exc.message, exc.hint)


def _damaged(path: Path, why: str) -> Check:
    return Check(
        "store",
        "error",
        f"{path} is damaged: {why}",
        "`orchestrator doctor --repair` moves it aside and starts a new store",
    )


def store_is_damaged(check: Check) -> bool:
    return check.name == "store" and check.level == "error" and "is damaged" in check.detail


def move_store_aside(path: Path, now: datetime | None = None) -> Path:
    """Renames the store's file (and its -wal and -shm) to `<name>.damaged-<time>` beside it and
    returns the new name of the main file. Nothing is deleted."""
    stamp = f"{(now or datetime.now()):%Y%m%d-%H%M%S}"
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
