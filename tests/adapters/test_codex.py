"""The codex adapter without a process: argv building, and parsing the real CLI's recorded output
(tests/fixtures/transcripts/codex/, from tests/real/test_codex.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.adapters.base import AgentRequest, PermissionMode, ProcessOutcome, summarize
from orchestrator.adapters.codex import STEP_FILE, CodexAdapter
from orchestrator.events import AgentErrorEvent, AssistantMessage, Result, SessionStarted, ToolUse, Usage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts" / "codex"
adapter = CodexAdapter()


def request(tmp_path: Path, **changes) -> AgentRequest:
    fields = {"prompt": "Do the task.", "cwd": tmp_path / "repo", "run_dir": tmp_path / "run"}
    fields.update(changes)
    return AgentRequest(**fields)


def lines(name: str) -> list[str]:
    return (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()


def stderr(name: str) -> str:
    path = FIXTURES / f"{name}.stderr.txt"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def parsed(name: str) -> list:
    return [event for line in lines(name) for event in adapter.parse_line(line)]


def outcome_of(name: str, exit_code: int | None = 0, **changes) -> ProcessOutcome:
    tail = "\n".join(lines(name)) + "\n" + stderr(name)
    return ProcessOutcome(exit_code=exit_code, output_tail=tail, **changes)


def judged(name: str, exit_code: int | None = 0, collected=None, **changes):
    """Parse a recording, finish it as the runner does, and summarize it."""
    events = parsed(name)
    outcome = outcome_of(name, exit_code, **changes)
    events += adapter.finish(outcome, events, collected or {})
    return events, summarize(events, outcome)


def of_type(events, cls):
    return [e for e in events if isinstance(e, cls)]


# --- build_command ---------------------------------------------------------------------------------


def test_new_task_reads_the_prompt_from_stdin(tmp_path):
    command = adapter.build_command(request(tmp_path))
    assert command.argv == (
        "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "workspace-write",
        "-",
    )
    assert command.stdin == "Do the task."
    assert command.cwd == tmp_path / "repo"


@pytest.mark.parametrize(
    ("mode", "flags"),
    [
        (PermissionMode.EDIT, ["--sandbox", "workspace-write"]),
        (PermissionMode.READ_ONLY, ["--sandbox", "read-only"]),
        (PermissionMode.BYPASS, ["--dangerously-bypass-approvals-and-sandbox"]),
    ],
)
def test_permission_modes_map_onto_the_sandbox(tmp_path, mode, flags):
    argv = list(adapter.build_command(request(tmp_path, permission=mode)).argv)
    assert argv[4:-1] == flags
    if mode is PermissionMode.BYPASS:
        assert "--sandbox" not in argv


def test_model_extra_args_and_resume_go_before_the_prompt(tmp_path):
    command = adapter.build_command(
        request(
            tmp_path,
            model="gpt-5.5",
            extra_args=("-c", "model_provider=scripted", "--disable", "plugins"),
            resume_session="01a1fcb4-90fa-7d71-8fb6-f73a2683cafc",
            permission=PermissionMode.READ_ONLY,
        )
    )
    # `resume` has no --sandbox of its own: exec's options come before the subcommand.
    assert command.argv[2:] == (
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "read-only",
        "--model",
        "gpt-5.5",
        "-c",
        "model_provider=scripted",
        "--disable",
        "plugins",
        "resume",
        "01a1fcb4-90fa-7d71-8fb6-f73a2683cafc",
        "-",
    )


def test_command_override_and_a_prompt_that_looks_like_a_flag(tmp_path):
    command = adapter.build_command(request(tmp_path, command="/opt/codex/bin/codex", prompt="--help me"))
    assert command.argv[0] == "/opt/codex/bin/codex"
    assert "--help me" not in command.argv
    assert command.stdin == "--help me"


def test_env_keeps_the_agents_variables_and_adds_the_sandbox_log(tmp_path):
    command = adapter.build_command(request(tmp_path, env={"CODEX_API_KEY": "sk-test-only-0123456789abcdef"}))
    assert command.env["CODEX_API_KEY"] == "sk-test-only-0123456789abcdef"
    assert "codex_sandboxing=warn" in command.env["RUST_LOG"]
    mine = adapter.build_command(request(tmp_path, env={"RUST_LOG": "debug"}))
    assert mine.env["RUST_LOG"] == "debug"  # the user's configuration wins


def test_the_step_file_lives_in_the_run_dir_never_in_the_working_directory(tmp_path):
    command = adapter.build_command(request(tmp_path, model="scripted-model"))
    step_file = tmp_path / "run" / STEP_FILE
    assert dict(command.setup_files) == {step_file: json.dumps({"model": "scripted-model"})}
    assert command.collect_files == (step_file,)
    assert not any(tmp_path / "repo" in path.parents for path in command.setup_files)


# --- parse_line on the real transcripts ----------------------------------------------------------------


def test_write_file_transcript():
    events = parsed("write_file")
    session = of_type(events, SessionStarted)[0]
    assert session.session_id == json.loads(lines("write_file")[0])["thread_id"]
    edits = of_type(events, ToolUse)
    assert [(e.action, e.status, e.path, e.detail) for e in edits] == [
        ("file_edit", "started", "/home/dev/repo/hello.txt", "add"),
        ("file_edit", "succeeded", "/home/dev/repo/hello.txt", "add"),
    ]
    assert edits[0].call_id == edits[1].call_id
    assert [m.text for m in of_type(events, AssistantMessage)] == ["done"]
    usage = of_type(events, Usage)[0]
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.scope) == (
        246,
        14,
        0,
        "total",
    )
    # The fallback-metadata warning (an `error` item) is not a failure.
    assert of_type(events, AgentErrorEvent) == []
    assert of_type(events, Result)[-1].success


def test_write_file_is_judged_a_success_with_text_session_and_price():
    collected = {Path("/run") / STEP_FILE: json.dumps({"model": "scripted-model"})}
    events, summary = judged("write_file", collected=collected)
    assert summary.success
    assert summary.final_text == "done"
    assert summary.session_id == of_type(events, SessionStarted)[0].session_id
    assert (summary.input_tokens, summary.output_tokens) == (246, 14)
    assert summary.cost_usd == pytest.approx((246 * 1.0 + 14 * 2.0) / 1e6)
    assert summary.files_touched == ("/home/dev/repo/hello.txt",)


def test_no_price_for_a_model_we_do_not_know_or_did_not_name():
    for collected in ({}, {Path("/run") / STEP_FILE: json.dumps({"model": None})}):
        _, summary = judged("vocabulary_default", collected=collected)
        assert summary.success
        assert summary.cost_usd is None


def test_shell_transcript():
    commands = of_type(parsed("shell"), ToolUse)
    assert [(c.action, c.status) for c in commands] == [
        ("command_run", "started"),
        ("command_run", "succeeded"),
    ]
    assert commands[0].command == "/bin/bash -lc 'mkdir -p out && echo ran > out/shell.txt'"


def test_edit_file_transcript():
    edits = [e for e in of_type(parsed("edit_file"), ToolUse) if e.status == "succeeded"]
    assert [(e.path, e.detail) for e in edits] == [("/home/dev/repo/README.md", "update")]


@pytest.mark.parametrize("name", ["vocabulary_default", "vocabulary_gpt-5.5"])
def test_other_tool_vocabularies_look_the_same_in_the_stream(name):
    done = [(e.action, e.status) for e in of_type(parsed(name), ToolUse) if e.status != "started"]
    assert done == [("file_edit", "succeeded"), ("file_edit", "succeeded"), ("command_run", "succeeded")]


def test_resume_transcript_keeps_the_thread():
    events, summary = judged("resume")
    assert summary.success
    assert summary.final_text == "second done"
    assert summary.session_id == json.loads(lines("resume")[0])["thread_id"]
    # The thread's running total, earlier turns included (see the adapter's notes).
    assert summary.input_tokens == 369


def test_shared_samples_parse():
    patch = of_type(parsed("shared_sample_apply_patch"), ToolUse)
    assert [(e.action, e.status) for e in patch] == [("file_edit", "started"), ("file_edit", "succeeded")]
    command = of_type(parsed("shared_sample_command"), ToolUse)
    assert command[-1].command == "/bin/bash -lc 'printf hi > hello.txt'"
    assert adapter.parse_line((FIXTURES / "shared_sample_human.stdout.txt").read_text()) == []


# --- failures ----------------------------------------------------------------------------------------------


def test_read_only_edit_is_refused_even_though_codex_exits_0():
    events, summary = judged("read_only_refused", exit_code=0)
    assert of_type(parsed("read_only_refused"), AgentErrorEvent) == []  # nothing in the JSON says so
    assert not summary.success
    assert summary.error_kind == "refused"
    assert "patch rejected: writing is blocked by read-only sandbox" in summary.error_message
    assert summary.final_text == "reviewed"


def test_read_only_writing_command_is_refused():
    _, summary = judged("read_only_command_refused", exit_code=0)
    assert summary.error_kind == "refused"
    assert "sandbox violation" in summary.error_message


def test_a_command_the_sandbox_stopped_is_a_refused_tool_use():
    # Seen from the real CLI in read-only mode, when the item does make it into the stream.
    line = (
        '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":'
        '"/bin/bash -lc \'printf ran > ran.txt\'","aggregated_output":"/bin/bash: line 1: ran.txt: '
        'Read-only file system\\n","exit_code":1,"status":"failed"}}'
    )
    [event] = adapter.parse_line(line)
    assert (event.action, event.status) == ("command_run", "refused")
    assert "Read-only file system" in event.detail
    extra = adapter.finish(ProcessOutcome(exit_code=0), [event, Result(success=True)], {})
    assert [e.kind for e in extra if isinstance(e, AgentErrorEvent)] == ["refused"]


def test_an_ordinary_failed_command_is_only_a_failed_tool_use():
    line = (
        '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"false",'
        '"aggregated_output":"","exit_code":1,"status":"failed"}}'
    )
    [event] = adapter.parse_line(line)
    assert event.status == "failed"
    assert adapter.finish(ProcessOutcome(exit_code=0), [event, Result(success=True)], {}) == []


def test_http_401_is_auth_and_retries_are_not_errors():
    events, summary = judged("http_401", exit_code=1)
    errors = of_type(parsed("http_401"), AgentErrorEvent)
    assert [e.kind for e in errors] == ["auth"]  # "Reconnecting... 1/1" was skipped
    assert summary.error_kind == "auth"
    assert "401 Unauthorized" in summary.error_message


def test_http_429_is_rate_limit():
    _, summary = judged("http_429", exit_code=1)
    assert summary.error_kind == "rate_limit"


def test_http_500_is_a_plain_failure():
    _, summary = judged("http_500", exit_code=1)
    assert not summary.success
    assert summary.error_kind == "other"


def test_a_retry_that_recovers_is_a_success():
    events, summary = judged("retry_then_success")
    assert summary.success
    assert summary.final_text == "done after retry"


def test_missing_key_is_auth():
    _, summary = judged("missing_key", exit_code=1)
    assert summary.error_kind == "auth"
    assert "CODEX_API_KEY" in summary.error_message


def test_hang_is_idle():
    outcome = outcome_of("hang_idle", exit_code=None, idle=True, idle_limit_s=4)
    events = parsed("hang_idle")
    events += adapter.finish(outcome, events, {})
    summary = summarize(events, outcome)
    assert summary.error_kind == "idle"
    assert summary.session_id  # known from thread.started, even without a result


def test_no_credentials_and_no_network_ends_on_our_limit_and_says_why():
    events = parsed("no_credentials_no_network")
    assert of_type(events, AgentErrorEvent) == []  # every line is a retry or a warning
    outcome = outcome_of("no_credentials_no_network", exit_code=None, timed_out=True, wall_limit_s=12)
    extra = adapter.finish(outcome, events, {})
    assert [(e.kind, "waiting for the network" in e.message) for e in extra] == [("timeout", True)]


def test_exit_without_a_result_is_a_crash_with_the_last_words():
    outcome = ProcessOutcome(exit_code=2, output_tail="error: unexpected argument '--frobnicate' found")
    [error] = adapter.finish(outcome, [], {})
    assert error.kind == "crashed"
    assert "--frobnicate" in error.message


def test_a_failed_turn_with_no_error_line_is_classified():
    events = adapter.parse_line('{"type":"turn.failed","error":{"message":"You\'ve hit your usage limit."}}')
    [error] = adapter.finish(ProcessOutcome(exit_code=1), events, {})
    assert error.kind == "rate_limit"


def test_refusal_text_inside_the_json_is_not_a_refusal():
    quoted = '{"type":"item.completed","item":{"type":"agent_message","text":"patch rejected: writing is blocked"}}'
    events = [*adapter.parse_line(quoted), Result(success=True)]
    extra = adapter.finish(ProcessOutcome(exit_code=0, output_tail=quoted), events, {})
    assert not any(isinstance(e, AgentErrorEvent) for e in extra)


# --- lines that are not ours -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Reading additional input from stdin...",
        "WARNING: proceeding, even though we could not create PATH aliases",
        "[1, 2]",
        '{"type":',
        '{"type":"turn.started"}',
        '{"type":"something.new","x":1}',
        '{"type":"item.completed","item":"not an object"}',
        '{"type":"item.completed","item":{"type":"reasoning","text":"thinking"}}',
        '{"type":"item.completed","item":{"type":"todo_list","items":[{"text":"a","completed":false}]}}',
        '{"type":"item.completed","item":{"type":"brand_new_kind"}}',
    ],
)
def test_unknown_and_non_json_lines_are_ignored(line):
    assert adapter.parse_line(line) == []


def test_mcp_and_web_search_items():
    # Shapes from codex's exec JSON schema (not produced by our scenarios).
    mcp = adapter.parse_line(
        '{"type":"item.completed","item":{"id":"item_3","type":"mcp_tool_call","server":"docs","tool":"lookup",'
        '"arguments":{},"result":null,"error":{"message":"boom"},"status":"failed"}}'
    )
    assert [(e.tool, e.action, e.status, e.detail) for e in mcp] == [
        ("mcp:docs.lookup", "other", "failed", "boom")
    ]
    search = adapter.parse_line(
        '{"type":"item.started","item":{"id":"item_4","type":"web_search","query":"ruff"}}'
    )
    assert [(e.action, e.status, e.detail) for e in search] == [("search", "started", "ruff")]


# --- availability ----------------------------------------------------------------------------------------


def fake_codex(tmp_path: Path, version: str = "0.171.0") -> str:
    path = tmp_path / "bin" / "codex"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'codex-cli {version}'\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def test_availability_not_installed(tmp_path):
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path)}
    found = adapter.availability(env)
    assert (found.installed, found.ready) == (False, False)
    assert "install-clis codex" in found.fix


def test_availability_with_a_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CODEX_API_KEY": "sk-test-only-0123456789abcdef"}
    found = adapter.availability(env, command=fake_codex(tmp_path))
    assert (found.installed, found.version, found.version_tested) == (True, "0.171.0", True)
    assert (found.auth_source, found.ready, found.reason, found.fix) == ("CODEX_API_KEY", True, "ready", None)


def test_availability_with_a_stored_login_and_another_version(tmp_path):
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "auth.json").write_text('{"tokens": {"access_token": "x"}}')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    found = adapter.availability(env, command=fake_codex(tmp_path, "0.170.1"))
    assert found.auth_source == f"login ({tmp_path / '.codex' / 'auth.json'})"
    assert (found.ready, found.version_tested) == (True, False)
    assert "tested with 0.171.0" in found.fix


def test_availability_without_credentials(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OPENAI_API_KEY": "sk-test-only-0123456789abcdef"}
    found = adapter.availability(env, command=fake_codex(tmp_path))
    assert (found.auth_configured, found.ready) == (False, False)
    assert "codex login" in found.fix
    # CODEX_HOME moves the login.
    home = tmp_path / "elsewhere"
    home.mkdir()
    (home / "auth.json").write_text('{"OPENAI_API_KEY": "sk-test-only-0123456789abcdef"}')
    moved = adapter.availability({**env, "CODEX_HOME": str(home)}, command=fake_codex(tmp_path))
    assert moved.ready
