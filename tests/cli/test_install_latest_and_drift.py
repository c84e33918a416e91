"""`install-clis --latest` and scripts/drift.sh as far as they go without the npm registry (the real
drift run takes minutes and the registry: scripts/drift.sh itself, weekly in examples/drift-check/)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from orchestrator.adapters.pins import PINNED
from orchestrator.cli.install_cmd import installed_versions, package_specs
from orchestrator.proc import child_env, run_command

ROOT = Path(__file__).resolve().parents[2]


def test_package_specs_pinned_and_latest():
    assert package_specs(("claude", "codex")) == [
        f"@anthropic-ai/claude-code@{PINNED['claude'].version}",
        f"@openai/codex@{PINNED['codex'].version}",
    ]
    assert package_specs(("gemini",), latest=True) == ["@google/gemini-cli@latest"]


def test_latest_needs_a_prefix_so_the_pinned_stay(tmp_path):
    env = child_env(os.environ, {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    result = run_command(
        [sys.executable, "-m", "orchestrator", "install-clis", "--latest"], tmp_path, env=env, timeout_s=60
    )
    assert result.returncode == 2
    assert "--latest needs --prefix DIR" in result.stderr
    assert not (tmp_path / "cache").exists()  # nothing was installed anywhere


def test_installed_versions_are_read_from_the_packages(tmp_path):
    manifest = tmp_path / "node_modules" / "@openai" / "codex" / "package.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"name": "@openai/codex", "version": "9.9.9"}')
    assert installed_versions(tmp_path, ("codex", "claude")) == {"codex": "9.9.9"}


def test_drift_script_and_its_scheduled_example():
    script = ROOT / "scripts" / "drift.sh"
    assert run_command(["bash", "-n", str(script)], ROOT, timeout_s=30).returncode == 0
    text = script.read_text()
    assert "install-clis --latest --prefix" in text and "tests/real/test_$cli.py" in text
    workflow = yaml.safe_load((ROOT / "examples" / "drift-check" / "drift.yml").read_text())
    assert workflow[True]["schedule"][0]["cron"]  # YAML reads the key `on` as True
    steps = workflow["jobs"]["drift"]["steps"]
    assert any("bash scripts/drift.sh" in step.get("run", "") for step in steps)
