"""The engine's leak check on real git: edits left by a killed step are withheld on resume when they
hold a secret the run was given (else reset_to keeps them under a backup ref)."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command

SECRET = "resume-planted-value-41c9e7"


def _repo(path: Path) -> Path:
    path.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "app.py").write_text("x = 1\n")
    run_command(["git", "add", "-A"], path, check=True)
    run_command(["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "i"], path, check=True)
    return path


def _history(repo: Path) -> str:
    return run_command(["git", "log", "--all", "-p", "--text"], repo, check=True).stdout


def test_resume_withholds_a_killed_steps_secret_and_keeps_other_leftovers(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        "max_iterations: 1\nsteps:\n  - {agent: fake, task: implement}\n  - {agent: fake, task: review}\n"
    )
    data = {"agents": {"fake": {"env": {"SOME_SETTING": SECRET}}}, "fallback_order": ["fake"]}
    service = RunService(
        settings=settings_from_data(data), env={**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "s")}
    )
    try:
        record = service.create(RunSpec(task="t", cwd=repo, workflow=str(workflow)))
        worktree = Path(record.worktree or "")
        # What a step killed mid-way left behind: one file with the secret, one without.
        (worktree / "half.txt").write_text(f"token={SECRET}\n")
        report = service.execute(record.id, resume=True)
        assert report.status == "approved"
        kept = tmp_path / "s" / "runs" / record.id / "withheld" / "interrupted" / "files" / "half.txt"
        assert SECRET in kept.read_text()
        assert SECRET not in _history(repo)
        assert not (worktree / "half.txt").exists()

        # Without a secret, the leftover is kept under a backup ref as before.
        second = service.create(RunSpec(task="t", cwd=repo, workflow=str(workflow)))
        (Path(second.worktree or "") / "half.txt").write_text("plain leftover\n")
        service.execute(second.id, resume=True)
        assert "plain leftover" in _history(repo)
    finally:
        service.close()
