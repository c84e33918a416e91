"""Runs on the cluster, for real: a Temporal dev server, PostgreSQL, `orchestrator worker` processes,
`orchestrator run --cluster`, the fake agent."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.cluster.submit import run_request, start_workflow
from orchestrator.config import load_settings
from orchestrator.errors import UsageError
from orchestrator.events import StepFinished, StepStarted
from orchestrator.store import Store
from orchestrator.testing.cluster import (
    OrchestratorProcess,
    cluster_env,
    newest_run_id,
    processes_running,
    wait_for_processes,
    wait_for_run,
    wait_for_step,
)
from tests.cluster.conftest import APPROVE, Cluster

pytestmark = pytest.mark.slow

FAKE_AGENT = "orchestrator.adapters.fake_agent"


def report_of(output: str) -> dict[str, Any]:
    """The --json report: the last top-level JSON object of the output."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return dict(json.loads("\n".join(lines[start:])))


def step_attempts(address: str, run_id: str) -> list[tuple[str, int]]:
    """(worker identity, attempt) of each of the run's activities, from its history once its workflow
    has closed: Temporal records an activity's start (of its last attempt only) when the activity
    ends, and the last step records the run's end in the store before its activity ends (it pushes
    the branch after)."""

    async def fetch() -> list[tuple[str, int]]:
        from temporalio.client import Client, WorkflowExecutionStatus

        client = await Client.connect(address)
        handle = client.get_workflow_handle(run_id)
        deadline = time.monotonic() + 60
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        history = await handle.fetch_history()
        return [
            (
                event.activity_task_started_event_attributes.identity,
                event.activity_task_started_event_attributes.attempt,
            )
            for event in history.events
            if event.HasField("activity_task_started_event_attributes")
        ]

    return asyncio.run(fetch())


def test_six_runs_on_two_workers_all_approved(cluster: Cluster) -> None:
    cluster.worker("w1", concurrency=2)
    cluster.worker("w2", concurrency=2)
    started = time.monotonic()
    runs = [cluster.submit(f"task {n}: make greet() return Hello") for n in range(6)]
    results = [run.join(300) for run in runs]
    elapsed = time.monotonic() - started
    assert [r.exit_code for r in results] == [0] * 6, "\n---\n".join(run.output for run in runs)
    reports = [report_of(run.output) for run in runs]
    assert {r["status"] for r in reports} == {"approved"}
    with Store(cluster.database) as store:
        records = store.list_runs()
        assert len(records) == 6 and {r.status for r in records} == {"approved"}
        used = Counter(w for record in records for w, _ in step_attempts(cluster.temporal.address, record.id))
    # Every step ran on one of the two, and both took some.
    assert set(used) == {"w1", "w2"}, used
    print(f"6 runs on 2 workers: {elapsed:.2f} s; steps per worker {dict(used)}")


def normalized(lines: list[str]) -> list[str]:
    """Rendered lines without what differs between two runs: ids, commits, times, paths, costs."""
    out = []
    for line in lines:
        line = re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "RUN", line)
        line = re.sub(r"\[\d\d:\d\d:\d\d\]", "[CLOCK]", line)
        line = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "UUID", line)
        line = re.sub(r"\b[0-9a-f]{7,40}\b", "SHA", line)
        line = re.sub(r"\d+(\.\d+)?\s*(ms|s|m)\b", "T", line)
        line = re.sub(r"\$\d+\.\d+", "$C", line)
        out.append(line)
    return out


def test_the_run_renders_exactly_like_a_local_run(cluster: Cluster, tmp_path: Path) -> None:
    cluster.worker("w1")
    run = cluster.submit()
    # ... the same, without --json, for the text report, and the same workflow run locally.
    on_cluster = cluster.submit(extra=())
    assert run.join(180).exit_code == 0, run.output
    assert on_cluster.join(180).exit_code == 0, on_cluster.output
    local_config = tmp_path / "local.yaml"
    data = yaml.safe_load(cluster.config.read_text())
    del data["cluster"]
    local_config.write_text(yaml.safe_dump(data))
    local = OrchestratorProcess(
        ["run", "make greet() return Hello", "--config", str(local_config)],
        cwd=cluster.repo,
        env=cluster_env(tmp_path, "local"),
    )
    assert local.join(180).exit_code == 0, local.output
    assert normalized(on_cluster.lines) == normalized(local.lines)
    assert any("implement" in line for line in on_cluster.stderr)
    report = report_of(run.output)
    assert report["status"] == "approved"
    assert [s["status"] for s in report["steps"]] == ["succeeded", "succeeded"]
    # The run branch is in the user's repository.
    assert report["branch"] in cluster.cli_git("branch", "--list", report["branch"])


def test_a_second_start_of_the_same_run_is_refused(cluster: Cluster) -> None:
    cluster.use_scenario([{"hang": 30}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    settings = load_settings(cluster.config, env={}).settings
    with Store(cluster.database) as store:
        record = store.get_run(run_id)
    # Temporal refuses the workflow id while the run's workflow is open...
    with pytest.raises(UsageError, match="already running on the cluster"):
        start_workflow(settings, run_request(settings, record))
    # ... and so does `runs resume` (the store says it is running), exit 2.
    resumed = cluster.cli("runs", "resume", run_id)
    assert resumed.returncode == 2, resumed.stderr
    assert "still running" in resumed.stderr
    run.interrupt()
    assert run.join(120).exit_code == 130, run.output


def test_ctrl_c_cancels_the_cluster_run(cluster: Cluster) -> None:
    cluster.use_scenario([{"hang": 600}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    # Only the fake agents below this test (other tests on the machine run theirs).
    assert wait_for_processes(FAKE_AGENT, running=True)
    cancelled_at = time.monotonic()
    run.interrupt()
    result = run.join(120)
    assert result.exit_code == 130, run.output
    record = wait_for_run(cluster.database, run_id, timeout_s=30)
    assert record.status == "cancelled"
    print(f"Ctrl-C to exit 130: {time.monotonic() - cancelled_at:.2f} s")
    # The step's whole process tree ended (the worker still runs).
    assert wait_for_processes(FAKE_AGENT, running=False) == []
    with Store(cluster.database) as store:
        assert [s.status for s in store.steps(run_id)] == ["cancelled"]


def test_a_worker_killed_mid_step_hands_the_step_to_the_other(cluster: Cluster) -> None:
    cluster.heartbeat_timeout_s = 3.0
    cluster.write_config()
    # The first step hangs (on the worker that will die); its second attempt goes on with the next turn.
    cluster.use_scenario(
        [
            {"hang": 600},
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
            {"text": "done"},
            {"text": APPROVE},
        ]
    )
    doomed = cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    cluster.worker("w2")  # only now: the first attempt is w1's
    killed_at = time.monotonic()
    doomed.kill()
    # No process of the dead worker is left on the machine (its agents ended with it).
    deadline = time.monotonic() + 10
    while (
        processes_running("orchestrator.adapters.fake_agent", under=cluster.tmp)
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert processes_running("orchestrator.adapters.fake_agent", under=cluster.tmp) == []
    assert doomed.pid is not None and not processes_running("--name w1 ", under=cluster.tmp)
    with Store(cluster.database) as store:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            starts = [e.event for e in store.events(run_id, types=("step_started",))]
            if len(starts) >= 2:
                break
            time.sleep(0.05)
    recovered = time.monotonic() - killed_at
    assert run.join(180).exit_code == 0, run.output
    record = wait_for_run(cluster.database, run_id, {"approved"})
    assert record.status == "approved"
    with Store(cluster.database) as store:
        finished = [e.event for e in store.events(run_id, types=("step_finished",))]
        started = [e.event for e in store.events(run_id, types=("step_started",))]
        steps = store.steps(run_id)
        seqs = [e.seq for e in store.events(run_id)]
    assert all(isinstance(e, StepFinished) for e in finished) and all(
        isinstance(e, StepStarted) for e in started
    )
    # Each step was accepted once: one StepFinished per step, the interrupted one started twice.
    assert Counter(e.step_id for e in finished) == {"i1-s1-implement": 1, "i1-s2-review": 1}
    assert Counter(e.step_id for e in started) == {"i1-s1-implement": 2, "i1-s2-review": 1}
    assert [(s.step_id, s.status, s.attempts) for s in steps] == [
        ("i1-s1-implement", "succeeded", 2),
        ("i1-s2-review", "succeeded", 1),
    ]
    assert seqs == list(range(1, len(seqs) + 1))  # contiguous
    # The implement step's second attempt (the first was w1's: w2 did not exist yet) and the review ran on w2.
    assert step_attempts(cluster.temporal.address, run_id) == [("w2", 2), ("w2", 1)]
    print(f"worker SIGKILL to its step started again elsewhere: {recovered:.2f} s (heartbeat timeout 3 s)")


def test_a_worker_with_no_ready_cli_exits_2(cluster: Cluster) -> None:
    cluster.agent_config("claude", {"command": str(cluster.tmp / "no-such-claude")})
    worker = cluster.worker("w1", agents=("claude",), wait=False)
    result = worker.join(60)
    assert result.exit_code == 2, worker.output
    assert "no coding CLI is ready on this machine" in worker.output
    assert "orchestrator agents" in worker.output  # what to do


def test_a_worker_that_cannot_reach_temporal_exits_2(cluster: Cluster) -> None:
    from orchestrator.testing.temporal import free_port

    cluster.temporal_address = f"127.0.0.1:{free_port()}"
    cluster.write_config()
    worker = cluster.worker("w1", wait=False)
    result = worker.join(60)
    assert result.exit_code == 2, worker.output
    assert "cannot reach the Temporal server" in worker.output


def test_a_worker_stopped_with_sigterm_hands_its_step_over(cluster: Cluster) -> None:
    # The default heartbeat timeout (30 s): the handover must not wait for it.
    cluster.use_scenario(
        [
            {"hang": 600},
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
            {"text": "done"},
            {"text": APPROVE},
        ]
    )
    leaving = cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    cluster.worker("w2")
    stopped_at = time.monotonic()
    result = leaving.stop()
    assert result is not None and result.exit_code == 0, leaving.output
    assert "worker w1 stopped" in leaving.output
    assert run.join(180).exit_code == 0, run.output
    print(f"SIGTERM to the run approved on the other worker: {time.monotonic() - stopped_at:.2f} s")
    with Store(cluster.database) as store:
        assert store.get_run(run_id).status == "approved"
        steps = store.steps(run_id)
    assert [(s.step_id, s.status, s.attempts) for s in steps] == [
        ("i1-s1-implement", "succeeded", 2),
        ("i1-s2-review", "succeeded", 1),
    ]
    assert step_attempts(cluster.temporal.address, run_id)[0] == ("w2", 2)
