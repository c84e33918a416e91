"""Conformance of the copilot adapter with the real GitHub Copilot CLI, against the scripted model server
(bring-your-own-key mode, OpenAI Chat Completions).

Set ORCHESTRATOR_RECORD_TRANSCRIPTS=1 to refresh tests/fixtures/transcripts/copilot/ from these runs
(paths rewritten to /home/dev); tests/adapters/test_copilot.py parses those recordings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.adapters.copilot import OTEL_FILE, USAGE_FILE, CopilotAdapter
from orchestrator.cli.run_agent_cmd import agent_run_dir
from orchestrator.events import ToolUse

pytestmark = pytest.mark.real

AGENT = "copilot"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts" / "copilot"


def _neutral(text: str, run, tmp_path: Path) -> str:
    for real, neutral in (
        (str(run.cwd), "/home/dev/repo"),
        (str(tmp_path / "home"), "/home/dev"),
        (os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "/home/dev/.cache"),
    ):
        text = text.replace(real, neutral)
    text = text.replace(str(tmp_path), "/tmp/run")
    # Streamed tool-call deltas split a path in two; the first half names only the test's folder.
    return text.replace(str(tmp_path.parent), "/tmp")


def record(name: str, run, tmp_path: Path, monkeypatch) -> None:
    """Keep a real transcript (and the files `finish` reads) as parser fixtures, paths made neutral."""
    if os.environ.get("ORCHESTRATOR_RECORD_TRANSCRIPTS") != "1":
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.jsonl").write_text(
        _neutral("\n".join(run.transcript) + "\n", run, tmp_path), encoding="utf-8"
    )
    stderr = run.transcript_path.with_name(run.transcript_path.name + ".stderr")
    if stderr.exists() and stderr.read_text(encoding="utf-8").strip():
        text = _neutral(stderr.read_text(encoding="utf-8"), run, tmp_path)
        (FIXTURES / f"{name}.stderr.txt").write_text(text, encoding="utf-8")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "orchestrator-state"))
    run_dir = agent_run_dir(AGENT, run.cwd.resolve())
    for source, suffix in ((USAGE_FILE, "usage.json"), (OTEL_FILE, "otel.jsonl")):
        path = run_dir / source
        if path.exists() and path.read_text(encoding="utf-8").strip():
            text = _neutral(path.read_text(encoding="utf-8"), run, tmp_path)
            (FIXTURES / f"{name}.{suffix}").write_text(text, encoding="utf-8")


def events_of(run) -> list:
    adapter = CopilotAdapter()
    return [event for line in run.transcript for event in adapter.parse_line(line)]


def report(name: str, run) -> None:
    print(f"{name}: {run.duration_s:.2f} s, first CLI output after {run.data.get('first_output_s')} s")


def test_write_file(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server([{"write_file": {"path": "hello.txt", "content": "hi\n"}}, {"text": "done"}])
    run = run_agent(AGENT, "Create hello.txt saying hi.", server=server, timeout_s=60)
    record("write_file", run, tmp_path, monkeypatch)
    report("write_file", run)

    assert run.data["status"] == "succeeded", run.data
    assert run.exit_code == 0
    assert (run.cwd / "hello.txt").read_text() == "hi\n"
    assert run.data["files_changed"] == ["hello.txt"]
    assert run.data["final_text"] == "done"
    assert run.data["session_id"]
    # Two model calls of 123 in / 7 out tokens each; Copilot reports no dollars, so they are priced.
    assert run.data["usage"]["input_tokens"] == 246
    assert run.data["usage"]["output_tokens"] == 14
    assert run.data["usage"]["cost_usd"] == pytest.approx(246e-6 + 14 * 2e-6)
    edits = [e for e in events_of(run) if isinstance(e, ToolUse) and e.action == "file_edit"]
    assert [e.status for e in edits] == ["started", "succeeded"]
    assert edits[0].tool == "create"
    assert edits[0].path == str(run.cwd / "hello.txt")
    assert len(server.main_requests("openai_chat")) == 2


def test_follow_up_resumes_the_session(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server(
        [
            {"write_file": {"path": "notes.txt", "content": "first\n"}},
            {"text": "first done"},
            {"text": "second done"},
        ]
    )
    first = run_agent(AGENT, "Write notes.txt.", server=server, timeout_s=60)
    assert first.data["status"] == "succeeded", first.data
    session = first.data["session_id"]

    second = run_agent(AGENT, "Now summarise.", server=server, cwd=first.cwd, resume=session, timeout_s=60)
    record("resume", second, tmp_path, monkeypatch)
    report("resume", second)

    assert second.data["status"] == "succeeded", second.data
    assert second.data["final_text"] == "second done"
    assert second.data["session_id"] == session  # the CLI's own resume keeps the id
    # This run's usage only (one call), although Copilot's usage report counts the whole session.
    assert second.data["usage"]["input_tokens"] == 123
    assert second.data["usage"]["output_tokens"] == 7
    history = json.dumps(server.main_requests("openai_chat")[-1].body["messages"])
    assert "Write notes.txt." in history
    assert "first done" in history
    assert str(first.cwd / "notes.txt") in history
    assert "Now summarise." in history


def test_shell_command_runs(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server([{"shell": "mkdir -p out && echo ran > out/shell.txt"}, {"text": "ran it"}])
    run = run_agent(AGENT, "Run the command.", server=server, timeout_s=60)
    record("shell", run, tmp_path, monkeypatch)
    report("shell", run)

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "out" / "shell.txt").read_text() == "ran\n"
    commands = [e for e in events_of(run) if isinstance(e, ToolUse) and e.action == "command_run"]
    assert commands[0].command == "mkdir -p out && echo ran > out/shell.txt"
    assert [e.status for e in commands] == ["started", "succeeded"]


def test_read_only_refuses_edits(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server([{"write_file": {"path": "review.txt", "content": "nope\n"}}, {"text": "reviewed"}])
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    record("read_only_refused", run, tmp_path, monkeypatch)
    report("read_only", run)

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "refused", run.data
    assert "review.txt" in run.data["error"]["message"]
    assert not (run.cwd / "review.txt").exists()
    assert run.data["files_changed"] == []
    assert run.exit_code == 1
    # The CLI itself exited 0: only the denial says the work was not done.
    assert json.loads(run.transcript[-1])["exitCode"] == 0


def test_read_only_allows_reading_commands_and_refuses_writing_ones(
    model_server, run_agent, tmp_path, monkeypatch
):
    server = model_server(
        [{"shell": "git status --short"}, {"shell": "echo x > written.txt"}, {"text": "reviewed"}]
    )
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    record("read_only_command_refused", run, tmp_path, monkeypatch)
    report("read_only_commands", run)

    commands = [e for e in events_of(run) if isinstance(e, ToolUse) and e.action == "command_run"]
    assert [e.status for e in commands] == ["started", "succeeded", "started", "refused"]
    assert not (run.cwd / "written.txt").exists()
    assert run.data["error"]["kind"] == "refused", run.data
    assert "echo x > written.txt" in run.data["error"]["message"]


def test_http_401_is_auth(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server(
        [{"error": {"status": 401, "message": "Incorrect API key provided"}, "times": "always"}]
    )
    run = run_agent(AGENT, "Do something.", server=server, timeout_s=60)
    record("http_401", run, tmp_path, monkeypatch)
    report("http_401", run)

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "auth", run.data
    assert "COPILOT_PROVIDER_API_KEY" in run.data["error"]["message"]
    assert run.duration_s < 15


def test_http_429_is_rate_limit(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server(
        [{"error": {"status": 429, "message": "Rate limit reached", "retry_after": 1}, "times": "always"}]
    )
    run = run_agent(AGENT, "Do something.", server=server, timeout_s=60)
    record("http_429", run, tmp_path, monkeypatch)
    report("http_429", run)

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "rate_limit", run.data
    assert run.duration_s < 15
    # Copilot honours Retry-After: five retries a second apart, then it gives up.
    assert len(server.main_requests("openai_chat")) == 6


def test_http_500_fails_within_the_limit(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server([{"error": {"status": 500, "message": "scripted outage"}, "times": "always"}])
    limit = 25
    run = run_agent(AGENT, "Do something.", server=server, timeout_s=limit)
    record("http_500", run, tmp_path, monkeypatch)
    report("http_500", run)

    assert run.data["status"] == "failed"
    # Copilot retries a 500 five times with backoff (about 17 s; no setting shortens it), then gives up;
    # on a slow machine our wall-clock limit may end it first.
    assert run.data["error"]["kind"] in {"other", "timeout"}, run.data
    if run.data["error"]["kind"] == "other":
        assert "500" in run.data["error"]["message"]
    assert run.duration_s < limit + 5


def test_hang_ends_as_idle(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server([{"hang": None}])
    run = run_agent(AGENT, "Do something.", server=server, timeout_s=20, idle_timeout_s=4)
    record("hang_idle", run, tmp_path, monkeypatch)
    report("hang", run)

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] in {"idle", "timeout"}, run.data
    assert run.duration_s < 4 + 5


def test_missing_login_is_auth(model_server, run_agent, tmp_path, monkeypatch):
    server = model_server([{"text": "never asked"}])
    # No model provider and no GitHub token or login in the fresh HOME.
    no_provider = {"env": {"COPILOT_PROVIDER_BASE_URL": "", "COPILOT_OFFLINE": "false"}}
    run = run_agent(
        AGENT, "Do something.", server=server, timeout_s=30, extra_config={"agents": {AGENT: no_provider}}
    )
    record("not_logged_in", run, tmp_path, monkeypatch)
    report("not_logged_in", run)

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "auth", run.data
    assert "No authentication information found" in run.data["error"]["message"]
    assert server.requests == []
    assert run.duration_s < 15
