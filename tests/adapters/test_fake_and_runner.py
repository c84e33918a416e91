"""The agent step runner, end to end with the fake agent (a real process)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import yaml

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import AgentRequest, PermissionMode
from orchestrator.adapters.runner import run_agent_step
from orchestrator.config import AgentConfig
from orchestrator.events import AgentErrorEvent, Result, ToolUse, Usage
from orchestrator.proc import run_command


def make_repo(path: Path) -> Path:
    path.mkdir()
    run_command(["git", "init", "-q"], path, check=True)
    run_command(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "i"],
        path,
        check=True,
    )
    return path


def scenario(tmp_path: Path, turns: list) -> dict[str, str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"turns": turns}), encoding="utf-8")
    return {"ORCHESTRATOR_FAKE_SCENARIO": str(path)}


def step(tmp_path, turns, *, permission=PermissionMode.EDIT, config=None, cancel=None, transcript=None):
    repo = tmp_path / "repo" if (tmp_path / "repo").exists() else make_repo(tmp_path / "repo")
    request = AgentRequest(
        prompt="do it",
        cwd=repo,
        run_dir=tmp_path / "run",
        permission=permission,
        env=scenario(tmp_path, turns) if turns is not None else {},
    )
    seen = []
    result = run_agent_step(
        get_adapter("fake"),
        request,
        config or AgentConfig(timeout_s=20, idle_timeout_s=20),
        parent_env=os.environ,
        on_event=seen.append,
        cancel=cancel,
        transcript=transcript,
    )
    return result, seen, repo


def test_edit_step_succeeds_with_events_usage_and_changed_files(tmp_path):
    transcript = tmp_path / "t.jsonl"
    result, seen, repo = step(
        tmp_path,
        [{"write_file": {"path": "a.txt", "content": "A"}}, {"shell": "echo x > b.txt"}, {"text": "done"}],
        transcript=transcript,
    )
    assert result.success and result.summary.final_text == "done"
    assert (repo / "a.txt").read_text() == "A" and (repo / "b.txt").exists()
    assert result.files_changed == ["a.txt", "b.txt"]
    assert result.summary.input_tokens == 3 * 123 and result.summary.cost_usd is not None
    assert any(isinstance(e, ToolUse) and e.action == "file_edit" and e.status == "succeeded" for e in seen)
    assert any(isinstance(e, Usage) for e in seen) and isinstance(seen[-1], Result)
    lines = transcript.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "session" and len(lines) == len([e for e in seen])
    assert (tmp_path / "run" / "tmp").is_dir()


def test_without_a_scenario_an_edit_step_appends_a_line_as_its_scenario_twin_would(tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "twin").mkdir()
    result, seen, repo = step(tmp_path / "bare", None)
    twin_turns = [{"write_file": {"path": "orchestrator-fake.txt", "content": "x\n"}}, {"text": "done"}]
    twin, twin_seen, _ = step(tmp_path / "twin", twin_turns)
    assert result.success and result.summary.final_text == "done" == twin.summary.final_text
    assert (repo / "orchestrator-fake.txt").read_text().startswith("fake agent step ")
    assert result.files_changed == ["orchestrator-fake.txt"] == twin.files_changed
    assert [type(e).__name__ for e in seen] == [type(e).__name__ for e in twin_seen]
    assert result.summary.input_tokens == twin.summary.input_tokens == 2 * 123
    again, _, _ = step(tmp_path / "bare", None)  # a second step appends
    assert again.success and len((repo / "orchestrator-fake.txt").read_text().splitlines()) == 2


def test_without_a_scenario_a_review_approves(tmp_path):
    result, _, repo = step(tmp_path, None, permission=PermissionMode.READ_ONLY)
    assert result.success and '"verdict": "approve"' in result.summary.final_text
    assert result.files_changed == [] and not (repo / "orchestrator-fake.txt").exists()


def test_without_a_scenario_the_fake_agent_imports_neither_pydantic_nor_the_orchestrator(tmp_path):
    # Its start is on every fake step's critical path (benchmarks, the demo): a fresh interpreter.
    probe = (
        "import json, sys\n"
        "from orchestrator.adapters import fake_agent\n"
        "fake_agent.main(['--permission', 'read_only', 'review it'])\n"
        "heavy = ('pydantic', 'orchestrator.events', 'orchestrator.proc', 'orchestrator.testing.scenario')\n"
        "print(json.dumps(sorted(name for name in heavy if name in sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {key: value for key, value in os.environ.items() if key != "ORCHESTRATOR_FAKE_SCENARIO"}
    env["PYTHONPATH"] = str(root)
    done = run_command([sys.executable, "-c", probe], tmp_path, env=env, timeout_s=60)
    assert done.ok, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_read_only_edit_is_refused_not_success(tmp_path):
    result, _, repo = step(
        tmp_path,
        [{"write_file": {"path": "a.txt", "content": "A"}}, {"text": "done"}],
        permission=PermissionMode.READ_ONLY,
    )
    assert not result.success and result.summary.error_kind == "refused"
    assert not (repo / "a.txt").exists() and result.files_changed == []
    assert result.exit_code == 0  # the process said all was fine; the events say otherwise


def test_api_error_is_typed(tmp_path):
    result, seen, _ = step(tmp_path, [{"error": 401}])
    assert not result.success and result.summary.error_kind == "auth"
    assert any(isinstance(e, AgentErrorEvent) and e.kind == "auth" for e in seen)


def test_hang_ends_as_idle_within_limit(tmp_path):
    start = time.monotonic()
    result, _, _ = step(tmp_path, [{"hang": None}], config=AgentConfig(timeout_s=30, idle_timeout_s=1))
    assert result.summary.error_kind == "idle" and not result.success
    assert time.monotonic() - start < 1 + 5


def test_cancel_ends_the_step(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result, _, _ = step(tmp_path, [{"hang": None}], cancel=cancel)
    assert not result.success and result.process is not None and result.process.cancelled


def test_missing_executable_is_not_installed(tmp_path):
    repo = make_repo(tmp_path / "repo")
    request = AgentRequest(prompt="x", cwd=repo, run_dir=tmp_path / "run", command="/nonexistent/claude")
    result = run_agent_step(get_adapter("fake"), request, AgentConfig(), parent_env=os.environ)
    assert result.summary.error_kind == "not_installed"
    assert "was not found" in (result.summary.error_message or "")
    assert "hint: check the agent's `command`" in (result.summary.error_message or "")


def test_result_marks_done_even_if_the_cli_hangs_after_answering(tmp_path):
    # PEERS #3 (codex exec hangs after answering): the result event, not the exit, ends the step.
    repo = make_repo(tmp_path / "repo")
    script = tmp_path / "hangs_after_result.py"
    script.write_text(
        "import json,sys,time\n"
        "print(json.dumps({'type':'result','success':True,'text':'ok','session_id':'s1'}), flush=True)\n"
        "time.sleep(60)\n"
    )
    request = AgentRequest(prompt="x", cwd=repo, run_dir=tmp_path / "run", command=None)
    adapter = get_adapter("fake")
    from orchestrator.adapters.base import Command

    class HangsAfterResult(type(adapter)):  # same parser, another program
        def build_command(self, request):
            return Command(argv=(os.sys.executable, str(script)), cwd=request.cwd)

    start = time.monotonic()
    result = run_agent_step(
        HangsAfterResult(),
        request,
        AgentConfig(timeout_s=60, idle_timeout_s=60),
        parent_env=os.environ,
        result_grace_s=0.5,
    )
    assert result.success and result.ended_after_result
    assert time.monotonic() - start < 5


def test_a_session_that_reports_running_totals_is_charged_per_step(tmp_path):
    from orchestrator.adapters.base import StepSummary
    from orchestrator.adapters.runner import _step_share_of_session

    def summary(tokens_in, session="s1"):
        return StepSummary(True, "", session, tokens_in, tokens_in // 10, 0, tokens_in / 1000, None, None, ())

    run_dir = tmp_path / "run"
    first = AgentRequest(prompt="x", cwd=tmp_path, run_dir=run_dir)
    assert _step_share_of_session(summary(100), first).input_tokens == 100
    resumed = AgentRequest(prompt="y", cwd=tmp_path, run_dir=run_dir, resume_session="s1")
    second = _step_share_of_session(summary(250), resumed)
    assert (second.input_tokens, second.output_tokens) == (150, 15)
    assert abs(second.cost_usd - 0.15) < 1e-9
    third = _step_share_of_session(summary(400), resumed)
    assert third.input_tokens == 150
    # Another session is not confused with this one.
    other = AgentRequest(prompt="z", cwd=tmp_path, run_dir=run_dir, resume_session="s2")
    assert _step_share_of_session(summary(80, "s2"), other).input_tokens == 80
