"""`orchestrator testing serve-model` as a user runs it, `run --metrics-file`, and logs kept off stdout."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from orchestrator.proc import ProcSpec, SubprocessCommunicator, child_env, run_command

REPO = Path(__file__).resolve().parents[2]


def test_serve_model_serves_a_scenario_and_writes_a_config(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({"turns": [{"text": "hello from the script"}]}))
    config = tmp_path / "orch.yaml"
    lines: list[str] = []
    cancel = threading.Event()
    spec = ProcSpec(
        argv=[
            sys.executable,
            "-m",
            "orchestrator",
            "testing",
            "serve-model",
            "--scenario",
            str(scenario),
            "--write-config",
            str(config),
        ],
        cwd=REPO,
        env=child_env(os.environ),
        wall_timeout_s=60,
    )
    result_box = {}
    worker = threading.Thread(
        target=lambda: result_box.update(
            r=SubprocessCommunicator().run(spec, lambda s, line: lines.append(line), cancel)
        )
    )
    worker.start()
    deadline = time.monotonic() + 30
    while not config.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    written = yaml.safe_load(config.read_text())
    assert set(written["agents"]) == {"claude", "codex", "gemini", "copilot"}
    base = written["agents"]["claude"]["env"]["ANTHROPIC_BASE_URL"]
    assert base.startswith("http://127.0.0.1:")
    body = json.dumps(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {}}}}],
        }
    )
    request = urllib.request.Request(
        f"{base}/v1/messages", data=body.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["content"][0]["text"] == "hello from the script"
    cancel.set()  # Ctrl-C (SIGINT) ends it cleanly
    worker.join(30)
    assert any("scripted model server on http://127.0.0.1:" in line for line in lines)
    assert any(line.startswith("served 1 requests, 1 turns used") for line in lines), lines


def _fake_setup(tmp_path, turns):
    repo = tmp_path / "repo"
    repo.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-q", "--allow-empty", "-m", "i"],
        repo,
        check=True,
    )
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {"steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]}
        )
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
    )
    env = child_env(os.environ, {"ORCHESTRATOR_HOME": str(tmp_path / "state"), "CI": "true"})
    return repo, workflow, config, env


def test_run_writes_prometheus_metrics(tmp_path):
    approve = '```json\n{"verdict": "approve", "findings": []}\n```'
    repo, workflow, config, env = _fake_setup(
        tmp_path, [{"write_file": {"path": "a.txt", "content": "a"}}, {"text": "done"}, {"text": approve}]
    )
    metrics = tmp_path / "out" / "run.prom"
    result = run_command(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "add a",
            "--workflow",
            str(workflow),
            "--config",
            str(config),
            "--metrics-file",
            str(metrics),
        ],
        repo,
        env=env,
        timeout_s=120,
    )
    assert result.returncode == 0, result.stderr
    text = metrics.read_text()
    assert 'orchestrator_steps_total{agent="fake",status="succeeded",task="implement"} 1.0' in text
    assert 'orchestrator_runs_total{status="approved",workflow="wf"} 1.0' in text
    assert "orchestrator_tokens_total" in text


def test_logs_never_reach_stdout(tmp_path):
    repo, _, config, env = _fake_setup(tmp_path, [{"text": "done"}])
    env = {**env, "ORCHESTRATOR_LOG_LEVEL": "debug"}
    result = run_command(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run-agent",
            "fake",
            "x",
            "--cwd",
            str(repo),
            "--config",
            str(config),
            "--json",
        ],
        repo,
        env=env,
        timeout_s=60,
    )
    assert json.loads(result.stdout)["status"] == "succeeded"
