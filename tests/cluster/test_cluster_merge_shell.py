"""Finished cluster runs from the submitting machine (the user's repository): `runs merge` lands the run
branch, `runs discard` removes it (its commits kept under a backup ref); the shell submits to the
cluster when one is configured; the dashboard resumes a cluster run on the cluster (follow-ups on
cluster runs: test_cluster_follow_ups.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from orchestrator.cli.shell.commands import Command, Message
from orchestrator.cli.shell.session import ShellSession
from orchestrator.config import load_settings
from orchestrator.engine.service import RunService
from orchestrator.store import Store
from orchestrator.testing.cluster import (
    newest_run_id,
    wait_for_run,
    wait_for_step,
)
from tests.cluster.conftest import APPROVE, Cluster
from tests.cluster.test_cluster_dashboard import serve, wait_for_fake_agents
from tests.cluster.test_cluster_runs import step_attempts

pytestmark = pytest.mark.slow

FIXED = {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}}


def run_ids_of_runs(cluster: Cluster, count: int) -> list[str]:
    with Store(cluster.database) as store:
        return [r.id for r in reversed(store.list_runs(limit=count))]


def worker_run_repos(cluster: Cluster, worker: str, run_id: str) -> list[Path]:
    """What of the run lives under the worker's state home (its run repository, its run folder)."""
    return sorted(p for p in (cluster.tmp / worker).rglob(f"*{run_id}*") if p.is_dir())


def test_runs_merge_and_discard_on_finished_cluster_runs(cluster: Cluster) -> None:
    cluster.use_scenario(
        [FIXED, {"text": "done"}, {"text": APPROVE}, FIXED, {"text": "done"}, {"text": APPROVE}]
    )
    cluster.worker("w1")
    for task in ("make greet() return Hello", "the same, again"):
        run = cluster.submit(task)
        assert run.join(180).exit_code == 0, run.output
    merged, discarded = run_ids_of_runs(cluster, 2)
    before = cluster.cli_git("rev-parse", "main").strip()
    # merge: main fast-forwards to the run branch, in the user's repository.
    result = cluster.cli("runs", "merge", merged, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["target_branch"], data["fast_forward"], data["before"]) == ("main", True, before)
    assert (
        cluster.cli_git("rev-parse", "main").strip()
        == cluster.cli_git("rev-parse", f"orchestrator/{merged}").strip()
    )
    assert (cluster.repo / "app.py").read_text() == "def greet():\n    return 'Hello'\n"
    # discard: the run branch leaves the user's repository, its commits stay under the backup ref.
    tip = cluster.cli_git("rev-parse", f"orchestrator/{discarded}").strip()
    assert worker_run_repos(cluster, "w1", discarded) != []  # the worker made the run's repository
    result = cluster.cli("runs", "discard", discarded, "--json")
    assert result.returncode == 0, result.stderr
    kept = json.loads(result.stdout)["backup_ref"]
    assert cluster.cli_git("branch", "--list", f"orchestrator/{discarded}") == ""
    assert cluster.cli_git("merge-base", "--is-ancestor", tip, kept) == ""
    # The merged run's branch is untouched; the store keeps both runs' records.
    assert cluster.cli_git("branch", "--list", f"orchestrator/{merged}").strip()
    with Store(cluster.database) as store:
        assert [store.get_run(r).status for r in (merged, discarded)] == ["approved", "approved"]
    # What discard cannot reach from here: the worker's copy of the run, under its own state home.
    left = worker_run_repos(cluster, "w1", discarded)
    print(f"left on the worker after discard: {[str(p.relative_to(cluster.tmp)) for p in left]}")


def shell_session(cluster: Cluster, out: io.StringIO) -> ShellSession:
    env = {**cluster.env, "PATH": os.environ["PATH"]}
    loaded = load_settings(cluster.config, env=env)
    service = RunService(settings=loaded.settings, env=env)
    return ShellSession(
        service=service,
        loaded=loaded,
        cwd=cluster.repo,
        repo=cluster.repo,
        workflow_spec=str(cluster.workflow),
        out=out,
        plain=True,
    )


def test_the_shell_submits_to_the_cluster(cluster: Cluster) -> None:
    cluster.use_scenario([FIXED, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    out = io.StringIO()
    session = shell_session(cluster, out)
    try:
        session.handle(Message("make greet() return Hello"))
        assert session.run_id is not None, out.getvalue()
        run_id = session.run_id
        text = out.getvalue()
        assert "approved" in text, text
        with Store(cluster.database) as store:
            assert store.is_cluster_run(run_id)
            assert store.get_run(run_id).status == "approved"
        # Both steps ran on the worker, not in this process.
        assert [w for w, _ in step_attempts(cluster.temporal.address, run_id)] == ["w1", "w1"]
        # (A follow-up goes on on the cluster too: test_cluster_follow_ups.py.)
        # /diff and /merge work on the cluster run from the user's repository.
        out.truncate(0)
        session.handle(Command("/diff"))
        assert "+    return 'Hello'" in out.getvalue()
        session.handle(Command("/merge"))
        assert "merged orchestrator/" in out.getvalue(), out.getvalue()
        assert (cluster.repo / "app.py").read_text() == "def greet():\n    return 'Hello'\n"
    finally:
        session.service.close()


def test_ctrl_c_in_the_shell_cancels_the_cluster_run_on_its_worker(cluster: Cluster) -> None:
    cluster.use_scenario([{"hang": 600}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    out = io.StringIO()
    session = shell_session(cluster, out)

    def press_ctrl_c() -> None:
        # Once the step's agent runs on the worker: Ctrl-C, as the terminal sends it to the shell.
        run_id = newest_run_id(cluster.database)
        wait_for_step(cluster.database, run_id, {"running"})
        wait_for_fake_agents(running=True)
        os.kill(os.getpid(), signal.SIGINT)

    pressing = threading.Thread(target=press_ctrl_c, daemon=True)
    pressing.start()
    try:
        session.handle(Message("make greet() return Hello"))
        pressing.join(30)
        run_id = session.run_id
        assert run_id is not None, out.getvalue()
        assert "cancelling the current step" in out.getvalue()
        assert wait_for_run(cluster.database, run_id, timeout_s=30).status == "cancelled"
        assert wait_for_fake_agents(running=False) == []
        assert f"orchestrator runs resume {run_id}` goes on with it on the cluster" in out.getvalue()
    finally:
        session.service.close()


def test_the_dashboard_resumes_a_cancelled_cluster_run_on_the_cluster(cluster: Cluster) -> None:
    cluster.use_scenario([{"hang": 600}, FIXED, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    time.sleep(0.5)
    run.interrupt()
    assert run.join(120).exit_code == 130, run.output
    assert wait_for_run(cluster.database, run_id).status == "cancelled"
    server = serve(cluster)
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/resume", {})
    assert status == 202, body
    assert server.wait_run(run_id, {"approved", "failed", "not_approved"})["status"] == "approved"
    # The resumed steps ran on the worker (a new workflow under the run's id), not in the dashboard.
    assert [w for w, _ in step_attempts(cluster.temporal.address, run_id)] == ["w1", "w1"]
    with Store(cluster.database) as store:
        assert store.is_cluster_run(run_id)
