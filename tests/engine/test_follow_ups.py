"""Follow-ups kept in the run's event log (engine/follow_ups.py): where they start and how far they may
go, read back by whichever process resumes the run, on both store backends."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.follow_ups import (
    LEGACY_FILE,
    legacy_follow_ups,
    next_follow_up,
    plan_follow_ups,
    stored_follow_ups,
)
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.errors import UsageError
from orchestrator.events import FollowUp, Notice
from orchestrator.store import RunOptions, Store
from orchestrator.workspace.paths import run_paths
from tests.engine.test_runner import APPROVE, make_repo

WORKFLOW = {"steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]}


def make_run(store: Store, *, iterations: int, max_iterations: int | None = None) -> None:
    store.create_run(
        run_id="r1",
        repo="/tmp",
        task="t",
        workflow_name="w",
        workflow={"name": "w", **WORKFLOW, "max_iterations": 3},
        base="HEAD",
        branch="b/r1",
        options=RunOptions(max_iterations=max_iterations),
    )
    store.set_iterations("r1", iterations)


def test_a_follow_up_starts_after_the_last_iteration_with_as_many_as_the_run_had(store):
    make_run(store, iterations=2)
    follow_up = next_follow_up(store.get_run("r1"), "also add b", source="the shell")
    assert (follow_up.iteration, follow_up.max_iterations, follow_up.source) == (3, 5, "the shell")
    with_option = store.get_run("r1").model_copy(update={"options": RunOptions(max_iterations=1)})
    assert next_follow_up(with_option, "x").max_iterations == 3  # --max-iterations 1: one more


def test_follow_ups_round_trip_through_the_event_log_for_any_other_process(store_location):
    with Store(store_location) as here, Store(store_location) as elsewhere:
        make_run(here, iterations=1)
        here.add_event("r1", Notice(run_id="r1", text="unrelated"))
        first = next_follow_up(here.get_run("r1"), "add b")
        here.add_event("r1", first)
        here.set_iterations("r1", 2)
        second = next_follow_up(here.get_run("r1"), "now c", source="the dashboard")
        here.add_event("r1", second)
        known = stored_follow_ups(elsewhere, "r1")
        assert known == [first, second]
        assert [(f.iteration, f.max_iterations) for f in known] == [(2, 4), (3, 5)]
        plan = plan_follow_ups(known, {})
        assert (plan.first, plan.max_iterations, plan.texts) == (3, 5, {2: "add b", 3: "now c"})


def test_a_cluster_follow_up_is_recorded_once_and_never_while_the_run_runs(store_location):
    """What the shell and the dashboard rely on (cli/cluster_cmd.py): the check, the FollowUp and the
    run set running again are one transaction, so of several processes following up at once, one does."""
    with Store(store_location) as store:
        make_run(store, iterations=1)  # running, as created
        with pytest.raises(UsageError, match="still running on the cluster"):
            store.continue_cluster_run("r1", lambda run: next_follow_up(run, "too early"))
        assert stored_follow_ups(store, "r1") == []
        store.update_run_status("r1", "approved", stop_reason="approved")

    def follow_up(n: int) -> FollowUp | None:
        with Store(store_location) as mine:
            try:
                return mine.continue_cluster_run("r1", lambda run: next_follow_up(run, f"asked by {n}"))
            except UsageError:
                return None

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(follow_up, range(4)))
    [won] = [r for r in results if r is not None]
    with Store(store_location) as store:
        assert stored_follow_ups(store, "r1") == [won]
        assert (won.iteration, won.max_iterations) == (2, 4)
        run = store.get_run("r1")
        assert (run.status, run.stop_reason, run.finished_at) == ("running", None, None)


def test_a_run_without_follow_ups_starts_at_its_first_iteration_and_legacy_texts_are_kept(tmp_path):
    (tmp_path / LEGACY_FILE).write_text(json.dumps({"2": "old request"}))
    plan = plan_follow_ups([], legacy_follow_ups(tmp_path))
    assert (plan.first, plan.max_iterations, plan.texts) == (None, None, {2: "old request"})
    (tmp_path / LEGACY_FILE).write_text("not json")
    assert legacy_follow_ups(tmp_path) == {}
    newer = FollowUp(run_id="r1", text="new", iteration=2, max_iterations=2)
    assert plan_follow_ups([newer], {2: "old request"}).texts == {2: "new"}


def prompts_of(scenario: Path) -> list[str]:
    path = scenario.with_name(scenario.name + ".prompts.jsonl")
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines()]


def wait_for_step(store: Store, run_id: str, step_id: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = store.step(run_id, step_id)
        if record is not None and record.status == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"{step_id} did not start")


def test_an_interrupted_follow_up_resumes_from_the_store_with_its_extra_iteration(
    tmp_path: Path, store_location: str
) -> None:
    """The follow-up is cancelled mid-step; a new service (another process: nothing kept in memory,
    nothing in the run's folder) resumes it: the follow-up's iteration runs again with its text, beyond
    the workflow's max_iterations of 1, instead of the first iteration's approval ending it at once."""
    repo = make_repo(tmp_path / "repo")
    scenario = tmp_path / "scenario.yaml"
    turns = [
        {"write_file": {"path": "a.txt", "content": "a"}},
        {"text": "impl"},
        {"text": APPROVE},
        {"hang": None},
        {"write_file": {"path": "b.txt", "content": "b"}},
        {"text": "followed up"},
        {"text": APPROVE},
    ]
    scenario.write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(yaml.safe_dump({**WORKFLOW, "max_iterations": 1}))
    data = {
        "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}, "timeout_s": 30}},
        "fallback_order": ["fake"],
    }
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")}

    def service() -> RunService:
        return RunService(settings=settings_from_data(data), env=env, store=Store(store_location))

    first = service()
    try:
        record = first.create(RunSpec(task="add a.txt", cwd=repo, workflow=str(workflow)))
        assert first.execute(record.id).status == "approved"
        cancel = threading.Event()

        def cancel_the_follow_up() -> None:
            wait_for_step(first.store, record.id, "i2-s1-implement")
            time.sleep(0.5)
            cancel.set()

        canceller = threading.Thread(target=cancel_the_follow_up, daemon=True)
        canceller.start()
        stopped = first.execute(record.id, cancel=cancel, follow_up="also add b.txt")
        canceller.join(30)
        assert stopped.status == "cancelled"
        assert not (run_paths(first.state_home, record.id).run_dir / LEGACY_FILE).exists()
    finally:
        first.close()
    second = service()
    try:
        report = second.execute(record.id, resume=True)
        assert report.status == "approved" and report.iterations == 2, report
        assert [s.id for s in report.steps][-2:] == ["i2-s1-implement", "i2-s2-review"]
        log = second.workspace(record.id).log()
        assert [c.step_id for c in log] == ["i1-s1-implement", "i2-s1-implement"]
        known = stored_follow_ups(second.store, record.id)
        assert [(f.text, f.iteration, f.max_iterations) for f in known] == [("also add b.txt", 2, 2)]
    finally:
        second.close()
    implement_prompts = [p for p in prompts_of(scenario) if "What to do now" in p]
    assert len(implement_prompts) == 2  # the cancelled attempt and the resumed one
    assert all("also add b.txt" in p for p in implement_prompts)
