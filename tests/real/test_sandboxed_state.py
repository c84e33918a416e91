"""The real CLIs inside the sandbox keep working with state a user already has in HOME: the state files
and folders are bound writable (workspace/sandbox.py, cli_state_paths), and nothing else in HOME is."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.real


def test_claude_with_an_existing_claude_json(model_server, run_agent, tmp_path):
    home = tmp_path / "home"
    (home / ".claude.json").write_text(json.dumps({"numStartups": 3, "hasCompletedOnboarding": True}))
    server = model_server([{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "done"}])
    run = run_agent("claude", "Create a.txt.", server=server, timeout_s=60)
    assert run.data["status"] == "succeeded", (run.data, run.stderr[-2000:])
    assert (run.cwd / "a.txt").read_text() == "a\n"
    json.loads((home / ".claude.json").read_text())  # still whole, whatever Claude wrote to it


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "copilot"])
def test_the_cli_cannot_write_the_rest_of_home(model_server, run_agent, tmp_path, agent):
    home = tmp_path / "home"
    server = model_server([{"shell": f"touch {home}/planted.txt; echo $? > exit.txt"}, {"text": "tried"}])
    run = run_agent(agent, "Run the command.", server=server, timeout_s=90)
    assert not (home / "planted.txt").exists(), run.data
    if (run.cwd / "exit.txt").exists():  # some CLIs refuse a command outside the workspace on their own
        assert (run.cwd / "exit.txt").read_text().strip() != "0"


PROTECTED = {
    "claude": ".claude/settings.json",
    "codex": ".codex/config.toml",
    "gemini": ".gemini/settings.json",
    "copilot": ".copilot/mcp-config.json",
}


@pytest.mark.parametrize("agent", sorted(PROTECTED))
def test_the_cli_cannot_plant_a_command_in_its_own_config(model_server, run_agent, tmp_path, agent):
    """A hook or MCP server written into the CLI's config would run later outside the sandbox."""
    home = tmp_path / "home"
    target = home / PROTECTED[agent]
    server = model_server([{"shell": f"echo planted >> {target}; echo $? > exit.txt"}, {"text": "tried"}])
    run = run_agent(agent, "Run the command.", server=server, timeout_s=90)
    assert "planted" not in (target.read_text() if target.exists() else ""), run.data
    if (run.cwd / "exit.txt").exists():
        assert (run.cwd / "exit.txt").read_text().strip() != "0"
