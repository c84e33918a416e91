"""Which machine checks the CLIs of a cluster run: the workers (each serves the queues of its ready
CLIs), never the submitter, which needs no CLI at all; it asks Temporal instead whether some worker
polls the queues the run needs, and says so when none does (the run waits for one). For real: the
Temporal dev server, PostgreSQL, `orchestrator worker`, the fake agent, and Claude Code and Codex
against scripted model servers."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.adapters.base import resolve_executable
from orchestrator.adapters.pins import PINNED
from orchestrator.store import Store
from orchestrator.testing.cluster import cluster_env, newest_run_id, start_worker
from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.pointing import agent_config
from orchestrator.testing.scenario import scenario_from_data
from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster_real_clis import TURNS, real_cli_env

pytestmark = pytest.mark.slow


def test_a_run_no_worker_serves_says_so_and_waits_for_one(cluster: Cluster) -> None:
    run = cluster.submit(extra=())
    line = run.wait_for("no worker is connected to the cluster", 60)
    assert "orchestrator worker --agents fake" in line, line  # what to do
    run_id = newest_run_id(cluster.database)
    with Store(cluster.database) as store:
        assert store.get_run(run_id).status == "running"  # queued, not refused
    cluster.worker("w1")
    assert run.join(180).exit_code == 0, run.output


@pytest.mark.real
def test_the_submitter_needs_no_cli_of_its_own(cluster: Cluster) -> None:
    servers = {
        agent: ScriptedModelServer(scenario_from_data({"name": agent, "turns": turns}, source=agent)).start()
        for agent, turns in TURNS.items()
    }
    try:
        for agent, server in servers.items():
            block = agent_config(agent, server.url)
            block.update(timeout_s=180, idle_timeout_s=120)
            cluster.agent_config(agent, block)
        cluster.workflow.write_text(
            yaml.safe_dump(
                {
                    "max_iterations": 1,
                    "steps": [
                        {"agent": "claude", "task": "implement"},
                        {"agent": "codex", "task": "review"},
                    ],
                }
            )
        )
        # The submitting machine has neither CLI (a local run here would be refused before it starts).
        cluster.env = cluster_env(cluster.tmp, "submitter")
        for agent in TURNS:
            assert resolve_executable(PINNED[agent].binary, cluster.env) is None
        worker = start_worker(
            cluster.config,
            real_cli_env(cluster.tmp, "w1"),
            cwd=cluster.tmp,
            name="w1",
            agents=("claude", "codex"),
        )
        cluster.workers.append(worker)
        run = cluster.submit("make greet() return Hello", extra=())
        result = run.join(600)
        assert result.exit_code == 0, run.output
        assert "no worker" not in run.output  # the worker serves claude+codex
        with Store(cluster.database) as store:
            record = store.get_run(newest_run_id(cluster.database))
            assert record.status == "approved"
            assert [(s.agent, s.status) for s in store.steps(record.id)] == [
                ("claude", "succeeded"),
                ("codex", "succeeded"),
            ]
    finally:
        for server in servers.values():
            server.stop()
