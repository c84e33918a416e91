"""A built-in workflow run end to end by the real CLIs, each against a scripted model server of its own
(the shape the best-of-3, consensus-review and plan tests share)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import settings_from_data
from orchestrator.engine.report import RunReport
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.pointing import agent_config
from orchestrator.testing.scenario import scenario_from_data


@dataclass
class WorkflowRun:
    repo: Path
    report: RunReport
    turns_used: dict[str, int]
    checkout_unchanged: bool


def new_repo(tmp_path: Path, readme: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text(readme)
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "start"], repo, check=True
    )
    return repo


def run_workflow(
    tmp_path: Path, turns: dict[str, list[Any]], *, task: str, workflow: str, readme: str = "# calc\n"
) -> WorkflowRun:
    """`workflow` on a fresh repository, each CLI answered by the turns given for it."""
    repo = new_repo(tmp_path, readme)
    servers = {
        agent: ScriptedModelServer(scenario_from_data({"name": agent, "turns": script}, source=agent)).start()
        for agent, script in turns.items()
    }
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
        "ORCHESTRATOR_HOME": str(tmp_path / "state"),
        "CI": "true",
    }
    if os.environ.get("ORCHESTRATOR_CLI_DIR"):
        env["ORCHESTRATOR_CLI_DIR"] = os.environ["ORCHESTRATOR_CLI_DIR"]
    before = snapshot_checkout(repo)
    try:
        data = {"agents": {agent: agent_config(agent, server.url) for agent, server in servers.items()}}
        service = RunService(settings=settings_from_data(data, source="test"), env=env)
        try:
            record = service.create(RunSpec(task=task, cwd=repo, repo=repo, workflow=workflow))
            report = service.execute(record.id)
        finally:
            service.close()
    finally:
        for server in servers.values():
            server.stop()
    used = {agent: server.turns_used for agent, server in servers.items()}
    return WorkflowRun(repo, report, used, snapshot_checkout(repo) == before)
