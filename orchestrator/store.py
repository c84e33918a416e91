"""The run store: SQLite in WAL mode. Runs, their steps, their events, and the usage they cost.

One file, shared by every process that works on runs (the CLI, the dashboard, CI). Each thread gets its
own connection; every write is one `BEGIN IMMEDIATE` transaction, so writers from several threads or
processes queue on SQLite's lock (busy_timeout) instead of failing. The schema is versioned with
`PRAGMA user_version` and migrated forward on open.

A run records the process that owns it (pid plus a start-time token, see `process_token`), so a run
left "running" by a process that died is recognised and marked interrupted, even if its pid was reused.
Text that could carry a secret (events, step errors, step details) is masked before it is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import OrchestratorError, RunNotFound, UsageError
from orchestrator.events import (
    AgentActivity,
    Notice,
    Result,
    RunEvent,
    RunFinished,
    SessionStarted,
    Subscriber,
    Usage,
    run_event_adapter,
)
from orchestrator.logs import SecretMasker

RunStatus = Literal[
    "running",
    "approved",
    "not_approved",
    "failed",
    "budget_exceeded",
    "timed_out",
    "interrupted",
    "cancelled",
]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
FINISHED_RUN_STATUSES: frozenset[str] = frozenset(RUN_STATUSES) - {"running"}

StepStatus = Literal[
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "refused",
    "timed_out",
    "cancelled",
    "interrupted",
]
# Steps that need not run again when a run is resumed.
COMPLETED_STEP_STATUSES: frozenset[str] = frozenset({"succeeded", "skipped"})


# --- records ----------------------------------------------------------------------------------------


class TokenUsage(BaseModel):
    """Tokens and cost. `cost_usd` is None when nothing that was counted had a known price."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None

    def __add__(self, other: TokenUsage) -> TokenUsage:
        costs = [c for c in (self.cost_usd, other.cost_usd) if c is not None]
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cost_usd=sum(costs) if costs else None,
        )


class RunOptions(BaseModel):
    """The options a run was started with, kept so that a resume runs under the same ones."""

    # Options added by later versions survive a round trip through an older one.
    model_config = ConfigDict(frozen=True, extra="allow")
    budget_usd: float | None = None
    timeout_s: float | None = None
    max_iterations: int | None = None
    agent_overrides: list[str] = Field(default_factory=list)  # as given: ["review=codex", ...]
    include_uncommitted: bool = False
    base_gates: bool | None = None  # False: --no-base-gates; None: as the workflow says


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    repo: str
    task: str
    workflow_name: str
    workflow: dict[str, Any]  # the resolved workflow, so a resume uses exactly this one
    base: str
    base_sha: str | None
    branch: str
    worktree: str | None
    status: RunStatus
    stop_reason: str | None
    iterations: int
    created_at: float
    updated_at: float
    finished_at: float | None
    owner_pid: int | None
    owner_token: str | None
    options: RunOptions

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES


class StepRecord(BaseModel):
    model_config = ConfigDict(frozen=True)
    run_id: str
    step_id: str  # e.g. "i1-s2-review"
    iteration: int
    index: int
    agent: str
    task: str
    status: StepStatus
    attempts: int  # how many times it started (a resumed run restarts an interrupted step)
    commit: str | None
    files_changed: list[str]
    usage: TokenUsage  # every attempt's, so a restart never hides what was spent
    error_kind: str | None
    error_message: str | None
    session_id: str | None
    started_at: float | None
    finished_at: float | None
    # findings (reviews), gate output tail, fallback notes: whatever the engine keeps about the step.
    detail: dict[str, Any]


class StoredEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    run_id: str
    seq: int
    step_id: str | None
    event: RunEvent


# --- the owning process -----------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def process_token(pid: int) -> str | None:
    """A token for the live process `pid` that a later process given the same pid will not share:
    the boot id, the pid and the process's start time (in clock ticks since boot, from /proc/<pid>/stat).
    None when no such process is alive (zombies count as dead)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        # No procfs (not Linux): all we can know is whether the pid is in use.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"pid:{pid}"
    # The command name may hold spaces and parentheses; the fields after its last ")" are fixed:
    # state (3rd field of the file), ..., starttime (22nd).
    fields = raw.rsplit(b")", 1)[-1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return f"{_boot_id()}:{pid}:{fields[19].decode()}"


def owner_alive(pid: int | None, token: str | None) -> bool:
    if pid is None:
        return False
    current = process_token(pid)
    return current is not None and (token is None or current == token)


# --- schema -----------------------------------------------------------------------------------------

# One tuple of statements per schema version; never edit a released one, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            repo TEXT NOT NULL,
            task TEXT NOT NULL,
            workflow_name TEXT NOT NULL,
            workflow_json TEXT NOT NULL,
            base TEXT NOT NULL,
            base_sha TEXT,
            branch TEXT NOT NULL,
            worktree TEXT,
            status TEXT NOT NULL,
            stop_reason TEXT,
            iterations INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            owner_pid INTEGER,
            owner_token TEXT,
            options_json TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX runs_by_repo ON runs (repo, created_at)",
        "CREATE INDEX runs_by_status ON runs (status)",
        """CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            agent TEXT NOT NULL,
            task TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            commit_sha TEXT,
            files_changed_json TEXT NOT NULL DEFAULT '[]',
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            prior_input_tokens INTEGER NOT NULL DEFAULT 0,
            prior_output_tokens INTEGER NOT NULL DEFAULT 0,
            prior_cached_tokens INTEGER NOT NULL DEFAULT 0,
            prior_cost_usd REAL,
            error_kind TEXT,
            error_message TEXT,
            session_id TEXT,
            started_at REAL,
            finished_at REAL,
            detail_json TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (run_id, step_id)
        )""",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            step_id TEXT,
            type TEXT NOT NULL,
            ts REAL NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_RUN_COLUMNS = (
    "id, repo, task, workflow_name, workflow_json, base, base_sha, branch, worktree, status, stop_reason,"
    " iterations, created_at, updated_at, finished_at, owner_pid, owner_token, options_json"
)
_STEP_COLUMNS = (
    "run_id, step_id, iteration, idx, agent, task, status, attempts, commit_sha, files_changed_json,"
    " input_tokens, output_tokens, cached_tokens, cost_usd, prior_input_tokens, prior_output_tokens,"
    " prior_cached_tokens, prior_cost_usd, error_kind, error_message, session_id, started_at,"
    " finished_at, detail_json"
)


def _repo_key(repo: Path | str) -> str:
    return str(Path(repo).expanduser().resolve())


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        repo=row["repo"],
        task=row["task"],
        workflow_name=row["workflow_name"],
        workflow=json.loads(row["workflow_json"]),
        base=row["base"],
        base_sha=row["base_sha"],
        branch=row["branch"],
        worktree=row["worktree"],
        status=row["status"],
        stop_reason=row["stop_reason"],
        iterations=row["iterations"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        owner_pid=row["owner_pid"],
        owner_token=row["owner_token"],
        options=RunOptions.model_validate_json(row["options_json"]),
    )


def _step_from_row(row: sqlite3.Row) -> StepRecord:
    current = TokenUsage(
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cached_tokens=row["cached_tokens"],
        cost_usd=row["cost_usd"],
    )
    prior = TokenUsage(
        input_tokens=row["prior_input_tokens"],
        output_tokens=row["prior_output_tokens"],
        cached_tokens=row["prior_cached_tokens"],
        cost_usd=row["prior_cost_usd"],
    )
    return StepRecord(
        run_id=row["run_id"],
        step_id=row["step_id"],
        iteration=row["iteration"],
        index=row["idx"],
        agent=row["agent"],
        task=row["task"],
        status=row["status"],
        attempts=row["attempts"],
        commit=row["commit_sha"],
        files_changed=json.loads(row["files_changed_json"]),
        usage=prior + current,
        error_kind=row["error_kind"],
        error_message=row["error_message"],
        session_id=row["session_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        detail=json.loads(row["detail_json"]),
    )


class Store:
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

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runs ---------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        repo: Path | str,
        task: str,
        workflow_name: str,
        workflow: Mapping[str, Any],
        base: str,
        branch: str,
        base_sha: str | None = None,
        worktree: Path | str | None = None,
        options: RunOptions | None = None,
    ) -> RunRecord:
        """A new run, status "running", owned by this process."""
        now = time.time()
        pid = os.getpid()
        values = {
            "id": run_id,
            "repo": _repo_key(repo),
            "task": task,
            "workflow_name": workflow_name,
            "workflow_json": json.dumps(dict(workflow)),
            "base": base,
            "base_sha": base_sha,
            "branch": branch,
            "worktree": str(worktree) if worktree is not None else None,
            "status": "running",
            "created_at": now,
            "updated_at": now,
            "owner_pid": pid,
            "owner_token": process_token(pid),
            "options_json": (options or RunOptions()).model_dump_json(),
        }
        columns = ", ".join(values)
        placeholders = ", ".join(f":{name}" for name in values)
        with self._write() as tx:
            if tx.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None:
                raise UsageError(f"a run {run_id!r} already exists in {self.path}")
            tx.execute(f"INSERT INTO runs ({columns}) VALUES ({placeholders})", values)
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn().execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(
                f"no run {run_id!r} in {self.path}", hint="`orchestrator runs list` shows the runs"
            )
        return _run_from_row(row)

    def list_runs(
        self, repo: Path | str | None = None, limit: int = 50, *, status: str | None = None
    ) -> list[RunRecord]:
        """Newest first; only `repo`'s runs and only runs in `status` when given."""
        clauses, params = [], []
        if repo is not None:
            clauses.append("repo = ?")
            params.append(_repo_key(repo))
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn().execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [_run_from_row(row) for row in rows]

    def _touch_run(
        self, tx: sqlite3.Connection, run_id: str, assignments: str = "", params: Sequence[Any] = ()
    ) -> None:
        """Updates a run (and its updated_at, which is what `runs list` and followers watch)."""
        sets = f"{assignments}, updated_at = ?" if assignments else "updated_at = ?"
        cursor = tx.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*params, time.time(), run_id))
        if cursor.rowcount == 0:
            raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def update_run_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        stop_reason: str | None = None,
        iterations: int | None = None,
    ) -> RunRecord:
        """Sets the status (and the stop reason, and the iteration count when given). A finished status
        stamps finished_at; "running" clears it."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        finished_at = None if status == "running" else time.time()
        with self._write() as tx:
            self._touch_run(
                tx,
                run_id,
                "status = ?, stop_reason = ?, finished_at = ?, iterations = COALESCE(?, iterations)",
                (status, stop_reason, finished_at, iterations),
            )
        return self.get_run(run_id)

    def set_iterations(self, run_id: str, iterations: int) -> None:
        with self._write() as tx:
            self._touch_run(tx, run_id, "iterations = ?", (iterations,))

    def set_workspace(
        self, run_id: str, *, base_sha: str | None = None, worktree: Path | str | None = None
    ) -> None:
        """Records what the workspace resolved, once it exists (None leaves a value as it is)."""
        with self._write() as tx:
            self._touch_run(
                tx,
                run_id,
                "base_sha = COALESCE(?, base_sha), worktree = COALESCE(?, worktree)",
                (base_sha, str(worktree) if worktree is not None else None),
            )

    def claim_run(self, run_id: str) -> RunRecord:
        """Makes this process the owner of a run again and sets it running (for resume). Refuses while
        another live process owns it."""
        pid = os.getpid()
        token = process_token(pid)
        with self._write() as tx:
            row = tx.execute(
                "SELECT status, owner_pid, owner_token FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            mine = row["owner_pid"] == pid and row["owner_token"] == token
            if row["status"] == "running" and not mine and owner_alive(row["owner_pid"], row["owner_token"]):
                raise UsageError(
                    f"run {run_id} is still running in process {row['owner_pid']}",
                    hint="wait for it to finish, or stop that process first",
                )
            self._touch_run(
                tx,
                run_id,
                "status = 'running', stop_reason = NULL, finished_at = NULL, owner_pid = ?, owner_token = ?",
                (pid, token),
            )
        return self.get_run(run_id)

    def mark_interrupted_if_owner_dead(self) -> list[str]:
        """Runs left "running" by a process that is gone become "interrupted", with their running steps.
        Returns their ids. A reused pid is told apart by its start time (see `process_token`)."""
        marked: list[str] = []
        with self._write() as tx:
            rows = tx.execute(
                "SELECT id, branch, owner_pid, owner_token FROM runs WHERE status = 'running'"
            ).fetchall()
            now = time.time()
            for row in rows:
                if owner_alive(row["owner_pid"], row["owner_token"]):
                    continue
                run_id = row["id"]
                self._touch_run(
                    tx,
                    run_id,
                    "status = 'interrupted', stop_reason = 'interrupted', finished_at = ?",
                    (now,),
                )
                tx.execute(
                    "UPDATE steps SET status = 'interrupted', finished_at = ?, error_kind = 'other',"
                    " error_message = ? WHERE run_id = ? AND status = 'running'",
                    (now, "the orchestrator process ended during this step", run_id),
                )
                text = f"run interrupted: its orchestrator process ({row['owner_pid']}) is gone"
                self._insert_event(tx, run_id, Notice(run_id=run_id, level="warning", text=text))
                self._insert_event(
                    tx,
                    run_id,
                    RunFinished(
                        run_id=run_id, status="interrupted", stop_reason="interrupted", branch=row["branch"]
                    ),
                )
                marked.append(run_id)
        return marked

    # --- steps --------------------------------------------------------------------------------------

    def start_step(
        self,
        run_id: str,
        step_id: str,
        *,
        iteration: int,
        index: int,
        agent: str,
        task: str,
        status: Literal["running", "pending"] = "running",
    ) -> StepRecord:
        """Records a step as running (or pending). Starting a step again (a resumed run) keeps what the
        earlier attempts spent, counts the attempt, and clears the rest of the earlier outcome."""
        now = time.time() if status == "running" else None
        attempt = 1 if status == "running" else 0
        with self._write() as tx:
            if status == "running":
                self._touch_run(tx, run_id, "iterations = MAX(iterations, ?)", (iteration,))
            else:
                self._touch_run(tx, run_id)
            tx.execute(
                """INSERT INTO steps (run_id, step_id, iteration, idx, agent, task, status, attempts, started_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_id, step_id) DO UPDATE SET
                    iteration = excluded.iteration, idx = excluded.idx, agent = excluded.agent,
                    task = excluded.task, status = excluded.status,
                    attempts = attempts + excluded.attempts,
                    prior_input_tokens = prior_input_tokens + input_tokens,
                    prior_output_tokens = prior_output_tokens + output_tokens,
                    prior_cached_tokens = prior_cached_tokens + cached_tokens,
                    prior_cost_usd = CASE WHEN prior_cost_usd IS NULL AND cost_usd IS NULL THEN NULL
                        ELSE COALESCE(prior_cost_usd, 0) + COALESCE(cost_usd, 0) END,
                    input_tokens = 0, output_tokens = 0, cached_tokens = 0, cost_usd = NULL,
                    commit_sha = NULL, files_changed_json = '[]', error_kind = NULL, error_message = NULL,
                    started_at = excluded.started_at, finished_at = NULL, detail_json = '{}'""",
                (run_id, step_id, iteration, index, agent, task, status, attempt, now),
            )
        return self._step_or_fail(run_id, step_id)

    def finish_step(
        self,
        run_id: str,
        step_id: str,
        *,
        status: StepStatus,
        commit: str | None = None,
        files_changed: Sequence[str] = (),
        usage: TokenUsage | None = None,
        error_kind: str | None = None,
        error_message: str | None = None,
        session_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> StepRecord:
        """Records how a step ended. `usage`, when given, is this attempt's total and replaces what the
        step's usage events added up to; `detail` is merged into the step's detail."""
        if status not in get_args(StepStatus):
            raise ValueError(f"unknown step status {status!r}")
        with self._write() as tx:
            row = tx.execute(
                "SELECT detail_json FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id)
            ).fetchone()
            if row is None:
                raise RunNotFound(f"no step {step_id!r} in run {run_id!r}")
            merged = json.loads(row["detail_json"])
            merged.update(self._masker.mask_value(dict(detail or {})))
            params: list[Any] = [
                status,
                commit,
                json.dumps(list(files_changed)),
                error_kind,
                self._masker.mask(error_message) if error_message is not None else None,
                session_id,
                time.time(),
                json.dumps(merged),
            ]
            usage_sql = ""
            if usage is not None:
                usage_sql = ", input_tokens = ?, output_tokens = ?, cached_tokens = ?, cost_usd = ?"
                params += [usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cost_usd]
            tx.execute(
                "UPDATE steps SET status = ?, commit_sha = ?, files_changed_json = ?, error_kind = ?,"
                " error_message = ?, session_id = COALESCE(?, session_id), finished_at = ?, detail_json = ?"
                f"{usage_sql} WHERE run_id = ? AND step_id = ?",
                (*params, run_id, step_id),
            )
            self._touch_run(tx, run_id)
        return self._step_or_fail(run_id, step_id)

    def step(self, run_id: str, step_id: str) -> StepRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            .fetchone()
        )
        return _step_from_row(row) if row is not None else None

    def _step_or_fail(self, run_id: str, step_id: str) -> StepRecord:
        record = self.step(run_id, step_id)
        if record is None:
            raise RunNotFound(f"no step {step_id!r} in run {run_id!r}")
        return record

    def steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps in workflow order (iteration, then position)."""
        rows = self._conn().execute(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY iteration, idx, step_id", (run_id,)
        )
        return [_step_from_row(row) for row in rows]

    def last_completed_step(self, run_id: str) -> StepRecord | None:
        """The last step, in workflow order, that succeeded or was skipped: a resume goes on after it."""
        completed = [s for s in self.steps(run_id) if s.status in COMPLETED_STEP_STATUSES]
        return completed[-1] if completed else None

    def last_commit(self, run_id: str) -> str | None:
        """The newest commit a completed step made: where an interrupted step starts again from."""
        commits = [s.commit for s in self.steps(run_id) if s.status in COMPLETED_STEP_STATUSES and s.commit]
        return commits[-1] if commits else None

    def last_session_id(self, run_id: str, agent: str) -> str | None:
        """The CLI session `agent` used last in this run, so a follow-up step can resume it."""
        row = (
            self._conn()
            .execute(
                "SELECT session_id FROM steps WHERE run_id = ? AND agent = ? AND session_id IS NOT NULL"
                " ORDER BY COALESCE(finished_at, started_at) DESC, iteration DESC, idx DESC LIMIT 1",
                (run_id, agent),
            )
            .fetchone()
        )
        return row["session_id"] if row is not None else None

    # --- usage --------------------------------------------------------------------------------------

    def usage_by_step(self, run_id: str) -> dict[str, TokenUsage]:
        return {s.step_id: s.usage for s in self.steps(run_id)}

    def usage_by_agent(self, run_id: str) -> dict[str, TokenUsage]:
        totals: dict[str, TokenUsage] = {}
        for s in self.steps(run_id):
            totals[s.agent] = totals.get(s.agent, TokenUsage()) + s.usage
        return totals

    def usage_total(self, run_id: str) -> TokenUsage:
        """What the whole run spent so far (what budgets are checked against)."""
        total = TokenUsage()
        for s in self.steps(run_id):
            total = total + s.usage
        return total

    # --- events -------------------------------------------------------------------------------------

    def add_event(self, run_id: str, event: RunEvent) -> int:
        """Appends an event to the run's log and returns its sequence number (1, 2, ...). An agent's
        usage and session id also update its step as they arrive, so budgets and follow-ups see them
        before the step ends."""
        with self._write() as tx:
            seq = self._insert_event(tx, run_id, event)
            if isinstance(event, AgentActivity):
                self._apply_agent_event(tx, run_id, event)
        return seq

    def subscriber(self, run_id: str) -> Subscriber:
        """An EventBus subscriber that stores the run's events."""

        def store_event(event: RunEvent) -> None:
            self.add_event(run_id, event)

        return store_event

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

    def _apply_agent_event(self, tx: sqlite3.Connection, run_id: str, activity: AgentActivity) -> None:
        inner = activity.event
        key = (run_id, activity.step_id)
        if isinstance(inner, Usage):
            # Same rule as adapters.base.summarize: "total" replaces what came before, "delta" adds.
            if inner.scope == "total":
                tx.execute(
                    "UPDATE steps SET input_tokens = ?, output_tokens = ?, cached_tokens = ?, cost_usd = ?"
                    " WHERE run_id = ? AND step_id = ?",
                    (inner.input_tokens, inner.output_tokens, inner.cached_tokens, inner.cost_usd, *key),
                )
            else:
                tx.execute(
                    "UPDATE steps SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
                    " cached_tokens = cached_tokens + ?,"
                    " cost_usd = CASE WHEN ? IS NULL THEN cost_usd ELSE COALESCE(cost_usd, 0) + ? END"
                    " WHERE run_id = ? AND step_id = ?",
                    (
                        inner.input_tokens,
                        inner.output_tokens,
                        inner.cached_tokens,
                        inner.cost_usd,
                        inner.cost_usd,
                        *key,
                    ),
                )
        elif isinstance(inner, SessionStarted | Result) and inner.session_id:
            tx.execute(
                "UPDATE steps SET session_id = ? WHERE run_id = ? AND step_id = ?", (inner.session_id, *key)
            )

    def events(
        self,
        run_id: str,
        after_seq: int = 0,
        *,
        limit: int | None = None,
        types: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        """The run's events after `after_seq`, in order (a follower passes the last seq it saw)."""
        sql = "SELECT run_id, seq, step_id, data FROM events WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after_seq]
        if types is not None:
            sql += f" AND type IN ({', '.join('?' for _ in types)})"
            params += list(types)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            StoredEvent(
                run_id=row["run_id"],
                seq=row["seq"],
                step_id=row["step_id"],
                event=run_event_adapter.validate_json(row["data"]),
            )
            for row in self._conn().execute(sql, params)
        ]

    def last_seq(self, run_id: str) -> int:
        seq: int = (
            self._conn()
            .execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,))
            .fetchone()[0]
        )
        return seq
