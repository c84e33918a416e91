"""Conformance of the gemini adapter with the real Gemini CLI, against the scripted model server.

Set ORCHESTRATOR_RECORD_TRANSCRIPTS=1 to refresh tests/fixtures/transcripts/gemini/ from these runs
(paths rewritten to /home/dev); tests/adapters/test_gemini.py parses those recordings.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.events import ToolUse

pytestmark = pytest.mark.real

AGENT = "gemini"


def test_write_file(model_server, run_agent, tmp_path):
    server = model_server([{"write_file": {"path": "hello.txt", "content": "hi\n"}}, {"text": "done"}])
    run = run_agent(AGENT, "Create hello.txt saying hi.", server=server, timeout_s=60)
    run.record("write_file")
    run.report("write_file")

    assert run.data["status"] == "succeeded", run.data
    assert run.exit_code == 0
    assert (run.cwd / "hello.txt").read_text() == "hi\n"
    assert run.data["files_changed"] == ["hello.txt"]
    assert run.data["final_text"] == "done"
    assert run.data["session_id"]
    # Two model calls of 123 in / 7 out tokens; the CLI reports no cost, so it is priced from tokens.
    assert run.data["usage"]["input_tokens"] == 246
    assert run.data["usage"]["output_tokens"] == 14
    assert run.data["usage"]["cost_usd"] == pytest.approx((246 * 1.0 + 14 * 2.0) / 1e6)
    edits = [e for e in run.events() if isinstance(e, ToolUse) and e.action == "file_edit"]
    assert [(e.tool, e.status) for e in edits] == [("write_file", "started"), ("write_file", "succeeded")]
    assert [e.path for e in edits] == ["hello.txt", "hello.txt"]
    # The CLI's own write_file tool, called with its own argument names, on the streaming endpoint.
    main = server.main_requests("gemini")
    assert len(main) == 2
    assert all(r.path.endswith("/models/scripted-model:streamGenerateContent") for r in main)
    assert main[0].query == {"alt": "sse"}
    assert json.dumps(main[1].body["contents"]).count('"functionResponse"') == 1


def test_edit_file(model_server, run_agent, tmp_path):
    server = model_server(
        [{"edit_file": {"path": "README.md", "old": "# sample", "new": "# edited"}}, {"text": "edited"}]
    )
    run = run_agent(AGENT, "Retitle the README.", server=server, timeout_s=60)
    run.record("edit_file")
    run.report("edit_file")

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "README.md").read_text() == "# edited\n"
    assert run.data["files_changed"] == ["README.md"]
    edits = [e for e in run.events() if isinstance(e, ToolUse) and e.tool == "replace"]
    assert [e.status for e in edits] == ["started", "succeeded"]


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
    second.record("resume")
    second.report("resume")

    assert second.data["status"] == "succeeded", second.data
    assert second.data["final_text"] == "second done"
    assert second.data["session_id"] == session  # the CLI's own resume keeps the id
    assert second.data["usage"]["input_tokens"] == 123  # this run's one call, not the session's total
    history = json.dumps(server.main_requests("gemini")[-1].body["contents"])
    assert "Write notes.txt." in history
    assert '"name": "write_file"' in history
    assert "first done" in history
    assert "Now summarise." in history


def test_shell_command_runs(model_server, run_agent, tmp_path):
    server = model_server([{"shell": "mkdir -p out && echo ran > out/shell.txt"}, {"text": "ran it"}])
    run = run_agent(AGENT, "Run the command.", server=server, timeout_s=60)
    run.record("shell")
    run.report("shell")

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "out" / "shell.txt").read_text() == "ran\n"
    commands = [e for e in run.events() if isinstance(e, ToolUse) and e.action == "command_run"]
    assert commands[0].command == "mkdir -p out && echo ran > out/shell.txt"
    assert [e.status for e in commands] == ["started", "succeeded"]


def test_read_only_refuses_edits(model_server, run_agent, tmp_path):
    server = model_server([{"write_file": {"path": "review.txt", "content": "nope\n"}}, {"text": "reviewed"}])
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    run.record("read_only_refused")
    run.report("read_only")

    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "refused", run.data
    assert "write_file" in run.data["error"]["message"]
    assert not (run.cwd / "review.txt").exists()
    assert run.data["files_changed"] == []
    assert run.exit_code == 1
    # The reviewer was offered no tool that writes.
    offered = json.dumps(server.main_requests("gemini")[0].body["tools"])
    for name in ("write_file", "replace", "run_shell_command"):
        assert f'"name": "{name}"' not in offered


def test_http_401_is_auth(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_401",
        [{"error": {"status": 401, "message": "API key not valid"}, "times": "always"}],
        kind="auth",
        max_requests=1,
        timeout_s=60,
    )
    assert len(server.main_requests("gemini")) == 1  # a 401 is never retried


def test_http_429_is_rate_limit(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_429",
        [{"error": {"status": 429, "message": "slow down", "retry_after": 1}, "times": "always"}],
        kind="rate_limit",
        max_requests=1,
        timeout_s=60,
    )


def test_http_500_fails_within_the_limit(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_500",
        [{"error": {"status": 500, "message": "scripted outage"}, "times": "always"}],
        kind="other",
        timeout_s=20,
    )
    assert "scripted outage" in run.data["error"]["message"]
    # One attempt (ORCHESTRATOR_GEMINI_MAX_ATTEMPTS=1 in the testing config), then it gave up.
    assert len(server.main_requests("gemini")) == 1


def test_hang_ends_as_idle(expect_failure):
    # The idle limit must outlast the CLI's start (2-5 s on a busy machine) for the hang to be the
    # model request's, not the start's.
    run, server = expect_failure(
        AGENT, "hang_idle", [{"hang": None}], kind={"idle", "timeout"}, timeout_s=20, idle_timeout_s=7
    )
    assert [r.answered_with for r in server.main_requests("gemini")] == ["hang"]
    assert run.data["first_output_s"] is not None
    # The idle clock starts at the CLI's last line (the prompt's echo, just before the request).
    assert run.duration_s < run.data["first_output_s"] + 7 + 5
