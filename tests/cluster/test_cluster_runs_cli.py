"""`runs list|show|diff|log|resume` on cluster runs: they read the shared store and the user's
repository (the run branch fetched back), and `runs resume` resubmits a cluster run under its id."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.testing.cluster import newest_run_id, wait_for_run, wait_for_step
from tests.cluster.conftest import APPROVE, Cluster

pytestmark = pytest.mark.slow


def test_runs_commands_read_cluster_runs(cluster: Cluster) -> None:
    cluster.worker("w1")
    run = cluster.submit()
    assert run.join(180).exit_code == 0, run.output
    run_id = newest_run_id(cluster.database)
    listed = cluster.cli("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    shown = cluster.cli("runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "approved"
    diff = cluster.cli("runs", "diff", run_id)
    assert diff.returncode == 0, diff.stderr
    assert "orchestrator-fake.txt" in diff.stdout  # what the fake agent's implement step wrote
    log = cluster.cli("runs", "log", run_id)
    assert log.returncode == 0, log.stderr
    assert "implement" in log.stdout


def test_runs_resume_resubmits_a_cancelled_cluster_run(cluster: Cluster) -> None:
    # The first attempt at implement hangs and is cancelled; the resumed run goes on with the next turns.
    cluster.use_scenario([{"hang": 600}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    time.sleep(0.5)
    run.interrupt()
    assert run.join(120).exit_code == 130, run.output
    assert wait_for_run(cluster.database, run_id).status == "cancelled"
    cluster.resume_to_approval(run_id)
