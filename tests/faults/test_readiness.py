"""Readiness follows each CLI's own configuration, costs little, and never hands a review to the CLI
that wrote the code.

The CLIs are the real pinned ones (their `--version` is what readiness runs); their set-ups live in a
home of the test's own (~/.codex/config.toml, ~/.claude/settings.json, ...). One case runs the real
Codex through a model provider of its own, pointed at the scripted model server.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters.base import cli_cache_bin_dir
from orchestrator.testing.fault_project import FaultProject

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
GATEWAY_KEY = "gwKey-4d1f0b7e9a23c6d8"


def real_cli(name: str) -> str:
    path = cli_cache_bin_dir(os.environ) / name
    assert os.access(path, os.X_OK), f"{path} missing: run `orchestrator install-clis`"
    return str(path)


def agents_json(project: FaultProject, config: dict, **env: str) -> dict[str, dict]:
    path = project.tmp / "agents-config.yaml"
    path.write_text(yaml.safe_dump(config))
    listed = project.orchestrator("agents", "--json", "--config", str(path), limit_s=30, **env)
    assert listed.code == 0, listed.output
    assert GATEWAY_KEY not in listed.output
    return {row["agent"]: row for row in json.loads(listed.result.stdout)}


def codex_provider_toml(base_url: str = "https://example.openai.azure.com/openai") -> str:
    return (
        'model_provider = "azure"\n\n[model_providers.azure]\nname = "Azure"\n'
        f'base_url = "{base_url}"\nenv_key = "ZZ_GATEWAY_KEY"\nwire_api = "responses"\n'
    )


def test_codex_with_its_own_model_provider_in_config_toml_is_ready(tmp_path):
    project = FaultProject(tmp_path)
    (project.home / ".codex").mkdir(parents=True)
    (project.home / ".codex" / "config.toml").write_text(codex_provider_toml())
    config = {"agents": {"codex": {"command": real_cli("codex")}}}
    found = agents_json(project, config, ZZ_GATEWAY_KEY=GATEWAY_KEY)["codex"]
    assert found["ready"], found
    assert found["auth_source"] == "model provider 'azure' (key from ZZ_GATEWAY_KEY in ~/.codex/config.toml)"
    missing = agents_json(project, config)["codex"]  # the key it names is not set
    assert not missing["ready"]
    assert "takes its key from ZZ_GATEWAY_KEY, which is not set" in missing["reason"]


def test_codex_provider_from_args_and_a_local_one(tmp_path):
    project = FaultProject(tmp_path)
    args = [
        "-c",
        "model_provider=gw",
        "-c",
        'model_providers.gw={name="gw", base_url="http://x/v1", env_key="ZZ_GATEWAY_KEY"}',
    ]
    config = {"agents": {"codex": {"command": real_cli("codex"), "args": args}}}
    found = agents_json(project, config, ZZ_GATEWAY_KEY=GATEWAY_KEY)["codex"]
    assert (
        found["ready"]
        and found["auth_source"] == "model provider 'gw' (key from ZZ_GATEWAY_KEY in agents.codex.args)"
    )
    local = {"agents": {"codex": {"command": real_cli("codex"), "args": ["--oss"]}}}
    assert (
        agents_json(project, local)["codex"]["auth_source"] == "model provider 'oss' (local, no key needed)"
    )
    undefined = {"agents": {"codex": {"command": real_cli("codex"), "args": ["-c", "model_provider=nope"]}}}
    row = agents_json(project, undefined)["codex"]
    assert not row["ready"] and "'nope'" in row["reason"] and "not defined" in row["reason"]


def test_claude_gemini_and_copilot_set_ups(tmp_path):
    project = FaultProject(tmp_path)
    (project.home / ".claude").mkdir(parents=True)
    (project.home / ".claude" / "settings.json").write_text(json.dumps({"apiKeyHelper": "/usr/bin/get-key"}))
    commands = {name: {"command": real_cli(name)} for name in ("claude", "gemini", "copilot")}
    rows = agents_json(project, {"agents": commands})
    assert rows["claude"]["ready"]
    assert rows["claude"]["auth_source"] == f"apiKeyHelper in {project.home / '.claude' / 'settings.json'}"
    assert not rows["gemini"]["ready"] and not rows["copilot"]["ready"]

    (project.home / ".claude" / "settings.json").unlink()
    rows = agents_json(
        project,
        {"agents": commands},
        CLAUDE_CODE_USE_BEDROCK="1",
        AWS_REGION="eu-west-1",
        AWS_PROFILE="work",
        GOOGLE_GEMINI_BASE_URL="http://gateway.local/v1",
        COPILOT_PROVIDER_BASE_URL="http://127.0.0.1:11434/v1",
        COPILOT_MODEL="qwen",
    )
    assert (
        rows["claude"]["auth_source"]
        == "Amazon Bedrock (CLAUDE_CODE_USE_BEDROCK, eu-west-1; credentials: AWS_PROFILE)"
    )
    assert not rows["gemini"]["ready"] and "needs the key with it" in rows["gemini"]["reason"]
    assert rows["copilot"]["ready"]
    assert (
        rows["copilot"]["auth_source"]
        == "own model provider http://127.0.0.1:11434/v1 (openai; no key: a local server)"
    )

    rows = agents_json(
        project,
        {"agents": commands},
        CLAUDE_CODE_USE_VERTEX="1",
        CLOUD_ML_REGION="us-east5",
        GOOGLE_GENAI_USE_VERTEXAI="true",
        GOOGLE_CLOUD_PROJECT="proj",
        GOOGLE_CLOUD_LOCATION="us-central1",
    )
    assert not rows["claude"]["ready"] and "ANTHROPIC_VERTEX_PROJECT_ID" in rows["claude"]["reason"]
    assert rows["gemini"]["ready"] and rows["gemini"]["auth_source"].startswith(
        "Vertex AI (project proj, us-central1"
    )


def test_a_review_never_falls_back_to_the_author_the_run_is_refused(tmp_path):
    # codex is named reviewer but has no credentials; the only ready CLI is the one that implements.
    project = FaultProject(
        tmp_path,
        workflow=[{"agent": "fake", "task": "implement"}, {"agent": "codex", "task": "review"}],
    )
    config = yaml.safe_load(project.config.read_text())
    config["agents"]["codex"] = {"command": real_cli("codex")}
    config["fallback_order"] = ["fake", "codex"]
    project.config.write_text(yaml.safe_dump(config))
    ran = project.run(limit_s=30)
    assert ran.code == 2, ran.output
    assert "review (codex)" in ran.result.stderr
    assert "(fake) wrote the code under review" in ran.result.stderr
    assert project.run_branches() == []  # refused before any branch exists
    assert not (project.state / "runs").exists() or not any((project.state / "runs").iterdir())
    project.assert_untouched()
    project.assert_no_leak(ran.output)


@pytest.mark.real
def test_codex_reviews_through_its_own_provider_and_gets_the_key(tmp_path, model_server):
    server = model_server([{"text": APPROVE}])
    project = FaultProject(
        tmp_path,
        workflow=[{"agent": "fake", "task": "implement"}, {"agent": "codex", "task": "review"}],
    )
    (project.home / ".codex").mkdir(parents=True)
    (project.home / ".codex" / "config.toml").write_text(
        codex_provider_toml(server.url.rstrip("/") + "/v1").replace(
            'name = "Azure"', 'name = "Azure"\nrequest_max_retries = 1\nstream_max_retries = 1'
        )
        + "\n[analytics]\nenabled = false\n"
    )
    config = yaml.safe_load(project.config.read_text())
    config["agents"]["codex"] = {
        "command": real_cli("codex"),
        "model": "scripted-model",
        "args": ["--disable", "plugins"],
    }
    config["fallback_order"] = ["fake", "codex"]
    project.config.write_text(yaml.safe_dump(config))
    ran = project.run(limit_s=120, ZZ_GATEWAY_KEY=GATEWAY_KEY)  # in the user's environment only
    assert ran.code == 0, ran.output
    assert "codex" in ran.result.stderr and "fake takes the step" not in ran.result.stderr
    requests = server.main_requests()
    assert requests, "codex never reached its provider"
    assert any(k.lower() == "authorization" for k in requests[0].headers)
    project.assert_untouched()
    project.assert_no_leak(ran.output, secrets=[GATEWAY_KEY])


def slow_cli(folder: Path, name: str, version: str, seconds: float, calls: Path) -> str:
    script = folder / name
    script.write_text(f"#!/bin/sh\ndate +%s.%N >> {calls}\nsleep {seconds}\necho '{version}'\n")
    script.chmod(0o755)
    return str(script)


def test_versions_are_asked_at_once_and_remembered_by_file(tmp_path):
    project = FaultProject(tmp_path)
    bins = tmp_path / "bins"
    bins.mkdir()
    calls = tmp_path / "calls"
    commands = {
        name: {"command": slow_cli(bins, name, "9.9.9", 1.5, calls)}
        for name in ("claude", "codex", "gemini", "copilot")
    }
    env = {
        "ANTHROPIC_API_KEY": "k" * 12,
        "CODEX_API_KEY": "k" * 12,
        "GEMINI_API_KEY": "k" * 12,
        "GH_TOKEN": "k" * 12,
    }
    started = time.monotonic()
    rows = agents_json(project, {"agents": commands}, **env)
    first = time.monotonic() - started
    assert all(row["version"] == "9.9.9" for row in rows.values())
    starts = [float(t) for t in calls.read_text().split()]
    assert len(starts) == 4
    # All four asked at once: one after another, the last would start 4.5 s after the first.
    assert max(starts) - min(starts) < 1.5
    started = time.monotonic()
    agents_json(project, {"agents": commands}, **env)
    assert len(calls.read_text().split()) == 4  # remembered: no `--version` run at all
    assert time.monotonic() - started < first
    script = Path(commands["gemini"]["command"])
    script.write_text(script.read_text().replace("9.9.9", "9.9.10"))  # an upgrade: another size
    rows = agents_json(project, {"agents": commands}, **env)
    assert rows["gemini"]["version"] == "9.9.10" and len(calls.read_text().split()) == 5
    cache = json.loads((project.state / "cli-versions.json").read_text())
    assert cache[os.path.realpath(script)]["version"] == "9.9.10"
