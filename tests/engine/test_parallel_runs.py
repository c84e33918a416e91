"""Attempts, consensus reviews, `when:` and `limits:` end to end: real git repositories and the fake
agent (a real process), each group member playing a scenario of its own (<scenario>.<member>.yaml)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.report_render import render_text
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace.git import Git

CHECK = "import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\n"


def verdict(kind: str, *findings: dict) -> str:
    return "```json\n" + json.dumps({"verdict": kind, "findings": list(findings)}) + "\n```"


APPROVE = verdict("approve")


def finding(message: str, severity: str = "medium", line: int | None = 2) -> dict:
    return {"severity": severity, "file": "app.py", "line": line, "message": message}


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "app.py").write_text("def greet():\n    return 'hi'\n")
    (path / "check.py").write_text(CHECK)
    run_command(["git", "add", "-A"], path, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "initial"], path, check=True
    )
    return path


class Harness:
    def __init__(
        self, tmp_path: Path, steps: list, *, turns=(), members=None, settings_extra=None, **workflow_extra
    ):
        self.repo = make_repo(tmp_path / "repo")
        self.scenario = tmp_path / "scenario.yaml"
        self.scenario.write_text(yaml.safe_dump({"turns": list(turns)}))
        for member, member_turns in (members or {}).items():
            (tmp_path / f"scenario.{member}.yaml").write_text(yaml.safe_dump({"turns": member_turns}))
        self.workflow = tmp_path / "wf.yaml"
        self.workflow.write_text(yaml.safe_dump({"max_iterations": 1, **workflow_extra, "steps": steps}))
        data = {
            "agents": {
                "fake": {
                    "env": {"ORCHESTRATOR_FAKE_SCENARIO": str(self.scenario)},
                    "timeout_s": 60,
                    "idle_timeout_s": 60,
                }
            },
            "fallback_order": ["fake"],
            **(settings_extra or {}),
        }
        self.env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")}
        self.service = RunService(settings=settings_from_data(data), env=self.env)
        self.events: list = []

    def run(self):
        record = self.service.create(
            RunSpec(task="make greet() return Hello", cwd=self.repo, workflow=str(self.workflow))
        )
        report = self.service.execute(record.id, subscribers=[self.events.append])
        return record, report

    def step(self, run_id: str, step_id: str):
        found = self.service.store.step(run_id, step_id)
        assert found is not None, step_id
        return found


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(*args, **kwargs):
        h = Harness(tmp_path, *args, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.service.close()


GATE = {"run": f"{sys.executable} check.py", "name": "check"}


def write_app(body: str, *, extra: str = "") -> list:
    turns: list = [{"write_file": {"path": "app.py", "content": f"def greet():\n    return {body}\n"}}]
    if extra:
        turns.append({"write_file": {"path": "notes.txt", "content": extra}})
    return [*turns, {"text": "done"}]


def test_best_of_three_picks_the_attempt_that_passes_with_the_smallest_diff(harness):
    h = harness(
        [
            {
                "task": "implement",
                "attempts": ["fake", "fake", "fake"],
                "select": ["gates", "smallest_diff", "cost"],
            },
            GATE,
        ],
        members={
            "fake": write_app("'Hi'"),  # fails the gate
            "fake-2": write_app("'Hello'", extra="".join(f"line {i}\n" for i in range(20))),  # passes, big
            "fake-3": write_app("'Hello'"),  # passes, small
        },
    )
    before = snapshot_checkout(h.repo)
    record, report = h.run()
    assert report.status == "approved", report.stop_reason
    parent = h.step(record.id, "i1-s1-implement")
    detail = parent.detail
    assert detail["winner"] == "fake-3" and detail["ranking"] == ["fake-3", "fake-2", "fake"]
    by_name = {a["name"]: a for a in detail["attempts"]}
    assert by_name["fake"]["gates_passed"] == 0 and by_name["fake"]["gates_total"] == 1
    assert (
        by_name["fake-2"]["gates_passed"] == 1
        and by_name["fake-2"]["diff_lines"] > by_name["fake-3"]["diff_lines"]
    )
    assert all(a["completed"] and a["cost_usd"] is not None for a in detail["attempts"])
    # The winner's commit is the run branch; every attempt stays on its own branch.
    user = Git(h.repo)
    run_tip = user.rev_parse(f"refs/heads/orchestrator/{record.id}")
    assert run_tip == by_name["fake-3"]["commit"] == parent.commit
    for name in ("fake", "fake-2", "fake-3"):
        assert user.rev_parse(f"refs/heads/orchestrator/{record.id}-{name}") == by_name[name]["commit"]
        assert by_name[name]["branch"] == f"orchestrator/{record.id}-{name}"
    assert user.out("show", f"{run_tip}:app.py") == "def greet():\n    return 'Hello'"
    # Each attempt is a step of its own, with its usage; the gate then ran on the winner's tree.
    statuses = {s.id: s.status for s in report.steps}
    assert statuses["i1-s1-implement-fake"] == "succeeded" and statuses["i1-s2-gate"] == "succeeded"
    assert snapshot_checkout(h.repo) == before
    # The report JSON shows the attempts side by side, with each one's cost.
    [group] = json.loads(report.to_json())["attempts"]
    assert group["step"] == "i1-s1-implement" and group["winner"] == "fake-3"
    assert [(a["name"], a["gates_passed"]) for a in group["attempts"]] == [
        ("fake", 0),
        ("fake-2", 1),
        ("fake-3", 1),
    ]
    assert all(isinstance(a["cost_usd"], float) for a in group["attempts"])
    text = render_text(report)
    assert "attempts (i1-s1-implement): chosen fake-3, by gates, smallest_diff, cost" in text
    assert "  * fake-3     chosen     1/1   -                          2   $0.0003" in text
    assert f"  branch fake-2: orchestrator/{record.id}-fake-2" in text


def test_no_attempt_usable_fails_the_step_and_keeps_the_run_where_it_was(harness):
    h = harness(
        [{"task": "implement", "attempts": ["fake", "fake"]}, GATE],
        members={"fake": [{"text": "nothing to do"}], "fake-2": [{"text": "nothing either"}]},
    )
    record, report = h.run()
    assert report.status == "failed" and report.stop_reason == "step_failed"
    parent = h.step(record.id, "i1-s1-implement")
    assert parent.status == "failed" and parent.detail["winner"] is None
    assert "changed nothing" in (parent.error_message or "")
    assert h.service.workspace(record.id).head() == h.service.workspace(record.id).first


def test_consensus_counts_a_finding_two_reviewers_raise_and_drops_a_lone_low_one(harness):
    raised = finding("greet() must return Hello, not hi")
    h = harness(
        [{"task": "review", "reviewers": ["fake", "fake", "fake"], "quorum": 2}],
        members={
            "fake": [{"text": verdict("request_changes", raised)}],
            "fake-2": [
                {
                    "text": verdict(
                        "request_changes",
                        finding("greet returns hi; it must return Hello", line=3),
                        finding("rename greet", "low", 1),
                    )
                }
            ],
            "fake-3": [{"text": APPROVE}],
        },
    )
    record, report = h.run()
    parent = h.step(record.id, "i1-s1-review")
    detail = parent.detail
    assert detail["verdict"] == "request_changes"
    assert [f["message"] for f in detail["findings"]] == [raised["message"]]
    statuses = sorted((c["status"], tuple(c["reviewers"])) for c in detail["clusters"])
    assert statuses == [("below_quorum", ("fake-2",)), ("counts", ("fake", "fake-2"))]
    assert {r["reviewer"]: r["verdict"] for r in detail["reviews"]} == {
        "fake": "request_changes",
        "fake-2": "request_changes",
        "fake-3": "approve",
    }
    # Every reviewer is a step of its own, read-only: nothing was committed.
    assert {s.id for s in report.steps} >= {"i1-s1-review-fake", "i1-s1-review-fake-2", "i1-s1-review-fake-3"}
    assert h.service.workspace(record.id).log() == []
    assert report.status != "approved"
    text = render_text(report)
    print(text)
    assert "reviews (i1-s1-review): request_changes; quorum 2: reached by" in text
    [review] = json.loads(report.to_json())["reviews"]
    assert review["verdict"] == "request_changes" and review["quorum"] == 2
    assert [r["reviewer"] for r in review["reviewers"]] == ["fake", "fake-2", "fake-3"]
    assert [f.message for f in report.findings] == [raised["message"]]


def test_a_lone_high_finding_is_put_to_a_second_reviewer_before_it_counts(harness):
    high = finding("SQL injection: user input is interpolated into the query", "high")
    h = harness(
        [{"task": "review", "reviewers": ["fake", "fake", "fake"], "quorum": 2}],
        members={
            "fake": [{"text": verdict("request_changes", high)}],
            "fake-2": [{"text": APPROVE}, {"text": verdict("request_changes", high)}],  # then confirms it
            "fake-3": [{"text": APPROVE}],
        },
    )
    record, _ = h.run()
    detail = h.step(record.id, "i1-s1-review").detail
    assert detail["verdict"] == "request_changes"
    [cluster] = detail["clusters"]
    assert cluster["status"] == "counts" and cluster["confirmed_by"] == "fake-2"
    assert h.step(record.id, "i1-s1-review-confirm1-fake-2").status == "succeeded"


def test_a_lone_high_finding_nobody_confirms_does_not_count(harness):
    high = finding("SQL injection: user input is interpolated into the query", "high")
    h = harness(
        [{"task": "review", "reviewers": ["fake", "fake"], "quorum": 2}],
        members={
            "fake": [{"text": verdict("request_changes", high)}],
            "fake-2": [{"text": APPROVE}, {"text": APPROVE}],
        },
    )
    record, report = h.run()
    detail = h.step(record.id, "i1-s1-review").detail
    assert detail["verdict"] == "approve" and detail["findings"] == []
    assert detail["clusters"][0]["status"] == "not_confirmed"
    assert report.status == "approved"


def test_the_author_s_cli_never_reviews_its_own_work(harness):
    h = harness(
        [
            {"agent": "fake", "task": "implement"},
            {"task": "review", "reviewers": ["fake", "fake"], "quorum": 1},
        ],
        turns=write_app("'Hello'"),
    )
    record, report = h.run()
    review = h.step(record.id, "i1-s2-review")
    assert review.status == "failed" and "fake wrote the change" in (review.error_message or "")
    assert report.stop_reason == "step_failed"
    assert not [s for s in report.steps if s.id.startswith("i1-s2-review-")]


def test_when_skips_a_step_whose_condition_is_false_and_runs_one_whose_condition_holds(harness):
    h = harness(
        [
            {"agent": "fake", "task": "implement"},
            {"agent": "fake", "task": "review"},
            {
                "agent": "fake",
                "task": "refine",
                "when": "review.verdict == 'request_changes' and review.high > 0",
            },
            {"agent": "fake", "task": "document", "when": "iteration > 1"},
        ],
        turns=[
            *write_app("'Hi'"),
            {"text": verdict("request_changes", finding("must say Hello", "high"))},
            *write_app("'Hello'"),
        ],
    )
    record, report = h.run()
    statuses = {s.id: s.status for s in report.steps}
    assert statuses["i1-s3-refine"] == "succeeded"
    assert statuses["i1-s4-document"] == "skipped"
    assert h.step(record.id, "i1-s4-document").detail["notes"] == ["when: iteration > 1 is false"]


def test_concurrency_one_runs_the_attempts_one_after_another(harness):
    h = harness(
        [{"task": "implement", "attempts": ["fake", "fake", "fake"], "select": ["smallest_diff"]}],
        members={m: write_app(f"'Hello {m}'") for m in ("fake", "fake-2", "fake-3")},
        limits={"concurrency": 1},
    )
    record, _ = h.run()
    running = peak = sessions = 0
    for event in h.events:
        if type(event).__name__ != "AgentActivity" or not event.step_id.startswith("i1-s1-implement-"):
            continue
        kind = type(event.event).__name__
        if kind == "SessionStarted":
            running, sessions = running + 1, sessions + 1
        elif kind == "Result":
            running -= 1
        peak = max(peak, running)
    assert sessions == 3 and peak == 1
    assert h.step(record.id, "i1-s1-implement").detail["winner"] == "fake"


def kill_then_resume(tmp_path, steps, members, *, finished_step, hanging_member):
    """Run `steps` in an `orchestrator run` process, SIGKILL it once `finished_step` has succeeded and
    `hanging_member` is hanging, then `runs resume` it; (run id, the step record before, the report)."""
    import signal
    import subprocess
    import threading
    import time

    from orchestrator.proc import child_env, kill_leftovers
    from orchestrator.store import Store

    repo = make_repo(tmp_path / "repo")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": members.pop("", [])}))
    for member, turns in members.items():
        (tmp_path / f"scenario.{member}.yaml").write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(yaml.safe_dump({"max_iterations": 1, "steps": steps}))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
    )
    state = tmp_path / "state"
    env = child_env(os.environ, {"ORCHESTRATOR_HOME": str(state)})
    before = snapshot_checkout(repo)
    argv = [sys.executable, "-m", "orchestrator", "run", "greet", "--repo", str(repo)]
    argv += ["--workflow", str(workflow), "--config", str(config)]
    proc = subprocess.Popen(
        argv,
        cwd=str(repo),
        env={**env, "ORCHESTRATOR_PARENT_PID": str(os.getpid())},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )

    def ready_to_kill() -> bool:
        if (
            not list(state.glob(f"runs/*/agents/{hanging_member}/tmp/reached"))
            or not (state / "state.db").exists()
        ):
            return False
        with Store(state / "state.db") as store:
            runs = store.list_runs()
            step = store.step(runs[0].id, finished_step) if runs else None
            return step is not None and step.status == "succeeded"

    def killer() -> None:
        deadline = time.monotonic() + 60
        while not ready_to_kill() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    assert proc.wait(timeout=90) == -signal.SIGKILL
    time.sleep(0.5)
    kill_leftovers()
    with Store(state / "state.db") as store:
        run_id = store.list_runs()[0].id
        first = store.step(run_id, finished_step)
    assert first is not None and first.status == "succeeded" and first.attempts == 1
    resumed = run_command(
        [sys.executable, "-m", "orchestrator", "runs", "resume", run_id, "--json", "--config", str(config)],
        repo,
        env=env,
        timeout_s=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot_checkout(repo) == before
    return run_id, first, json.loads(resumed.stdout), Store(state / "state.db"), repo


HANG = {"shell": 'touch "$TMPDIR/reached" && sleep 60'}


def test_sigkill_during_a_best_of_n_then_resume_does_not_redo_a_finished_attempt(tmp_path):
    """Kill the orchestrator while one attempt hangs and the other has finished: `runs resume` runs the
    unfinished attempt again (from the run's tip) and keeps the finished one as it was."""
    run_id, first, report, store, repo = kill_then_resume(
        tmp_path,
        [{"task": "implement", "attempts": ["fake", "fake"], "select": ["gates", "smallest_diff"]}],
        {"fake": write_app("'Hello'"), "fake-2": [HANG, *write_app("'Hello there'")]},
        finished_step="i1-s1-implement-fake",
        hanging_member="fake-2",
    )
    with store:
        again = store.step(run_id, "i1-s1-implement-fake")
        second = store.step(run_id, "i1-s1-implement-fake-2")
    assert report["status"] == "approved"
    [group] = report["attempts"]
    assert group["winner"] == "fake" and all(a["completed"] for a in group["attempts"])
    assert again is not None and again.attempts == 1 and again.commit == first.commit  # not run again
    assert second is not None and second.attempts == 2 and second.status == "succeeded"
    assert Git(repo).out("show", f"{report['branch']}:app.py") == "def greet():\n    return 'Hello'"


# --- plan / for_each / merge ------------------------------------------------------------------------


def plan_answer(*subtasks: dict) -> dict:
    return {"text": "The plan.\n```json\n" + json.dumps({"subtasks": list(subtasks)}) + "\n```"}


def subtask(sid: str, depends_on=(), files=()) -> dict:
    return {"id": sid, "prompt": f"do {sid}", "depends_on": list(depends_on), "files": list(files)}


PLAN_STEPS = [
    {"task": "plan", "agent": "fake", "max_subtasks": 4},
    {"task": "implement", "for_each": "subtask", "agents": ["fake"]},
    {"merge": "subtasks"},
    {
        "run": f"{sys.executable} -c \"import os, sys; sys.exit(0 if os.path.exists('c.txt') else 1)\"",
        "name": "c",
    },
    {"agent": "fake", "task": "review"},
]


def test_a_plan_runs_its_subtasks_on_branches_of_their_own_and_merges_them_in_dependency_order(harness):
    h = harness(
        PLAN_STEPS,
        turns=[
            plan_answer(subtask("a"), subtask("b"), subtask("c", depends_on=["a", "b"])),
            {"text": APPROVE},
        ],
        members={
            "a": [{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "a done"}],
            "b": [{"write_file": {"path": "b.txt", "content": "b\n"}}, {"text": "b done"}],
            # c starts from the run branch with a and b merged in: it finds their files
            "c": [{"shell": "test -f a.txt && test -f b.txt && echo c > c.txt"}, {"text": "c done"}],
        },
    )
    record, report = h.run()
    assert report.status == "approved", [(s.id, s.status, s.error) for s in report.steps]
    plan = h.step(record.id, "i1-s1-plan")
    assert [s["id"] for s in plan.detail["plan"]["subtasks"]] == ["a", "b", "c"]
    [graph] = json.loads(report.to_json())["subtasks"]
    assert graph["merge_order"][-1] == "c" and sorted(graph["merge_order"][:2]) == ["a", "b"]
    by_id = {s["id"]: s for s in graph["subtasks"]}
    assert all(s["state"] == "merged" and s["commit"] for s in by_id.values())
    assert by_id["c"]["depends_on"] == ["a", "b"]
    user = Git(h.repo)
    for sid, s in by_id.items():
        assert s["branch"] == f"orchestrator/{record.id}-st-{sid}"
        assert user.rev_parse(f"refs/heads/{s['branch']}") == s["commit"]  # every subtask's work stays
        assert user.is_ancestor(s["commit"], report.branch)
    tree = user.out("ls-tree", "--name-only", report.branch).split()
    assert {"a.txt", "b.txt", "c.txt"} <= set(tree)
    assert h.step(record.id, "i1-s3-merge").status == "succeeded"


def test_an_unusable_plan_gets_one_repair_round_then_the_run_takes_the_plain_loop(harness):
    h = harness(
        PLAN_STEPS,
        turns=[
            plan_answer(subtask("a", depends_on=["zz"])),  # an unknown dependency
            plan_answer(subtask("a"), subtask("a")),  # repaired, still invalid: the id twice
            {"write_file": {"path": "c.txt", "content": "c\n"}},
            {"text": "implemented in one go"},
            {"text": APPROVE},
        ],
    )
    record, report = h.run()
    assert report.status == "approved", [(s.id, s.status, s.error) for s in report.steps]
    plan = h.step(record.id, "i1-s1-plan")
    assert plan.detail["plan"] is None and len(plan.detail["plan_problems"]) == 2
    assert "zz" in plan.detail["plan_problems"][0]
    assert any("plain loop" in n for n in plan.detail["notes"])
    assert h.step(record.id, "i1-s2-implement").commit is not None  # one plain step
    assert h.step(record.id, "i1-s3-merge").status == "skipped"
    assert json.loads(report.to_json())["subtasks"] == []


def test_two_subtasks_editing_one_line_conflict_and_the_run_stops_with_both_branches_kept(harness):
    h = harness(
        PLAN_STEPS,
        turns=[plan_answer(subtask("a"), subtask("b"))],  # no files declared: nothing serializes them
        members={
            "a": write_app("'Hello from a'"),
            "b": [{"shell": "sleep 1"}, *write_app("'Hello from b'")],
        },
    )
    record, report = h.run()
    assert report.status == "failed" and report.stop_reason == "step_failed"
    merge = h.step(record.id, "i1-s3-merge")
    assert merge.status == "failed" and merge.error_kind == "merge_conflict"
    assert "app.py" in (merge.error_message or "")
    [graph] = json.loads(report.to_json())["subtasks"]
    states = {s["id"]: s["state"] for s in graph["subtasks"]}
    assert sorted(states.values()) == ["conflict", "merged"]
    user = Git(h.repo)
    for s in graph["subtasks"]:  # zero commits lost: each subtask's commit stays on its branch
        assert s["commit"] and user.rev_parse(f"refs/heads/{s['branch']}") == s["commit"]
    merged = next(s for s in graph["subtasks"] if s["state"] == "merged")
    assert user.is_ancestor(merged["commit"], report.branch)


def test_per_agent_caps_hold_under_a_429_and_the_machine_slots_are_lowered(harness, tmp_path):
    from orchestrator.limits import MachineSlots

    limited = [{"kind": "error", "status": 429, "retry_after": 0.1}]
    h = harness(
        [{"task": "implement", "attempts": ["fake"] * 4, "select": ["smallest_diff"]}],
        # Each attempt takes a while, so that without the cap all four would run at once.
        members={
            "fake": [{"shell": "sleep 2"}, *write_app("'Hello'")],
            "fake-2": [*limited, {"shell": "sleep 2"}, *write_app("'Hello 2'")],
            "fake-3": [{"shell": "sleep 2"}, *write_app("'Hello 3'")],
            "fake-4": [{"shell": "sleep 2"}, *write_app("'Hello 4'")],
        },
        limits={"concurrency": 4, "per_agent": {"fake": 2}},
    )
    record, _ = h.run()
    active: set[str] = set()
    peak = sessions = 0
    for event in h.events:
        if type(event).__name__ != "AgentActivity" or not event.step_id.startswith("i1-s1-implement-"):
            continue
        kind = type(event.event).__name__
        if kind == "SessionStarted":
            assert event.step_id not in active
            active.add(event.step_id)
            sessions += 1
        elif kind in ("Result", "AgentErrorEvent"):
            active.discard(event.step_id)
        peak = max(peak, len(active))
    assert sessions == 5 and peak <= 2  # four attempts, one of them twice (after its 429)
    assert all(a["completed"] for a in h.step(record.id, "i1-s1-implement").detail["attempts"])
    # The 429 halved fake's slots for every run on the machine, for the cool-down.
    assert MachineSlots(tmp_path / "state").cap("fake") == 2


def test_a_conflict_goes_back_to_the_subtask_s_agent_with_both_sides_and_its_resolution_is_merged(harness):
    resolved = "def greet():\n    return 'Hello from a and b'\n"
    resolve = [{"write_file": {"path": "app.py", "content": resolved}}, {"text": "resolved"}]
    h = harness(
        PLAN_STEPS[:3],
        turns=[plan_answer(subtask("a"), subtask("b"))],
        members={
            "a": write_app("'Hello from a'"),
            "b": [{"shell": "sleep 1"}, *write_app("'Hello from b'")],
            # whichever of the two is merged second gets the conflict to resolve
            "a-resolve": resolve,
            "b-resolve": resolve,
        },
    )
    record, report = h.run()
    assert report.status == "approved", [(s.id, s.status, s.error) for s in report.steps]
    [graph] = json.loads(report.to_json())["subtasks"]
    assert {s["state"] for s in graph["subtasks"]} == {"merged"}
    user = Git(h.repo)
    assert user.out("show", f"{report.branch}:app.py") == resolved.rstrip("\n")
    # The resolution is a merge of the subtask's work and the run branch: both sides stay in history.
    for s in graph["subtasks"]:
        assert user.is_ancestor(s["commit"], report.branch)
    assert any("resolve them" in e.text for e in h.events if type(e).__name__ == "Notice")


def test_sigkill_during_subtasks_then_resume_does_not_redo_a_merged_subtask(tmp_path):
    run_id, first, report, store, repo = kill_then_resume(
        tmp_path,
        PLAN_STEPS[:3],
        {
            "": [plan_answer(subtask("a"), subtask("b"))],
            "a": [{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "a done"}],
            "b": [HANG, {"write_file": {"path": "b.txt", "content": "b\n"}}, {"text": "b done"}],
        },
        finished_step="i1-s2-implement-a",
        hanging_member="b",
    )
    with store:
        again = store.step(run_id, "i1-s2-implement-a")
        second = store.step(run_id, "i1-s2-implement-b")
    assert report["status"] == "approved", [(s["id"], s["status"]) for s in report["steps"]]
    assert again is not None and again.attempts == 1 and again.commit == first.commit  # not run again
    assert second is not None and second.attempts == 2
    [graph] = report["subtasks"]
    assert {s["id"]: s["state"] for s in graph["subtasks"]} == {"a": "merged", "b": "merged"}
    assert {"a.txt", "b.txt"} <= set(Git(repo).out("ls-tree", "--name-only", report["branch"]).split())


def test_a_step_past_the_machine_s_hour_budget_does_not_start_in_this_run_or_the_next(harness):
    h = harness(
        [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "refine"}],
        turns=[*write_app("'Hello'"), *write_app("'Hello again'")],
        settings_extra={"budgets": {"hour_usd": 1e-9}},  # the first step's cost passes it
    )
    record, report = h.run()
    assert report.status == "budget_exceeded" and report.stop_reason == "budget_exceeded"
    statuses = {s.id: s.status for s in report.steps}
    assert statuses == {"i1-s1-implement": "succeeded", "i1-s2-refine": "skipped"}
    assert "hour budget" in h.step(record.id, "i1-s2-refine").detail["notes"][0]
    alerts = [e for e in h.events if type(e).__name__ == "Notice" and "hour budget" in e.text]
    assert alerts and alerts[0].level == "warning"
    # The ledger holds across runs: the next run on this machine does not start its first step.
    _, again = h.run()
    assert again.status == "budget_exceeded" and [s.status for s in again.steps] == ["skipped"]


def test_agent_auto_is_chosen_when_the_run_starts_and_the_report_says_why(harness):
    h = harness([{"agent": "auto", "task": "implement"}, GATE], turns=write_app("'Hello'"))
    record, report = h.run()
    assert report.status == "approved"
    assert h.step(record.id, "i1-s1-implement").agent == "fake"
    [choice] = json.loads(report.to_json())["routing"]
    assert choice["task"] == "implement" and choice["agent"] == "fake"
    assert choice["reason"].startswith("exploring: fake has 0 recorded implement step(s)")


# --- faults around merges -------------------------------------------------------------------------


def test_an_agent_killed_while_resolving_a_conflict_leaves_every_commit_and_a_stated_stop(harness):
    steps = [dict(PLAN_STEPS[0]), {**PLAN_STEPS[1], "timeout_s": 4}, PLAN_STEPS[2]]
    hang = [{"kind": "hang"}]
    h = harness(
        steps,
        turns=[plan_answer(subtask("a"), subtask("b"))],
        members={
            "a": write_app("'Hello from a'"),
            "b": [{"shell": "sleep 1"}, *write_app("'Hello from b'")],
            "a-resolve": hang,  # the resolver hangs until its timeout ends it
            "b-resolve": hang,
        },
    )
    record, report = h.run()
    assert report.status == "failed" and report.stop_reason == "step_failed"
    merge = h.step(record.id, "i1-s3-merge")
    assert merge.error_kind == "merge_conflict" and "nothing was lost" in (merge.error_message or "")
    [graph] = json.loads(report.to_json())["subtasks"]
    user = Git(h.repo)
    for s in graph["subtasks"]:
        assert s["commit"] and user.rev_parse(f"refs/heads/{s['branch']}") == s["commit"]
    conflicted = next(s for s in graph["subtasks"] if s["state"] == "conflict")
    # What the killed resolver left in the subtask's repository is kept under its backup refs.
    backups = user.out(
        "for-each-ref", "--format=%(refname)", f"refs/orchestrator/backups/{record.id}-st-{conflicted['id']}/"
    )
    assert backups.strip()


def test_a_gate_failing_after_the_merges_goes_to_refine_and_the_run_ends_approved(harness):
    check = f"{sys.executable} -c \"import sys; sys.exit(0 if 'fixed' in open('a.txt').read() else 1)\""
    h = harness(
        [
            *PLAN_STEPS[:3],
            {"run": check, "name": "a fixed"},
            {"agent": "fake", "task": "review"},
            {"agent": "fake", "task": "refine"},
        ],
        turns=[
            plan_answer(subtask("a"), subtask("b")),
            {"text": verdict("request_changes", finding("a.txt must say fixed"))},  # review 1
            {"write_file": {"path": "a.txt", "content": "a fixed\n"}},  # refine
            {"text": "fixed"},
            {"text": APPROVE},  # review 2
        ],
        members={
            "a": [{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "a done"}],
            "b": [{"write_file": {"path": "b.txt", "content": "b\n"}}, {"text": "b done"}],
        },
        max_iterations=2,
    )
    record, report = h.run()
    assert report.status == "approved", [(s.id, s.status) for s in report.steps]
    statuses = {s.id: s.status for s in report.steps}
    assert statuses["i1-s4-gate"] == "failed" and statuses["i2-s4-gate"] == "succeeded"
    assert "i2-s1-plan" not in statuses and "i2-s3-merge" not in statuses  # planned and merged once


def test_a_follow_up_s_best_of_n_starts_from_the_run_s_tip_on_branches_of_its_own(harness):
    h = harness(
        [{"task": "implement", "attempts": ["fake", "fake"], "select": ["smallest_diff"]}],
        members={
            "fake": [*write_app("'Hello'"), *write_app("'Hello, world'")],
            "fake-2": [
                *write_app("'Hello there'", extra="x\n"),
                *write_app("'Hello, big world'", extra="y\n"),
            ],
        },
    )
    record, report = h.run()
    first = h.step(record.id, "i1-s1-implement")
    assert report.status == "approved" and first.detail["winner"] == "fake"
    again = h.service.execute(record.id, follow_up="say hello to the world")
    assert again.status == "approved"
    second = h.step(record.id, "i2-s1-implement")
    assert second.detail["winner"] == "fake"
    user = Git(h.repo)
    for attempt in second.detail["attempts"]:
        assert attempt["branch"] == f"orchestrator/{record.id}-i2-{attempt['name']}"
        assert user.is_ancestor(first.commit, attempt["commit"])  # built on the first winner
    assert user.out("show", f"{again.branch}:app.py") == "def greet():\n    return 'Hello, world'"


def test_the_config_s_per_agent_cap_holds_on_the_machine(harness):
    h = harness(
        [{"task": "implement", "attempts": ["fake"] * 3, "select": ["smallest_diff"]}],
        members={m: [{"shell": "sleep 1"}, *write_app(f"'Hello {m}'")] for m in ("fake", "fake-2", "fake-3")},
        settings_extra={"limits": {"per_agent": {"fake": 1}}},
    )
    record, _ = h.run()
    active: set[str] = set()
    peak = 0
    for event in h.events:
        if type(event).__name__ == "AgentActivity" and event.step_id.startswith("i1-s1-implement-"):
            if type(event.event).__name__ == "SessionStarted":
                active.add(event.step_id)
            elif type(event.event).__name__ in ("Result", "AgentErrorEvent"):
                active.discard(event.step_id)
            peak = max(peak, len(active))
    assert peak == 1
    assert all(a["completed"] for a in h.step(record.id, "i1-s1-implement").detail["attempts"])
