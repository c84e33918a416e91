"""A cluster run whose Temporal workflow is gone (terminated, deleted with its history) while the store
still says "running": the submitter notices, ends the run as failed and exits 1; with no submitter
following, `runs show` does; `runs resume` then submits it again. For real: the Temporal dev server,
PostgreSQL, `orchestrator worker`, the fake agent, the `temporal` CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from orchestrator.cluster.frontend import connect_frontend
from orchestrator.cluster.watch import NOT_FOUND, SETTLE_AFTER_S, workflow_status
from orchestrator.config import Settings
from orchestrator.events import Notice, RunFinished
from orchestrator.proc import CommandResult, run_command
from orchestrator.store import Store
from orchestrator.testing.cluster import (
    OrchestratorProcess,
    newest_run_id,
    wait_for_processes,
    wait_for_run,
    wait_for_step,
)
from orchestrator.testing.temporal import temporal_cli
from tests.cluster.conftest import APPROVE, Cluster

pytestmark = pytest.mark.slow

FAKE_AGENT = "orchestrator.adapters.fake_agent"


def temporal(cluster: Cluster, *args: str) -> CommandResult:
    """The `temporal` CLI against the cluster's server (as an operator would run it)."""
    argv = [str(temporal_cli()), *args, "--address", cluster.temporal.address]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cluster.tmp), "LC_ALL": "C"}
    return run_command(argv, cluster.tmp, env=env, check=True, timeout_s=60)


def status_of(cluster: Cluster, run_id: str) -> str:
    async def ask() -> str:
        settings = Settings.model_validate({"cluster": {"temporal": cluster.temporal.address}})
        return await workflow_status(await connect_frontend(settings), run_id)

    return asyncio.run(ask())


def hanging_run(cluster: Cluster, extra: tuple[str, ...] = ()) -> tuple[str, OrchestratorProcess]:
    """A run whose first step hangs (its fake agent running); the resumed run goes on with the next
    turns and is approved."""
    cluster.use_scenario([{"hang": 600}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    run = cluster.submit(extra=extra)
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    assert wait_for_processes(FAKE_AGENT, running=True), run.output
    return run_id, run


def test_a_terminated_workflow_fails_the_run_and_resume_approves_it(cluster: Cluster) -> None:
    run_id, run = hanging_run(cluster)
    terminated_at = time.monotonic()
    temporal(cluster, "workflow", "terminate", "--workflow-id", run_id, "--reason", "the test")
    result = run.join(60)
    print(f"terminate to the submitter's exit: {time.monotonic() - terminated_at:.2f} s")
    output = run.output
    assert result.exit_code == 1, output
    assert "its workflow on the cluster was terminated" in output
    assert f"orchestrator runs resume {run_id}" in output  # what to do
    with Store(cluster.database) as store:
        record = store.get_run(run_id)
        assert (record.status, record.stop_reason) == ("failed", "cluster_error")
        assert [(s.step_id, s.status) for s in store.steps(run_id)] == [("i1-s1-implement", "failed")]
    # The worker's step ended too (its heartbeat learnt that the workflow is gone), and nothing it
    # wrote after the run was ended landed (the fence): the run stays failed, RunFinished last.
    assert wait_for_processes(FAKE_AGENT, running=False) == []
    time.sleep(1.0)
    with Store(cluster.database) as store:
        assert store.get_run(run_id).status == "failed"
        events = [e.event for e in store.events(run_id)]
        assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"
        assert sum(isinstance(e, RunFinished) for e in events) == 1
        assert isinstance(events[-2], Notice) and "terminated" in events[-2].text
    shown = cluster.cli("runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "failed" in shown.stdout, shown.stdout
    # `runs resume` submits it again, under its id, and the run is approved.
    cluster.resume_to_approval(run_id)


def test_runs_show_fails_a_run_whose_workflow_is_gone_while_nobody_follows_it(cluster: Cluster) -> None:
    run_id, run = hanging_run(cluster)
    os.kill(run.cli_pid(), signal.SIGKILL)
    run.join(30)
    # The workflow and its history are deleted: the server knows no workflow of that id any more.
    temporal(cluster, "workflow", "delete", "--workflow-id", run_id, "--yes")
    deadline = time.monotonic() + 30
    while status_of(cluster, run_id) != NOT_FOUND and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status_of(cluster, run_id) == NOT_FOUND
    assert wait_for_processes(FAKE_AGENT, running=False) == []  # the worker's step ended
    # `runs show` judges a run only once it has not been written for a while (a submit in progress
    # has no workflow yet either).
    with Store(cluster.database) as store:
        updated = store.get_run(run_id).updated_at
    time.sleep(max(0.0, updated + SETTLE_AFTER_S + 0.5 - time.time()))
    listed = cluster.cli("runs", "list")
    assert "running" in listed.stdout, listed.stdout  # `runs list` shows the store as it is
    shown = cluster.cli("runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "failed" in shown.stdout, shown.stdout
    record = wait_for_run(cluster.database, run_id, timeout_s=1)
    assert (record.status, record.stop_reason) == ("failed", "cluster_error")
    with Store(cluster.database) as store:
        notices = [e.event.text for e in store.events(run_id) if isinstance(e.event, Notice)]
    assert any("not on the Temporal server any more" in text for text in notices), notices
    resumed = cluster.cli("runs", "resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert wait_for_run(cluster.database, run_id, timeout_s=1).status == "approved"
