"""The names of a run's refs and the records the workspace returns (pure: no git here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.errors import UsageError

BRANCH_PREFIX = "orchestrator/"
UNCOMMITTED_STEP = "uncommitted"


def branch_name(run_id: str) -> str:
    return f"{BRANCH_PREFIX}{run_id}"


def member_run_id(run_id: str, name: str, iteration: int = 1) -> str:
    """A group member's own run id (an attempt, a subtask `st-<id>`): its repository, branch and refs
    are named after it. In a later iteration (a follow-up's best of N) the iteration is in it too, so
    each starts from that tip."""
    return f"{run_id}-{name}" if iteration == 1 else f"{run_id}-i{iteration}-{name}"


def backup_prefix(run_id: str) -> str:
    return f"refs/orchestrator/backups/{run_id}/"


def meta_prefix(run_id: str) -> str:
    return f"refs/orchestrator/runs/{run_id}/"


def tip_ref(run_id: str) -> str:
    return f"{meta_prefix(run_id)}tip"


@dataclass(frozen=True)
class StepCommit:
    """What committing a step did. `changed` False means the step changed nothing (and no commit)."""

    changed: bool
    sha: str | None
    files: list[str] = field(default_factory=list)
    step_id: str = ""
    agent: str = ""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: list[str]
    subject: str
    trailers: dict[str, str]
    files: list[str]

    @property
    def step_id(self) -> str | None:
        return self.trailers.get("Orchestrator-Step")

    @property
    def agent(self) -> str | None:
        return self.trailers.get("Orchestrator-Agent")


@dataclass(frozen=True)
class UndoneEdits:
    """Edits a read-only step made and that were undone. `backup_ref` keeps them reachable."""

    diff: str
    files: list[str]
    backup_ref: str | None

    def __bool__(self) -> bool:
        return bool(self.files)


class WorkspaceConflict(UsageError):
    """The user's uncommitted changes cannot be carried onto the requested base."""
