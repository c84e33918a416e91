"""Runs: create, read, list, status, ownership (claim on resume; interrupted when the owner died)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import RunNotFound, UsageError
from orchestrator.events import FollowUp, Notice, RunFinished
from orchestrator.store.backend import Connection, Row
from orchestrator.store.db import StoreBase
from orchestrator.store.owners import CLUSTER_OWNER, process_token
from orchestrator.store.records import (
    RUN_STATUSES,
    RunOptions,
    RunRecord,
    RunStatus,
    repo_key,
    run_from_row,
)
from orchestrator.store.schema import RUN_COLUMNS


class RunsMixin(StoreBase):
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
            "repo": repo_key(repo),
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
        placeholders = ", ".join("?" for _ in values)
        with self._write() as tx:
            # DO NOTHING rather than a look first: two processes creating one id at once on
            # PostgreSQL must not both pass the look.
            inserted = tx.execute(
                f"INSERT INTO runs ({columns}) VALUES ({placeholders}) ON CONFLICT (id) DO NOTHING",
                tuple(values.values()),
            )
            if inserted.rowcount == 0:
                raise UsageError(f"a run {run_id!r} already exists in {self.location}")
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn().execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(
                f"no run {run_id!r} in {self.location}", hint="`orchestrator runs list` shows the runs"
            )
        return self._record(row)

    def list_runs(
        self, repo: Path | str | None = None, limit: int = 50, *, status: str | None = None
    ) -> list[RunRecord]:
        """Newest first; only `repo`'s runs and only runs in `status` when given."""
        clauses, params = [], []
        if repo is not None:
            clauses.append("repo = ?")
            params.append(repo_key(repo))
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn().execute(
            f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [self._record(row) for row in rows]

    def run_count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def _record(self, row: Row) -> RunRecord:
        """The run as stored; a run stopped by a full disk that could not be marked yet (see
        `stop_for_full_disk`) reads as failed already."""
        record = run_from_row(row)
        marker = self._stop_marker(record.id)
        if (
            record.status == "running"
            and marker is not None
            and marker.exists()
            and not self._owner_alive(record.owner_pid, record.owner_token)
        ):
            return record.model_copy(update={"status": "failed", "stop_reason": DISK_FULL})
        return record

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
                f"SELECT status, owner_pid, owner_token FROM runs WHERE id = ?{self._backend.for_update}",
                (run_id,),
            ).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.location}")
            # A cluster worker resumes a cluster run for one step: the run stays the cluster's.
            cluster = row["owner_token"] == CLUSTER_OWNER
            mine = cluster or (row["owner_pid"] == pid and row["owner_token"] == token)
            alive = self._owner_alive(row["owner_pid"], row["owner_token"])
            if row["status"] == "running" and not mine and alive:
                raise UsageError(
                    f"run {run_id} is still running in process {row['owner_pid']}",
                    hint="wait for it to finish, or stop that process first",
                )
            owner = (None, CLUSTER_OWNER) if cluster else (pid, token)
            self._touch_run(
                tx,
                run_id,
                "status = 'running', stop_reason = NULL, finished_at = NULL, owner_pid = ?, owner_token = ?",
                owner,
            )
        return self.get_run(run_id)

    def hand_to_cluster(self, run_id: str) -> None:
        """The run is the cluster's from now on (`run --cluster`): its steps run on workers, and no
        process's death marks it interrupted (a dead worker's step is retried on another one)."""
        with self._write() as tx:
            self._touch_run(tx, run_id, "owner_pid = NULL, owner_token = ?", (CLUSTER_OWNER,))

    def continue_cluster_run(self, run_id: str, follow_up: Callable[[RunRecord], FollowUp]) -> FollowUp:
        """A follow-up on a finished cluster run, in one transaction: refused while the run is still
        running, else the FollowUp made from the run as it is (`follow_up`) goes into its event log and
        the run is running again (the cluster's still), ready for its workflow to be started again.
        Two processes following up at once: one wins, the other is refused."""
        with self._write() as tx:
            row = tx.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?{self._backend.for_update}", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.location}")
            if row["status"] == "running":
                raise UsageError(
                    f"run {run_id} is still running on the cluster",
                    hint="send the follow-up once it has finished (or cancel it first)",
                )
            event = follow_up(self._record(row))
            self._insert_event(tx, run_id, event)
            self._touch_run(tx, run_id, "status = 'running', stop_reason = NULL, finished_at = NULL")
        return event

    def is_cluster_run(self, run_id: str) -> bool:
        return self.get_run(run_id).owner_token == CLUSTER_OWNER

    def mark_interrupted_if_owner_dead(self) -> list[str]:
        """Runs left "running" by a process that is gone become "interrupted", with their running steps;
        a run whose process stopped it for a full disk (an empty marker file beside the store) becomes "failed".
        Returns their ids. A reused pid is told apart by its start time (see `process_token`); on a
        store shared between machines, only this machine's runs are judged.

        The running runs are read without a lock, then each run whose owner is gone is read again
        under its row's lock (PostgreSQL) and marked only if it is still running: two processes
        marking at once mark it once."""
        select = "SELECT id, branch, owner_pid, owner_token FROM runs WHERE status = 'running'"
        dead = [
            row["id"]
            for row in self._conn().execute(f"{select} ORDER BY id").fetchall()
            if not self._owner_alive(row["owner_pid"], row["owner_token"])
        ]
        if not dead:
            return []  # nothing written: this runs on every command, a read-only disk included
        marked: list[str] = []
        with self._write() as tx:
            for run_id in dead:
                row = tx.execute(f"{select} AND id = ?{self._backend.for_update}", (run_id,)).fetchone()
                if row is None or self._owner_alive(row["owner_pid"], row["owner_token"]):
                    continue
                marker = self._stop_marker(row["id"])
                if marker is not None and marker.exists():
                    self._end_run(tx, row["id"], row["branch"], "failed", DISK_FULL, DISK_FULL_TEXT)
                else:
                    text = f"run interrupted: its orchestrator process ({row['owner_pid']}) is gone"
                    self._end_run(
                        tx,
                        row["id"],
                        row["branch"],
                        "interrupted",
                        "interrupted",
                        text,
                        step_message="the orchestrator process ended during this step",
                    )
                marked.append(row["id"])
        for run_id in marked:
            marker = self._stop_marker(run_id)
            if marker is not None:
                marker.unlink(missing_ok=True)
        return marked

    def stop_for_full_disk(self, run_id: str) -> bool:
        """Marks a run cut short by a full disk as failed (its running steps too). When the store
        cannot be written either, leaves an empty marker file (a name, no data: it needs no free
        blocks) so the next open marks it; returns False then. A run already finished is left as is.
        (A PostgreSQL server's full disk is the server's: there is no file beside it to mark.)"""
        try:
            with self._write() as tx:
                row = tx.execute(
                    f"SELECT branch, status FROM runs WHERE id = ?{self._backend.for_update}", (run_id,)
                ).fetchone()
                if row is not None and row["status"] == "running":
                    self._end_run(tx, run_id, row["branch"], "failed", DISK_FULL, DISK_FULL_TEXT)
            return True
        except Exception as exc:
            if not isinstance(exc, sqlite3.Error | OSError) and self._backend.store_error_for(exc) is None:
                raise
            marker = self._stop_marker(run_id)
            if marker is not None:
                with contextlib.suppress(OSError):
                    marker.touch()
            return False

    def end_if_running(
        self, run_id: str, status: RunStatus, reason: str, text: str, *, step_message: str | None = None
    ) -> bool:
        """Ends a run that is still running, its running steps too, in one transaction: a Notice
        saying why (`text`), then RunFinished. False when it had finished already."""
        with self._write() as tx:
            row = tx.execute(
                f"SELECT branch, status FROM runs WHERE id = ?{self._backend.for_update}", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.location}")
            if row["status"] != "running":
                return False
            self._end_run(tx, run_id, row["branch"], status, reason, text, step_message=step_message)
        return True

    def stop_marker(self, run_id: str, reason: str) -> Path | None:
        """The empty file a run stopped by a full disk leaves beside the store when even marking it
        failed in the store was impossible; the next open marks it failed. A file, not a folder of
        them: a name in an existing folder needs no free blocks. None for a PostgreSQL store."""
        path = self.path
        return path.with_name(f"{path.name}.stopped-{run_id}.{reason}") if path is not None else None

    def _stop_marker(self, run_id: str) -> Path | None:
        return self.stop_marker(run_id, DISK_FULL)

    def _end_run(
        self,
        tx: Connection,
        run_id: str,
        branch: str,
        status: RunStatus,
        reason: str,
        text: str,
        *,
        step_message: str | None = None,
    ) -> None:
        now = time.time()
        self._touch_run(tx, run_id, "status = ?, stop_reason = ?, finished_at = ?", (status, reason, now))
        step_status = status if status in ("interrupted", "cancelled") else "failed"
        tx.execute(
            "UPDATE steps SET status = ?, finished_at = ?, error_kind = 'other', error_message = ?"
            " WHERE run_id = ? AND status = 'running'",
            (step_status, now, step_message or text, run_id),
        )
        self._insert_event(tx, run_id, Notice(run_id=run_id, level="warning", text=text))
        self._insert_event(
            tx, run_id, RunFinished(run_id=run_id, status=status, stop_reason=reason, branch=branch)
        )


DISK_FULL = "disk_full"
DISK_FULL_TEXT = "run failed: the disk holding the run's state filled up, so the run was stopped"
