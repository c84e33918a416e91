"""Conformance of the codex adapter with the real Codex CLI, against the scripted model server.

Set ORCHESTRATOR_RECORD_TRANSCRIPTS=1 to refresh tests/fixtures/transcripts/codex/ from these runs
(paths rewritten to /home/dev); tests/adapters/test_codex.py parses those recordings.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from orchestrator.events import ToolUse, Usage

pytestmark = pytest.mark.real

AGENT = "codex"
API = "openai_responses"


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
    # Two model calls of 123 in / 7 out tokens; Codex reports no cost, we price the model we asked for.
    assert run.data["usage"]["input_tokens"] == 246
    assert run.data["usage"]["output_tokens"] == 14
    assert run.data["usage"]["cost_usd"] == pytest.approx((246 * 1.0 + 14 * 2.0) / 1e6)
    events = run.events()
    edits = [e for e in events if isinstance(e, ToolUse) and e.action == "file_edit"]
    assert [e.status for e in edits] == ["started", "succeeded"]
    assert edits[0].path == str(run.cwd / "hello.txt")
    assert any(isinstance(e, Usage) for e in events)
    assert len(server.main_requests(API)) == 2


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
    assert second.data["session_id"] == session  # `codex exec resume` keeps the thread id
    history = json.dumps(server.main_requests(API)[-1].body["input"])
    assert "Write notes.txt." in history
    assert "*** Add File: notes.txt" in history
    assert "first done" in history
    assert "Now summarise." in history
    # Codex reports the thread's running total (3 calls of 123 tokens); the step runner subtracts what the
    # session had reported before, so the follow-up costs only its own call.
    assert second.data["usage"]["input_tokens"] == 123
    assert first.data["usage"]["input_tokens"] == 246


def test_shell_command_runs(model_server, run_agent, tmp_path):
    server = model_server([{"shell": "mkdir -p out && echo ran > out/shell.txt"}, {"text": "ran it"}])
    run = run_agent(AGENT, "Run the command.", server=server, timeout_s=60)
    run.record("shell")
    run.report("shell")

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "out" / "shell.txt").read_text() == "ran\n"
    commands = [e for e in run.events() if isinstance(e, ToolUse) and e.action == "command_run"]
    assert "mkdir -p out && echo ran > out/shell.txt" in (commands[0].command or "")
    assert [e.status for e in commands] == ["started", "succeeded"]


def test_edit_file(model_server, run_agent, tmp_path):
    server = model_server(
        [{"edit_file": {"path": "README.md", "old": "sample", "new": "example"}}, {"text": "ok"}]
    )
    run = run_agent(AGENT, "Rename the title.", server=server, timeout_s=60)
    run.record("edit_file")
    run.report("edit_file")

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "README.md").read_text() == "# example\n"
    assert run.data["files_changed"] == ["README.md"]


def test_read_only_refuses_edits(model_server, run_agent, tmp_path):
    server = model_server([{"write_file": {"path": "review.txt", "content": "nope\n"}}, {"text": "reviewed"}])
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    run.record("read_only_refused")
    run.report("read_only")

    # Codex itself exits 0 and prints the refusal only on stderr.
    assert run.data["exit_code"] == 0
    assert run.data["status"] == "failed"
    assert run.data["error"]["kind"] == "refused", run.data
    assert "read-only sandbox" in run.data["error"]["message"]
    assert not (run.cwd / "review.txt").exists()
    assert run.data["files_changed"] == []
    assert run.exit_code == 1


def test_read_only_refuses_writing_commands(model_server, run_agent, tmp_path):
    server = model_server([{"shell": "echo x > written.txt"}, {"shell": "cat README.md"}, {"text": "looked"}])
    run = run_agent(AGENT, "Review the code.", server=server, read_only=True, timeout_s=60)
    run.record("read_only_command_refused")
    run.report("read_only_command")

    assert run.data["error"]["kind"] == "refused", run.data
    assert "sandbox violation" in run.data["error"]["message"]
    assert not (run.cwd / "written.txt").exists()
    # Reading still works. (The refused command itself shows in the JSON only now and then.)
    commands = [e for e in run.events() if isinstance(e, ToolUse) and e.status != "started"]
    assert [e.status for e in commands if "cat README.md" in (e.command or "")] == ["succeeded"]


def test_http_401_is_auth(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_401",
        [{"error": {"status": 401, "message": "Incorrect API key provided"}, "times": "always"}],
        kind="auth",
        max_requests=2,
        timeout_s=60,
    )


def test_http_429_is_rate_limit(expect_failure):
    run, server = expect_failure(
        AGENT,
        "http_429",
        [{"error": {"status": 429, "message": "slow down", "retry_after": 1}, "times": "always"}],
        kind="rate_limit",
        max_requests=2,
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
    # request_max_retries=1 and stream_max_retries=1 from the testing config: 2 x 2 requests, then it gives up.
    assert len(server.main_requests(API)) == 4


def test_hang_ends_as_idle(expect_failure):
    run, server = expect_failure(
        AGENT,
        "hang_idle",
        [{"hang": None}],
        kind={"idle", "timeout"},
        within_s=4 + 5,
        timeout_s=20,
        idle_timeout_s=4,
    )


def test_missing_key_is_auth(model_server, run_agent, tmp_path):
    server = model_server([{"text": "never sent"}])
    run = run_agent(
        AGENT,
        "Do something.",
        server=server,
        timeout_s=30,
        extra_config={"agents": {AGENT: {"env": {"CODEX_API_KEY": ""}}}},
    )
    run.record("missing_key")
    run.report("missing_key")

    assert run.data["error"]["kind"] == "auth", run.data
    assert "CODEX_API_KEY" in run.data["error"]["message"]
    assert server.main_requests(API) == []


@pytest.mark.parametrize(
    ("model", "vocabulary"),
    [
        # Codex's default model: one free-form `exec` tool running JavaScript that calls apply_patch.
        (None, "custom_tool_call:exec"),
        # A model Codex knows without code mode: a free-form apply_patch tool.
        ("gpt-5.5", "custom_tool_call:apply_patch"),
    ],
)
def test_write_and_edit_in_other_tool_vocabularies(model_server, run_agent, tmp_path, model, vocabulary):
    server = model_server(
        [
            {"write_file": {"path": "hello.txt", "content": "hi\nthere\n"}},
            {"edit_file": {"path": "hello.txt", "old": "the", "new": "whe"}},
            {"shell": "echo ran > ran.txt"},
            {"text": "done"},
        ]
    )
    run = run_agent(
        AGENT,
        "Write, edit, run.",
        server=server,
        timeout_s=60,
        extra_config={"agents": {AGENT: {"model": model}}},
    )
    run.record(f"vocabulary_{model or 'default'}")
    run.report(f"vocabulary {model or 'default'}")

    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "hello.txt").read_text() == "hi\nwhere\n"
    assert (run.cwd / "ran.txt").read_text() == "ran\n"
    kind, name = vocabulary.split(":")
    calls = [
        item
        for item in server.main_requests(API)[-1].body["input"]
        if isinstance(item, dict) and item.get("type") == kind
    ]
    assert calls and calls[0]["name"] == name
    actions = [(e.action, e.status) for e in run.events() if isinstance(e, ToolUse) and e.status != "started"]
    assert actions == [("file_edit", "succeeded"), ("file_edit", "succeeded"), ("command_run", "succeeded")]
    assert run.data["usage"]["cost_usd"] is None  # no price for these models: unknown, not guessed


def test_sandboxed_codex_works_on_a_machine_where_it_never_ran(model_server, run_agent):
    """Codex 0.171's own sandbox mounts over /tmp/codex-daemon-<uid>, which it cannot make inside
    ours (the root is read-only there): on a fresh machine every write failed as a sandbox violation
    until the orchestrator made the folder first."""
    daemon_folder = Path("/tmp") / f"codex-daemon-{os.geteuid()}"
    with contextlib.suppress(FileNotFoundError, OSError):
        daemon_folder.rmdir()  # only when empty: a live daemon's socket stays
    server = model_server([{"write_file": {"path": "fresh.txt", "content": "ok\n"}}, {"text": "done"}])
    run = run_agent(AGENT, "Create fresh.txt.", server=server, timeout_s=60)
    assert run.data["status"] == "succeeded", run.data
    assert (run.cwd / "fresh.txt").read_text() == "ok\n"
    assert daemon_folder.is_dir()
