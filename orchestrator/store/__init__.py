"""The run store: runs, their steps, their events, and the usage they cost; control requests.

One interface, two backends (backend.py): an SQLite file in WAL mode, embedded, the default; or a
PostgreSQL database (`cluster: {database: postgresql://...}` or $ORCHESTRATOR_DATABASE_URL, with the
`[cluster]` extra), shared by processes on several machines. Every process that works on runs (the CLI,
the dashboard, CI, workers) opens the same store. Each thread gets its own connection; every write is
one transaction, and writers queue on the backend's locks (busy_timeout) instead of failing. The schema
is one list of migrations (schema.py), applied forward on open on both backends.

A run records the process that owns it (pid plus a start-time token, see `process_token`), so a run
left "running" by a process that died is recognised and marked interrupted, even if its pid was reused.
On a cluster, an attempt at a run's step holds a fencing token (fences.py): a Store holding one has
its writes for that run refused (StaleFence) once a newer attempt took a newer token.
Text that could carry a secret (events, step errors, step details) is masked before it is written.
A run stopped by a full disk is marked failed: by its own process if the store can still be written,
else by the next process that opens the store (from an empty marker file beside it).
"""

from __future__ import annotations

from orchestrator.errors import StaleFence
from orchestrator.store.control import CONTROL_KINDS, ControlKind, ControlMixin, ControlRequest
from orchestrator.store.events import EventsMixin
from orchestrator.store.faults import translate_store_errors
from orchestrator.store.fences import FencesMixin
from orchestrator.store.locate import DATABASE_URL_VAR, store_location
from orchestrator.store.owners import owner_alive, process_token
from orchestrator.store.records import (
    COMPLETED_STEP_STATUSES,
    FINISHED_RUN_STATUSES,
    RUN_STATUSES,
    RunOptions,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    StoredEvent,
    TokenUsage,
)
from orchestrator.store.runs import RunsMixin
from orchestrator.store.schema import MIGRATIONS, SCHEMA_VERSION
from orchestrator.store.steps import StepsMixin

__all__ = [
    "CONTROL_KINDS",
    "COMPLETED_STEP_STATUSES",
    "DATABASE_URL_VAR",
    "ControlKind",
    "ControlRequest",
    "FINISHED_RUN_STATUSES",
    "MIGRATIONS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "StaleFence",
    "RunOptions",
    "RunRecord",
    "RunStatus",
    "StepRecord",
    "StepStatus",
    "Store",
    "StoredEvent",
    "TokenUsage",
    "owner_alive",
    "process_token",
    "store_location",
]


@translate_store_errors
class Store(RunsMixin, StepsMixin, EventsMixin, ControlMixin, FencesMixin):
    """The run store at `location`: an SQLite file (a path, created with its folder if missing) or a
    PostgreSQL database (a postgresql:// URL). Safe to share between threads; several processes (and,
    with PostgreSQL, machines) may open the same store. Close it (or use it as a context manager).

    One class over either backend; each table's operations live in their own module (runs, steps,
    events, control requests, fencing tokens). A fault of the store (corrupt, unreadable or
    unreachable, read-only, disk full, locked) is a StoreError from any method (exit 2, with the store
    and what to do), never a raw `sqlite3` or `psycopg` error."""
