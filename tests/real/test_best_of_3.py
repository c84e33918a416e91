"""The built-in `best-of-3` end to end with the real CLIs, each against a scripted model server of its own:
three attempts at once, each reviewed read-only by the CLI that wrote none of them, the smallest diff wins."""

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

APPROVE = {"text": 'Fine.\n```json\n{"verdict": "approve", "findings": []}\n```'}


def write(content: str) -> list[dict]:
    return [{"write_file": {"path": "calc.py", "content": content}}, {"text": "Added divide()."}]


TURNS = {
    "claude": write("def divide(a, b):\n    return a / b\n"),
    "codex": write("def divide(a, b):\n    # divide a by b\n    result = a / b\n    return result\n"),
    "gemini": write("def divide(a, b):\n    '''a / b'''\n    return a / b\n"),
    # one review of each attempt (the three at once: every answer alike), then the workflow's review
    "copilot": [APPROVE, APPROVE, APPROVE, APPROVE],
}


def test_best_of_3_reviews_each_attempt_and_the_smallest_diff_becomes_the_run_branch(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# calc\n")
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
            record = service.create(RunSpec(task="add divide()", cwd=repo, repo=repo, workflow="best-of-3"))
            report = service.execute(record.id)
        finally:
            service.close()
    finally:
        for server in servers.values():
            server.stop()
    assert report.status == "approved", report.to_json()[-3000:]
    [group] = json.loads(report.to_json())["attempts"]
    assert group["winner"] == "claude"
    by_name = {a["name"]: a for a in group["attempts"]}
    assert set(by_name) == {"claude", "codex", "gemini"}
    assert all(
        a["completed"] and a["reviewer"] == "copilot" and a["review_verdict"] == "approve"
        for a in by_name.values()
    )
    assert by_name["claude"]["diff_lines"] < by_name["gemini"]["diff_lines"] < by_name["codex"]["diff_lines"]
    assert all(a["cost_usd"] is not None for a in by_name.values())
    assert all(servers[a].turns_used == len(TURNS[a]) for a in TURNS)
    # The winner is the run branch; every attempt stays on a branch of its own.
    assert (
        run_command(["git", "show", f"{report.branch}:calc.py"], repo).stdout
        == TURNS["claude"][0]["write_file"]["content"]
    )
    for name, attempt in by_name.items():
        tip = run_command(["git", "rev-parse", attempt["branch"]], repo).stdout.strip()
        assert attempt["branch"] == f"orchestrator/{record.id}-{name}" and tip == attempt["commit"]
    assert snapshot_checkout(repo) == before
