"""Conformance of the copilot adapter with the real GitHub Copilot CLI, against the scripted model server
(bring-your-own-key mode, OpenAI Chat Completions).

Set ORCHESTRATOR_RECORD_TRANSCRIPTS=1 to refresh tests/fixtures/transcripts/copilot/ from these runs
(paths rewritten to /home/dev); tests/adapters/test_copilot.py parses those recordings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.adapters.copilot import OTEL_FILE, USAGE_FILE
from orchestrator.events import ToolUse

pytestmark = pytest.mark.real

AGENT = "copilot"


def finish_files(run) -> dict[str, Path]:
    """The files copilot's `finish` reads, recorded beside the transcript."""
    return {"usage.json": run.run_dir / USAGE_FILE, "otel.jsonl": run.run_dir / OTEL_FILE}


def test_write_file(model_server, run_agent, tmp_path):
    server = model_server([{"write_file": {"path": "hello.txt", "content": "hi\n"}}, {"text": "done"}])
    run = run_agent(AGENT, "Create hello.txt saying hi.", server=server, timeout_s=60)
    run.record("write_file", finish_files(run))
    run.report("write_file")

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
    edits = [e for e in run.events() if isinstance(e, ToolUse) and e.action == "file_edit"]
    assert [e.status for e in edits] == ["started", "succeeded"]
    assert edits[0].tool == "create"
    assert edits[0].path == str(run.cwd / "hello.txt")
    assert len(server.main_requests("openai_chat")) == 2


def test_follow_up_resumes_the_session(model_server, run_agent, tmp_path):
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
    second.record("resume", finish_files(second))
    second.report("resume")

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


def test_shell_command_runs(model_server, run_agent, tmp_path):
    server = model_server([{"shell": "mkdir -p out && echo ran > out/shell.txt"}, {"text": "ran it"}])
    run = run_agent(AGENT, "Run the command.", server=server, timeout_s=60)
    run.record("shell", finish_files(run))
    run.report("shell")

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "out" / "shell.txt").read_text() == "ran\n"
    commands = [e for e in run.events() if isinstance(e, ToolUse) and e.action == "command_run"]
    assert commands[0].command == "mkdir -p out && echo ran > out/shell.txt"
    assert [e.status for e in commands] == ["started", "succeeded"]


def test_read_only_refuses_edits(model_server, run_agent, tmp_path):
    server = model_server([{"write_file": {"path": "review.txt", "content": "nope\n"}}, {"text": "reviewed"}])
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    run.record("read_only_refused", finish_files(run))
    run.report("read_only")

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "refused", run.data
    assert "review.txt" in run.data["error"]["message"]
    assert not (run.cwd / "review.txt").exists()
    assert run.data["files_changed"] == []
    assert run.exit_code == 1
    # The CLI itself exited 0: only the denial says the work was not done.
    assert json.loads(run.transcript[-1])["exitCode"] == 0


def test_read_only_allows_reading_commands_and_refuses_writing_ones(model_server, run_agent, tmp_path):
    server = model_server(
        [{"shell": "git status --short"}, {"shell": "echo x > written.txt"}, {"text": "reviewed"}]
    )
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    run.record("read_only_command_refused", finish_files(run))
    run.report("read_only_commands")

    commands = [e for e in run.events() if isinstance(e, ToolUse) and e.action == "command_run"]
    assert [e.status for e in commands] == ["started", "succeeded", "started", "refused"]
    assert not (run.cwd / "written.txt").exists()
    assert run.data["error"]["kind"] == "refused", run.data
    assert "echo x > written.txt" in run.data["error"]["message"]


def test_http_401_is_auth(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_401",
        [{"error": {"status": 401, "message": "Incorrect API key provided"}, "times": "always"}],
        kind="auth",
        timeout_s=60,
        max_requests=3,
        record_files=finish_files,
    )
    assert "COPILOT_PROVIDER_API_KEY" in run.data["error"]["message"]


def test_http_429_is_rate_limit(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_429",
        [{"error": {"status": 429, "message": "Rate limit reached", "retry_after": 1}, "times": "always"}],
        kind="rate_limit",
        max_requests=6,
        timeout_s=60,
        record_files=finish_files,
    )
    # Copilot honours Retry-After: five retries a second apart, then it gives up.
    assert len(server.main_requests("openai_chat")) == 6


def test_http_500_fails_within_the_limit(model_server, run_agent, tmp_path):
    server = model_server([{"error": {"status": 500, "message": "scripted outage"}, "times": "always"}])
    limit = 25
    run = run_agent(AGENT, "Do something.", server=server, timeout_s=limit)
    run.record("http_500", finish_files(run))
    run.report("http_500")

    assert run.data["status"] == "failed"
    # Copilot retries a 500 five times with backoff (about 17 s; no setting shortens it), then gives up;
    # on a slow machine our wall-clock limit may end it first.
    assert run.data["error"]["kind"] in {"other", "timeout"}, run.data
    if run.data["error"]["kind"] == "other":
        assert "500" in run.data["error"]["message"]
    assert run.duration_s < limit + 5


def test_hang_ends_as_idle(expect_failure):
    run, server = expect_failure(
        AGENT,
        "hang_idle",
        [{"hang": None}],
        kind={"idle", "timeout"},
        within_s=4 + 5,
        timeout_s=20,
        idle_timeout_s=4,
        record_files=finish_files,
    )


def test_missing_login_is_auth(model_server, run_agent, tmp_path):
    server = model_server([{"text": "never asked"}])
    # No model provider and no GitHub token or login in the fresh HOME.
    no_provider = {"env": {"COPILOT_PROVIDER_BASE_URL": "", "COPILOT_OFFLINE": "false"}}
    run = run_agent(
        AGENT, "Do something.", server=server, timeout_s=30, extra_config={"agents": {AGENT: no_provider}}
    )
    run.record("not_logged_in", finish_files(run))
    run.report("not_logged_in")

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "auth", run.data
    assert "No authentication information found" in run.data["error"]["message"]
    assert server.requests == []  # nothing asked, nothing retried
