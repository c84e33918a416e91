"""The gemini adapter, with no process but a fake `gemini --version`: command building, and parsing of
recorded real output (tests/fixtures/transcripts/gemini/, refreshed by tests/real/test_gemini.py)."""

from __future__ import annotations

import json
import os
import tomllib
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
from orchestrator.adapters.gemini import (
    EDIT_POLICY_FILE,
    MAX_ATTEMPTS_VAR,
    GeminiAdapter,
    auth_source_in,
    final_answer,
    settings_for,
    usage_from_stats,
)
from orchestrator.events import (
    AssistantMessage,
    Result,
    SessionStarted,
    ToolUse,
    Usage,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts" / "gemini"
KEY = "test-gemini-key-0b7e4c1a9f2d48d3b6a5e8c7f1d2a3b4-unit"


def lines_of(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8").splitlines()


def parse(name: str) -> list:
    adapter = GeminiAdapter()
    return [event for line in lines_of(name) for event in adapter.parse_line(line)]


def judged(name: str, outcome: ProcessOutcome | None = None):
    """Parse a transcript, add what `finish` adds, and summarize as the runner does."""
    outcome = outcome or ProcessOutcome(exit_code=0)
    events = parse(name)
    events += GeminiAdapter().finish(outcome, events, {})
    return events, summarize(events, outcome)


def of_type(events, cls):
    return [e for e in events if isinstance(e, cls)]


def request(tmp_path: Path, **changes) -> AgentRequest:
    fields = {"prompt": "Fix the bug.", "cwd": tmp_path / "repo", "run_dir": tmp_path / "run"}
    fields.update(changes)
    return AgentRequest(**fields)


def flag(argv: tuple[str, ...], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


# --- the adapter as a plug-in -----------------------------------------------------------------------


def test_is_registered_and_satisfies_the_protocol():
    adapter = get_adapter("gemini")
    assert isinstance(adapter, GeminiAdapter)
    assert isinstance(adapter, Adapter)
    assert adapter.name == "gemini"


def test_credential_vars_are_googles_own():
    creds = GeminiAdapter().credential_vars
    assert {"GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"} <= set(creds)
    # Google's own, and gcloud's folder / Cloud Shell's switch (application default credentials)
    assert all(v.startswith(("GEMINI_", "GOOGLE_", "CLOUDSDK_")) or v == "CLOUD_SHELL" for v in creds)


# --- build_command ------------------------------------------------------------------------------------


def test_new_task_is_headless_with_the_prompt_on_stdin(tmp_path):
    command = GeminiAdapter().build_command(request(tmp_path))
    assert command.argv[0] == "gemini"
    assert flag(command.argv, "--output-format") == "stream-json"
    assert "--skip-trust" in command.argv  # else an untrusted folder exits 55
    assert "--resume" not in command.argv
    assert "--model" not in command.argv
    assert "Fix the bug." not in command.argv
    assert "-p" not in command.argv and "--prompt" not in command.argv
    assert command.stdin == "Fix the bug."
    assert command.cwd == tmp_path / "repo"
    assert command.env["GEMINI_CLI_NO_RELAUNCH"] == "true"


def test_a_prompt_that_looks_like_a_flag_stays_out_of_argv(tmp_path):
    command = GeminiAdapter().build_command(request(tmp_path, prompt="--yolo"))
    assert "--yolo" not in command.argv
    assert command.stdin == "--yolo"


def test_follow_up_resumes_the_cli_session(tmp_path):
    command = GeminiAdapter().build_command(request(tmp_path, resume_session="3b4382ec-f311"))
    assert flag(command.argv, "--resume") == "3b4382ec-f311"


def test_model_command_and_extra_args(tmp_path):
    command = GeminiAdapter().build_command(
        request(
            tmp_path,
            model="gemini-2.5-pro",
            command="/opt/gemini/bin/gemini",
            extra_args=("--include-directories", "../lib"),
        )
    )
    assert command.argv[0] == "/opt/gemini/bin/gemini"
    assert flag(command.argv, "--model") == "gemini-2.5-pro"
    assert command.argv[-2:] == ("--include-directories", "../lib")


@pytest.mark.parametrize(
    ("permission", "mode"),
    [
        (PermissionMode.EDIT, "auto_edit"),
        (PermissionMode.READ_ONLY, "default"),
        (PermissionMode.BYPASS, "yolo"),
    ],
)
def test_permission_modes_map_onto_approval_modes(tmp_path, permission, mode):
    command = GeminiAdapter().build_command(request(tmp_path, permission=permission))
    assert flag(command.argv, "--approval-mode") == mode
    assert "--yolo" not in command.argv


def test_edit_mode_adds_a_policy_that_lets_the_shell_through(tmp_path):
    command = GeminiAdapter().build_command(request(tmp_path))
    policy = tmp_path / "run" / EDIT_POLICY_FILE
    assert flag(command.argv, "--policy") == str(policy)
    rules = tomllib.loads(command.setup_files[policy])["rule"]
    assert rules == [
        {
            "toolName": "run_shell_command",
            "decision": "allow",
            "priority": 100,
            "modes": ["autoEdit"],
            "allowRedirection": True,
        }
    ]


@pytest.mark.parametrize("permission", [PermissionMode.READ_ONLY, PermissionMode.BYPASS])
def test_other_modes_add_no_policy(tmp_path, permission):
    command = GeminiAdapter().build_command(request(tmp_path, permission=permission))
    assert "--policy" not in command.argv
    assert not any(p.name == EDIT_POLICY_FILE for p in command.setup_files)


def test_configured_env_reaches_the_child(tmp_path):
    env = {"HTTPS_PROXY": "http://proxy:3128", "GEMINI_CLI_NO_RELAUNCH": "false"}
    command = GeminiAdapter().build_command(request(tmp_path, env=env))
    assert command.env["HTTPS_PROXY"] == "http://proxy:3128"
    assert command.env["GEMINI_CLI_NO_RELAUNCH"] == "false"  # the user's choice wins


def test_an_api_key_gets_a_home_of_its_own_with_api_key_auth(tmp_path):
    env = {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9"}
    command = GeminiAdapter().build_command(request(tmp_path, env=env))
    home = tmp_path / "run" / "gemini-home"
    assert command.env["GEMINI_CLI_HOME"] == str(home)
    assert command.env["GEMINI_API_KEY"] == KEY
    settings = json.loads(command.setup_files[home / ".gemini" / "settings.json"])
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert settings["general"]["enableAutoUpdate"] is False
    assert "maxAttempts" not in settings["general"]  # the CLI's own retries unless asked
    assert KEY not in command.setup_files[home / ".gemini" / "settings.json"]
    assert KEY not in " ".join(command.argv)


def test_without_a_key_the_users_own_home_and_login_are_used(tmp_path):
    command = GeminiAdapter().build_command(request(tmp_path))
    assert "GEMINI_CLI_HOME" not in command.env
    assert not any(p.name == "settings.json" for p in command.setup_files)


def test_files_beside_the_cli_never_land_in_the_working_directory(tmp_path):
    env = {"GEMINI_API_KEY": KEY}
    command = GeminiAdapter().build_command(request(tmp_path, env=env))
    assert command.setup_files
    for path in command.setup_files:
        assert (tmp_path / "run") in path.parents
        assert (tmp_path / "repo") not in path.parents


@pytest.mark.parametrize(("value", "attempts"), [("1", 1), ("3", 3), ("25", 10), ("0", None), ("x", None)])
def test_max_attempts_knob(value, attempts):
    settings = settings_for({"GEMINI_API_KEY": KEY, MAX_ATTEMPTS_VAR: value})
    assert settings["general"].get("maxAttempts") == attempts


# --- parse_line on recorded real output ---------------------------------------------------------------


def test_write_file_transcript():
    events = parse("write_file.jsonl")
    session = of_type(events, SessionStarted)[0]
    assert session.session_id == "ed4b38d1-60f5-4df0-be3b-916c59373043"
    assert session.model == "scripted-model"
    tools = of_type(events, ToolUse)
    assert [(t.tool, t.action, t.status) for t in tools] == [
        ("write_file", "file_edit", "started"),
        ("write_file", "file_edit", "succeeded"),
    ]
    assert tools[0].path == "hello.txt"
    assert tools[0].call_id == tools[1].call_id
    assert [m.text for m in of_type(events, AssistantMessage)] == ["done"]
    usage = of_type(events, Usage)[0]
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (246, 14, 0)
    assert usage.model == "scripted-model"
    assert usage.cost_usd == pytest.approx((246 * 1.0 + 14 * 2.0) / 1e6)
    assert of_type(events, Result)[0].success is True


def test_write_file_is_judged_a_success_with_the_answer_as_final_text():
    events, summary = judged("write_file.jsonl")
    assert summary.success
    assert summary.final_text == "done"
    assert summary.session_id == "ed4b38d1-60f5-4df0-be3b-916c59373043"
    assert summary.files_touched == ("hello.txt",)
    assert (summary.input_tokens, summary.output_tokens) == (246, 14)


def test_edit_and_shell_transcripts():
    edit = of_type(parse("edit_file.jsonl"), ToolUse)
    assert [(t.tool, t.action, t.status, t.path) for t in edit] == [
        ("replace", "file_edit", "started", "README.md"),
        ("replace", "file_edit", "succeeded", "README.md"),
    ]
    shell = of_type(parse("shell.jsonl"), ToolUse)
    assert shell[0].action == "command_run"
    assert shell[0].command == "mkdir -p out && echo ran > out/shell.txt"
    assert (shell[1].status, shell[1].command) == ("succeeded", "mkdir -p out && echo ran > out/shell.txt")
    _, summary = judged("shell.jsonl")
    assert summary.success and summary.final_text == "ran it"


def test_resume_transcript_reports_this_runs_usage():
    events, summary = judged("resume.jsonl")
    assert summary.success
    assert summary.final_text == "second done"
    assert summary.input_tokens == 123


def test_text_in_chunks_is_joined_into_the_final_text():
    events, summary = judged("text_in_chunks.jsonl")
    assert len(of_type(events, AssistantMessage)) == 4
    assert summary.final_text == (
        "The review found two problems: the parser drops unknown events, and the limit is off by one."
    )


def test_routing_sample_prices_nothing_it_cannot_price():
    events, summary = judged("sample_routing_stream.jsonl")
    usage = of_type(events, Usage)[0]
    assert (usage.input_tokens, usage.output_tokens) == (369, 21)
    assert usage.cost_usd is None  # gemini-3.5-flash-lite / gemini-3.8-flash have no price here
    assert usage.model == "gemini-3.8-flash"  # the busiest of the two
    assert summary.success and summary.final_text == "done"


def test_read_only_edit_is_refused_even_with_exit_0():
    events, summary = judged("read_only_refused.jsonl")
    tools = of_type(events, ToolUse)
    assert tools[-1].status == "refused"
    assert "not found" in (tools[-1].detail or "")
    assert not summary.success
    assert summary.error_kind == "refused"
    assert "write_file" in (summary.error_message or "")
    assert summary.files_touched == ()  # refused, so not touched


def test_policy_denial_is_refused():
    events, summary = judged("policy_denied.jsonl")
    assert of_type(events, ToolUse)[-1].status == "refused"
    assert summary.error_kind == "refused"
    assert "denied by policy" in (summary.error_message or "")


@pytest.mark.parametrize(
    ("name", "exit_code", "kind", "words"),
    [
        ("http_401.jsonl", 145, "auth", "API key not valid"),
        ("http_429.jsonl", 173, "rate_limit", "slow down"),
        ("http_500.jsonl", 244, "other", "scripted outage"),
    ],
)
def test_api_errors(name, exit_code, kind, words):
    # In json modes the CLI exits with the HTTP status mod 256.
    events, summary = judged(name, ProcessOutcome(exit_code=exit_code))
    assert not summary.success
    assert summary.error_kind == kind
    assert words in (summary.error_message or "")
    assert of_type(events, Result)[-1].success is False


def test_hang_transcript_has_no_result_and_the_idle_limit_names_it():
    events = parse("hang_idle.jsonl")
    assert not of_type(events, Result)
    outcome = ProcessOutcome(exit_code=None, idle=True, idle_limit_s=7)
    _, summary = judged("hang_idle.jsonl", outcome)
    assert summary.error_kind == "idle"
    assert "7" in (summary.error_message or "")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("no_auth_with_base_url.stderr.txt", "Invalid auth method selected."),
        ("no_credentials.stderr.txt", "Please set an Auth method"),
    ],
)
def test_missing_auth_is_auth(name, words):
    tail = (TRANSCRIPTS / name).read_text(encoding="utf-8")
    outcome = ProcessOutcome(exit_code=41, output_tail=tail)
    events = GeminiAdapter().finish(outcome, [], {})
    summary = summarize(events, outcome)
    assert summary.error_kind == "auth"
    assert words in (summary.error_message or "")


def test_exit_0_without_a_result_is_a_crash_not_a_success():
    outcome = ProcessOutcome(exit_code=0, output_tail="Warning: 256-color support not detected.")
    events = parse("hang_idle.jsonl")
    events += GeminiAdapter().finish(outcome, events, {})
    summary = summarize(events, outcome)
    assert not summary.success
    assert summary.error_kind == "crashed"


def test_text_failures_without_a_result():
    adapter = GeminiAdapter()
    json_noise = '{"type":"message","role":"user","content":"handle HTTP 429 and 401 better"}'
    crash = adapter.finish(ProcessOutcome(exit_code=1, output_tail=json_noise + "\nTypeError: boom"), [], {})
    assert [(e.kind, "TypeError: boom" in e.message) for e in crash] == [("crashed", True)]
    quota = adapter.finish(ProcessOutcome(exit_code=1, output_tail="RetryableQuotaError: slow"), [], {})
    assert quota[0].kind == "rate_limit"
    untrusted = adapter.finish(ProcessOutcome(exit_code=55, output_tail=""), [], {})
    assert untrusted[0].kind == "other" and "trust" in untrusted[0].message


def test_timeout_is_named_even_after_partial_output():
    outcome = ProcessOutcome(exit_code=None, timed_out=True, wall_limit_s=20)
    events, summary = judged("hang_idle.jsonl", outcome)
    assert summary.error_kind == "timeout"


def test_finish_adds_nothing_for_a_complete_failure():
    events = parse("http_500.jsonl")
    assert GeminiAdapter().finish(ProcessOutcome(exit_code=244), events, {}) == []


def test_error_events_and_unknown_lines():
    adapter = GeminiAdapter()
    loop = adapter.parse_line(
        '{"type":"error","severity":"warning","message":"Loop detected, stopping execution"}'
    )
    assert loop == []
    turns = adapter.parse_line(
        '{"type":"error","severity":"error","message":"Maximum session turns exceeded"}'
    )
    assert [(e.kind, e.message) for e in turns] == [("other", "Maximum session turns exceeded")]
    assert adapter.parse_line('{"type":"telemetry","x":1}') == []
    assert adapter.parse_line("Ripgrep is not available. Falling back to GrepTool.") == []
    assert adapter.parse_line('{"type":"init", "session_id": ') == []
    assert adapter.parse_line("[1, 2]") == []
    assert adapter.parse_line('{"type":"message","role":"user","content":"the prompt"}') == []
    assert (
        adapter.parse_line('{"type":"tool_use","tool_name":"glob","parameters":"odd"}')[0].action == "search"
    )


def test_failed_read_outside_the_workspace_is_a_failure_not_a_refusal():
    line = json.dumps(
        {
            "type": "tool_result",
            "tool_id": "read_file__read_file_1795241187773_0",
            "status": "error",
            "error": {"type": "path_not_in_workspace", "message": "outside the workspace"},
        }
    )
    (event,) = GeminiAdapter().parse_line(line)
    assert (event.tool, event.action, event.status) == ("read_file", "file_read", "failed")


def test_a_result_names_the_call_its_start_named_and_the_memo_stays_bounded():
    adapter = GeminiAdapter()
    # A result whose start was never seen still parses, from its id alone.
    (orphan,) = adapter.parse_line(
        '{"type":"tool_result","tool_id":"glob__glob_1795241187773_0","status":"success"}'
    )
    assert (orphan.tool, orphan.action, orphan.path) == ("glob", "search", None)
    for n in range(300):
        adapter.parse_line(
            json.dumps(
                {
                    "type": "tool_use",
                    "tool_name": "write_file",
                    "tool_id": f"w{n}",
                    "parameters": {"file_path": f"f{n}"},
                }
            )
        )
    (latest,) = adapter.parse_line('{"type":"tool_result","tool_id":"w299","status":"success"}')
    assert (latest.tool, latest.path, latest.status) == ("write_file", "f299", "succeeded")
    (evicted,) = adapter.parse_line('{"type":"tool_result","tool_id":"w0","status":"success"}')
    assert evicted.path is None


def test_final_answer_is_the_text_after_the_last_tool():
    events = [
        AssistantMessage(text="Let me look. "),
        ToolUse(tool="read_file"),
        AssistantMessage(text="All "),
        AssistantMessage(text="good."),
    ]
    assert final_answer(events) == "All good."


def test_usage_from_stats_prices_known_models_only():
    priced = usage_from_stats(
        {
            "input_tokens": 1000,
            "output_tokens": 100,
            "cached": 200,
            "models": {"gemini-2.5-flash": {"input_tokens": 1000, "output_tokens": 100, "cached": 200}},
        }
    )
    assert priced is not None
    assert priced.cost_usd == pytest.approx((800 * 0.30 + 100 * 2.5 + 200 * 0.075) / 1e6)
    assert priced.cached_tokens == 200
    assert usage_from_stats({"input_tokens": 0, "output_tokens": 0, "models": {}}) is None


# --- availability -------------------------------------------------------------------------------------


def fake_gemini(tmp_path: Path, version: str = "0.61.0", rc: int = 0) -> str:
    """A stand-in for `gemini --version` (a real executable, no node)."""
    script = tmp_path / "bin" / "gemini"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\necho {version}\nexit {rc}\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def base_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": str(tmp_path / "bin") + os.pathsep + "/usr/bin:/bin", "HOME": str(home)}


def test_availability_ready_with_a_key(tmp_path):
    path = fake_gemini(tmp_path)
    avail = GeminiAdapter().availability({**base_env(tmp_path), "GEMINI_API_KEY": KEY})
    assert avail.installed and avail.path == path
    assert avail.version == "0.61.0" and avail.version_tested
    assert avail.auth_source == "GEMINI_API_KEY"
    assert avail.ready and avail.reason == "ready" and avail.fix is None
    assert KEY not in json.dumps(avail.to_json())


def test_availability_other_version_with_a_stored_login(tmp_path):
    fake_gemini(tmp_path, version="0.70.1")
    env = base_env(tmp_path)
    folder = Path(env["HOME"]) / ".gemini"
    folder.mkdir()
    (folder / "oauth_creds.json").write_text("{}", encoding="utf-8")
    # Tokens alone are not enough headless: the sign-in also selects its auth type.
    assert GeminiAdapter().availability(env).auth_source is None
    (folder / "settings.json").write_text(
        json.dumps({"security": {"auth": {"selectedType": "oauth-personal"}}}), encoding="utf-8"
    )
    avail = GeminiAdapter().availability(env)
    assert avail.version == "0.70.1" and not avail.version_tested
    assert avail.tested_version == "0.61.0"
    assert avail.auth_source == "Google login (~/.gemini/oauth_creds.json)"
    assert avail.ready


def test_availability_without_credentials_says_how_to_authenticate(tmp_path):
    fake_gemini(tmp_path)
    avail = GeminiAdapter().availability(base_env(tmp_path))
    assert avail.installed and not avail.auth_configured and not avail.ready
    assert "GEMINI_API_KEY" in (avail.fix or "")


def test_availability_not_installed(tmp_path):
    env = {"PATH": str(tmp_path / "nothing"), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    avail = GeminiAdapter().availability(env)
    assert not avail.installed and not avail.ready
    assert avail.fix == install_hint("gemini")


def test_availability_of_a_broken_binary_and_a_command_override(tmp_path):
    broken = fake_gemini(tmp_path, version="oops", rc=3)
    avail = GeminiAdapter().availability({**base_env(tmp_path), "GEMINI_API_KEY": KEY}, command=broken)
    assert avail.installed and avail.version is None and not avail.ready
    assert "--version" in avail.reason


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"GEMINI_API_KEY": KEY}, "GEMINI_API_KEY"),
        (
            {"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_API_KEY": KEY},
            "GOOGLE_API_KEY (Vertex AI express mode)",
        ),
        (
            {"GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_CLOUD_LOCATION": "l"},
            "Vertex AI (project p, l; credentials: no ADC file here (the metadata server's?))",
        ),
        ({"GOOGLE_API_KEY": KEY}, None),  # without the Vertex switch the CLI ignores it
        ({}, None),
    ],
)
def test_auth_sources(env, source):
    assert auth_source_in(env) == source
