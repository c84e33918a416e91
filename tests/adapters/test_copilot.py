"""The copilot adapter, with no process but a fake `copilot --version`: command building, and parsing of
recorded real output (tests/fixtures/transcripts/copilot/, refreshed by tests/real/test_copilot.py)."""

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
from orchestrator.adapters.copilot import (
    AUTH_FIX,
    OTEL_FILE,
    READ_ONLY_SHELL,
    USAGE_FILE,
    CopilotAdapter,
    auth_source,
)
from orchestrator.events import (
    AgentErrorEvent,
    AssistantMessage,
    Result,
    SessionStarted,
    ToolUse,
    Usage,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts" / "copilot"
REPO = "/home/dev/repo"
RUN_DIR = Path("/home/dev/.local/state/run")


def lines_of(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8").splitlines()


def parse(name: str) -> list:
    adapter = CopilotAdapter()
    return [event for line in lines_of(name) for event in adapter.parse_line(line)]


def collected_for(name: str) -> dict[Path, str]:
    """The files `finish` reads, as the runner hands them over (recorded beside the transcript)."""
    files: dict[Path, str] = {}
    for suffix, file_name in (("usage.json", USAGE_FILE), ("otel.jsonl", OTEL_FILE)):
        recorded = TRANSCRIPTS / f"{name}.{suffix}"
        if recorded.exists():
            files[RUN_DIR / file_name] = recorded.read_text(encoding="utf-8")
    return files


def judged(name: str, outcome: ProcessOutcome | None = None, collected: dict[Path, str] | None = None):
    """Parse a transcript, add what `finish` adds, and summarize as the runner does."""
    outcome = outcome or ProcessOutcome(exit_code=0)
    events = parse(f"{name}.jsonl")
    events += CopilotAdapter().finish(
        outcome, events, collected_for(name) if collected is None else collected
    )
    return events, summarize(events, outcome)


def of_type(events, cls):
    return [e for e in events if isinstance(e, cls)]


def request(tmp_path: Path, **changes) -> AgentRequest:
    fields = {"prompt": "Fix the bug.", "cwd": tmp_path / "repo", "run_dir": tmp_path / "run"}
    fields.update(changes)
    return AgentRequest(**fields)


# --- build_command ------------------------------------------------------------------------------------


def test_is_registered_and_satisfies_the_protocol():
    adapter = get_adapter("copilot")
    assert isinstance(adapter, CopilotAdapter)
    assert isinstance(adapter, Adapter)
    assert adapter.name == "copilot"
    # GitHub's tokens and the bring-your-own-key provider settings; no other vendor's.
    assert {"COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN", "COPILOT_PROVIDER_API_KEY"} <= set(
        adapter.credential_vars
    )
    assert all(v.startswith(("COPILOT_", "GH_", "GITHUB_")) for v in adapter.credential_vars)


def test_new_task_puts_the_prompt_on_stdin(tmp_path):
    command = CopilotAdapter().build_command(request(tmp_path, prompt="-p is not a flag here"))
    run = tmp_path / "run"
    assert command.argv == (
        "copilot",
        "--output-format",
        "json",
        "--usage-output-file",
        str(run / USAGE_FILE),
        "--no-auto-update",
        "--no-ask-user",
        "--log-dir",
        str(run / "copilot-logs"),
        "--allow-all-tools",
    )
    assert command.stdin == "-p is not a flag here"
    assert command.cwd == tmp_path / "repo"
    assert command.env["COPILOT_AUTO_UPDATE"] == "false"
    assert command.env["COPILOT_OTEL_EXPORTER_TYPE"] == "file"
    assert command.env["COPILOT_OTEL_FILE_EXPORTER_PATH"] == str(run / OTEL_FILE)
    # Both reports are emptied before the spawn (an earlier step's must never count) and read after.
    assert command.setup_files == {run / USAGE_FILE: "", run / OTEL_FILE: ""}
    assert command.collect_files == (run / USAGE_FILE, run / OTEL_FILE)
    assert all(not str(p).startswith(str(tmp_path / "repo")) for p in command.collect_files)


@pytest.mark.parametrize(
    ("permission", "present", "absent"),
    [
        (PermissionMode.EDIT, ["--allow-all-tools"], ["--allow-all", "--deny-tool=write"]),
        (
            PermissionMode.READ_ONLY,
            ["--deny-tool=write", "--allow-tool=shell(git diff:*)", "--allow-tool=shell(cat)"],
            ["--allow-all-tools", "--allow-all"],
        ),
        (PermissionMode.BYPASS, ["--allow-all"], ["--allow-all-tools", "--deny-tool=write"]),
    ],
)
def test_permission_modes_map_to_the_clis_own(tmp_path, permission, present, absent):
    argv = CopilotAdapter().build_command(request(tmp_path, permission=permission)).argv
    for flag in present:
        assert flag in argv
    for flag in absent:
        assert flag not in argv


def test_read_only_allows_only_reading_commands():
    commands = [rule[len("shell(") : -1].split(":")[0] for rule in READ_ONLY_SHELL]
    assert "git diff" in commands and "git log" in commands
    for writer in ("git commit", "git push", "git checkout", "rm", "mv", "sed", "tee", "echo", "python"):
        assert writer not in commands


def test_follow_up_model_extra_args_command_and_env(tmp_path):
    key = "ghp_copilot_test_token_0123456789abcdef0123"
    command = CopilotAdapter().build_command(
        request(
            tmp_path,
            resume_session="17a66243-fe72-4034-8dbc-78f5ea0a1907",
            model="gpt-5",
            extra_args=("--add-dir", "../shared"),
            command="/opt/copilot/bin/copilot",
            env={"COPILOT_GITHUB_TOKEN": key, "COPILOT_AUTO_UPDATE": "true"},
        )
    )
    argv = command.argv
    assert argv[0] == "/opt/copilot/bin/copilot"
    # The optional value must be attached: `--resume ID` could take ID as the prompt.
    assert "--resume=17a66243-fe72-4034-8dbc-78f5ea0a1907" in argv
    assert argv[argv.index("--model") + 1] == "gpt-5"
    assert argv[-2:] == ("--add-dir", "../shared")  # the user's args come last, so they can override
    assert command.env["COPILOT_GITHUB_TOKEN"] == key
    assert command.env["COPILOT_AUTO_UPDATE"] == "true"  # the agent's configured vars win
    assert key not in " ".join(argv)
    assert command.stdin == "Fix the bug."


def test_no_model_and_no_resume_flags_unless_asked(tmp_path):
    argv = CopilotAdapter().build_command(request(tmp_path)).argv
    assert "--model" not in argv
    assert not [a for a in argv if a.startswith(("--resume", "--continue", "-p"))]


# --- parse_line on real transcripts ------------------------------------------------------------------


def test_write_file_transcript():
    events = parse("write_file.jsonl")
    (session,) = of_type(events, SessionStarted)
    assert session.model == "scripted-model"
    edits = of_type(events, ToolUse)
    assert [(e.tool, e.action, e.status) for e in edits] == [
        ("create", "file_edit", "started"),
        ("create", "file_edit", "succeeded"),
    ]
    assert edits[0].path == edits[1].path == f"{REPO}/hello.txt"
    assert edits[0].call_id == edits[1].call_id
    assert [m.text for m in of_type(events, AssistantMessage)] == ["done"]
    (result,) = of_type(events, Result)
    final = json.loads(lines_of("write_file.jsonl")[-1])
    assert result.success and result.session_id == final["sessionId"]
    assert result.final_text == ""  # the CLI's result line carries no text; finish fills it in
    assert not of_type(events, Usage)  # no tokens in the stream


def test_write_file_is_judged_a_success_with_usage_and_final_text():
    events, summary = judged("write_file")
    assert summary.success
    assert summary.final_text == "done"
    assert summary.session_id == json.loads(lines_of("write_file.jsonl")[-1])["sessionId"]
    assert (summary.input_tokens, summary.output_tokens) == (246, 14)
    assert summary.cost_usd == pytest.approx(246 * 1e-6 + 14 * 2e-6)  # priced: Copilot reports no dollars
    assert summary.files_touched == (f"{REPO}/hello.txt",)
    assert isinstance(events[-1], Result) and events[-1].final_text == "done"


def test_resume_counts_this_runs_tokens_not_the_sessions():
    events, summary = judged("resume")
    assert summary.success and summary.final_text == "second done"
    assert (summary.input_tokens, summary.output_tokens) == (123, 7)  # from this run's spans
    report = json.loads((TRANSCRIPTS / "resume.usage.json").read_text())
    assert report["modelMetrics"]["scripted-model"]["usage"]["inputTokens"] == 369  # the whole session


def test_usage_report_is_the_fallback_without_spans():
    collected = {RUN_DIR / USAGE_FILE: (TRANSCRIPTS / "write_file.usage.json").read_text()}
    _, summary = judged("write_file", collected=collected)
    assert (summary.input_tokens, summary.output_tokens) == (246, 14)


def test_shell_transcript():
    commands = [e for e in parse("shell.jsonl") if isinstance(e, ToolUse)]
    assert [(e.tool, e.action, e.status) for e in commands] == [
        ("bash", "command_run", "started"),
        ("bash", "command_run", "succeeded"),
    ]
    assert commands[0].command == "mkdir -p out && echo ran > out/shell.txt"
    assert judged("shell")[1].success


def test_edit_transcript_creates_then_edits():
    events, summary = judged("edit_file")
    tools = [(e.tool, e.status) for e in of_type(events, ToolUse)]
    assert (
        tools
        == [("create", "started"), ("create", "succeeded")] + [("edit", "started"), ("edit", "succeeded")] * 2
    )
    assert summary.success and summary.files_touched == (f"{REPO}/notes.txt",)


def test_failed_tools_and_a_denied_path_outside_the_directory():
    events, summary = judged("edit_mode_failures")
    done = [(e.tool, e.action, e.status, e.detail) for e in of_type(events, ToolUse) if e.status != "started"]
    assert done[0] == ("edit", "file_edit", "failed", "No match found")
    assert done[1] == ("bash", "command_run", "failed", "exit code 3")  # the CLI calls it a success
    assert done[2][:3] == ("create", "file_edit", "refused")
    # The CLI said success and exited 0; the denial makes it a refusal naming the path.
    assert json.loads(lines_of("edit_mode_failures.jsonl")[-1])["exitCode"] == 0
    assert not summary.success
    assert summary.error_kind == "refused"
    assert "/etc/outside.txt" in summary.error_message


def test_read_only_denial_is_refused_although_the_cli_exits_0():
    events, summary = judged("read_only_refused")
    refused = [e for e in of_type(events, ToolUse) if e.status == "refused"]
    assert [(e.tool, e.action) for e in refused] == [("create", "file_edit")]
    assert "`write`" in refused[0].detail
    assert not summary.success
    assert summary.error_kind == "refused"
    assert f"{REPO}/review.txt" in summary.error_message
    assert summary.files_touched == ()


def test_read_only_command_denial():
    events, summary = judged("read_only_command_refused")
    commands = [(e.status, e.command) for e in of_type(events, ToolUse) if e.action == "command_run"]
    assert commands == [
        ("started", "git status --short"),
        ("succeeded", None),
        ("started", "echo x > written.txt"),
        ("refused", None),
    ]
    assert summary.error_kind == "refused" and "echo x > written.txt" in summary.error_message


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("http_401", "auth", "COPILOT_PROVIDER_API_KEY"),
        ("http_429", "rate_limit", "429"),
        ("http_500", "other", "500"),
    ],
)
def test_api_failures_are_typed(name, kind, words):
    final = json.loads(lines_of(f"{name}.jsonl")[-1])
    outcome = ProcessOutcome(exit_code=final["exitCode"])
    events, summary = judged(name, outcome)
    assert final["exitCode"] == 1
    assert [e.kind for e in of_type(events, AgentErrorEvent)] == [kind]
    assert not summary.success
    assert summary.error_kind == kind and words in summary.error_message
    assert summary.input_tokens == 0  # failed calls carry no usage


def test_hang_ended_by_the_idle_limit():
    outcome = ProcessOutcome(exit_code=None, idle=True, idle_limit_s=4)
    events, summary = judged("hang_idle", outcome)
    assert not of_type(events, Result)
    assert summary.error_kind == "idle"
    assert [e.kind for e in of_type(events, AgentErrorEvent)] == ["idle"]


def test_missing_login_is_auth_from_stderr_text():
    assert parse("not_logged_in.jsonl") == []
    stderr = (TRANSCRIPTS / "not_logged_in.stderr.txt").read_text()
    events, summary = judged("not_logged_in", ProcessOutcome(exit_code=1, output_tail=stderr))
    assert summary.error_kind == "auth"
    assert "No authentication information found" in summary.error_message
    assert AUTH_FIX in summary.error_message
    assert summary.input_tokens == 0  # the report it wrote is empty


def test_shared_sample_parses():
    events = parse("shared_sample.jsonl")
    assert [e.status for e in of_type(events, ToolUse)] == ["started", "succeeded"]
    assert of_type(events, Result)[0].success
    usage = CopilotAdapter().finish(
        ProcessOutcome(exit_code=0),
        events,
        {RUN_DIR / USAGE_FILE: (TRANSCRIPTS / "shared_sample.usage.json").read_text()},
    )
    assert [(u.input_tokens, u.output_tokens, u.model) for u in of_type(usage, Usage)] == [
        (246, 14, "fake-model")
    ]
    assert of_type(usage, Usage)[0].cost_usd is None  # an unknown model has no price


def test_every_recorded_line_parses_without_error():
    adapter = CopilotAdapter()
    for path in sorted(TRANSCRIPTS.glob("*.jsonl")):
        if path.name.endswith(".otel.jsonl"):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            adapter.parse_line(line)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Error: No authentication information found.",
        '{"type":"assistant.message","data":',
        "[1, 2]",
        '{"type":"future.event","data":{"x":1}}',
        '{"type":"assistant.message","data":"not an object"}',
        '{"type":"tool.execution_start","data":{"arguments":"x"}}',
        '{"type":"assistant.message_delta","ephemeral":true,"data":{"deltaContent":"do"}}',
    ],
)
def test_unknown_or_partial_lines_never_crash(line):
    events = CopilotAdapter().parse_line(line)
    assert all(not isinstance(e, Result) for e in events)


def test_session_error_kinds_by_type_and_status():
    def kind(data):
        (error,) = CopilotAdapter().parse_line(json.dumps({"type": "session.error", "data": data}))
        return error.kind

    assert kind({"errorType": "authentication", "message": "m"}) == "auth"
    assert kind({"errorType": "rate_limit", "message": "m"}) == "rate_limit"
    assert kind({"errorType": "query", "statusCode": 403, "message": "m"}) == "auth"
    assert kind({"errorType": "query", "statusCode": 429, "message": "m"}) == "rate_limit"
    assert kind({"errorType": "query", "statusCode": 500, "message": "m"}) == "other"


# --- finish on its own ---------------------------------------------------------------------------------


def test_exit_without_a_result_is_a_crash():
    events = parse("write_file.jsonl")[:-1]  # cut before the result line
    outcome = ProcessOutcome(exit_code=134, output_tail="Segmentation fault\n")
    added = CopilotAdapter().finish(outcome, events, {})
    (error,) = of_type(added, AgentErrorEvent)
    assert error.kind == "crashed" and "134" in error.message and "Segmentation fault" in error.message
    assert not summarize(events + added, outcome).success


def test_offline_without_a_provider_is_auth():
    outcome = ProcessOutcome(
        exit_code=1,
        output_tail="Offline mode requires a local model provider. Set COPILOT_PROVIDER_BASE_URL to configure one.",
    )
    (error,) = of_type(CopilotAdapter().finish(outcome, [], {}), AgentErrorEvent)
    assert error.kind == "auth"


def test_rate_limit_in_text_only_and_json_lines_are_not_read_as_text():
    adapter = CopilotAdapter()
    limited = adapter.finish(ProcessOutcome(exit_code=1, output_tail="Error: 429 Too Many Requests"), [], {})
    assert [e.kind for e in of_type(limited, AgentErrorEvent)] == ["rate_limit"]
    # A tool's output in the JSON stream that mentions 401 is no login failure.
    json_tail = '{"type":"tool.execution_complete","data":{"result":{"content":"HTTP 401"}}}'
    crashed = adapter.finish(ProcessOutcome(exit_code=1, output_tail=json_tail), [], {})
    assert [e.kind for e in of_type(crashed, AgentErrorEvent)] == ["crashed"]


def test_wall_clock_limit_wins_over_everything_else():
    events = parse("read_only_refused.jsonl")
    outcome = ProcessOutcome(exit_code=None, timed_out=True, wall_limit_s=30)
    added = CopilotAdapter().finish(outcome, events, {})
    assert [e.kind for e in of_type(added, AgentErrorEvent)] == ["timeout"]


def test_broken_reports_give_no_usage():
    adapter = CopilotAdapter()
    for text in ("", "{not json", "[]", '{"modelMetrics": []}', '{"type":"span","attributes":{}}'):
        collected = {RUN_DIR / USAGE_FILE: text, RUN_DIR / OTEL_FILE: text}
        assert not of_type(adapter.finish(ProcessOutcome(exit_code=0), [], collected), Usage)


# --- availability -------------------------------------------------------------------------------------


def fake_copilot(tmp_path: Path, version_line: str = "GitHub Copilot CLI 1.0.102.", rc: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "copilot"
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\necho \"Run 'copilot update' to check.\"\nexit {rc}\n")
    exe.chmod(0o755)
    return exe


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(home), **extra}


def test_not_installed(tmp_path):
    env = {"PATH": str(tmp_path / "nothing"), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    status = CopilotAdapter().availability(env)
    assert not status.installed and not status.ready
    assert status.fix == install_hint("copilot")
    assert "npm install @github/copilot@1.0.102" in status.fix


def test_installed_without_auth_is_not_ready(tmp_path):
    fake_copilot(tmp_path)
    status = CopilotAdapter().availability(base_env(tmp_path))
    assert status.installed and status.path == str(tmp_path / "bin" / "copilot")
    assert status.version == "1.0.102" and status.version_tested
    assert not status.auth_configured and not status.ready
    assert status.fix == AUTH_FIX and "/login" in status.fix


@pytest.mark.parametrize(
    ("extra", "source"),
    [
        ({"GITHUB_TOKEN": "g", "GH_TOKEN": "h"}, "GH_TOKEN"),
        ({"COPILOT_GITHUB_TOKEN": "c", "GH_TOKEN": "h"}, "COPILOT_GITHUB_TOKEN"),
        (
            {"COPILOT_PROVIDER_BASE_URL": "http://127.0.0.1:1/v1", "COPILOT_MODEL": "m"},
            "own model provider http://127.0.0.1:1/v1 (openai; no key: a local server)",
        ),
    ],
)
def test_auth_from_the_environment_in_copilots_order(tmp_path, extra, source):
    fake_copilot(tmp_path)
    status = CopilotAdapter().availability(base_env(tmp_path, **extra))
    assert status.ready and status.reason == "ready"
    assert status.auth_source == source


def test_own_provider_without_a_model_is_not_ready_and_says_so(tmp_path):
    # BYOK needs a model (`copilot help providers`), from COPILOT_MODEL or the agent's model
    fake_copilot(tmp_path)
    env = base_env(tmp_path, COPILOT_PROVIDER_BASE_URL="http://127.0.0.1:1/v1")
    status = CopilotAdapter().availability(env)
    assert not status.ready and "has no model" in status.reason and "COPILOT_MODEL" in (status.fix or "")
    assert CopilotAdapter().availability(env, model="gpt-5").ready


def test_a_login_stored_under_home(tmp_path):
    env = base_env(tmp_path)
    config = Path(env["HOME"]) / ".copilot" / "config.json"
    config.parent.mkdir()
    config.write_text('{\n  "firstLaunchAt": "2026-11-21T06:02:09.518Z"\n}\n')
    assert auth_source(env) is None  # what a first launch leaves is no login
    config.write_text(
        '// User settings belong in settings.json.\n{\n  "lastLoggedInUser": {"host": "https://github.com",'
        ' "login": "octocat"},\n  "loggedInUsers": [{"host": "https://github.com", "login": "octocat"}]\n}\n'
    )
    assert auth_source(env) == f"login stored in {config}"
    moved = tmp_path / "copilot-home"
    moved.mkdir()
    assert auth_source({**env, "COPILOT_HOME": str(moved)}) is None


def test_a_github_cli_login(tmp_path):
    env = base_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "config"))
    hosts = tmp_path / "config" / "gh" / "hosts.yml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text("github.com:\n    git_protocol: https\n")
    assert auth_source(env) is None
    hosts.write_text("github.com:\n    git_protocol: https\n    user: octocat\n")
    assert auth_source(env) == f"GitHub CLI login ({hosts})"


def test_an_untested_version_is_ready_but_says_so(tmp_path):
    fake_copilot(tmp_path, "GitHub Copilot CLI 1.0.200.")
    status = CopilotAdapter().availability(base_env(tmp_path, GH_TOKEN="t"))
    assert status.ready and not status.version_tested
    assert status.version == "1.0.200" and status.tested_version == "1.0.102"
    assert "untested" in status.reason


def test_a_broken_executable_is_not_ready(tmp_path):
    exe = fake_copilot(tmp_path, "Segmentation fault", rc=139)
    status = CopilotAdapter().availability(base_env(tmp_path, GH_TOKEN="t"), command=str(exe))
    assert status.installed and not status.ready and status.version is None
    assert "--version` failed" in status.reason


def test_availability_json_shape(tmp_path):
    fake_copilot(tmp_path)
    data = CopilotAdapter().availability(base_env(tmp_path, GH_TOKEN="t")).to_json()
    assert data["agent"] == "copilot" and data["auth_source"] == "GH_TOKEN"
    assert "t" not in {v for v in data.values() if isinstance(v, str)}  # names, never values
    assert os.sep in data["path"]
