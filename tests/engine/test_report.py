from __future__ import annotations

import json

import pytest

from orchestrator.engine.report import RunReport, build_report
from orchestrator.engine.report_render import format_duration, render_markdown, render_text
from orchestrator.events import GateFinished, Notice
from orchestrator.store import Store, TokenUsage

RUN = "20261121-061502-a1b2c3"
SHA1 = "1111111111aaaaaaaaaabbbbbbbbbbcccccccccc"
SHA2 = "2222222222aaaaaaaaaabbbbbbbbbbcccccccccc"

# The fields issue 4 lists for `--json`, plus task, workflow, repo, duration_s and notes.
REPORT_KEYS = {
    "run_id",
    "status",
    "stop_reason",
    "branch",
    "base",
    "iterations",
    "steps",
    "findings",
    "gates",
    "usage",
    "task",
    "workflow",
    "repo",
    "duration_s",
    "notes",
    "base_gates",  # each gate's result before any change
    "setup",  # the setup: commands, where they ran, how
    "attempts",  # best-of-N steps: the attempts side by side (issue 12)
    "reviews",  # consensus reviews: each reviewer's verdict and the clusters (issue 12)
    "subtasks",  # for_each over a plan: the subtask graph with its state (issue 12)
    "routing",  # what `agent: auto` chose, and why (issue 12)
}
STEP_KEYS = {"id", "agent", "task", "status", "commit", "files_changed", "usage", "error"}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "orchestrator.db") as opened:
        yield opened


def _step(store, step_id, iteration, index, agent, task, **finish):
    store.start_step(RUN, step_id, iteration=iteration, index=index, agent=agent, task=task)
    store.finish_step(RUN, step_id, **finish)


def two_iteration_run(store: Store, tmp_path) -> None:
    store.create_run(
        run_id=RUN,
        repo=tmp_path,
        task="Add a `greet(name)` function | with tests",
        workflow_name="default",
        workflow={},
        base="main",
        branch=f"orchestrator/{RUN}",
    )
    _step(
        store,
        "i1-s1-implement",
        1,
        1,
        "claude",
        "implement",
        status="succeeded",
        commit=SHA1,
        files_changed=["greet.py", "test_greet.py"],
        usage=TokenUsage(input_tokens=12000, output_tokens=800, cached_tokens=9000, cost_usd=0.0423),
    )
    _step(
        store,
        "i1-s2-review",
        1,
        2,
        "copilot",
        "review",
        status="succeeded",
        usage=TokenUsage(input_tokens=5000, output_tokens=300),
        detail={
            "notes": ["codex is not installed; copilot took the review"],
            "findings": [
                {"severity": "high", "file": "greet.py", "line": 3, "message": "greet(None) raises"},
                {"severity": "low", "file": None, "line": None, "message": "old finding"},
            ],
        },
    )
    store.add_event(
        RUN,
        GateFinished(
            run_id=RUN,
            step_id="i1-s3-gate",
            command="pytest -q",
            passed=False,
            exit_code=1,
            output_tail="\n".join(f"line {n}" for n in range(40)) + "\nFAILED test_greet.py::test_none",
        ),
    )
    store.add_event(
        RUN, GateFinished(run_id=RUN, step_id="i1-s4-gate", command="ruff check", passed=True, exit_code=0)
    )
    _step(
        store,
        "i1-s5-refine",
        1,
        5,
        "gemini",
        "refine",
        status="failed",
        error_kind="rate_limit",
        error_message="429 from the model API",
        usage=TokenUsage(input_tokens=100, output_tokens=0, cost_usd=0.001),
    )
    _step(
        store,
        "i2-s1-refine",
        2,
        1,
        "claude",
        "refine",
        status="succeeded",
        commit=SHA2,
        files_changed=["greet.py"],
        usage=TokenUsage(input_tokens=3000, output_tokens=200, cost_usd=0.011),
    )
    _step(
        store,
        "i2-s2-review",
        2,
        2,
        "copilot",
        "review",
        status="succeeded",
        detail={
            "findings": [
                {"severity": "medium", "file": "greet.py", "line": 7, "message": "name | None is untested"}
            ]
        },
    )
    store.add_event(
        RUN, GateFinished(run_id=RUN, step_id="i2-s3-gate", command="pytest -q", passed=True, exit_code=0)
    )
    store.add_event(RUN, Notice(run_id=RUN, level="info", text="iteration 2 starts"))
    store.add_event(
        RUN, Notice(run_id=RUN, level="warning", text="gemini was rate-limited; claude refined instead")
    )
    store.update_run_status(RUN, "not_approved", stop_reason="max_iterations", iterations=2)


def test_the_json_report_holds_exactly_the_issue_fields(store, tmp_path):
    two_iteration_run(store, tmp_path)
    report = build_report(store, RUN)
    data = json.loads(report.to_json())
    assert set(data) == REPORT_KEYS
    assert all(set(step) == STEP_KEYS for step in data["steps"])
    assert set(data["usage"]) >= {"input_tokens", "output_tokens", "cost_usd"}

    assert data["run_id"] == RUN
    assert (data["status"], data["stop_reason"]) == ("not_approved", "max_iterations")
    assert (data["branch"], data["base"], data["iterations"]) == (f"orchestrator/{RUN}", "main", 2)
    assert (data["workflow"], data["repo"]) == ("default", str(tmp_path.resolve()))
    assert [s["id"] for s in data["steps"]] == [
        "i1-s1-implement",
        "i1-s2-review",
        "i1-s5-refine",
        "i2-s1-refine",
        "i2-s2-review",
    ]
    implement = data["steps"][0]
    assert (implement["commit"], implement["files_changed"]) == (SHA1, ["greet.py", "test_greet.py"])
    assert implement["usage"] == {
        "input_tokens": 12000,
        "output_tokens": 800,
        "cached_tokens": 9000,
        "cost_usd": 0.0423,
    }
    assert implement["error"] is None
    assert data["steps"][2]["error"] == {"kind": "rate_limit", "message": "429 from the model API"}

    # The last review's findings, not the first one's.
    assert data["findings"] == [
        {"severity": "medium", "file": "greet.py", "line": 7, "message": "name | None is untested"}
    ]
    # Each gate's last result, in the order the gates first ran.
    assert [(g["command"], g["passed"], g["step_id"]) for g in data["gates"]] == [
        ("pytest -q", True, "i2-s3-gate"),
        ("ruff check", True, "i1-s4-gate"),
    ]
    assert data["usage"]["input_tokens"] == 20100
    assert data["usage"]["cost_usd"] == pytest.approx(0.0543)
    assert data["notes"] == [
        "i1-s2-review: codex is not installed; copilot took the review",
        "i1-s2-review: the cost of copilot's tokens is unknown (no price for its model)",
        "gemini was rate-limited; claude refined instead",
    ]
    assert RunReport.model_validate_json(report.to_json()) == report
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("approved", 0),
        ("not_approved", 1),
        ("failed", 1),
        ("budget_exceeded", 1),
        ("timed_out", 1),
        ("interrupted", 130),
        ("cancelled", 130),
    ],
)
def test_exit_code_is_zero_only_when_approved(store, tmp_path, status, code):
    store.create_run(
        run_id=RUN, repo=tmp_path, task="t", workflow_name="quick", workflow={}, base="main", branch="b"
    )
    store.update_run_status(RUN, status, stop_reason=status)
    assert build_report(store, RUN).exit_code == code


def test_a_running_run_reports_its_duration_so_far(store, tmp_path):
    run = store.create_run(
        run_id=RUN, repo=tmp_path, task="t", workflow_name="quick", workflow={}, base="main", branch="b"
    )
    report = build_report(store, RUN, now=run.created_at + 75.5)
    assert (report.status, report.duration_s, report.steps, report.findings, report.gates) == (
        "running",
        75.5,
        [],
        [],
        [],
    )
    assert report.usage == TokenUsage()


def test_an_interrupted_run_says_so(store, tmp_path):
    store.create_run(
        run_id=RUN, repo=tmp_path, task="t", workflow_name="quick", workflow={}, base="main", branch="b"
    )
    store.start_step(RUN, "i1-s1-implement", iteration=1, index=1, agent="claude", task="implement")
    # This process is alive, so pretend the owner is another one, long gone.
    store._conn().execute("UPDATE runs SET owner_pid = ?, owner_token = 'x' WHERE id = ?", (2**22 + 9, RUN))
    assert store.mark_interrupted_if_owner_dead() == [RUN]
    report = build_report(store, RUN)
    assert report.status == "interrupted" and report.exit_code == 130
    assert report.steps[0].status == "interrupted"
    assert report.steps[0].error is not None and "process ended" in report.steps[0].error.message
    assert any("orchestrator process" in note for note in report.notes)


def test_render_text(store, tmp_path):
    two_iteration_run(store, tmp_path)
    text = render_text(build_report(store, RUN))
    lines = text.splitlines()
    assert lines[0].startswith(f"run {RUN}: not_approved (stop: max_iterations), 2 iterations, ")
    assert lines[1] == f"branch orchestrator/{RUN} (base main)"
    implement = next(line for line in lines if "i1-s1-implement" in line)
    assert implement.split() == [
        "i1-s1-implement",
        "claude",
        "implement",
        "succeeded",
        SHA1[:8],
        "2",
        "files",
        "$0.0423",
    ]
    review = next(line for line in lines if "i1-s2-review" in line)
    assert review.split()[-1] == "n/a"
    assert "  error (rate_limit): 429 from the model API" in text
    assert "findings (last review): 1" in text
    assert "  [medium] greet.py:7 name | None is untested" in text
    assert "gate `pytest -q`: passed" in text
    assert "total: 20,100 input (9,000 cached) / 1,300 output tokens, $0.0543" in text
    assert "note: gemini was rate-limited; claude refined instead" in text


def test_render_markdown(store, tmp_path):
    two_iteration_run(store, tmp_path)
    md = render_markdown(build_report(store, RUN))
    assert md.startswith(f"## Orchestrator run `{RUN}`: not_approved\n")
    assert "| Status | **not_approved** |" in md
    assert "| Stop reason | max_iterations |" in md
    assert f"| Branch | `orchestrator/{RUN}` (base `main`) |" in md
    # A pipe in the task must not break the table; a backtick needs a wider code span elsewhere.
    assert "| Task | Add a `greet(name)` function \\| with tests |" in md
    assert f"| i1-s1-implement | claude | implement | succeeded | `{SHA1[:8]}` | 2 | $0.0423 |" in md
    assert "| i1-s2-review | copilot | review | succeeded | - | 0 | n/a |" in md
    assert "- `i1-s5-refine` failed (rate_limit): 429 from the model API" in md
    assert "| claude | 2 | 15,000 | 1,000 | $0.0533 |" in md  # the agents table adds up each agent
    assert "| copilot | 2 | 5,000 | 300 | n/a |" in md
    assert "- **medium** `greet.py:7`: name \\| None is untested" in md
    # Base and final side by side; these gates never ran on the base (no BaseGateFinished event).
    assert "| `pytest -q` | not run | passed | 0 | - |" in md
    assert "| `ruff check` | not run | passed | 0 | - |" in md
    assert "<details>" not in md  # no gate is failing at the end
    assert "20,100 input (9,000 cached) / 1,300 output tokens, $0.0543." in md
    assert "- gemini was rate-limited; claude refined instead" in md
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            # Every table row has as many cells as its header: no cell leaked a raw pipe.
            assert line.replace("\\|", "").count("|") in (3, 4, 6, 8), line


def test_render_markdown_shows_a_failing_gates_output_tail(store, tmp_path):
    store.create_run(
        run_id=RUN, repo=tmp_path, task="t", workflow_name="quick", workflow={}, base="main", branch="b"
    )
    tail = "\n".join(f"line {n}" for n in range(40))
    store.add_event(
        RUN,
        GateFinished(
            run_id=RUN, step_id="i1-s2-gate", command="pytest -q", passed=False, exit_code=1, output_tail=tail
        ),
    )
    store.update_run_status(RUN, "failed", stop_reason="step_failed", iterations=1)
    report = build_report(store, RUN)
    md = render_markdown(report)
    assert "| `pytest -q` | not run | **failed (exit 1)** | 1 | - |" in md
    assert "<summary><code>pytest -q</code> output (last lines)</summary>" in md
    assert "line 39" in md and "line 20" in md and "line 19" not in md
    assert "No step ran." in md and "### Findings (last review)\n\nNone." in md
    assert "gate `pytest -q`: FAILED (exit 1)" in render_text(report)
    assert report.gates[0].output_tail == tail  # the JSON keeps it whole


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (75, "1m15s"), (3600 * 2 + 61, "2h01m01s")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
