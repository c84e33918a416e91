"""The default backend: one SQLite file in WAL mode, embedded, no server.

Every write is one `BEGIN IMMEDIATE` transaction, so writers from several threads or processes queue on
SQLite's lock (busy_timeout) instead of failing, and an event's sequence number (MAX + 1) is computed
under that lock. The schema version is `PRAGMA user_version`, as it always was, so existing state.db
files open as they did. Set-up on open runs under an exclusive lock on `<store>.lock` beside the file,
so only one process changes the journal mode or migrates while the others wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError, StoreError
from orchestrator.store.backend import Backend, Connection
from orchestrator.store.faults import store_error, store_error_for


class SqliteBackend(Backend):
    name = "sqlite"
    shared = False
    for_update = ""

    def __init__(self, path: Path) -> None:
        self.file = Path(path)
        self.path = self.file
        self.location = str(self.file)

    def prepare(self) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error_for(exc, self.file) or exc from exc
        if self.file.is_dir():
            raise store_error("unreadable", self.file)

    def connect(self, busy_timeout_s: float) -> Connection:
        # Autocommit mode (isolation_level=None): transactions are ours, opened explicitly.
        raw = sqlite3.connect(
            self.file, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        raw.row_factory = sqlite3.Row
        raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, and much faster
        return Connection(raw, self)

    def begin_write(self, conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading a read lock.
        conn.raw.execute("BEGIN IMMEDIATE")

    def in_transaction(self, conn: Connection) -> bool:
        # SQLite may have rolled back already (e.g. disk full); a second ROLLBACK would hide why.
        return bool(conn.raw.in_transaction)

    def insert_id(self, conn: Connection, sql: str, params: Sequence[Any]) -> int:
        row_id = conn.raw.execute(sql, params).lastrowid
        assert row_id is not None
        return int(row_id)

    def schema_version(self, conn: Connection) -> int:
        return int(conn.raw.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, tx: Connection, version: int) -> None:
        tx.raw.execute(f"PRAGMA user_version = {int(version)}")

    def check_ready(self, conn: Connection) -> None:
        mode = conn.raw.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.raw.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OrchestratorError(
                f"the run store {self.file} cannot use WAL mode (it stays in {mode!r} mode)",
                hint="put the state folder on a local file system (ORCHESTRATOR_HOME or XDG_STATE_HOME)",
            )

    def journal_mode(self, conn: Connection) -> str:
        return str(conn.raw.execute("PRAGMA journal_mode").fetchone()[0])

    @contextlib.contextmanager
    def set_up_lock(self, conn: Connection, busy_timeout_s: float) -> Iterator[None]:
        """An exclusive lock on `<store>.lock` while the store is set up. Without a writable folder
        there is no lock (and nothing to set up that could succeed: SQLite says why)."""
        try:
            fd = os.open(f"{self.file}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            yield
            return
        try:
            deadline = time.monotonic() + busy_timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise store_error("busy", self.file) from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # releases the lock

    def store_error_for(self, exc: BaseException) -> StoreError | None:
        if not isinstance(exc, sqlite3.Error | OSError | StoreError):
            return None
        return store_error_for(exc, self.file)
