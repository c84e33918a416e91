"""The claude adapter, with no process but a fake `claude --version`: command building, and parsing of
recorded real output (tests/fixtures/transcripts/claude/, refreshed by tests/real/test_claude.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import (
    Adapter,
    AgentRequest,
    PermissionMode,
    ProcessOutcome,
    install_hint,
    summarize,
)
from orchestrator.adapters.claude import ClaudeAdapter, auth_source_in
from orchestrator.events import (
    AgentErrorEvent,
    AssistantMessage,
    Result,
    SessionStarted,
    ToolUse,
    Usage,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts" / "claude"
REPO = "/home/dev/repo"


def lines_of(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8").splitlines()


def parse(name: str) -> list:
    adapter = ClaudeAdapter()
    return [event for line in lines_of(name) for event in adapter.parse_line(line)]


def judged(name: str, outcome: ProcessOutcome | None = None):
    """Parse a transcript, add what `finish` adds, and summarize as the runner does."""
    outcome = outcome or ProcessOutcome(exit_code=0)
    events = parse(name)
    events += ClaudeAdapter().finish(outcome, events, {})
    return events, summarize(events, outcome)


def of_type(events, cls):
    return [e for e in events if isinstance(e, cls)]


def request(tmp_path: Path, **changes) -> AgentRequest:
    fields = {"prompt": "Fix the bug.", "cwd": tmp_path / "repo", "run_dir": tmp_path / "run"}
    fields.update(changes)
    return AgentRequest(**fields)


# --- build_command ------------------------------------------------------------------------------------


def test_is_registered_and_satisfies_the_protocol():
    adapter = get_adapter("claude")
    assert isinstance(adapter, ClaudeAdapter)
    assert isinstance(adapter, Adapter)
    assert adapter.name == "claude"
    assert set(adapter.credential_vars) >= {
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        # Bedrock and Vertex AI set-ups reach the CLI too
        "CLAUDE_CODE_USE_BEDROCK",
        "AWS_REGION",
        "CLAUDE_CODE_USE_VERTEX",
        "ANTHROPIC_VERTEX_PROJECT_ID",
        "CLOUD_ML_REGION",
    }
    # never another vendor's keys
    assert not {"OPENAI_API_KEY", "GEMINI_API_KEY", "CODEX_API_KEY", "GH_TOKEN"} & set(
        adapter.credential_vars
    )


def test_new_task_puts_the_prompt_on_stdin(tmp_path):
    command = ClaudeAdapter().build_command(request(tmp_path, prompt="--help is not a flag here"))
    assert command.argv == (
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "Bash",
    )
    assert command.stdin == "--help is not a flag here"
    assert command.cwd == tmp_path / "repo"
    assert command.env["DISABLE_AUTOUPDATER"] == "1"
    assert not command.setup_files and not command.collect_files


@pytest.mark.parametrize(
    ("permission", "mode"),
    [
        (PermissionMode.EDIT, "acceptEdits"),
        (PermissionMode.READ_ONLY, "dontAsk"),
        (PermissionMode.BYPASS, "bypassPermissions"),
    ],
)
def test_permission_modes_map_to_the_clis_own(tmp_path, permission, mode):
    argv = ClaudeAdapter().build_command(request(tmp_path, permission=permission)).argv
    assert argv[argv.index("--permission-mode") + 1] == mode
    assert argv.count("--permission-mode") == 1
    assert "--dangerously-skip-permissions" not in argv


def test_follow_up_model_extra_args_and_command(tmp_path):
    command = ClaudeAdapter().build_command(
        request(
            tmp_path,
            resume_session="52654c3c-d84d-4d23-9537-043a43178187",
            model="claude-sonnet-4-5",
            extra_args=("--add-dir", "../shared"),
            command="/opt/claude/bin/claude",
            env={"ANTHROPIC_API_KEY": "sk-ant-test-key-0123456789abcdef", "DISABLE_AUTOUPDATER": "0"},
        )
    )
    argv = command.argv
    assert argv[0] == "/opt/claude/bin/claude"
    assert argv[1] == "-p"  # --resume needs -p to stay headless (Claude >= 2.1.119)
    assert argv[argv.index("--resume") + 1] == "52654c3c-d84d-4d23-9537-043a43178187"
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-5"
    assert argv[-2:] == ("--add-dir", "../shared")  # the user's args come last, so they can override
    assert command.env["ANTHROPIC_API_KEY"] == "sk-ant-test-key-0123456789abcdef"
    assert command.env["DISABLE_AUTOUPDATER"] == "0"  # the agent's configured vars win
    assert "sk-ant-test-key" not in " ".join(argv)


# --- parse_line on real transcripts ------------------------------------------------------------------------


def test_write_file_transcript():
    events = parse("write_file.jsonl")
    session = of_type(events, SessionStarted)
    assert len(session) == 1 and session[0].session_id and session[0].model == "claude-sonnet-4-5"
    edits = of_type(events, ToolUse)
    assert [(e.tool, e.action, e.status, e.path) for e in edits] == [
        ("Write", "file_edit", "started", f"{REPO}/hello.txt"),
        ("Write", "file_edit", "succeeded", f"{REPO}/hello.txt"),
    ]
    assert edits[0].call_id == edits[1].call_id
    assert [m.text for m in of_type(events, AssistantMessage)] == ["done"]
    (usage,) = of_type(events, Usage)
    assert (usage.input_tokens, usage.output_tokens, usage.scope) == (246, 14, "total")
    assert usage.cost_usd == pytest.approx(246 * 3e-6 + 14 * 15e-6)  # the CLI's own price
    (result,) = of_type(events, Result)
    assert result.success and result.final_text == "done" and result.session_id == session[0].session_id
    assert isinstance(events[-1], Result)


def test_resume_reports_this_runs_usage_not_the_sessions():
    events = parse("resume.jsonl")
    final = json.loads(lines_of("resume.jsonl")[-1])
    (usage,) = of_type(events, Usage)
    assert usage.input_tokens == 123
    # total_cost_usd counts the earlier run of the session too.
    assert final["total_cost_usd"] > usage.cost_usd > 0
    assert usage.cost_usd == pytest.approx(123 * 3e-6 + 7 * 15e-6)
    assert of_type(events, Result)[0].final_text == "second done"


def test_shell_transcript():
    commands = [e for e in parse("shell.jsonl") if isinstance(e, ToolUse)]
    assert [(e.tool, e.action, e.status) for e in commands] == [
        ("Bash", "command_run", "started"),
        ("Bash", "command_run", "succeeded"),
    ]
    assert commands[0].command == "mkdir -p out && echo ran > out/shell.txt"


def test_edit_transcript_reads_then_edits():
    tools = [(e.tool, e.action, e.status) for e in parse("edit_file.jsonl") if isinstance(e, ToolUse)]
    assert ("Read", "file_read", "succeeded") in tools
    assert ("Edit", "file_edit", "succeeded") in tools
    assert tools.count(("Write", "file_edit", "succeeded")) == 2
    assert not [t for t in tools if t[2] in {"failed", "refused"}]


def test_shared_samples_parse():
    events = parse("shared_sample_stream.jsonl")
    assert of_type(events, Result)[0].success
    assert [e.status for e in of_type(events, ToolUse)] == ["started", "succeeded"]
    single = parse("shared_sample_json_output.json")  # --output-format json: only the result object
    assert [type(e) for e in single] == [Usage, Result]
    assert single[0].cost_usd == pytest.approx(0.001264)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Not logged in · Please run /login",
        "[claude-code:unrecognized_model] {}",
        '{"type":"assistant","message":',
        "[1, 2]",
        '{"type":"future_event","x":1}',
        '{"type":"system","subtype":"api_retry","attempt":1,"error_status":500}',
        '{"type":"assistant","message":null}',
        '{"type":"assistant","message":{"content":[{"type":"tool_use","input":"x"}]}}',
        '{"type":"user","message":{"role":"user","content":"the prompt"}}',
        '{"type":"user","message":{"content":[{"type":"tool_result"}]},"tool_result_meta":[null]}',
        '{"type":"result","usage":"none","modelUsage":[],"permission_denials":[1]}',
        '{"type":"system","subtype":"permission_denied"}',
    ],
)
def test_odd_lines_never_crash(line):
    events = ClaudeAdapter().parse_line(line)
    assert isinstance(events, list)


def test_non_json_and_unknown_lines_give_nothing():
    adapter = ClaudeAdapter()
    assert adapter.parse_line("Not logged in · Please run /login") == []
    assert adapter.parse_line('{"type":"rate_limit_event","rate_limit_info":{}}') == []
    assert adapter.parse_line('{"type":"system","subtype":"api_retry","attempt":1}') == []


def test_every_recorded_line_survives_truncation():
    adapter = ClaudeAdapter()
    for path in sorted(TRANSCRIPTS.glob("*.json*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for cut in range(0, len(line), max(1, len(line) // 7)):
                adapter.parse_line(line[:cut])


# --- judging a step: parse + finish + summarize --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "success", "kind"),
    [
        ("write_file.jsonl", True, None),
        ("resume.jsonl", True, None),
        ("shell.jsonl", True, None),
        ("edit_file.jsonl", True, None),
        ("shared_sample_stream.jsonl", True, None),
        ("read_only_refused.jsonl", False, "refused"),
        ("edit_mode_command_denied.jsonl", False, "refused"),
        ("disallowed_tool.jsonl", False, "refused"),
        ("http_401.jsonl", False, "auth"),
        ("not_logged_in.jsonl", False, "auth"),
        ("http_429.jsonl", False, "rate_limit"),
        ("http_500.jsonl", False, "other"),
        ("http_529_overloaded.jsonl", False, "other"),
    ],
)
def test_recorded_runs_are_judged(name, success, kind):
    final = json.loads(lines_of(name)[-1])
    exit_code = 1 if final.get("is_error") else 0  # what the real CLI exited with
    events, summary = judged(name, ProcessOutcome(exit_code=exit_code))
    assert summary.success is success
    assert summary.error_kind == kind
    assert len(of_type(events, AgentErrorEvent)) == (0 if success else 1)  # one error, not echoes of it


def test_read_only_refusal_names_the_file_and_exits_zero():
    events, summary = judged("read_only_refused.jsonl")
    refused = [e for e in events if isinstance(e, ToolUse) and e.status == "refused"]
    assert [(e.tool, e.action) for e in refused] == [("Write", "file_edit")]
    assert "don't ask mode" in (refused[0].detail or "")
    # The denied call ends once, as refused: its error tool_result is not a second, "failed", ending.
    statuses = [e.status for e in events if isinstance(e, ToolUse) and e.call_id == refused[0].call_id]
    assert statuses == ["started", "refused"]
    assert f"{REPO}/review.txt" in (summary.error_message or "")
    assert of_type(events, Result)[0].success  # the CLI itself called it a success


def test_command_denied_in_edit_mode():
    events, summary = judged("edit_mode_command_denied.jsonl")
    (refused,) = [e for e in events if isinstance(e, ToolUse) and e.status == "refused"]
    assert refused.action == "command_run" and "requires approval" in (refused.detail or "")
    assert "python3 -c" in (summary.error_message or "")


def test_a_disabled_tool_is_refused_not_failed():
    # `--disallowedTools Bash` (from config args): the CLI answers "No such tool available" and exits 0.
    events, summary = judged("disallowed_tool.jsonl")
    ends = [e for e in events if isinstance(e, ToolUse) and e.status != "started"]
    assert [(e.tool, e.action, e.status) for e in ends] == [("Bash", "command_run", "refused")]
    assert summary.error_message == "claude was not allowed to run: Bash"


def test_a_failed_tool_is_not_a_refusal():
    line = json.dumps(
        {
            "type": "user",
            "message": {
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t9",
                        "is_error": True,
                        "content": "<tool_use_error>String to replace not found in file.</tool_use_error>",
                    }
                ]
            },
            "tool_use_result": "Error: String to replace not found in file.",
        }
    )
    (event,) = ClaudeAdapter().parse_line(line)
    assert event.status == "failed" and "not found" in event.detail


def test_auth_errors_say_what_to_do():
    _, summary = judged("not_logged_in.jsonl", ProcessOutcome(exit_code=1))
    assert "Not logged in" in summary.error_message and "claude /login" in summary.error_message
    _, summary = judged("http_401.jsonl", ProcessOutcome(exit_code=1))
    assert "Invalid API key" in summary.error_message


def test_hang_killed_by_the_idle_limit():
    outcome = ProcessOutcome(exit_code=0, idle=True, idle_limit_s=4)
    events, summary = judged("hang_idle.jsonl", outcome)
    assert [type(e) for e in parse("hang_idle.jsonl")] == [SessionStarted]
    assert summary.error_kind == "idle" and not summary.success
    assert len(of_type(events, AgentErrorEvent)) == 1


def test_wall_clock_limit_wins_over_a_missing_result():
    outcome = ProcessOutcome(exit_code=None, timed_out=True, wall_limit_s=20)
    _, summary = judged("hang_idle.jsonl", outcome)
    assert summary.error_kind == "timeout"


# --- finish on failures that are only text ---------------------------------------------------------------


def test_bypass_as_root_is_refused_with_a_hint():
    tail = (TRANSCRIPTS / "bypass_as_root.stderr.txt").read_text(encoding="utf-8")
    outcome = ProcessOutcome(exit_code=1, output_tail=tail)
    (error,) = ClaudeAdapter().finish(outcome, [], {})
    assert error.kind == "refused" and "IS_SANDBOX=1" in error.message


@pytest.mark.parametrize(
    ("tail", "kind"),
    [
        ("Not logged in · Please run /login", "auth"),
        ("Invalid API key · Fix external API key", "auth"),
        ("API Error: Request rejected (429) · slow down", "rate_limit"),
        ("Segmentation fault (core dumped)", "crashed"),
        ("", "crashed"),
    ],
)
def test_exit_without_result_is_typed_from_the_text(tail, kind):
    outcome = ProcessOutcome(exit_code=1, output_tail=tail)
    events = ClaudeAdapter().finish(outcome, [SessionStarted(session_id="s")], {})
    summary = summarize([SessionStarted(session_id="s"), *events], outcome)
    assert summary.error_kind == kind and not summary.success


def test_failed_result_without_an_error_line_still_gets_one():
    line = json.dumps(
        {
            "type": "result",
            "subtype": "success",
            "is_error": True,
            "result": "API Error: Request rejected (429) · try later",
            "session_id": "s",
        }
    )
    adapter = ClaudeAdapter()
    events = adapter.parse_line(line)
    events += adapter.finish(ProcessOutcome(exit_code=1), events, {})
    assert summarize(events, ProcessOutcome(exit_code=1)).error_kind == "rate_limit"


def test_max_turns_is_an_error_of_its_own():
    line = json.dumps(
        {"type": "result", "subtype": "error_max_turns", "is_error": True, "session_id": "s", "num_turns": 3}
    )
    events = ClaudeAdapter().parse_line(line)
    (error,) = of_type(events, AgentErrorEvent)
    assert "error_max_turns" in error.message
    assert not of_type(events, Result)[0].success


def test_refusals_seen_before_a_kill_are_still_reported():
    refused = ToolUse(call_id="t1", tool="Edit", action="file_edit", status="refused")
    outcome = ProcessOutcome(exit_code=None, idle=True, idle_limit_s=5)
    kinds = [e.kind for e in ClaudeAdapter().finish(outcome, [refused], {})]
    assert kinds == ["idle", "refused"]


def test_success_adds_nothing():
    events = parse("write_file.jsonl")
    assert ClaudeAdapter().finish(ProcessOutcome(exit_code=0), events, {}) == []


# --- availability -----------------------------------------------------------------------------------------


def fake_claude(tmp_path: Path, version_line: str, exit_code: int = 0) -> str:
    """A stand-in `claude` that only answers --version."""
    script = tmp_path / "bin" / "claude"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\necho '{version_line}'\nexit {exit_code}\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{tmp_path / 'bin'}:{os.defpath}", "HOME": str(home), **extra}


def test_not_installed(tmp_path):
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    availability = ClaudeAdapter().availability(env)
    assert not availability.installed and not availability.ready
    assert availability.fix == install_hint("claude")
    assert "npm install @anthropic-ai/claude-code@2.1.332" in availability.fix


def test_ready_with_an_api_key(tmp_path):
    fake_claude(tmp_path, "2.1.332 (Claude Code)")
    env = base_env(tmp_path, ANTHROPIC_API_KEY="sk-ant-test-key-0123456789abcdef")
    availability = ClaudeAdapter().availability(env)
    assert availability.installed and availability.ready and availability.reason == "ready"
    assert availability.path == str(tmp_path / "bin" / "claude")
    assert (availability.version, availability.version_tested) == ("2.1.332", True)
    assert availability.auth_source == "ANTHROPIC_API_KEY"
    assert availability.fix is None
    assert "sk-ant-test-key" not in json.dumps(availability.to_json())


def test_untested_version_is_ready_but_says_so(tmp_path):
    fake_claude(tmp_path, "2.2.0 (Claude Code)")
    availability = ClaudeAdapter().availability(base_env(tmp_path, ANTHROPIC_AUTH_TOKEN="tok-0123456789"))
    assert availability.ready and not availability.version_tested
    assert "2.1.332" in (availability.fix or "")
    assert availability.auth_source == "ANTHROPIC_AUTH_TOKEN"


def test_login_stored_under_home(tmp_path):
    fake_claude(tmp_path, "2.1.332 (Claude Code)")
    env = base_env(tmp_path)
    credentials = Path(env["HOME"]) / ".claude" / ".credentials.json"
    credentials.parent.mkdir()
    credentials.write_text('{"claudeAiOauth": {"accessToken": "x"}}', encoding="utf-8")
    availability = ClaudeAdapter().availability(env)
    assert availability.ready and availability.auth_source == f"login ({credentials})"


def test_config_dir_moves_the_login(tmp_path):
    config_dir = tmp_path / "claude-config"
    config_dir.mkdir()
    (config_dir / ".credentials.json").write_text('{"claudeAiOauth": {}}', encoding="utf-8")
    assert auth_source_in({"HOME": str(tmp_path), "CLAUDE_CONFIG_DIR": str(config_dir)}) == (
        f"login ({config_dir / '.credentials.json'})"
    )
    assert auth_source_in({"HOME": str(tmp_path)}) is None
    bedrock = {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_API_KEY": "k", "AWS_REGION": "us-east-1"}
    assert auth_source_in(bedrock).startswith("Amazon Bedrock")
    # Bedrock without a region cannot work (Claude Code needs AWS_REGION): not a credential
    assert auth_source_in({**bedrock, "AWS_REGION": ""}) is None


def test_no_credentials_is_not_ready_and_says_how(tmp_path):
    fake_claude(tmp_path, "2.1.332 (Claude Code)")
    availability = ClaudeAdapter().availability(base_env(tmp_path, ANTHROPIC_API_KEY=""))
    assert availability.installed and not availability.ready
    assert not availability.auth_configured and availability.auth_source is None
    assert "claude /login" in (availability.fix or "")


def test_broken_binary_is_not_ready(tmp_path):
    fake_claude(tmp_path, "error: cannot start", exit_code=3)
    availability = ClaudeAdapter().availability(base_env(tmp_path, ANTHROPIC_API_KEY="k-0123456789"))
    assert availability.installed and not availability.ready and availability.version is None
    assert "--version" in availability.reason
