"""A worker's sweep of finished runs' repositories, for real (Temporal, PostgreSQL, an `orchestrator
worker` process): with `cluster.keep_finished_runs_s: 0` the repository of a run that finished is gone
from the worker's disk within its sweep interval, its run folder stays, the run branch is intact in the
user's repository, and a follow-up of the run (or `runs resume` of a cancelled one) on that worker makes
the repository again and goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.testing.cluster import newest_run_id, wait_for_run, wait_for_step
from tests.cluster.conftest import APPROVE, Cluster
from tests.cluster.test_cluster_dashboard import serve
from tests.cluster.test_cluster_follow_ups import REQUEST, check_followed_up, two_runs_of_turns
from tests.cluster.test_cluster_merge_shell import FIXED

pytestmark = pytest.mark.slow

SWEEP_EVERY = ("--sweep-every", "0.5")


def wait_gone(path: Path, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def test_a_finished_runs_repository_is_swept_and_a_follow_up_makes_it_again(cluster: Cluster) -> None:
    cluster.keep_finished_runs_s = 0
    two_runs_of_turns(cluster)
    cluster.worker("w1", extra_args=SWEEP_EVERY)
    run = cluster.submit()
    assert run.join(180).exit_code == 0, run.output
    run_id = newest_run_id(cluster.database)
    state = cluster.tmp / "w1" / "state"
    repository = state / "repos" / run_id
    assert wait_gone(repository), (
        f"{repository} is still there: {sorted(p.name for p in repository.iterdir())}"
    )
    assert (state / "runs" / run_id).is_dir()  # the run folder (logs, transcripts) stays
    # The run branch is intact in the user's repository: the implement step's commit is on it.
    branch = f"orchestrator/{run_id}"
    steps = cluster.cli_git("log", "--format=%(trailers:key=Orchestrator-Step,valueonly)", f"main..{branch}")
    assert [s for s in steps.split() if s] == ["i1-s1-implement"]
    # A follow-up on the same (only) worker makes the repository again from its mirror and goes on.
    server = serve(cluster)
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/follow-up", {"text": REQUEST})
    assert status == 202, body
    done = server.wait_run(run_id, {"approved", "failed", "not_approved", "cancelled"}, timeout_s=180)
    assert done["status"] == "approved", done
    check_followed_up(cluster, run_id, "the dashboard")
    assert wait_gone(repository)  # made again by the follow-up's steps, and swept again once it ended


def test_a_cancelled_runs_repository_is_swept_and_runs_resume_goes_on(cluster: Cluster) -> None:
    cluster.keep_finished_runs_s = 0
    cluster.use_scenario([{"hang": 600}, FIXED, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1", extra_args=SWEEP_EVERY)
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    repository = cluster.tmp / "w1" / "state" / "repos" / run_id
    wait_for_step(cluster.database, run_id, {"running"})
    time.sleep(1.5)  # sweeps meanwhile: the run is running (and its step executing here): left
    assert repository.is_dir()
    run.interrupt()
    assert run.join(120).exit_code == 130, run.output
    assert wait_for_run(cluster.database, run_id).status == "cancelled"
    assert wait_gone(repository)
    cluster.resume_to_approval(run_id)
    steps = cluster.cli_git(
        "log", "--format=%(trailers:key=Orchestrator-Step,valueonly)", f"main..orchestrator/{run_id}"
    )
    assert [s for s in steps.split() if s] == ["i1-s1-implement"]
