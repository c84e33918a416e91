"""Which machine checks the CLIs of a cluster run: the workers (each serves the queues of its ready
CLIs), never the submitter, which needs no CLI at all; it asks Temporal instead whether some worker
polls the queues the run needs, and says so when none does (the run waits for one). For real: the
Temporal dev server, PostgreSQL, `orchestrator worker`, the fake agent, and Claude Code and Codex
against scripted model servers."""

from __future__ import annotations

import pytest

from orchestrator.adapters.base import resolve_executable
from orchestrator.adapters.pins import PINNED
from orchestrator.store import Store
from orchestrator.testing.cluster import cluster_env, newest_run_id
from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster_real_clis import TURNS, claude_and_codex, real_cli_worker

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
    with claude_and_codex(cluster):
        # The submitting machine has neither CLI (a local run here would be refused before it starts).
        cluster.env = cluster_env(cluster.tmp, "submitter")
        for agent in TURNS:
            assert resolve_executable(PINNED[agent].binary, cluster.env) is None
        real_cli_worker(cluster)
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
