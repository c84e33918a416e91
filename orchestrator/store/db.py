"""The store's connections (one per thread), write transactions, set-up and migration on open, and the
two writes every table shares (touching a run, appending an event). What differs between SQLite and
PostgreSQL is in the backend (backend.py); this module is the same for both.

Opening is safe under any number of first uses at once: the set-up (SQLite's WAL mode, the schema) runs
under the backend's lock, so only one process migrates while the others wait; a store still locked
beyond busy_timeout is retried a few times (reported, see orchestrator/retries.py) before it is a
StoreError. An up-to-date store is opened without writing anything, so read-only commands work on a
full disk. Faults of the store become StoreError (see faults.py and the backends).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from orchestrator.errors import OrchestratorError, RunNotFound, StaleFence
from orchestrator.events import RunEvent
from orchestrator.logs import SecretMasker
from orchestrator.retries import RetryNote, report_retry, short
from orchestrator.secrets import process_masker
from orchestrator.store.backend import Backend, Connection, backend_for
from orchestrator.store.listen import ChangeListener
from orchestrator.store.owners import CLUSTER_OWNER, owner_alive, owner_elsewhere
from orchestrator.store.schema import MIGRATIONS, SCHEMA_VERSION

# How often opening is tried when the store stays locked past busy_timeout (a writer holding it long).
OPEN_ATTEMPTS = 4


class StoreBase:
    """The run store at `location`: an SQLite file (created with its folder if missing), or a
    postgresql:// URL. Safe to share between threads; several processes may open the same store.
    Close it (or use it as a context manager) when done."""

    def __init__(
        self, location: Path | str, *, masker: SecretMasker | None = None, busy_timeout_s: float = 15.0
    ) -> None:
        self._masker = masker if masker is not None else SecretMasker()
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._closed = False
        # Fencing tokens this Store holds (fences.py), by run id: its writes for those runs are checked.
        self._fences: dict[str, int] = {}
        self._backend: Backend = backend_for(location)
        password = getattr(self._backend, "password", None)
        if password:
            # A password in the URL is a secret like any other: masked in what the store writes, in
            # logs and in errors.
            self._masker.add([password])
            process_masker().add([password])
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path | None:
        """The store's file (SQLite), or None for a PostgreSQL store."""
        return self._backend.path

    @property
    def location(self) -> str:
        """What messages name: the file, or the URL without its password."""
        return self._backend.location

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL store's URL, password included, for other connections to the same database
        (cluster-wide slots); None for SQLite. Never print it: `location` is for messages."""
        url = getattr(self._backend, "url", None)
        return str(url) if url is not None else None

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._backend.name

    # --- connections and transactions ---------------------------------------------------------------

    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self._backend.broken(conn):
            return conn
        if conn is not None:
            self._release(conn)
            self._local.conn = None
        with self._lock:
            if self._closed:
                raise OrchestratorError(f"the run store {self.location} is closed")
        conn = self._backend.connect(self._busy_timeout_s)
        with self._lock:
            if self._closed:
                conn.close()
                raise OrchestratorError(f"the run store {self.location} is closed")
            self._connections.append(conn)
        # A thread that ends takes its connection with it: a server with a thread per request would
        # otherwise keep open files (or server connections) per request until the store is closed.
        weakref.finalize(threading.current_thread(), self._release, conn)
        self._local.conn = conn
        return conn

    def _release(self, conn: Connection) -> None:
        with self._lock:
            if conn not in self._connections:
                return  # the store was closed already
            self._connections.remove(conn)
        conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction. SQLite takes the write lock up front (BEGIN IMMEDIATE), so two
        writers never deadlock upgrading a read lock; PostgreSQL locks rows as they are written (or
        read FOR UPDATE). A busy store is waited for (busy_timeout)."""
        conn = self._conn()
        self._backend.begin_write(conn)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if not self._backend.broken(conn) and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _open(self) -> None:
        self._backend.prepare()
        try:
            self._set_up()
            return
        except Exception as exc:
            if not self._backend.is_busy(exc):
                raise
            seen: list[BaseException] = [exc]  # tenacity's try 1; imported only now (4 ms off a start)
        import tenacity

        def first_then_set_up() -> None:
            if seen:
                raise seen.pop()
            self._set_up()

        def before_sleep(state: tenacity.RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            report_retry(
                RetryNote("store_busy", state.attempt_number, OPEN_ATTEMPTS, wait_s, short(str(failure)))
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._backend.is_busy),
            stop=tenacity.stop_after_attempt(OPEN_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0) + tenacity.wait_random(0, 0.1),
            before_sleep=before_sleep,
            reraise=True,
        )
        retrying(first_then_set_up)

    def _set_up(self) -> None:
        try:
            with self._backend.set_up_lock(self._conn(), self._busy_timeout_s):
                self._migrate()
        except Exception as exc:
            mapped = self._backend.store_error_for(exc)
            if mapped is None or mapped is exc:
                raise
            raise mapped from exc

    def _migrate(self) -> None:
        """One mechanism on both backends: MIGRATIONS (schema.py) applied in order from the stored
        version, in one transaction that also records the new version."""
        conn = self._conn()
        version = self._backend.schema_version(conn)
        if version > SCHEMA_VERSION:
            raise OrchestratorError(
                f"the run store {self.location} has schema version {version}; this version of the "
                f"orchestrator knows up to {SCHEMA_VERSION}",
                hint="upgrade ai-agents-orchestrator, or point it at another state folder",
            )
        self._backend.check_ready(conn)
        if version == SCHEMA_VERSION:
            return  # nothing to write: an up-to-date store opens on a full or read-only disk too
        with self._write() as tx:
            version = self._backend.schema_version(tx)  # another process may have migrated meanwhile
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    tx.execute(self._backend.ddl(statement))
            if version < SCHEMA_VERSION:
                self._backend.set_schema_version(tx, SCHEMA_VERSION)

    def schema_version(self) -> int:
        return self._backend.schema_version(self._conn())

    def journal_mode(self) -> str:
        """SQLite's journal mode ("wal"); a PostgreSQL store has none of its own to report."""
        mode = getattr(self._backend, "journal_mode", None)
        return str(mode(self._conn())) if mode is not None else "postgresql"

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

    def change_listener(self, wake: Callable[[str], None]) -> ChangeListener | None:
        """A listener that calls `wake(run_id)` when any process commits a change to a run (not
        started: call `start()`); None for SQLite, whose file is watched instead (ui/follower.py)."""
        return self._backend.change_listener(wake)

    # --- owners -------------------------------------------------------------------------------------

    def owner_alive(self, pid: int | None, token: str | None) -> bool:
        """Whether a run's owner (its `owner_pid`, `owner_token`) may still be at work: alive on this
        machine, or, on a store shared between machines, started on another one."""
        return self._owner_alive(pid, token)

    def _owner_alive(self, pid: int | None, token: str | None) -> bool:
        """Whether a run's owner is alive. On a store shared between machines, an owner that started
        on another machine (another boot id) cannot be looked up here, so it counts as alive; so does
        the cluster, the owner of a run submitted with `run --cluster`."""
        if token == CLUSTER_OWNER or (self._backend.shared and owner_elsewhere(token)):
            return True
        return owner_alive(pid, token)

    # --- shared writes ------------------------------------------------------------------------------

    def _touch_run(
        self, tx: Connection, run_id: str, assignments: str = "", params: Sequence[Any] = ()
    ) -> None:
        """Updates a run (and its updated_at, which is what `runs list` and followers watch). On
        PostgreSQL this locks the run's row: every write transaction touches the run before its
        steps, so they all lock in one order."""
        sets = f"{assignments}, updated_at = ?" if assignments else "updated_at = ?"
        cursor = tx.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*params, time.time(), run_id))
        if cursor.rowcount == 0:
            raise RunNotFound(f"no run {run_id!r} in {self.location}")
        self._check_fence(tx, run_id)  # the row is locked by the UPDATE: no newer token can slip in
        self._backend.notify_change(tx, run_id)

    def _insert_event(self, tx: Connection, run_id: str, event: RunEvent) -> int:
        """Appends an event with the run's next sequence number. The run's row is locked first (SQLite:
        the whole file already is), so concurrent writers get 1, 2, 3, ... in commit order, no gaps."""
        if self._backend.for_update:
            tx.execute(f"SELECT id FROM runs WHERE id = ?{self._backend.for_update}", (run_id,))
        self._check_fence(tx, run_id)
        seq: int = tx.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        data = json.dumps(self._masker.mask_value(event.model_dump(mode="json")))
        tx.execute(
            "INSERT INTO events (run_id, seq, step_id, type, ts, data) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, seq, getattr(event, "step_id", None), event.type, event.ts, data),
        )
        self._backend.notify_change(tx, run_id)
        return seq

    def _check_fence(self, tx: Connection, run_id: str) -> None:
        """Refuses the transaction's write (StaleFence) when this Store holds a fencing token for the
        run and a newer one was taken since. Called with the run's row locked (SQLite: the file), in
        the transaction that writes, so the check and the write are one: a token taken after the
        check waits for this commit, and one taken before is seen. A Store holding no token for the
        run checks nothing (single-machine mode)."""
        held = self._fences.get(run_id)
        if held is None:
            return
        row = tx.execute("SELECT fence FROM runs WHERE id = ?", (run_id,)).fetchone()
        current = int(row[0]) if row is not None else 0
        if current != held:
            raise StaleFence(run_id, held, current)
