from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from orchestrator.proc import run_command

REPO = Path(__file__).resolve().parents[2]


def orch(args, tmp_path, env_extra=None):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "ORCHESTRATOR_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        **(env_extra or {}),
    }
    return run_command([sys.executable, "-m", "orchestrator", *args], REPO, env=env, timeout_s=60)


def test_run_agent_json_contract(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        yaml.safe_dump({"turns": [{"write_file": {"path": "x.txt", "content": "x"}}, {"text": "all done"}]})
    )
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
    )
    result = orch(
        ["run-agent", "fake", "write x", "--cwd", str(work), "--config", str(config), "--json"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"status", "exit_code", "final_text", "session_id", "files_changed", "usage", "error"}
    assert data["status"] == "succeeded" and data["final_text"] == "all done" and data["error"] is None
    assert data["files_changed"] == ["x.txt"]  # not a git repo: from the agent's own edit events
    assert set(data["usage"]) >= {"input_tokens", "output_tokens", "cost_usd"}


def test_run_agent_failure_exits_1_with_typed_error(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({"turns": [{"error": 429}]}))
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
    )
    result = orch(["run-agent", "fake", "x", "--cwd", str(work), "--config", str(config), "--json"], tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["kind"] == "rate_limit"


def test_bad_config_exits_2_naming_file_and_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("agents: {fake: {timeout: 3}}")
    result = orch(["run-agent", "fake", "x", "--cwd", str(tmp_path), "--config", str(config)], tmp_path)
    assert result.returncode == 2
    assert (
        str(config) in result.stderr
        and "agents.fake.timeout" in result.stderr
        and "timeout_s" in result.stderr
    )


def test_help_and_version(tmp_path):
    assert orch(["--help"], tmp_path).returncode == 0
    version = orch(["--version"], tmp_path)
    assert version.returncode == 0 and "0.1.0" in version.stdout
    unknown = orch(["run-agent", "nosuch", "x"], tmp_path)
    assert unknown.returncode == 2 and "claude" in unknown.stderr
