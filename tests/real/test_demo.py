"""`orchestrator demo`: the default workflow with the real CLIs against the scripted model server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from orchestrator.proc import run_command
from orchestrator.testing.checkout import snapshot_checkout

REPO = Path(__file__).resolve().parents[2]


def test_demo_is_approved_after_a_requested_change(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
        "ORCHESTRATOR_HOME": str(tmp_path / "state"),
        "CI": "true",
    }
    if os.environ.get("ORCHESTRATOR_CLI_DIR"):
        env["ORCHESTRATOR_CLI_DIR"] = os.environ["ORCHESTRATOR_CLI_DIR"]
    result = run_command(
        [sys.executable, "-m", "orchestrator", "demo", "--dir", str(tmp_path / "demos"), "--json"],
        REPO,
        env=env,
        timeout_s=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "approved" and report["stop_reason"] == "approved"
    steps = [(s["id"], s["agent"], s["status"]) for s in report["steps"]]
    assert steps == [
        ("i1-s1-implement", "claude", "succeeded"),
        ("i1-s2-gate", "gate", "failed"),  # the bug the reviewer then asks to fix
        ("i1-s3-review", "codex", "succeeded"),
        ("i1-s4-refine", "gemini", "succeeded"),
        ("i2-s2-gate", "gate", "succeeded"),
        ("i2-s3-review", "codex", "succeeded"),
    ]
    editing = [s for s in report["steps"] if s["commit"]]
    assert [s["agent"] for s in editing] == ["claude", "gemini"]  # one commit per editing step
    sample = next((tmp_path / "demos").iterdir())
    branch = report["branch"]
    log = run_command(["git", "log", "--format=%s", f"main..{branch}"], sample).stdout.splitlines()
    assert len(log) == 2
    calc = run_command(["git", "show", f"{branch}:calc.py"], sample).stdout
    assert "return a + b" in calc
    # The user's checkout of the sample repo is where it started: main, clean, no calc.py.
    snap = snapshot_checkout(sample)
    assert not (sample / "calc.py").exists()
    assert snap.branch == "main" and snap.head_symbolic == "refs/heads/main"
    assert report["usage"]["input_tokens"] > 0 and report["usage"]["cost_usd"] > 0
