"""The shell without a terminal: parsing and completion (pure), the progress view's lines, and the
session's dispatch against a real RunService on a real repository with the fake agent."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.shell.commands import (
    NAMES,
    Command,
    Invalid,
    Message,
    completions,
    help_text,
    parse_input,
)
from orchestrator.cli.shell.progress import (
    ProgressView,
    StepProgress,
    first_line,
    format_progress,
    format_summary,
    wants_plain_view,
)
from orchestrator.cli.shell.session import ShellSession, short_run_id
from orchestrator.cli.worker import run_interruptible
from orchestrator.config import LoadedSettings, settings_from_data
from orchestrator.engine.report import RunReport
from orchestrator.engine.service import RunService
from orchestrator.events import (
    AgentActivity,
    AssistantMessage,
    Notice,
    StepFinished,
    StepStarted,
    ToolUse,
    Usage,
)
from orchestrator.store import TokenUsage
from orchestrator.testing.cluster import make_repo
from orchestrator.workspace.git import Git

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'

# --- parsing ------------------------------------------------------------------------------------------


def test_plain_text_is_a_message_and_blank_is_nothing():
    assert parse_input("  make greet() say Hello  ") == Message("make greet() say Hello")
    assert parse_input("   ") is None
    assert parse_input("//etc/hosts is wrong") == Message("/etc/hosts is wrong")


def test_commands_parse_with_their_arguments():
    assert parse_input("/help") == Command("/help")
    assert parse_input("/STATUS") == Command("/status")
    assert parse_input("/quit") == Command("/exit")
    assert parse_input("/workflow quick") == Command("/workflow", ("quick",))
    assert parse_input("/new fix the   bug") == Command("/new", ("fix the   bug",))
    assert parse_input("/new") == Command("/new")
    assert parse_input("/agent review=codex") == Command("/agent", ("review=codex",))
    assert parse_input("/agent clear") == Command("/agent", ("clear",))


def test_unknown_command_lists_the_valid_ones_and_guesses():
    parsed = parse_input("/stauts")
    assert isinstance(parsed, Invalid)
    assert "unknown command /stauts" in parsed.error and "did you mean /status?" in parsed.error
    assert all(name in parsed.hint for name in NAMES)


@pytest.mark.parametrize(
    ("line", "error", "hint"),
    [
        ("/diff HEAD", "/diff takes no arguments", "usage: /diff"),
        ("/workflow a b", "/workflow takes at most 1 argument", "usage: /workflow [NAME]"),
        ("/agent review", "/agent 'review' is not TASK=AGENT", "tasks: implement, review"),
        ("/agent review=nobody", "unknown agent 'nobody'", "agents: claude, codex"),
        ("/agent lint=codex", "unknown task 'lint'", "/agent clear"),
    ],
)
def test_bad_arguments_say_what_is_valid(line, error, hint):
    parsed = parse_input(line)
    assert isinstance(parsed, Invalid)
    assert error in parsed.error and hint in parsed.hint


def test_help_names_every_command():
    text = help_text()
    assert all(name in text for name in NAMES)
    assert "Ctrl-C" in text and "Ctrl-D" in text


def test_completions():
    assert completions("/wor", "/wor") == ["/workflow "]
    assert completions("/", "/") == [name + " " for name in NAMES]
    assert completions("/workflow q", "q", workflows=["default", "quick"]) == ["quick"]
    assert completions("/agent rev", "rev") == ["review="]
    assert completions("/agent re", "re") == ["review=", "refine="]
    assert completions("/agent review=c", "review=c") == ["review=claude", "review=codex", "review=copilot"]
    assert completions("fix the", "the") == []
    assert completions("/diff x", "x") == []


# --- the progress view ----------------------------------------------------------------------------------


def test_step_progress_counts_usage_like_the_store_and_tracks_activity():
    step = StepProgress("i1-s1-implement", "claude", "implement", started=100.0)
    assert step.activity == "thinking"
    step.apply(Usage(input_tokens=100, output_tokens=10, cost_usd=0.001, scope="delta"))
    step.apply(Usage(input_tokens=50, output_tokens=5, cost_usd=0.0005, scope="delta"))
    assert (step.usage.input_tokens, step.usage.output_tokens) == (150, 15)
    step.apply(Usage(input_tokens=1000, output_tokens=200, cost_usd=0.01, scope="total"))
    assert step.usage == TokenUsage(input_tokens=1000, output_tokens=200, cost_usd=0.01)
    assert step.apply(ToolUse(tool="Edit", action="file_edit", path="src/app.py")) is True
    assert format_progress(step, now=103.25) == (
        "i1-s1-implement · claude · 3.2s · 1,000 in / 200 out · $0.0100 · editing src/app.py"
    )
    step.apply(ToolUse(tool="Bash", action="command_run", command="pytest -q"))
    assert format_progress(step, now=190.0).endswith(
        "1m30s · 1,000 in / 200 out · $0.0100 · running pytest -q"
    )


def _report(**changes) -> RunReport:
    data = dict(
        run_id="20261121-061502-a1b2c3",
        status="approved",
        stop_reason="approved",
        branch="orchestrator/20261121-061502-a1b2c3",
        base="HEAD",
        iterations=2,
        steps=[],
        findings=[],
        gates=[],
        usage=TokenUsage(input_tokens=10, output_tokens=5, cost_usd=0.0021),
        task="t",
        workflow="default",
        repo="/r",
        duration_s=1.0,
        notes=[],
    )
    data.update(changes)
    return RunReport(**data)


def test_summary_line():
    assert format_summary(_report()) == (
        "approved · branch orchestrator/20261121-061502-a1b2c3 · 2 iterations · $0.0021"
    )
    line = format_summary(
        _report(status="not_approved", stop_reason="max_iterations", iterations=1, usage=TokenUsage())
    )
    assert (
        line
        == "not_approved (max_iterations) · branch orchestrator/20261121-061502-a1b2c3 · 1 iteration · n/a"
    )


def test_first_line_and_short_run_id():
    assert first_line("  done.\nmore") == "done. …"
    assert first_line("x" * 200, limit=5) == "xxxxx …"
    assert first_line("\n\n") == ""
    assert short_run_id("20261121-061502-a1b2c3") == "061502-a1b2"
    assert short_run_id("my-own-run-id-that-is-long") == "my-own-run-i"


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_plain_view_when_not_a_capable_terminal():
    tty = _Stream(True)
    assert wants_plain_view({"TERM": "xterm-256color"}, tty) is False
    assert wants_plain_view({"TERM": "xterm-256color", "NO_COLOR": "1"}, tty) is True
    assert wants_plain_view({"TERM": "dumb"}, tty) is True
    assert wants_plain_view({"TERM": "xterm", "CI": "true"}, tty) is True
    assert wants_plain_view({"TERM": "xterm"}, _Stream(False)) is True


def test_plain_view_prints_a_line_per_step_event_and_activity():
    out = io.StringIO()
    now = [10.0]
    view = ProgressView(out, plain=True, clock=lambda: now[0])
    rid, sid = "r", "i1-s1-implement"

    def agent(event):
        view.event(AgentActivity(run_id=rid, step_id=sid, agent="fake", event=event))

    view.start()
    view.event(StepStarted(run_id=rid, step_id=sid, agent="fake", task="implement", iteration=1))
    agent(Usage(input_tokens=120, output_tokens=7, cost_usd=0.0001, scope="delta"))
    now[0] = 11.5
    agent(ToolUse(tool="fake", action="file_edit", path="a.txt"))
    agent(ToolUse(tool="fake", action="file_edit", path="a.txt"))  # the same activity: no new line
    agent(AssistantMessage(text="implemented a\nwith care"))
    now[0] = 12.0
    view.event(
        StepFinished(
            run_id=rid,
            step_id=sid,
            agent="fake",
            status="succeeded",
            commit="abcdef1234567",
            files_changed=["a.txt"],
        )
    )
    view.event(Notice(run_id=rid, level="warning", text="claude is not ready"))
    view.stop()
    assert out.getvalue().splitlines() == [
        "i1-s1-implement: implement by fake (iteration 1)",
        "  i1-s1-implement · fake · 1.5s · 120 in / 7 out · $0.0001 · editing a.txt",
        "  fake: implemented a …",
        "i1-s1-implement succeeded · fake · 2.0s · 120 in / 7 out · $0.0001 · commit abcdef1234 (1 file)",
        "note: claude is not ready",
    ]


def test_run_interruptible_cancels_on_ctrl_c_and_waits_for_the_work():
    calls = []

    def work(cancel: threading.Event) -> str:
        assert cancel.wait(10), "never cancelled"
        time.sleep(0.3)  # winding down, like a step's process group being ended
        return "wound down"

    threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT)).start()
    result, cancelled = run_interruptible(work, calls.append)
    assert (result, cancelled, calls) == ("wound down", True, [True])


def test_run_interruptible_hands_the_work_error_to_the_caller():
    def work(cancel: threading.Event) -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_interruptible(work, lambda first: None)


# --- the session's dispatch, on a real repository -------------------------------------------------------


@pytest.fixture
def session(tmp_path):
    repo = make_repo(tmp_path / "repo")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "turns": [
                    {"write_file": {"path": "a.txt", "content": "a\n"}},
                    {"text": "implemented a"},
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
    data = {
        "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}},
        "fallback_order": ["fake"],
    }
    settings = settings_from_data(data)
    service = RunService(settings=settings, env={**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")})
    out = io.StringIO()
    made = ShellSession(
        service=service,
        loaded=LoadedSettings(settings, None),
        cwd=repo,
        repo=repo,
        workflow_spec=str(workflow),
        out=out,
        plain=True,
    )
    yield made
    service.close()


def said(session: ShellSession, line: str) -> str:
    out = session.out
    start = len(out.getvalue())
    assert session.handle(parse_input(line)) is True
    return out.getvalue()[start:]


def test_commands_that_need_a_run_say_how_to_start_one(session):
    assert session.prompt() == "orchestrator[wf]> "
    assert "no run yet: type a task to start one" in said(session, "/status")
    for line in ("/diff", "/log", "/undo", "/merge", "/discard", "/cost"):
        assert "error: there is no current run\n  hint: type a task to start one" in said(session, line)
    assert "unknown command /nope" in said(session, "/nope")
    assert session.handle(parse_input("/exit")) is False


def test_workflow_and_agent_choices_are_checked_against_each_other(session):
    assert "default" in said(session, "/workflow")
    assert "review by fake from the next new run on" in said(session, "/agent review=fake")
    assert "agents for the next new run: review=fake" in said(session, "/agent")
    # `quick` has no review step, so the override cannot apply: refused, and nothing changes.
    text = said(session, "/workflow quick")
    assert "workflow 'quick' has no 'review' step" in text and session.workflow_name == "wf"
    said(session, "/agent clear")
    assert "workflow quick: implement (claude)" in said(session, "/workflow quick")
    assert session.prompt() == "orchestrator[quick]> "
    assert "no workflow named 'nope'" in said(session, "/workflow nope")


def test_a_task_then_log_cost_undo_and_discard(session):
    text = said(session, "add a.txt")
    assert "approved · branch orchestrator/" in text and "· 1 iteration ·" in text
    run = session.service.store.get_run(session.run_id)
    assert session.prompt() == f"orchestrator[wf {short_run_id(run.id)}]> "
    assert "i1-s1-implement    fake     implement by fake" in said(session, "/log")
    cost = said(session, "/cost")
    assert "per step:\n  i1-s1-implement" in cost and "per agent:\n  fake" in cost and "total: " in cost
    assert f"* {run.id}  approved" in said(session, "/runs")
    git = Git(Path(run.repo))
    base = git.out("rev-parse", "main")
    text = said(session, "/undo")
    assert "undid i1-s1-implement by fake (commit " in text and f"{run.branch} is now at base" in text
    assert git.out("rev-parse", f"refs/heads/{run.branch}") == base
    assert "error: run " in said(session, "/undo")  # nothing left to undo
    text = said(session, "/discard")
    assert f"discarded {run.branch}" in text and session.run_id is None
    assert git.rev_parse(f"refs/heads/{run.branch}") is None


def test_merge_refuses_over_uncommitted_changes_then_merges(session):
    said(session, "add a.txt")
    repo = Path(session.service.store.get_run(session.run_id).repo)
    (repo / "a.txt").write_text("mine\n")  # the user's own untracked a.txt is in the way
    text = said(session, "/merge")
    assert text.startswith("error: ") and "a.txt" in text and "hint: " in text
    (repo / "a.txt").unlink()
    assert "into main (fast-forward, 1 file)" in said(session, "/merge")
    assert (repo / "a.txt").read_text() == "a\n"
    run_id = session.run_id
    text = said(session, "/new")
    assert f"left run {run_id}" in text and "your next message starts a new run with workflow wf" in text
    assert session.run_id is None and session.prompt() == "orchestrator[wf]> "


def test_history_file_is_loaded_appended_and_bounded(tmp_path):
    import readline

    from orchestrator.cli.shell.line_editing import HISTORY_LENGTH, LineEditor

    history = tmp_path / "state" / "shell_history"
    history.parent.mkdir()
    history.write_text("".join(f"task {n}\n" for n in range(HISTORY_LENGTH + 200)))
    editor = LineEditor(history, lambda buffer, text: [])
    try:
        count = readline.get_current_history_length()
        assert readline.get_history_item(count) == f"task {HISTORY_LENGTH + 199}"  # Up recalls it
        readline.add_history("/status")  # what input() does for a typed line
        editor.remember("/status")
        assert history.read_text().splitlines()[-1] == "/status"  # on disk at once
    finally:
        editor.close()
        readline.clear_history()
    lines = history.read_text().splitlines()
    assert len(lines) == HISTORY_LENGTH and lines[-2:] == [f"task {HISTORY_LENGTH + 199}", "/status"]


def test_agents_lists_every_cli_and_the_fallbacks(session):
    text = said(session, "/agents")
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert set(rows) == {"claude", "codex", "gemini", "copilot", "fake"}
    assert " ready " in rows["fake"]
    assert all(" ready " in row or " not ready " in row for row in rows.values())
