"""snapshot_checkout notices every kind of change to a user's checkout, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace.git import Git


def git(path: Path, *args: str) -> str:
    return Git(path).out(*args)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    (path / "src").mkdir(parents=True)
    git(path, "init", "-q", "--initial-branch=main")
    (path / "a.txt").write_text("a\n")
    (path / "src" / "b.py").write_text("b = 1\n")
    (path / ".gitignore").write_text("*.log\n")
    os.symlink("a.txt", path / "link")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "one")
    (path / "ignored.log").write_text("ignored\n")
    (path / "untracked.txt").write_text("untracked\n")
    return path


def change_content(repo: Path) -> None:
    (repo / "a.txt").write_text("A\n")


def change_mode(repo: Path) -> None:
    (repo / "a.txt").chmod(0o755)


def change_ignored(repo: Path) -> None:
    (repo / "ignored.log").write_text("other\n")


def add_untracked(repo: Path) -> None:
    (repo / "new" / "deep").mkdir(parents=True)


def remove_untracked(repo: Path) -> None:
    (repo / "untracked.txt").unlink()


def retarget_symlink(repo: Path) -> None:
    (repo / "link").unlink()
    os.symlink("src/b.py", repo / "link")


def same_bytes_rewritten(repo: Path) -> None:
    path = repo / "a.txt"
    stat = path.stat()
    path.write_text("a\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def stage(repo: Path) -> None:
    (repo / "a.txt").write_text("A\n")
    git(repo, "add", "a.txt")
    (repo / "a.txt").write_text("a\n")  # the files are as before; only the index differs


def commit(repo: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "two")


def switch_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")


def detach(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")


def stash(repo: Path) -> None:
    (repo / "a.txt").write_text("stashed\n")
    git(repo, "stash", "push", "-q")


def new_branch(repo: Path) -> None:
    git(repo, "branch", "feature")


def new_tag(repo: Path) -> None:
    git(repo, "tag", "v1")


@pytest.mark.parametrize(
    "change",
    [
        change_content,
        change_mode,
        change_ignored,
        add_untracked,
        remove_untracked,
        retarget_symlink,
        same_bytes_rewritten,
        stage,
        commit,
        switch_branch,
        detach,
        stash,
        new_branch,
        new_tag,
    ],
)
def test_every_kind_of_change_is_seen(repo, change):
    before = snapshot_checkout(repo)
    change(repo)
    after = snapshot_checkout(repo)
    assert after != before
    assert before.differences(after)


def test_an_untouched_checkout_compares_equal_and_reading_it_writes_nothing(repo):
    (repo / "a.txt").write_text("unstaged edit\n")  # a `git status` here would refresh the index
    first = snapshot_checkout(repo)
    second = snapshot_checkout(repo)
    assert first == second and first.differences(second) == []
    assert first.branch == "main" and first.head_symbolic == "refs/heads/main"
    assert first.head_commit == git(repo, "rev-parse", "HEAD")
    assert {"a.txt", "src", "src/b.py", "link", "ignored.log", "untracked.txt"} <= set(first.entries)
    assert not any(name == ".git" or name.startswith(".git/") for name in first.entries)


def test_orchestrator_refs_and_run_branches_are_not_the_users(repo):
    before = snapshot_checkout(repo)
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", "refs/orchestrator/backups/r1/start", head)
    git(repo, "branch", "orchestrator/r1")
    assert snapshot_checkout(repo) == before
    assert snapshot_checkout(repo, ignored_refs=()) != before


def test_without_mtimes_only_bytes_and_modes_count(repo):
    before = snapshot_checkout(repo, mtimes=False)
    same_bytes_rewritten(repo)
    assert snapshot_checkout(repo, mtimes=False) == before


def test_a_linked_worktree_is_recorded_with_its_own_index(repo, tmp_path):
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    before = snapshot_checkout(linked)
    assert before.branch == "feature" and ".git" not in before.entries
    (repo / "a.txt").write_text("main checkout changed\n")
    git(repo, "add", "a.txt")  # the main checkout's index, not the linked one's
    assert snapshot_checkout(linked) == before
    stage(linked)
    assert snapshot_checkout(linked) != before


def test_a_repository_without_commits(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    git(path, "init", "-q")
    snap = snapshot_checkout(path)
    assert snap.head_commit is None and snap.index_digest is None and snap.entries == {}
