"""The workflow runner end to end on real git repositories, with the fake agent (a real process)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import child_env, run_command
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace.git import Git

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
CHANGES = '```json\n{"verdict": "request_changes", "findings": [{"severity": "high", "file": "app.py", "line": 1, "message": "greet() must return Hello"}]}\n```'


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "README.md").write_text("# sample\n")
    (path / "app.py").write_text("def greet():\n    return 'hi'\n")
    run_command(["git", "add", "-A"], path, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "initial"], path, check=True
    )
    return path


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        turns: list,
        steps: list,
        *,
        settings_extra: dict | None = None,
        **workflow_extra,
    ):
        self.tmp = tmp_path
        self.repo = make_repo(tmp_path / "repo")
        self.scenario = tmp_path / "scenario.yaml"
        self.scenario.write_text(yaml.safe_dump({"turns": turns}))
        self.workflow = tmp_path / "wf.yaml"
        self.workflow.write_text(yaml.safe_dump({"max_iterations": 3, **workflow_extra, "steps": steps}))
        data = {
            "agents": {
                "fake": {
                    "env": {"ORCHESTRATOR_FAKE_SCENARIO": str(self.scenario)},
                    "timeout_s": 30,
                    "idle_timeout_s": 30,
                }
            },
            "fallback_order": ["fake"],
        }
        data.update(settings_extra or {})
        self.config = tmp_path / "config.yaml"
        self.config.write_text(yaml.safe_dump(data))
        self.env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")}
        self.service = RunService(settings=settings_from_data(data), env=self.env)
        self.events: list = []

    def run(self, cancel=None, **spec):
        record = self.service.create(
            RunSpec(task="make greet() return Hello", cwd=self.repo, workflow=str(self.workflow), **spec)
        )
        report = self.service.execute(record.id, subscribers=[self.events.append], cancel=cancel)
        return record, report

    def close(self):
        self.service.close()


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(*args, **kwargs):
        h = Harness(tmp_path, *args, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


DEFAULT_STEPS = [
    {"agent": "fake", "task": "implement"},
    {"run": f"{sys.executable} check.py", "name": "check"},
    {"agent": "fake", "task": "review"},
    {"agent": "fake", "task": "refine"},
]


def test_review_requests_changes_refine_fixes_second_review_approves(harness):
    check = "import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\n"
    h = harness(
        [
            {"write_file": {"path": "check.py", "content": check}},
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hi'\n"}},
            {"text": "implemented"},
            {"text": CHANGES},  # review 1
            {"edit_file": {"path": "app.py", "old": "'Hi'", "new": "'Hello'"}},
            {"text": "refined"},
            {"text": APPROVE},  # review 2
        ],
        DEFAULT_STEPS,
    )
    before = snapshot_checkout(h.repo)
    record, report = h.run()
    assert report.status == "approved" and report.stop_reason == "approved" and report.exit_code == 0
    assert report.iterations == 2
    statuses = [(s.id, s.status) for s in report.steps]
    assert statuses == [
        ("i1-s1-implement", "succeeded"),
        ("i1-s2-gate", "failed"),
        ("i1-s3-review", "succeeded"),
        ("i1-s4-refine", "succeeded"),
        ("i2-s2-gate", "succeeded"),
        ("i2-s3-review", "succeeded"),
    ]
    # One commit per editing step, each naming run, step and agent.
    log = h.service.workspace(record.id).log()
    assert [c.step_id for c in log] == ["i1-s1-implement", "i1-s4-refine"]
    assert all(c.trailers["Orchestrator-Run"] == record.id and c.agent == "fake" for c in log)
    assert report.findings == [] and [g.passed for g in report.gates] == [True]
    assert report.usage.input_tokens > 0 and report.usage.cost_usd is not None
    assert snapshot_checkout(h.repo) == before
    # The refine step's prompt carried the findings and the failing gate's output, never transcripts.
    started = [e for e in h.events if e.type == "step_started"]
    assert [e.step_id for e in started][0] == "i1-s1-implement"


def test_repeated_findings_stop_as_no_progress(harness):
    h = harness(
        [{"text": "impl"}, {"text": CHANGES}, {"text": "refine tried"}, {"text": CHANGES}],
        [
            {"agent": "fake", "task": "implement"},
            {"agent": "fake", "task": "review"},
            {"agent": "fake", "task": "refine"},
        ],
    )
    _, report = h.run()
    assert report.status == "not_approved" and report.stop_reason == "no_progress" and report.exit_code == 1
    assert len(report.findings) == 1 and "Hello" in report.findings[0].message


def test_max_iterations(harness):
    other = CHANGES.replace("must return Hello", "still wrong")
    h = harness(
        [{"text": "impl"}, {"text": CHANGES}, {"text": "r"}, {"text": other}],
        [
            {"agent": "fake", "task": "implement"},
            {"agent": "fake", "task": "review"},
            {"agent": "fake", "task": "refine"},
        ],
        max_iterations=2,
    )
    _, report = h.run()
    assert report.stop_reason == "max_iterations" and report.iterations == 2


def test_budget_stops_the_run(harness):
    h = harness(
        [{"write_file": {"path": "a.txt", "content": "a"}}, {"text": "impl"}, {"text": CHANGES}],
        [
            {"agent": "fake", "task": "implement"},
            {"agent": "fake", "task": "review"},
            {"agent": "fake", "task": "refine"},
        ],
    )
    _, report = h.run(budget_usd=0.0001)
    assert report.status == "budget_exceeded" and report.exit_code == 1
    assert report.usage.cost_usd >= 0.0001
    assert [s.id for s in report.steps] == ["i1-s1-implement"]


def test_review_without_json_is_asked_once_more(harness):
    h = harness(
        [{"text": "impl"}, {"text": "I think it is fine."}, {"text": APPROVE}],
        [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
    )
    _, report = h.run()
    assert report.status == "approved"


def test_review_without_json_twice_counts_as_one_finding(harness):
    h = harness(
        [
            {"text": "impl"},
            {"text": "The naming is odd."},
            {"text": "Still no JSON."},
            {"text": "refined"},
            {"text": "x"},
            {"text": "y"},
        ],
        [
            {"agent": "fake", "task": "implement"},
            {"agent": "fake", "task": "review"},
            {"agent": "fake", "task": "refine"},
        ],
        max_iterations=1,
    )
    _, report = h.run()
    assert report.status == "not_approved"
    assert len(report.findings) == 1 and "The naming is odd." in report.findings[0].message


def test_a_reviewer_that_edits_has_its_edits_undone_and_recorded(harness):
    h = harness(
        [{"text": "impl"}, {"write_file": {"path": "sneaky.txt", "content": "x"}}, {"text": APPROVE}],
        [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
        # A misbehaving reviewer: the fake ignores read-only when told --permission edit last.
        settings_extra={"agents": {"fake": {"env": {}, "args": ["--permission", "edit"]}}},
    )
    h.service.settings.agents["fake"].env["ORCHESTRATOR_FAKE_SCENARIO"] = str(h.scenario)
    record, report = h.run()
    ws = h.service.workspace(record.id)
    assert not (ws.worktree / "sneaky.txt").exists()
    assert "sneaky.txt" not in ws.changed_files()
    assert any("sneaky.txt" in note and "undone" in note for note in report.notes)
    assert any(ref.split("/")[-1].startswith("undone") for ref in ws.backups())


def test_an_agent_that_is_not_ready_falls_back(harness):
    h = harness(
        [{"write_file": {"path": "a.txt", "content": "a"}}, {"text": "impl"}, {"text": APPROVE}],
        [{"agent": "claude", "task": "implement"}, {"agent": "fake", "task": "review"}],
        settings_extra={"agents": {"claude": {"command": "/nonexistent/claude"}, "fake": {"env": {}}}},
    )
    h.service.settings.agents["fake"].env["ORCHESTRATOR_FAKE_SCENARIO"] = str(h.scenario)
    _, report = h.run()
    assert report.status == "approved"
    assert report.steps[0].agent == "fake"
    assert any("claude is not ready" in note and "fake takes the step" in note for note in report.notes)


def test_run_timeout_ends_a_hung_agent_and_keeps_the_checkout(harness):
    h = harness([{"hang": None}], [{"agent": "fake", "task": "implement"}])
    before = snapshot_checkout(h.repo)
    start = time.monotonic()
    _, report = h.run(timeout_s=2)
    assert report.status in {"timed_out", "failed"} and report.exit_code == 1
    assert time.monotonic() - start < 2 + 8
    assert snapshot_checkout(h.repo) == before


def test_failed_step_fails_the_run_and_keeps_the_checkout(harness):
    h = harness([{"error": 500}], [{"agent": "fake", "task": "implement"}])
    (h.repo / "dirty.txt").write_text("user's own work\n")
    run_command(["git", "stash", "push", "-u", "-q", "-m", "saved"], h.repo, check=True)
    (h.repo / "app.py").write_text("user edit\n")
    run_command(["git", "add", "app.py"], h.repo, check=True)
    before = snapshot_checkout(h.repo)
    _, report = h.run()
    assert report.status == "failed" and report.stop_reason == "step_failed"
    assert snapshot_checkout(h.repo) == before


def test_include_uncommitted_becomes_the_first_commit(harness):
    h = harness(
        [{"text": "impl"}, {"text": APPROVE}],
        [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
    )
    (h.repo / "app.py").write_text("def greet():\n    return 'draft'\n")
    (h.repo / "new.txt").write_text("untracked\n")
    before = snapshot_checkout(h.repo)
    record, report = h.run(include_uncommitted=True)
    ws = h.service.workspace(record.id)
    assert (ws.worktree / "new.txt").read_text() == "untracked\n"
    assert "draft" in (ws.worktree / "app.py").read_text()
    assert snapshot_checkout(h.repo) == before


def test_cancel_during_a_step(harness):
    h = harness([{"hang": None}], [{"agent": "fake", "task": "implement"}])
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    record, report = h.run(cancel=cancel)
    assert report.status == "cancelled" and report.exit_code == 130
    assert h.service.workspace(record.id).has_worktree()


def test_follow_up_is_a_new_iteration_resuming_the_implementer(harness):
    h = harness(
        [
            {"write_file": {"path": "a.txt", "content": "a"}},
            {"text": "impl"},
            {"text": APPROVE},
            {"write_file": {"path": "b.txt", "content": "b"}},
            {"text": "followed up"},
            {"text": APPROVE},
        ],
        [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
    )
    record, first = h.run()
    assert first.status == "approved"
    second = h.service.execute(record.id, follow_up="also add b.txt")
    assert second.status == "approved" and second.iterations == 2
    ids = [s.id for s in second.steps]
    assert ids[-2:] == ["i2-s1-implement", "i2-s2-review"]
    steps = h.service.store.steps(record.id)
    assert steps[2].session_id == steps[0].session_id  # the implementer's CLI session was resumed
    log = h.service.workspace(record.id).log()
    assert [c.step_id for c in log] == ["i1-s1-implement", "i2-s1-implement"]


def test_sigkill_mid_run_then_resume_finishes(tmp_path):
    """Kill the orchestrator process with SIGKILL during a step: the checkout is untouched, the run shows
    interrupted, and `runs resume` goes on from the last completed step."""
    repo = make_repo(tmp_path / "repo")
    scenario = tmp_path / "scenario.yaml"
    # In the agent's TMPDIR: under the sandbox, the one place outside the run's repository it may write.
    markers = tmp_path / "state" / "runs"
    scenario.write_text(
        yaml.safe_dump(
            {
                "turns": [
                    {"write_file": {"path": "a.txt", "content": "a"}},
                    {"text": "impl"},
                    {
                        "shell": 'touch "$TMPDIR/reached" && sleep 60'
                    },  # the review step hangs here; we kill during it
                    {"text": APPROVE},
                ]
            }
        )
    )
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {"steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]}
        )
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agents": {
                    "fake": {
                        "env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)},
                        "args": ["--permission", "edit"],
                    }
                }
            }
        )
    )
    env = child_env(os.environ, {"ORCHESTRATOR_HOME": str(tmp_path / "state")})
    before = snapshot_checkout(repo)
    argv = [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        "add a",
        "--repo",
        str(repo),
        "--workflow",
        str(workflow),
        "--config",
        str(config),
    ]

    def kill_when_reached(stream, line):
        pass

    killer_started = threading.Event()

    def killer(pid_box):
        killer_started.set()
        deadline = time.monotonic() + 60
        while not list(markers.glob("*/agents/fake/tmp/reached")) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(pid_box["pid"], signal.SIGKILL)

    # Start the orchestrator; kill it (the process only, like a crash) once the review step is running.
    import subprocess

    proc = subprocess.Popen(
        argv,
        cwd=str(repo),
        env={**env, "ORCHESTRATOR_PARENT_PID": str(os.getpid())},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    box = {"pid": proc.pid}
    threading.Thread(target=killer, args=(box,), daemon=True).start()
    assert proc.wait(timeout=90) == -signal.SIGKILL
    assert snapshot_checkout(repo) == before
    # The agent is ended by its supervisor when the orchestrator dies (proc_shim), or now.
    from orchestrator.proc import kill_leftovers

    time.sleep(0.5)
    kill_leftovers()
    listed = run_command(
        [sys.executable, "-m", "orchestrator", "runs", "list", "--json", "--all"], repo, env=env
    )
    runs = json.loads(listed.stdout)
    assert runs[0]["status"] == "interrupted"
    resumed = run_command(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "runs",
            "resume",
            runs[0]["id"],
            "--json",
            "--config",
            str(config),
        ],
        repo,
        env=env,
        timeout_s=120,
    )
    report = json.loads(resumed.stdout)
    assert resumed.returncode == 0, resumed.stderr
    assert report["status"] == "approved"
    review_steps = [s for s in report["steps"] if s["id"] == "i1-s2-review"]
    assert review_steps and review_steps[0]["status"] == "succeeded"
    assert snapshot_checkout(repo) == before
    assert Git(repo).out("show", f"{report['branch']}:a.txt") == "a"


def test_what_a_gate_leaves_behind_never_reaches_a_commit(harness):
    gate = f"{sys.executable} -c \"open('gate-output.log', 'w').write('x')\""
    h = harness(
        [{"write_file": {"path": "a.txt", "content": "a"}}, {"text": "impl"}, {"text": APPROVE}],
        [
            {"agent": "fake", "task": "implement"},
            {"run": gate, "name": "writes a file"},
            {"agent": "fake", "task": "review"},
        ],
    )
    record, report = h.run()
    assert report.status == "approved"
    ws = h.service.workspace(record.id)
    assert "gate-output.log" not in ws.changed_files()
    assert any("gate-output.log" in note and "removed" in note for note in report.notes)


def test_a_run_no_agent_can_start_is_refused_before_anything_is_created(harness):
    from orchestrator.errors import UsageError

    h = harness(
        [{"text": "x"}],
        [{"agent": "claude", "task": "implement"}, {"agent": "fake", "task": "review"}],
        settings_extra={
            "agents": {"claude": {"command": "/nonexistent/claude"}},
            "fallback_order": ["codex"],
        },
    )
    before = snapshot_checkout(h.repo)
    with pytest.raises(UsageError) as info:
        h.run()
    assert info.value.exit_code == 2
    assert "implement (claude): claude is not installed" in str(info.value)
    assert "orchestrator agents" in (info.value.hint or "")
    assert snapshot_checkout(h.repo) == before
    assert "orchestrator/" not in run_command(["git", "branch", "--list"], h.repo).stdout
