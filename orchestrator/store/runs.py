"""Runs: create, read, list, status, ownership (claim on resume; interrupted when the owner died)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import RunNotFound, UsageError
from orchestrator.events import Notice, RunFinished
from orchestrator.store.db import StoreBase
from orchestrator.store.owners import owner_alive, process_token
from orchestrator.store.records import RUN_STATUSES, RunOptions, RunRecord, RunStatus, repo_key, run_from_row
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
        placeholders = ", ".join(f":{name}" for name in values)
        with self._write() as tx:
            if tx.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None:
                raise UsageError(f"a run {run_id!r} already exists in {self.path}")
            tx.execute(f"INSERT INTO runs ({columns}) VALUES ({placeholders})", values)
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        row = self._conn().execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(
                f"no run {run_id!r} in {self.path}", hint="`orchestrator runs list` shows the runs"
            )
        return run_from_row(row)

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
        return [run_from_row(row) for row in rows]

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
