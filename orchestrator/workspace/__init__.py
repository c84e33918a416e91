"""The git workspace of a run: a repository of its own (a clone sharing the user's objects) on branch
`orchestrator/<run-id>` outside the user's checkout, the OS sandbox agents and gates run in, a commit after
every step fetched into the user's repository, backups of whatever is removed, and a safe merge back."""

from __future__ import annotations

from orchestrator.workspace.diffs import DiffText
from orchestrator.workspace.git import Git, find_repo_root, init_repo
from orchestrator.workspace.merge import MergeRefused, MergeResult
from orchestrator.workspace.paths import RunPaths, default_workspace_dir, new_run_id, run_paths, state_home
from orchestrator.workspace.run_workspace import (
    CommitInfo,
    RunWorkspace,
    StepCommit,
    UndoneEdits,
    WorkspaceConflict,
    branch_name,
    list_run_ids,
    resolve_repo,
)

__all__ = [
    "CommitInfo",
    "DiffText",
    "Git",
    "MergeRefused",
    "MergeResult",
    "RunPaths",
    "RunWorkspace",
    "StepCommit",
    "UndoneEdits",
    "WorkspaceConflict",
    "branch_name",
    "default_workspace_dir",
    "find_repo_root",
    "init_repo",
    "list_run_ids",
    "new_run_id",
    "resolve_repo",
    "run_paths",
    "state_home",
]
