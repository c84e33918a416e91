"""What differs between the store's two backends, in one place: connecting, the SQL dialect
(placeholders, types in the schema, row locks, ids of inserted rows), transactions, where the schema
version is kept, and what their faults mean to the user.

The tables' modules (runs, steps, events, control) write their SQL once, in the subset both SQLite and
PostgreSQL accept, with `?` placeholders; `Connection.execute` hands it to the backend, which rewrites it
for its driver where it must. Write transactions lock what they change in one order, the run's row
before its steps' rows, so PostgreSQL's row locks never deadlock; SQLite takes the whole file at BEGIN.

    sqlite:      Store(Path("~/.local/state/orchestrator/state.db"))    the default, embedded
    postgresql:  Store("postgresql://user:pass@host:5432/orchestrator")  the `[cluster]` extra
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import StoreError

if TYPE_CHECKING:
    from orchestrator.store.listen import ChangeListener

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Row(Protocol):
    """A result row: by position or by column name (sqlite3.Row, and postgres_backend.Row)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection:
    """One connection of either backend. SQL is written once, with `?` placeholders."""

    def __init__(self, raw: Any, backend: Backend) -> None:
        self.raw = raw
        self.backend = backend

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor: Cursor = self.raw.execute(self.backend.sql(sql), self.backend.params(params))
        return cursor

    def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs an INSERT into a table with an `id` the database assigns, and returns that id."""
        return self.backend.insert_id(self, sql, params)

    @property
    def in_transaction(self) -> bool:
        return self.backend.in_transaction(self)

    def close(self) -> None:
        self.raw.close()


class Backend(abc.ABC):
    name: str
    location: str  # what messages name: the file, or the URL without its password
    path: Path | None  # the store's file (SQLite); None for a server
    # Whether processes on other machines share the store: a run's owner on another machine cannot be
    # looked up in this machine's /proc.
    shared: bool
    # Appended to a SELECT that reads rows the same transaction then changes (none on SQLite, whose
    # write transactions hold the whole file).
    for_update: str

    @abc.abstractmethod
    def connect(self, busy_timeout_s: float) -> Connection: ...

    def sql(self, statement: str) -> str:
        return statement

    def notify_change(self, tx: Connection, run_id: str) -> None:
        """Inside a write transaction that changed the run: tells listeners at commit (listen.py)."""
        return None

    def change_listener(self, wake: Callable[[str], None]) -> ChangeListener | None:
        return None

    def params(self, params: Sequence[Any]) -> Sequence[Any]:
        """The parameters as the driver can store them."""
        return params

    def ddl(self, statement: str) -> str:
        """A migration's statement (written for SQLite, where the schema began) for this backend."""
        return statement

    def broken(self, conn: Connection) -> bool:
        """Whether the connection is lost (a server restarted, a network cut): the thread then gets a
        new one on its next call (the call that found it lost failed, with a StoreError)."""
        return False

    @abc.abstractmethod
    def begin_write(self, conn: Connection) -> None: ...

    @abc.abstractmethod
    def in_transaction(self, conn: Connection) -> bool: ...

    @abc.abstractmethod
    def insert_id(self, conn: Connection, sql: str, params: Sequence[Any]) -> int: ...

    @abc.abstractmethod
    def schema_version(self, conn: Connection) -> int: ...

    @abc.abstractmethod
    def set_schema_version(self, tx: Connection, version: int) -> None: ...

    def check_ready(self, conn: Connection) -> None:
        """What must hold before the store is used (SQLite: WAL mode)."""
        return None

    @contextlib.contextmanager
    def set_up_lock(self, conn: Connection, busy_timeout_s: float) -> Iterator[None]:
        """Held while the store is set up on open, so one process migrates while the others wait
        (SQLite: a lock file beside the store; PostgreSQL: an advisory lock)."""
        yield

    def prepare(self) -> None:
        """Before the first connection (SQLite: the folder)."""
        return None

    @abc.abstractmethod
    def store_error_for(self, exc: BaseException) -> StoreError | None:
        """The StoreError a driver's failure stands for, or None when it is not a fault of the store
        (a bug of ours: bad SQL, a broken constraint)."""

    def is_busy(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreError) and exc.problem == "busy"


def is_postgres_url(location: Path | str) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def backend_for(location: Path | str) -> Backend:
    """SQLite for a path, PostgreSQL for a postgresql:// URL (which needs the `[cluster]` extra)."""
    if is_postgres_url(location):
        from orchestrator.store.postgres_backend import PostgresBackend

        return PostgresBackend(str(location))
    from orchestrator.store.sqlite_backend import SqliteBackend

    return SqliteBackend(Path(location))
