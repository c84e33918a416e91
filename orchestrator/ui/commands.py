"""The CLI commands equivalent to what the dashboard does (pure: shown on the page, tested as text)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def run_command_line(
    task: str,
    *,
    repo: str,
    workflow: str | None = None,
    agent_overrides: Sequence[str] = (),
    budget_usd: float | None = None,
    max_iterations: int | None = None,
    include_uncommitted: bool = False,
) -> str:
    argv = ["orchestrator", "run", task, "--repo", repo]
    if workflow:
        argv += ["--workflow", workflow]
    for override in agent_overrides:
        argv += ["--agent", override]
    if budget_usd is not None:
        argv += ["--budget-usd", f"{budget_usd:g}"]
    if max_iterations is not None:
        argv += ["--max-iterations", str(max_iterations)]
    if include_uncommitted:
        argv.append("--include-uncommitted")
    return shlex.join(argv)


def run_commands(run_id: str, branch: str, repo: str) -> dict[str, str]:
    """What a user types in a terminal for each of the run page's buttons."""
    return {
        "show": shlex.join(["orchestrator", "runs", "show", run_id]),
        "diff": shlex.join(["orchestrator", "runs", "diff", run_id]),
        "log": shlex.join(["orchestrator", "runs", "log", run_id]),
        "resume": shlex.join(["orchestrator", "runs", "resume", run_id]),
        "merge": f"cd {shlex.quote(repo)} && " + shlex.join(["orchestrator", "runs", "merge", run_id]),
        "discard": shlex.join(["orchestrator", "runs", "discard", run_id]),
        "rollback": shlex.join(["orchestrator", "runs", "rollback", run_id, "--to", "STEP"]),
        "checkout": f"git -C {shlex.quote(repo)} switch {shlex.quote(branch)}",
    }
