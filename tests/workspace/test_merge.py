from __future__ import annotations

import pytest

from orchestrator.errors import EXIT_USAGE
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace import MergeRefused, RunWorkspace
from orchestrator.workspace.merge import overlapping, parse_status


def run_with_change(repo, state, files: dict[str, str], run_id="m1") -> RunWorkspace:
    ws = RunWorkspace.create(repo, run_id, state_home=state)
    for name, text in files.items():
        (ws.worktree / name).write_text(text)
    ws.commit_step(step_id="implement-1", agent="claude")
    return ws


def test_fast_forward_into_the_current_branch(repo, state, git, write):
    ws = run_with_change(repo, state, {"src/app.py": "def main():\n    return 2\n", "new.txt": "n\n"})
    write(repo / "notes.txt", "unrelated untracked work\n")
    write(repo / "README.md", "# demo\nunrelated unstaged edit\n")
    before = git(repo, "rev-parse", "HEAD")
    result = ws.merge_into()
    assert result.fast_forward and not result.up_to_date
    assert (result.target_branch, result.before, result.after) == ("main", before, ws.head())
    assert sorted(result.files) == ["new.txt", "src/app.py"]
    assert git(repo, "rev-parse", "HEAD") == ws.head()
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    # The user's unrelated work is untouched.
    assert (repo / "notes.txt").read_text() == "unrelated untracked work\n"
    assert (repo / "README.md").read_text() == "# demo\nunrelated unstaged edit\n"
    assert git(repo, "status", "--porcelain") == " M README.md\n?? notes.txt"
    assert ws.merge_into().up_to_date


def test_a_clean_merge_of_diverged_branches_makes_a_merge_commit(repo, state, git, write):
    ws = run_with_change(repo, state, {"src/app.py": "def main():\n    return 2\n"})
    write(repo / "README.md", "# demo\nuser's later commit\n")
    git(repo, "commit", "-q", "-am", "user work")
    user_tip = git(repo, "rev-parse", "HEAD")
    result = ws.merge_into()
    assert not result.fast_forward and result.files == ["src/app.py"]
    assert git(repo, "rev-parse", "HEAD^1") == user_tip and git(repo, "rev-parse", "HEAD^2") == ws.head()
    assert (repo / "README.md").read_text() == "# demo\nuser's later commit\n"
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    assert git(repo, "status", "--porcelain") == ""


def test_refuses_over_uncommitted_changes_it_would_touch_and_writes_nothing(repo, state, write):
    ws = run_with_change(repo, state, {"src/app.py": "def main():\n    return 2\n", "new.txt": "n\n"})
    write(repo / "src" / "app.py", "user's unsaved work\n")
    write(repo / "new.txt", "user's untracked file of the same name\n")
    before = snapshot_checkout(repo)
    with pytest.raises(MergeRefused) as caught:
        ws.merge_into()
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.paths == ["new.txt", "src/app.py"]
    assert "commit or stash" in str(caught.value)
    after = snapshot_checkout(repo)
    assert after == before, before.differences(after)


def test_refuses_over_staged_changes_it_would_touch(repo, state, git, write):
    ws = run_with_change(repo, state, {"src/util.py": "X = 5\n"})
    write(repo / "src" / "util.py", "X = 4\n")
    git(repo, "add", "src/util.py")
    before = snapshot_checkout(repo)
    with pytest.raises(MergeRefused, match="src/util.py"):
        ws.merge_into()
    assert snapshot_checkout(repo) == before


def test_refuses_a_merge_with_conflicts_and_writes_nothing(repo, state, git, write):
    ws = run_with_change(repo, state, {"README.md": "# run's version\n"})
    write(repo / "README.md", "# user's version\n")
    git(repo, "commit", "-q", "-am", "conflicting")
    before = snapshot_checkout(repo)
    with pytest.raises(MergeRefused, match="conflicts in: README.md") as caught:
        ws.merge_into()
    assert caught.value.paths == ["README.md"]
    assert snapshot_checkout(repo) == before


def test_refuses_a_non_fast_forward_merge_over_unrelated_staged_changes(repo, state, git, write):
    ws = run_with_change(repo, state, {"src/app.py": "def main():\n    return 2\n"})
    write(repo / "other.txt", "o\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "diverge")
    write(repo / "README.md", "staged but unrelated\n")
    git(repo, "add", "README.md")
    before = snapshot_checkout(repo)
    with pytest.raises(MergeRefused, match="staged changes"):
        ws.merge_into()
    assert snapshot_checkout(repo) == before


def test_refuses_on_a_detached_head(repo, state, git):
    ws = run_with_change(repo, state, {"x.txt": "x\n"})
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(MergeRefused, match="detached"):
        ws.merge_into()


def test_merge_into_a_branch_checked_out_nowhere_leaves_the_checkout_alone(repo, state, git, write):
    git(repo, "branch", "release")
    ws = run_with_change(repo, state, {"x.txt": "x\n"})
    write(repo / "x.txt", "the user's own x\n")  # would block a merge into the checkout, not here
    before = snapshot_checkout(
        repo, ignored_refs=("refs/orchestrator/", "refs/heads/orchestrator/", "refs/heads/release")
    )
    result = ws.merge_into("release")
    assert result.fast_forward and git(repo, "rev-parse", "release") == ws.head()
    assert (
        snapshot_checkout(
            repo, ignored_refs=("refs/orchestrator/", "refs/heads/orchestrator/", "refs/heads/release")
        )
        == before
    )
    # Diverged: a merge commit is made without any checkout.
    git(repo, "branch", "-f", "release2", "main")
    git(repo, "checkout", "-q", "-b", "tmp-user-branch")
    write(repo / "y.txt", "y\n")
    git(repo, "add", "y.txt")
    git(repo, "commit", "-q", "-m", "y")
    git(repo, "branch", "-f", "release2", "HEAD")
    git(repo, "checkout", "-q", "main")
    result = ws.merge_into("release2")
    assert not result.fast_forward
    assert git(repo, "rev-parse", "release2^2") == ws.head()
    assert git(repo, "ls-tree", "--name-only", "release2", "x.txt", "y.txt").split() == ["x.txt", "y.txt"]


def test_refuses_a_branch_checked_out_in_another_worktree(repo, state, tmp_path, git):
    git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "feature"))
    ws = run_with_change(repo, state, {"x.txt": "x\n"})
    with pytest.raises(MergeRefused, match="checked out in another worktree"):
        ws.merge_into("feature")


def test_parse_status_reads_renames_and_untracked_files():
    out = "R  new name.txt\0old.txt\0 M src/a.py\0?? dir/\0A  staged.py\0"
    entries = parse_status(out)
    assert [(e.code, e.path) for e in entries] == [
        ("R ", "new name.txt"),
        ("R ", "old.txt"),
        (" M", "src/a.py"),
        ("??", "dir/"),
        ("A ", "staged.py"),
    ]
    assert [e.staged for e in entries] == [True, True, False, False, True]


def test_overlapping_handles_files_and_folders():
    assert overlapping(["a.txt", "b.txt"], ["b.txt", "c.txt"]) == ["b.txt"]
    assert overlapping(["dir/"], ["dir/x.py"]) == ["dir"]
    assert overlapping(["dir"], ["dir/x.py"]) == ["dir"]
    assert overlapping(["f/inner.txt"], ["f"]) == ["f/inner.txt"]
    assert overlapping(["dirx/a"], ["dir/a"]) == []
