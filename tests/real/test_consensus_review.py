"""The built-in `consensus-review` end to end with the real CLIs, each against a scripted model server of
its own (the reviewers run at once, so one shared script would be answered in a racy order)."""

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

MISSING_CHECK = {
    "severity": "medium",
    "file": "calc.py",
    "line": 2,
    "message": "divide() does not check for a zero divisor",
}
SAME_PROBLEM = {
    "severity": "medium",
    "file": "calc.py",
    "line": 3,
    "message": "no check for zero divisor in divide()",
}


def review(verdict: str, *findings: dict) -> dict:
    return {
        "text": "Reviewed.\n```json\n"
        + json.dumps({"verdict": verdict, "findings": list(findings)})
        + "\n```"
    }


APPROVE = review("approve")
TURNS = {
    "claude": [
        {"write_file": {"path": "calc.py", "content": "def divide(a, b):\n    return a / b\n"}},
        {"text": "Added divide()."},
        # refine, after the reviewers agreed on the missing check
        {
            "write_file": {
                "path": "calc.py",
                "content": "def divide(a, b):\n    if b == 0:\n        raise ZeroDivisionError('b is 0')\n    return a / b\n",
            }
        },
        {"text": "divide() checks for a zero divisor."},
    ],
    "codex": [review("request_changes", MISSING_CHECK), APPROVE],
    "gemini": [review("request_changes", SAME_PROBLEM), APPROVE],
    "copilot": [
        review(
            "request_changes",
            {"severity": "low", "file": "calc.py", "line": 1, "message": "name the module math_ops"},
        ),
        APPROVE,
    ],
}


def test_consensus_review_counts_what_two_reviewers_raise_then_approves_the_refined_change(tmp_path):
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
            record = service.create(
                RunSpec(task="add divide()", cwd=repo, repo=repo, workflow="consensus-review")
            )
            report = service.execute(record.id)
        finally:
            service.close()
    finally:
        for server in servers.values():
            server.stop()
    assert report.status == "approved", report.to_json()[-3000:]
    first, second = json.loads(report.to_json())["reviews"]
    assert first["verdict"] == "request_changes" and second["verdict"] == "approve"
    assert {r["reviewer"]: r["verdict"] for r in first["reviewers"]} == {
        "codex": "request_changes",
        "gemini": "request_changes",
        "copilot": "request_changes",
    }
    counted = [c for c in first["clusters"] if c["status"] == "counts"]
    assert [sorted(c["reviewers"]) for c in counted] == [["codex", "gemini"]]
    # The refine step got the finding two reviewers agreed on, not copilot's lone low one.
    statuses = {s.id: s.status for s in report.steps}
    assert statuses["i1-s4-refine"] == "succeeded"
    assert all(servers[a].turns_used == len(TURNS[a]) for a in TURNS)
    shown = run_command(["git", "show", f"{report.branch}:calc.py"], repo).stdout
    assert "b == 0" in shown
    assert snapshot_checkout(repo) == before
