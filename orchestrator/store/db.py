"""The store's file: connections (one per thread), write transactions, migration on open, and the two
writes every table shares (touching a run, appending an event)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from orchestrator.errors import OrchestratorError, RunNotFound
from orchestrator.events import RunEvent
from orchestrator.logs import SecretMasker
from orchestrator.store.schema import MIGRATIONS, SCHEMA_VERSION


class StoreBase:
    """The run store at `path` (created with its folder if missing). Safe to share between threads;
    several processes may open the same file. Close it (or use it as a context manager) when done."""

    def __init__(
        self, path: Path, *, masker: SecretMasker | None = None, busy_timeout_s: float = 15.0
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._masker = masker if masker is not None else SecretMasker()
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._migrate()

    # --- connections and transactions ---------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise OrchestratorError(f"the run store {self.path} is closed")
            # Autocommit mode (isolation_level=None): transactions are ours, opened explicitly.
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._connections.append(conn)
        # A thread that ends takes its connection with it: a server with a thread per request would
        # otherwise keep three open files per request until the store is closed.
        weakref.finalize(threading.current_thread(), self._release, conn)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, and much faster
        self._local.conn = conn
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn not in self._connections:
                return  # the store was closed already
            self._connections.remove(conn)
        conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock up front, so two writers never
        deadlock upgrading a read lock; a busy database is waited for (busy_timeout)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (e.g. disk full); a second ROLLBACK would hide why.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        conn = self._conn()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OrchestratorError(
                f"the run store {self.path} cannot use WAL mode (it stays in {mode!r} mode)",
                hint="put the state folder on a local file system (ORCHESTRATOR_HOME or XDG_STATE_HOME)",
            )
        with self._write() as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OrchestratorError(
                    f"the run store {self.path} has schema version {version}; this version of the "
                    f"orchestrator knows up to {SCHEMA_VERSION}",
                    hint="upgrade ai-agents-orchestrator, or point it at another state folder",
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        version: int = self._conn().execute("PRAGMA user_version").fetchone()[0]
        return version

    def journal_mode(self) -> str:
        return str(self._conn().execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- shared writes ------------------------------------------------------------------------------

    def _touch_run(
        self, tx: sqlite3.Connection, run_id: str, assignments: str = "", params: Sequence[Any] = ()
    ) -> None:
        """Updates a run (and its updated_at, which is what `runs list` and followers watch)."""
        sets = f"{assignments}, updated_at = ?" if assignments else "updated_at = ?"
        cursor = tx.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*params, time.time(), run_id))
        if cursor.rowcount == 0:
            raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def _insert_event(self, tx: sqlite3.Connection, run_id: str, event: RunEvent) -> int:
        seq: int = tx.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        data = json.dumps(self._masker.mask_value(event.model_dump(mode="json")))
        tx.execute(
            "INSERT INTO events (run_id, seq, step_id, type, ts, data) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, seq, getattr(event, "step_id", None), event.type, event.ts, data),
        )
        return seq
