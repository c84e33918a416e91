"""Follow-ups on cluster runs, for real (Temporal, PostgreSQL, two `orchestrator worker` processes): a
finished run continued from the shell and from the dashboard's API. The follow-up goes into the run's
event log, the run's workflow is started again under its id, the workers' engine (on whichever worker
takes each step) finds the follow-up's text and its extra iteration there, and the new commits land on
the run branch in the user's repository."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from orchestrator.cli.shell.commands import Message
from orchestrator.engine.follow_ups import stored_follow_ups
from orchestrator.store import Store
from orchestrator.testing.cluster import newest_run_id
from tests.cluster.conftest import APPROVE, Cluster
from tests.cluster.test_cluster_dashboard import serve
from tests.cluster.test_cluster_merge_shell import FIXED, shell_session
from tests.cluster.test_cluster_runs import step_attempts

pytestmark = pytest.mark.slow

SAY_HI = {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hi'\n"}}
REQUEST = "now make greet() say Hi"


def two_runs_of_turns(cluster: Cluster) -> None:
    """The run's first iteration, then its follow-up's (the workflow allows 1 iteration: the follow-up's
    is one more, granted by the FollowUp event)."""
    cluster.use_scenario(
        [FIXED, {"text": "done"}, {"text": APPROVE}, SAY_HI, {"text": "said hi"}, {"text": APPROVE}]
    )


def check_followed_up(cluster: Cluster, run_id: str, source: str) -> None:
    with Store(cluster.database) as store:
        run = store.get_run(run_id)
        assert (run.status, run.iterations) == ("approved", 2)
        assert [s.step_id for s in store.steps(run_id)] == [
            "i1-s1-implement",
            "i1-s2-review",
            "i2-s1-implement",
            "i2-s2-review",
        ]
        [follow_up] = stored_follow_ups(store, run_id)
        assert (follow_up.text, follow_up.iteration, follow_up.max_iterations) == (REQUEST, 2, 2)
        assert follow_up.source == source
        assert store.is_cluster_run(run_id)
    # The follow-up's steps ran on the workers (a new workflow under the run's id), not here.
    attempts = step_attempts(cluster.temporal.address, run_id)
    assert len(attempts) == 2 and {w for w, _ in attempts} <= {"w1", "w2"}, attempts
    # The follow-up's implement step was asked to do what the follow-up said; the first one was not.
    prompts = [p for p in prompts_given(cluster) if "What to do now" in p]
    assert len(prompts) == 1 and REQUEST in prompts[0], prompts
    # The follow-up's commit is on the run branch in the user's repository, after the first one.
    branch = f"orchestrator/{run_id}"
    steps = cluster.cli_git("log", "--format=%(trailers:key=Orchestrator-Step,valueonly)", f"main..{branch}")
    assert [s for s in steps.split() if s] == ["i2-s1-implement", "i1-s1-implement"]
    assert cluster.cli_git("show", f"{branch}:app.py") == "def greet():\n    return 'Hi'\n"


def prompts_given(cluster: Cluster) -> list[str]:
    path: Path = cluster.tmp / "scenario.yaml.prompts.jsonl"
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines()]


def test_a_follow_up_from_the_shell_goes_on_on_the_cluster(cluster: Cluster) -> None:
    two_runs_of_turns(cluster)
    cluster.worker("w1")
    cluster.worker("w2")
    out = io.StringIO()
    session = shell_session(cluster, out)
    try:
        session.handle(Message("make greet() return Hello"))
        run_id = session.run_id
        assert run_id is not None and "approved" in out.getvalue(), out.getvalue()
        out.seek(0)
        out.truncate(0)
        session.handle(Message(REQUEST))
        text = out.getvalue()
        # Followed live, as the first message was: the follow-up, its steps, the run's end.
        assert f"follow-up from iteration 2: {REQUEST}" in text, text
        assert "i2-s1-implement" in text and "approved" in text, text
        assert session.run_id == run_id
    finally:
        session.service.close()
    check_followed_up(cluster, run_id, "the shell")


def test_a_follow_up_from_the_dashboard_goes_on_on_the_cluster(cluster: Cluster) -> None:
    two_runs_of_turns(cluster)
    cluster.worker("w1")
    cluster.worker("w2")
    run = cluster.submit()
    assert run.join(180).exit_code == 0, run.output
    run_id = newest_run_id(cluster.database)
    server = serve(cluster)
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/follow-up", {"text": REQUEST})
    assert status == 202 and body["queued"] is False, body
    # A second follow-up while the first runs is refused (nothing on the cluster would take it).
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/follow-up", {"text": "and more"})
    assert status == 409 and "still running on the cluster" in body["error"], body
    done = server.wait_run(run_id, {"approved", "failed", "not_approved", "cancelled"}, timeout_s=180)
    assert done["status"] == "approved", done
    events = server.get(f"/api/runs/{run_id}/events")["events"]
    assert [e["event"]["text"] for e in events if e["event"]["type"] == "follow_up"] == [REQUEST]
    check_followed_up(cluster, run_id, "the dashboard")
