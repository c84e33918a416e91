"""cluster/watch.py without Temporal: how a run whose workflow is gone ends (pure), what the submitter
is told when no worker polls the run's queues (pure), and the ending itself on both store backends
(fenced: a late write of the worker that ran the step is refused)."""

from __future__ import annotations

import pytest

from orchestrator.cluster.watch import NOT_FOUND, end_vanished, missing_workers, vanished
from orchestrator.engine.routing import route_auto
from orchestrator.engine.workflow import Workflow
from orchestrator.events import Notice, RunFinished
from orchestrator.store import StaleFence, Store
from tests.store_helpers import make_run


def test_how_a_run_ends_by_its_workflows_status() -> None:
    assert vanished("r1", "RUNNING") is None
    cancelled = vanished("r1", "CANCELED")
    assert cancelled is not None and cancelled.status == "cancelled"
    for status, why in [
        ("TERMINATED", "was terminated"),
        (NOT_FOUND, "not on the Temporal server any more"),
        ("TIMED_OUT", "timed out"),
        ("FAILED", "ended (failed) without ending the run"),
        ("COMPLETED", "ended (completed) without ending the run"),
    ]:
        gone = vanished("r1", status)
        assert gone is not None and gone.status == "failed", status
        assert why in gone.text and "`orchestrator runs resume r1`" in gone.text


def test_what_the_submitter_is_told_when_no_worker_polls_a_queue() -> None:
    assert missing_workers(["fake"], step_pollers=1, workflow_pollers=1) is None
    nobody = missing_workers(["codex", "claude"], step_pollers=0, workflow_pollers=0)
    assert nobody is not None and "no worker is connected to the cluster" in nobody
    assert "`orchestrator worker --agents claude,codex`" in nobody
    nobody_for_these = missing_workers(["codex", "claude"], step_pollers=0, workflow_pollers=2)
    assert nobody_for_these is not None
    assert "no worker serves all of claude, codex" in nobody_for_these and "wait" in nobody_for_these
    assert "`orchestrator worker --agents claude,codex`" in nobody_for_these


def test_a_vanished_run_ends_once_fenced_with_its_running_steps(store_location: str) -> None:
    with Store(store_location) as worker, Store(store_location) as submitter:
        make_run(worker)
        worker.hold_fence("r1", worker.acquire_fence("r1"))
        worker.start_step("r1", "i1-s1-implement", iteration=1, index=0, agent="fake", task="implement")
        gone = vanished("r1", "TERMINATED")
        assert gone is not None
        assert end_vanished(submitter, "r1", gone) is True
        assert end_vanished(submitter, "r1", gone) is False  # once
        run = submitter.get_run("r1")
        assert (run.status, run.stop_reason) == ("failed", "cluster_error")
        assert [(s.step_id, s.status) for s in submitter.steps("r1")] == [("i1-s1-implement", "failed")]
        events = [e.event for e in submitter.events("r1")]
        assert isinstance(events[-2], Notice) and "terminated" in events[-2].text
        assert isinstance(events[-1], RunFinished) and events[-1].status == "failed"
        assert sum(isinstance(e, RunFinished) for e in events) == 1
        # The worker's late write is refused; the submitter's store holds no token afterwards.
        with pytest.raises(StaleFence):
            worker.add_event("r1", Notice(run_id="r1", text="late"))
        submitter.add_event("r1", Notice(run_id="r1", text="the submitter writes on"))


def test_a_run_finished_without_its_run_finished_gets_one(store_location: str) -> None:
    with Store(store_location) as store:
        make_run(store)
        store.update_run_status("r1", "approved", stop_reason="approved")
        gone = vanished("r1", "COMPLETED")
        assert gone is not None
        assert end_vanished(store, "r1", gone) is False
        finished = [e.event for e in store.events("r1") if isinstance(e.event, RunFinished)]
        assert [(e.status, e.stop_reason) for e in finished] == [("approved", "approved")]
        assert store.get_run("r1").status == "approved"


class NoReadinessHere:
    """A readiness that must not be asked (a cluster run's submitter)."""

    def probe(self, agents: object) -> None:
        raise AssertionError("this machine's CLIs were probed")

    def of(self, agent: str) -> None:
        raise AssertionError("this machine's CLIs were probed")


def test_auto_routing_of_a_cluster_run_chooses_among_the_workers_cli(store_location: str) -> None:
    workflow = Workflow.model_validate(
        {"name": "w", "steps": [{"agent": "auto", "task": "implement"}, {"agent": "fake", "task": "review"}]}
    )
    with Store(store_location) as store:
        routed = route_auto(
            workflow,
            store,
            NoReadinessHere(),  # type: ignore[arg-type]
            ["claude", "codex", "fake"],
            candidates=["codex"],
        )
    assert routed.agents == ("codex", "fake")
    assert [(c.task, c.agent) for c in routed.routing] == [("implement", "codex")]
