"""What creating a run checks on the submitting machine when the run goes to the cluster: the workers
run its agents, in their own sandboxes, so this machine's sandbox (like its CLIs) is not asked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.errors import UsageError
from tests.engine.test_runner import make_repo


def _git_only_path(tmp_path: Path) -> str:
    """A PATH with git on it and no bwrap (this machine has one)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    git = shutil.which("git")
    assert git is not None
    (folder / "git").symlink_to(git)
    return str(folder)


@pytest.mark.parametrize("cluster", [False, True])
def test_sandbox_bwrap_is_required_here_only_for_a_local_run(tmp_path, cluster):
    repo = make_repo(tmp_path / "repo")
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "state"), "PATH": _git_only_path(tmp_path)}
    settings = settings_from_data({"sandbox": "bwrap", "fallback_order": ["fake"]})
    workflow = tmp_path / "wf.yaml"  # one the fake agent takes alone (review: `agent: fake` again)
    workflow.write_text(yaml.safe_dump({"steps": [{"agent": "fake", "task": "implement"}]}))
    service = RunService(settings=settings, env=env)
    try:
        spec = RunSpec(
            task="add a.txt", cwd=repo, workflow=str(workflow), cluster=cluster, cluster_agents=("fake",)
        )
        if cluster:
            record = service.create(spec)
            assert service.store.get_run(record.id).id == record.id
        else:
            with pytest.raises(UsageError, match="bwrap is not installed"):
                service.create(spec)
    finally:
        service.close()
