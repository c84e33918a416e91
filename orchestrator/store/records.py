"""What the store holds, as records: runs, steps, events, usage; their statuses; rows to records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.events import RunEvent
from orchestrator.store.backend import Row

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

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
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
    model_config = ConfigDict(defer_build=True, frozen=True, extra="allow")
    budget_usd: float | None = None
    timeout_s: float | None = None
    max_iterations: int | None = None
    agent_overrides: list[str] = Field(default_factory=list)  # as given: ["review=codex", ...]
    include_uncommitted: bool = False
    # The --config file the run was started with (absolute), so that a resume reads the same one.
    config_path: str | None = None
    base_gates: bool | None = None  # False: --no-base-gates; None: as the workflow says


class RunRecord(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)
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
    model_config = ConfigDict(defer_build=True, frozen=True)
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
    model_config = ConfigDict(defer_build=True, frozen=True)
    run_id: str
    seq: int
    step_id: str | None
    event: RunEvent


def repo_key(repo: Path | str) -> str:
    return str(Path(repo).expanduser().resolve())


def run_from_row(row: Row) -> RunRecord:
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


def step_from_row(row: Row) -> StepRecord:
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
