"""The run store: SQLite in WAL mode. Runs, their steps, their events, and the usage they cost.

One file, shared by every process that works on runs (the CLI, the dashboard, CI). Each thread gets its
own connection; every write is one `BEGIN IMMEDIATE` transaction, so writers from several threads or
processes queue on SQLite's lock (busy_timeout) instead of failing. The schema is versioned with
`PRAGMA user_version` and migrated forward on open.

A run records the process that owns it (pid plus a start-time token, see `process_token`), so a run
left "running" by a process that died is recognised and marked interrupted, even if its pid was reused.
Text that could carry a secret (events, step errors, step details) is masked before it is written.
A run stopped by a full disk is marked failed: by its own process if the store can still be written,
else by the next process that opens the store (from an empty marker file beside it).
"""

from __future__ import annotations

from orchestrator.store.control import CONTROL_KINDS, ControlKind, ControlMixin, ControlRequest
from orchestrator.store.events import EventsMixin
from orchestrator.store.faults import translate_store_errors
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
    "ControlKind",
    "ControlRequest",
    "FINISHED_RUN_STATUSES",
    "MIGRATIONS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
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
]


@translate_store_errors
class Store(RunsMixin, StepsMixin, EventsMixin, ControlMixin):
    """The run store at `path` (created with its folder if missing). Safe to share between threads;
    several processes may open the same file. Close it (or use it as a context manager) when done.

    One class over one file; each table's operations live in their own module (runs, steps, events,
    control requests).
    A fault of the file (corrupt, unreadable, read-only, disk full, locked) is a StoreError from any
    method (exit 2, with the path and what to do), never a raw `sqlite3` error."""
