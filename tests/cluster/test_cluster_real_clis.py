"""One cluster run by the real CLIs: a worker runs Claude Code implementing and Codex reviewing, each
against a scripted model server of its own (orchestrator/testing), on the real Temporal dev server and
PostgreSQL; the run is approved and its branch is in the user's repository. Never skipped: a missing
CLI fails with its install command."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters.base import install_hint, resolve_executable
from orchestrator.adapters.pins import PINNED
from orchestrator.store import Store
from orchestrator.testing.cluster import OrchestratorProcess, cluster_env, start_worker
from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.pointing import agent_config
from orchestrator.testing.scenario import scenario_from_data
from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.real]

GREET = "def greet():\n    return 'Hello'\n"
TURNS = {
    "claude": [
        {"write_file": {"path": "app.py", "content": GREET}},
        {"text": "greet() returns Hello."},
    ],
    "codex": [{"text": 'Right.\n```json\n{"verdict": "approve", "findings": []}\n```'}],
}


def real_cli_env(root: Path, name: str) -> dict[str, str]:
    """A "machine" of its own whose real CLIs are the ones installed in the user's cache."""
    extra = {"XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "CI": "true"}
    if os.environ.get("ORCHESTRATOR_CLI_DIR"):
        extra["ORCHESTRATOR_CLI_DIR"] = os.environ["ORCHESTRATOR_CLI_DIR"]
    env = cluster_env(root, name, extra)
    for agent in TURNS:
        if resolve_executable(PINNED[agent].binary, env) is None:
            pytest.fail(f"{agent} is not installed; {install_hint(agent)}", pytrace=False)
    return env


@contextlib.contextmanager
def claude_and_codex(cluster: Cluster) -> Iterator[dict[str, ScriptedModelServer]]:
    """The cluster set up for [claude implements, codex reviews], each CLI against a scripted model
    server of its own (stopped at the end); the caller starts the worker."""
    servers = {
        agent: ScriptedModelServer(scenario_from_data({"name": agent, "turns": turns}, source=agent)).start()
        for agent, turns in TURNS.items()
    }
    try:
        for agent, server in servers.items():
            block = agent_config(agent, server.url)
            block.update(timeout_s=180, idle_timeout_s=120)
            cluster.agent_config(agent, block)
        steps = [{"agent": "claude", "task": "implement"}, {"agent": "codex", "task": "review"}]
        cluster.workflow.write_text(yaml.safe_dump({"max_iterations": 1, "steps": steps}))
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def real_cli_worker(cluster: Cluster, name: str = "w1") -> OrchestratorProcess:
    worker = start_worker(
        cluster.config,
        real_cli_env(cluster.tmp, name),
        cwd=cluster.tmp,
        name=name,
        agents=("claude", "codex"),
    )
    cluster.workers.append(worker)
    return worker


def test_a_worker_runs_claude_and_codex_for_real(cluster: Cluster) -> None:
    with claude_and_codex(cluster) as servers:
        cluster.env = real_cli_env(cluster.tmp, "submitter")
        worker = real_cli_worker(cluster)
        assert "agents claude, codex" in worker.output
        run = cluster.submit("make greet() return Hello")
        result = run.join(600)
    assert result.exit_code == 0, run.output
    lines = run.output.splitlines()
    report = json.loads("\n".join(lines[max(i for i, line in enumerate(lines) if line == "{") :]))
    assert report["status"] == "approved", report
    assert [(s["id"], s["agent"], s["status"]) for s in report["steps"]] == [
        ("i1-s1-implement", "claude", "succeeded"),
        ("i1-s2-review", "codex", "succeeded"),
    ]
    assert {agent: server.turns_used for agent, server in servers.items()} == {
        agent: len(turns) for agent, turns in TURNS.items()
    }
    # The run branch, with claude's change, is in the user's repository.
    run_id = report["run_id"]
    assert report["branch"] == f"orchestrator/{run_id}"
    assert cluster.cli_git("show", f"{report['branch']}:app.py") == GREET
    assert cluster.cli_git("show", "main:app.py") == "def greet():\n    return 'hi'\n"  # untouched
    diff = cluster.cli("runs", "diff", run_id)
    assert diff.returncode == 0, diff.stderr
    assert "+    return 'Hello'" in diff.stdout
    with Store(cluster.database) as store:
        assert [(s.step_id, s.agent, s.status) for s in store.steps(run_id)] == [
            ("i1-s1-implement", "claude", "succeeded"),
            ("i1-s2-review", "codex", "succeeded"),
        ]
