"""The audit trail's entries as runs and the dashboard make them: each agent command (argv masked, the
names of its environment, sandbox on or off, exit status, signal, duration) and every write to the user's
repository, whether the CLI or the dashboard made it (merge, rollback, discard)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orchestrator.audit import AuditLog
from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.logs import SecretMasker
from orchestrator.proc import run_command
from orchestrator.ui.actions import Actions

SECRET = "sk-proj-plantedAuditSecret0123456789abcdefXYZ"  # made up
APPROVE = '```json\n{"verdict": "approve", "findings": []}\n```'


def test_an_agent_command_is_recorded_masked_with_the_names_of_its_environment(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", masker=SecretMasker({"OPENAI_API_KEY": SECRET}))
    log.agent_command(
        argv=["/usr/bin/bwrap", "--die-with-parent", "--", "codex", "exec", f"--api-key={SECRET}"],
        cwd=tmp_path,
        env_names=["PATH", "OPENAI_API_KEY"],
        exit_code=None,
        signal=9,
        duration_s=1.23456,
        run_id="r1",
        step_id="i1-s1-implement",
        agent="codex",
        timed_out=True,
    )
    log.agent_command(
        argv=["claude", "-p"], cwd=tmp_path, env_names=[], exit_code=0, signal=None, duration_s=2
    )
    first, second = log.entries()
    assert first["argv"][-1] == "--api-key=***" and first["env_names"] == ["OPENAI_API_KEY", "PATH"]
    assert (first["sandbox"], first["signal"], first["exit_code"], first["duration_s"]) == (
        True,
        9,
        None,
        1.235,
    )
    assert first["timed_out"] and not first["cancelled"]
    assert second["sandbox"] is False and second["exit_code"] == 0
    assert SECRET not in (tmp_path / "audit.jsonl").read_text()


def make_repo(path: Path) -> Path:
    path.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "README.md").write_text("# r\n")
    run_command(["git", "add", "-A"], path, check=True)
    run_command(["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "i"], path, check=True)
    return path


def run_once(tmp_path: Path, repo: Path, name: str, turns: list[dict[str, Any]], **config: Any) -> str:
    """One run of the fake agent (a real process) on `repo`; returns its id."""
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / f"{name}-wf.yaml"
    workflow.write_text(yaml.safe_dump({"steps": [{"agent": "fake", "task": "implement"}]}))
    fake = {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario), "FAKE_SETTING": SECRET}}
    settings = settings_from_data({"agents": {"fake": {**fake, **config.pop("agent", {})}}, **config})
    service = RunService(settings=settings, env={**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")})
    try:
        record = service.create(RunSpec(task=f"write a.txt ({name})", cwd=repo, workflow=str(workflow)))
        service.execute(record.id)
    finally:
        service.close()
    return record.id


def test_runs_and_dashboard_actions_reach_the_audit_with_every_write_to_the_repository(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write = [{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "done"}]
    sandboxed = run_once(tmp_path, repo, "one", write)  # sandbox: auto, and bubblewrap works here
    unsandboxed = run_once(tmp_path, repo, "two", write, sandbox="off")
    # The third run's step ends on its wall-clock limit: the agent is ended by a signal.
    timed_out = run_once(tmp_path, repo, "three", [{"hang": 600}], sandbox="off", agent={"timeout_s": 2})
    service = RunService(
        settings=settings_from_data({}), env={**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state")}
    )
    try:
        actions = Actions(service, [repo])
        actions.merge(sandboxed, None)
        actions.rollback(unsandboxed, "base")
        actions.discard(timed_out)
    finally:
        service.close()

    entries = list(AuditLog.for_state_home(tmp_path / "state").entries())
    commands = {e["run_id"]: e for e in entries if e["kind"] == "agent_command"}
    assert commands[sandboxed]["sandbox"] is True and commands[sandboxed]["exit_code"] == 0
    assert commands[unsandboxed]["sandbox"] is False
    ended = commands[timed_out]
    assert ended["timed_out"] and ended["signal"] is not None and ended["duration_s"] >= 2
    assert "FAKE_SETTING" in ended["env_names"]
    writes = [(e["action"], e["run_id"]) for e in entries if e["kind"] == "repo_write"]
    assert writes == [
        ("create_branch", sandboxed),
        ("fetch_branch", sandboxed),
        ("create_branch", unsandboxed),
        ("fetch_branch", unsandboxed),
        ("create_branch", timed_out),
        ("merge", sandboxed),  # from the dashboard as from `orchestrator runs merge`
        ("rollback", unsandboxed),
        ("discard", timed_out),
    ]
    merge = next(e for e in entries if e.get("action") == "merge")
    assert merge["ref"] == "main" and merge["repo"] == str(repo) and merge["commit"]
    text = "".join(p.read_text() for p in (tmp_path / "state").glob("audit.jsonl*"))
    assert SECRET not in text
