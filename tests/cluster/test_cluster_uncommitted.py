"""A cluster run that starts from the user's uncommitted work (`--include-uncommitted`): on the
submitting machine only refs and the branch are made (the workers make the run's repository), except
to carry the work onto another base, where this machine's copy is removed once the run is handed over."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.testing.cluster import newest_run_id
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.slow


def run_repositories(cluster: Cluster) -> list[Path]:
    """The run repositories (folders with a .git) on the submitting machine."""
    return [p.parent for p in (cluster.tmp / "submitter" / "state").rglob(".git")]


def test_uncommitted_work_reaches_the_workers_and_no_run_repository_is_made_here(cluster: Cluster) -> None:
    cluster.worker("w1")
    (cluster.repo / "app.py").write_text("def greet():\n    return 'hello from the user'\n")
    (cluster.repo / "notes.txt").write_text("untracked\n")
    run = cluster.submit(extra=("--json", "--include-uncommitted"))
    assert run.join(180).exit_code == 0, run.output
    run_id = newest_run_id(cluster.database)
    branch = f"orchestrator/{run_id}"
    assert cluster.cli_git("show", f"{branch}:app.py") == "def greet():\n    return 'hello from the user'\n"
    assert cluster.cli_git("show", f"{branch}:notes.txt") == "untracked\n"
    # The agents' step is on top of the user's work, which stays uncommitted in the checkout.
    assert "orchestrator-fake.txt" in cluster.cli_git("show", "--name-only", "--format=", branch)
    assert cluster.cli_git("status", "--porcelain", "--", "app.py").startswith(" M")
    assert run_repositories(cluster) == []


def test_uncommitted_work_carried_onto_another_base(cluster: Cluster) -> None:
    cluster.worker("w1")
    cluster.cli_git("checkout", "-qb", "older")
    (cluster.repo / "other.py").write_text("X = 1\n")
    cluster.cli_git("add", "other.py")
    cluster.cli_git("commit", "-qm", "only on older")
    cluster.cli_git("checkout", "-q", "main")
    (cluster.repo / "app.py").write_text("def greet():\n    return 'carried'\n")
    run = cluster.submit(extra=("--json", "--include-uncommitted", "--base", "older"))
    assert run.join(180).exit_code == 0, run.output
    branch = f"orchestrator/{newest_run_id(cluster.database)}"
    assert cluster.cli_git("show", f"{branch}:app.py") == "def greet():\n    return 'carried'\n"
    assert cluster.cli_git("show", f"{branch}:other.py") == "X = 1\n"
    assert run_repositories(cluster) == []  # the copy made for the carry is gone
