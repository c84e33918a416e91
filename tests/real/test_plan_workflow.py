"""The built-in `plan` end to end with the real CLIs, each against a scripted model server of its own:
claude plans, claude and codex implement a subtask each at once, the merges go in, codex reviews."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.pointing import agent_config
from orchestrator.testing.scenario import scenario_from_data

PLAN = {
    "subtasks": [
        {"id": "add", "prompt": "Write add(a, b) in add.py.", "depends_on": [], "files": ["add.py"]},
        {"id": "sub", "prompt": "Write sub(a, b) in sub.py.", "depends_on": [], "files": ["sub.py"]},
    ]
}
TURNS = {
    "claude": [
        {"text": "Two independent parts.\n```json\n" + json.dumps(PLAN) + "\n```"},
        {"write_file": {"path": "add.py", "content": "def add(a, b):\n    return a + b\n"}},
        {"text": "add() written."},
    ],
    "codex": [
        {"write_file": {"path": "sub.py", "content": "def sub(a, b):\n    return a - b\n"}},
        {"text": "sub() written."},
        {"text": 'Both parts are right.\n```json\n{"verdict": "approve", "findings": []}\n```'},
    ],
    "gemini": [],  # the refine step is not needed
}


def test_plan_splits_the_task_runs_the_subtasks_at_once_and_merges_them(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# ops\n")
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "start"], repo, check=True
    )
    servers = {
        agent: ScriptedModelServer(scenario_from_data({"name": agent, "turns": turns}, source=agent)).start()
        for agent, turns in TURNS.items()
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
            record = service.create(RunSpec(task="add add() and sub()", cwd=repo, repo=repo, workflow="plan"))
            report = service.execute(record.id)
        finally:
            service.close()
    finally:
        for server in servers.values():
            server.stop()
    assert report.status == "approved", report.to_json()[-3000:]
    [graph] = json.loads(report.to_json())["subtasks"]
    by_id = {s["id"]: s for s in graph["subtasks"]}
    assert {(i, s["agent"], s["state"]) for i, s in by_id.items()} == {
        ("add", "claude", "merged"),
        ("sub", "codex", "merged"),
    }
    assert sorted(graph["merge_order"]) == ["add", "sub"]
    assert all(servers[a].turns_used == len(TURNS[a]) for a in TURNS)
    files = run_command(["git", "ls-tree", "--name-only", report.branch], repo).stdout.split()
    assert {"add.py", "sub.py"} <= set(files)
    for s in by_id.values():
        assert run_command(["git", "rev-parse", s["branch"]], repo).stdout.strip() == s["commit"]
    assert snapshot_checkout(repo) == before
