"""The shell shows a run's groups: after a best-of-3 task its attempts side by side, and `/groups` and
`/status` again on demand, within 80 columns."""

from __future__ import annotations

import io
import os
import sys

import pytest
import yaml

from orchestrator.cli.shell.commands import parse_input
from orchestrator.cli.shell.session import ShellSession
from orchestrator.config import LoadedSettings, settings_from_data
from orchestrator.engine.service import RunService

from .test_shell_commands import make_repo, said

CHECK = f"{sys.executable} -c \"import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\""


def write_app(body: str) -> list:
    return [
        {"write_file": {"path": "app.py", "content": f"def greet():\n    return {body}\n"}},
        {"text": "ok"},
    ]


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # the terminal's width, as shutil reads it
    repo = make_repo(tmp_path / "repo")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": []}))
    members = {"fake": write_app("'hi!'"), "fake-2": write_app("'Hello'"), "fake-3": [{"text": "nothing"}]}
    for name, turns in members.items():
        (tmp_path / f"scenario.{name}.yaml").write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / "wf.yaml"
    steps = [
        {"task": "implement", "attempts": ["fake", "fake", "fake"], "select": ["gates", "smallest_diff"]},
        {"run": CHECK, "name": "check"},
    ]
    workflow.write_text(yaml.safe_dump({"max_iterations": 1, "steps": steps}))
    data = {
        "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}},
        "fallback_order": ["fake"],
    }
    settings = settings_from_data(data)
    service = RunService(settings=settings, env={**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")})
    made = ShellSession(
        service=service,
        loaded=LoadedSettings(settings, None),
        cwd=repo,
        repo=repo,
        workflow_spec=str(workflow),
        out=io.StringIO(),
        plain=True,
    )
    yield made
    service.close()


def test_a_best_of_3_task_ends_with_its_attempts_and_groups_shows_them_again(session):
    assert "this run has no" not in said(session, "/help")
    text = said(session, "make greet() return Hello")
    run_id = session.run_id
    lines = text.splitlines()
    start = lines.index("attempts (i1-s1-implement): chosen fake-2, by gates, smallest_diff")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    group = lines[start:end]
    assert group[1].split() == ["attempt", "state", "gates", "review", "diff", "cost"]
    assert group[2].startswith("    fake       not chosen 0/1   -")  # the gate failed
    assert group[3].startswith("  * fake-2     chosen     1/1   -")
    assert group[4].startswith("    fake-3     not chosen 0/0   -")
    assert group[5] == "    fake-3: no files changed"
    assert f"  branch fake-3: orchestrator/{run_id}-fake-3" in group
    assert all(len(line) <= 80 for line in group)
    again = said(session, "/groups").splitlines()
    assert again[: len(group)] == group
    assert "attempts (i1-s1-implement): chosen fake-2" in said(session, "/status")
    assert session.handle(parse_input("/exit")) is False


def test_groups_of_a_run_without_any(session, tmp_path):
    assert "error: there is no current run" in said(session, "/groups")
