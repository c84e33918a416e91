"""The store's file: connections (one per thread), write transactions, set-up and migration on open,
and the two writes every table shares (touching a run, appending an event).

Opening is safe under any number of first uses at once: the set-up (WAL mode, the schema) runs under an
exclusive lock on `state.db.lock` beside the file, so only one process changes the journal mode or
migrates while the others wait; a store still locked beyond busy_timeout is retried a few times
(reported, see orchestrator/retries.py) before it is a StoreError. An up-to-date store is opened without
writing anything, so read-only commands work on a full disk. Faults of the file become StoreError (see
faults.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import tenacity

from orchestrator.errors import OrchestratorError, RunNotFound, StoreError
from orchestrator.events import RunEvent
from orchestrator.logs import SecretMasker
from orchestrator.retries import RetryNote, report_retry, short
from orchestrator.store.faults import store_error, store_error_for
from orchestrator.store.schema import MIGRATIONS, SCHEMA_VERSION

# How often opening is tried when the file stays locked past busy_timeout (a writer holding it long).
OPEN_ATTEMPTS = 4


class StoreBase:
    """The run store at `path` (created with its folder if missing). Safe to share between threads;
    several processes may open the same file. Close it (or use it as a context manager) when done."""

    def __init__(
        self, path: Path, *, masker: SecretMasker | None = None, busy_timeout_s: float = 15.0
    ) -> None:
        self.path = Path(path)
        self._masker = masker if masker is not None else SecretMasker()
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self._open()
        except BaseException:
            self.close()
            raise

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

    def stop_marker(self, run_id: str, reason: str) -> Path:
        """The empty file a run stopped by a full disk leaves beside the store when even marking it
        failed in the store was impossible; the next open marks it failed (see runs.py). A file, not
        a folder of them: a name in an existing folder needs no free blocks."""
        return self.path.with_name(f"{self.path.name}.stopped-{run_id}.{reason}")

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error_for(exc, self.path) or exc from exc
        if self.path.is_dir():
            raise store_error("unreadable", self.path)

        def busy(exc: BaseException) -> bool:
            return isinstance(exc, StoreError) and exc.problem == "busy"

        def before_sleep(state: tenacity.RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            report_retry(
                RetryNote("store_busy", state.attempt_number, OPEN_ATTEMPTS, wait_s, short(str(failure)))
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(busy),
            stop=tenacity.stop_after_attempt(OPEN_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0) + tenacity.wait_random(0, 0.1),
            before_sleep=before_sleep,
            reraise=True,
        )
        retrying(self._set_up)

    def _set_up(self) -> None:
        try:
            with self._set_up_lock():
                self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise store_error_for(exc, self.path) or exc from exc

    @contextlib.contextmanager
    def _set_up_lock(self) -> Iterator[None]:
        """An exclusive lock on `<store>.lock` while the store is set up. Without a writable folder
        there is no lock (and nothing to set up that could succeed: SQLite says why)."""
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            yield
            return
        try:
            deadline = time.monotonic() + self._busy_timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise store_error("busy", self.path) from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _migrate(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OrchestratorError(
                f"the run store {self.path} has schema version {version}; this version of the "
                f"orchestrator knows up to {SCHEMA_VERSION}",
                hint="upgrade ai-agents-orchestrator, or point it at another state folder",
            )
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OrchestratorError(
                f"the run store {self.path} cannot use WAL mode (it stays in {mode!r} mode)",
                hint="put the state folder on a local file system (ORCHESTRATOR_HOME or XDG_STATE_HOME)",
            )
        if version == SCHEMA_VERSION:
            return  # nothing to write: an up-to-date store opens on a full or read-only disk too
        with self._write() as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
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
