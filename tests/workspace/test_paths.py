from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.workspace.paths import (
    default_workspace_dir,
    new_run_id,
    run_paths,
    state_home,
    validate_run_id,
)


def test_state_home_prefers_orchestrator_home_then_xdg_then_home(tmp_path):
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "o"), "XDG_STATE_HOME": str(tmp_path / "x"), "HOME": "/h"}
    assert state_home(env) == tmp_path / "o"
    del env["ORCHESTRATOR_HOME"]
    assert state_home(env) == tmp_path / "x" / "ai-agents-orchestrator"
    del env["XDG_STATE_HOME"]
    assert state_home(env) == Path("/h/.local/state/ai-agents-orchestrator")


def test_empty_variables_are_ignored(tmp_path):
    env = {"ORCHESTRATOR_HOME": "", "XDG_STATE_HOME": "", "HOME": str(tmp_path)}
    assert state_home(env) == tmp_path / ".local" / "state" / "ai-agents-orchestrator"


def test_default_workspace_dir_is_the_projects_workspace_folder_in_a_source_checkout(tmp_path):
    project = Path(__file__).resolve().parents[2]
    assert default_workspace_dir({"ORCHESTRATOR_HOME": str(tmp_path)}) == project / "workspace"


def test_run_ids_are_sortable_and_unique():
    early = new_run_id(datetime(2026, 11, 21, 6, 15, 2, tzinfo=UTC))
    later = new_run_id(datetime(2026, 11, 21, 6, 15, 3, tzinfo=UTC))
    assert re.fullmatch(r"20261121-061502-[0-9a-f]{6}", early)
    assert early < later
    assert len({new_run_id() for _ in range(200)}) == 200
    assert validate_run_id(new_run_id())


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a b", "-x", "x.lock", "a..b", "x" * 101])
def test_unsafe_run_ids_are_refused(bad):
    with pytest.raises(UsageError):
        validate_run_id(bad)


def test_run_paths_live_under_the_state_home(tmp_path):
    paths = run_paths(tmp_path / "s", "r1")
    assert paths.worktree == tmp_path / "s" / "repos" / "r1"
    assert paths.run_dir == tmp_path / "s" / "runs" / "r1"
    assert not paths.run_dir.exists()
    paths.ensure()
    assert paths.tmp_dir.is_dir() and paths.worktree.parent.is_dir() and not paths.worktree.exists()
