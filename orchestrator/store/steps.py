"""Steps: started, finished, read in workflow order; what they cost."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from orchestrator.errors import RunNotFound
from orchestrator.store.db import StoreBase
from orchestrator.store.records import (
    COMPLETED_STEP_STATUSES,
    StepRecord,
    StepStatus,
    TokenUsage,
    step_from_row,
)
from orchestrator.store.schema import STEP_COLUMNS


class StepsMixin(StoreBase):
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
                self._touch_run(
                    tx,
                    run_id,
                    "iterations = CASE WHEN iterations > ? THEN iterations ELSE ? END",
                    (iteration, iteration),
                )
            else:
                self._touch_run(tx, run_id)
            tx.execute(
                """INSERT INTO steps (run_id, step_id, iteration, idx, agent, task, status, attempts, started_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (run_id, step_id) DO UPDATE SET
                    iteration = excluded.iteration, idx = excluded.idx, agent = excluded.agent,
                    task = excluded.task, status = excluded.status,
                    attempts = steps.attempts + excluded.attempts,
                    prior_input_tokens = steps.prior_input_tokens + steps.input_tokens,
                    prior_output_tokens = steps.prior_output_tokens + steps.output_tokens,
                    prior_cached_tokens = steps.prior_cached_tokens + steps.cached_tokens,
                    prior_cost_usd = CASE WHEN steps.prior_cost_usd IS NULL AND steps.cost_usd IS NULL
                        THEN NULL ELSE COALESCE(steps.prior_cost_usd, 0) + COALESCE(steps.cost_usd, 0) END,
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
            self._touch_run(tx, run_id)  # the run's row first: the lock order of every write
            row = tx.execute(
                f"SELECT detail_json FROM steps WHERE run_id = ? AND step_id = ?{self._backend.for_update}",
                (run_id, step_id),
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
        return self._step_or_fail(run_id, step_id)

    def step(self, run_id: str, step_id: str) -> StepRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            .fetchone()
        )
        return step_from_row(row) if row is not None else None

    def _step_or_fail(self, run_id: str, step_id: str) -> StepRecord:
        record = self.step(run_id, step_id)
        if record is None:
            raise RunNotFound(f"no step {step_id!r} in run {run_id!r}")
        return record

    def steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps in workflow order (iteration, then position)."""
        rows = self._conn().execute(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY iteration, idx, step_id", (run_id,)
        )
        return [step_from_row(row) for row in rows]

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
                # COALESCE(..., 0): no NULL to sort (SQLite puts NULLs last in DESC, PostgreSQL first).
                " ORDER BY COALESCE(finished_at, started_at, 0) DESC, iteration DESC, idx DESC LIMIT 1",
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
