"""A hostile agent for the fault tests: the fake agent (a real process, like a CLI) whose one tool call is
a shell command of the test's choosing, run by `orchestrator run` as a user would run it.

Each command's exit code is logged to `$TMPDIR/hostile.log` (the agent's TMPDIR is writable even in the
sandbox), so a test can tell a write that failed from one that was never tried.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import CommandResult, run_command
from orchestrator.workspace.git import Git

PROJECT = Path(__file__).resolve().parents[2]  # the source checkout: `python -m orchestrator` runs from it
IDENTITY = "-c user.name=agent -c user.email=agent@example.org"


def make_user_repo(path: Path) -> Path:
    """The user's checkout mid-work: two branches, a tag, a stash, staged, unstaged and untracked work."""
    path.mkdir(parents=True)
    git = Git(path)
    git.run("init", "-q", "--initial-branch=main")
    (path / "README.md").write_text("# the user's project\n")
    (path / "app.py").write_text("print('hello')\n")
    git.run("add", "-A")
    git.run("commit", "-q", "-m", "first")
    git.run("branch", "feature")
    git.run("tag", "v1")
    (path / "stashed.txt").write_text("stashed\n")
    git.run("add", "stashed.txt")
    git.run("stash", "push", "-q", "-m", "the user's stash")
    (path / "app.py").write_text("print('hello, staged')\n")
    git.run("add", "app.py")
    (path / "README.md").write_text("# the user's project\nunstaged\n")
    (path / "notes.txt").write_text("untracked\n")
    return path


@dataclass
class HostileRun:
    result: CommandResult
    report: dict[str, Any]
    state: Path
    log: list[tuple[str, int]]  # (command, exit code) as the agent saw them

    @property
    def run_id(self) -> str:
        return str(self.report["run_id"])

    def exit_code_of(self, fragment: str) -> int:
        codes = [code for command, code in self.log if fragment in command]
        assert codes, f"{fragment!r} was never run: {self.log}"
        return codes[-1]


def run_hostile(
    tmp_path: Path,
    repo: Path,
    commands: list[str],
    *,
    sandbox: str,
    gate: str | None = None,
    timeout_s: float = 120,
) -> HostileRun:
    """`orchestrator run` with one implement step whose agent runs `commands` (each logged), then
    answers; with `gate`, a gate step runs that command after it."""
    logged = [
        f'( {command} ) >/dev/null 2>&1; echo "$? {n}" >> "$TMPDIR/hostile.log"'
        for n, command in enumerate(commands)
    ]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": [{"shell": "\n".join(logged)}, {"text": "done"}]}))
    steps: list[dict[str, Any]] = [{"agent": "fake", "task": "implement"}]
    if gate is not None:
        steps.append({"run": shlex.join(["/bin/sh", "-c", gate]), "name": "hostile-gate"})
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(yaml.safe_dump({"steps": steps}))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"sandbox": sandbox, "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}}
        )
    )
    state = tmp_path / "state"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ORCHESTRATOR_HOME": str(state),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    argv = [sys.executable, "-m", "orchestrator", "run", "do the task", "--repo", str(repo)]
    argv += ["--workflow", str(workflow), "--config", str(config), "--json"]
    result = run_command(argv, PROJECT, env=env, timeout_s=timeout_s)
    assert not result.timed_out
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(
            f"no JSON report (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        ) from None
    log_file = state / "runs" / report["run_id"] / "agents" / "fake" / "tmp" / "hostile.log"
    log: list[tuple[str, int]] = []
    if log_file.exists():
        for line in log_file.read_text().splitlines():
            code, _, n = line.partition(" ")
            log.append((commands[int(n)], int(code)))
    return HostileRun(result, report, state, log)


def discard(run: HostileRun, repo: Path) -> CommandResult:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(run.state.parent / "home"),
        "ORCHESTRATOR_HOME": str(run.state),
    }
    argv = [sys.executable, "-m", "orchestrator", "runs", "discard", run.run_id]
    return run_command(argv, repo, env=env, timeout_s=60)
