from __future__ import annotations

import pytest

from orchestrator.errors import RunNotFound, UsageError
from orchestrator.workspace import RunWorkspace, WorkspaceConflict, list_run_ids


def create(repo, state, run_id="r1", **kwargs) -> RunWorkspace:
    return RunWorkspace.create(repo, run_id, state_home=state, **kwargs)


def test_create_makes_a_branch_and_a_worktree_outside_the_checkout(repo, state, git):
    head = git(repo, "rev-parse", "HEAD")
    ws = create(repo, state)
    assert ws.worktree == (state / "repos" / "r1").resolve()
    assert not ws.worktree.is_relative_to(repo)
    assert git(ws.worktree, "symbolic-ref", "HEAD") == "refs/heads/orchestrator/r1"
    assert ws.base == ws.first == ws.head() == head
    assert (ws.worktree / "src" / "app.py").read_text() == (repo / "src" / "app.py").read_text()
    assert (ws.worktree / "link.py").is_symlink() and (ws.worktree / "run.sh").stat().st_mode & 0o111
    assert not (ws.worktree / "build.log").exists()  # ignored files are not in the run
    assert ws.backups() == {"refs/orchestrator/backups/r1/start": head}
    assert ws.paths.tmp_dir.is_dir()


def test_create_from_another_base(repo, state, git, write):
    first = git(repo, "rev-parse", "HEAD")
    write(repo / "README.md", "second\n")
    git(repo, "commit", "-q", "-am", "second")
    ws = create(repo, state, base=first)
    assert ws.base == first and ws.head() == first
    assert (ws.worktree / "README.md").read_text() == "# demo\n"
    assert ws.backups()["refs/orchestrator/backups/r1/start"] == git(repo, "rev-parse", "HEAD")


def test_uncommitted_changes_are_backed_up_but_not_carried_without_the_flag(
    repo, state, git, dirty_everything
):
    dirty_everything(repo)
    ws = create(repo, state)
    backup = ws.backups()["refs/orchestrator/backups/r1/uncommitted"]
    assert git(repo, "show", f"{backup}:src/util.py") == "X = 3  # staged, then edited again"
    assert git(repo, "show", f"{backup}:notes/todo.txt") == "untracked"
    assert (ws.worktree / "README.md").read_text() == "# demo\n"
    assert not (ws.worktree / "notes").exists()
    assert ws.log() == []


def test_include_uncommitted_makes_them_the_runs_first_commit(repo, state, git, dirty_everything):
    dirty_everything(repo)
    ws = create(repo, state, include_uncommitted=True)
    assert (ws.worktree / "src" / "util.py").read_text() == "X = 3  # staged, then edited again\n"
    assert (ws.worktree / "README.md").read_text() == "# demo\nunstaged line\n"
    assert (ws.worktree / "notes" / "todo.txt").read_text() == "untracked\n"
    assert not (ws.worktree / "more.log").exists()
    [first] = ws.log()
    assert first.step_id == "uncommitted" and first.agent == "user"
    assert sorted(first.files) == ["README.md", "notes/todo.txt", "src/util.py"]
    assert ws.first == first.sha == ws.head()
    assert git(ws.worktree, "status", "--porcelain") == ""


def test_include_uncommitted_onto_another_base(repo, state, git, write):
    first = git(repo, "rev-parse", "HEAD")
    write(repo / "other.txt", "committed later\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "later")
    write(repo / "README.md", "# demo\nwip\n")
    ws = create(repo, state, base=first, include_uncommitted=True)
    assert (ws.worktree / "README.md").read_text() == "# demo\nwip\n"
    assert not (ws.worktree / "other.txt").exists()
    [carried] = ws.log()
    assert carried.parents == [first] and carried.files == ["README.md"]
    assert git(ws.worktree, "status", "--porcelain") == ""


def test_uncommitted_changes_that_do_not_apply_on_the_base_leave_nothing_behind(repo, state, git, write):
    first = git(repo, "rev-parse", "HEAD")
    write(repo / "README.md", "committed\n")
    git(repo, "commit", "-q", "-am", "later")
    write(repo / "README.md", "wip on top\n")
    with pytest.raises(WorkspaceConflict):
        create(repo, state, base=first, include_uncommitted=True)
    assert git(repo, "branch", "--list", "orchestrator/*") == ""
    assert not (state / "repos" / "r1").exists()
    assert "orchestrator/r1" not in git(repo, "worktree", "list")
    assert list_run_ids(repo) == []
    # The user's work is still kept under the backup ref.
    assert git(repo, "show", "refs/orchestrator/backups/r1/uncommitted:README.md") == "wip on top"


def test_create_refuses_a_used_run_id_an_empty_repo_and_a_worktree_inside_the_repo(
    repo, state, tmp_path, git
):
    create(repo, state)
    with pytest.raises(UsageError, match="already exists"):
        create(repo, state)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(UsageError, match="no commits"):
        create(empty, state, "r2")
    with pytest.raises(UsageError, match="inside the repository"):
        create(repo, repo / "state", "r3")
    with pytest.raises(UsageError, match="not inside a git repository"):
        create(tmp_path / "state", state, "r4")


def test_commit_step_records_run_step_agent_and_task(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "src" / "app.py", "def main():\n    return 2\n")
    write(ws.worktree / "docs" / "new.md", "new\n")
    (ws.worktree / "src" / "util.py").unlink()
    result = ws.commit_step(
        step_id="implement-1", agent="claude", task="Make main\nreturn 2", message="Implement the task"
    )
    assert result.changed and result.sha == ws.head()
    assert sorted(result.files) == ["docs/new.md", "src/app.py", "src/util.py"]
    body = git(repo, "log", "-1", "--format=%B", result.sha)
    assert body.startswith("Implement the task\n")
    assert "Orchestrator-Run: r1\nOrchestrator-Step: implement-1\nOrchestrator-Agent: claude\n" in body
    assert "Orchestrator-Task: Make main return 2" in body
    assert git(ws.worktree, "status", "--porcelain") == ""


def test_a_step_that_changed_nothing_makes_no_commit(repo, state, write):
    ws = create(repo, state)
    write(ws.worktree / "scratch.log", "ignored files do not count\n")
    result = ws.commit_step(step_id="review-1", agent="codex", task="t")
    assert not result.changed and result.sha is None and result.files == []
    assert ws.head() == ws.base


def test_commits_an_agent_made_itself_are_recorded_as_its_step(repo, state, git, write):
    ws = create(repo, state)
    start = ws.head()
    write(ws.worktree / "a.txt", "a\n")
    git(ws.worktree, "add", "a.txt")
    git(ws.worktree, "commit", "-q", "-m", "agent's own commit")
    result = ws.commit_step(step_id="implement-1", agent="gemini", step_start=start)
    assert result.changed and result.files == ["a.txt"]
    assert [c.subject for c in ws.log()] == ["agent's own commit", "implement-1: gemini"]


def test_an_agent_that_switched_branch_is_put_back_on_the_run_branch(repo, state, git, write):
    ws = create(repo, state)
    start = ws.head()
    git(ws.worktree, "checkout", "-q", "-b", "agent-branch")
    write(ws.worktree / "b.txt", "b\n")
    git(ws.worktree, "add", "b.txt")
    git(ws.worktree, "commit", "-q", "-m", "on another branch")
    result = ws.commit_step(step_id="s1", agent="copilot", step_start=start)
    assert result.changed and result.files == ["b.txt"]
    assert git(ws.worktree, "symbolic-ref", "HEAD") == "refs/heads/orchestrator/r1"
    assert git(ws.worktree, "status", "--porcelain") == ""
    assert [c.parents for c in ws.log()] == [[start]]


def test_an_agent_that_reset_the_branch_backwards_loses_nothing(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "one.txt", "1\n")
    one = ws.commit_step(step_id="s1", agent="claude").sha
    git(ws.worktree, "reset", "-q", "--hard", ws.base)
    result = ws.commit_step(step_id="s2", agent="claude", step_start=one)
    assert result.changed and result.files == ["one.txt"]  # the agent removed it
    assert [c.step_id for c in ws.log()] == ["s1", "s2"]
    assert ws.backups()["refs/orchestrator/backups/r1/agent-moved-1"] == ws.base


def test_changed_files_and_diff_include_uncommitted_and_untracked_work(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "README.md", "# demo\ncommitted\n")
    step = ws.commit_step(step_id="s1", agent="claude")
    write(ws.worktree / "src" / "app.py", "def main():\n    return 3\n")
    write(ws.worktree / "fresh.txt", "untracked\n")
    assert ws.changed_files() == ["README.md", "fresh.txt", "src/app.py"]
    assert ws.changed_files(since=step.sha) == ["fresh.txt", "src/app.py"]
    diff = ws.diff()
    assert "+committed" in diff.text and "+    return 3" in diff.text and "+untracked" in diff.text
    assert diff.files == ["README.md", "fresh.txt", "src/app.py"] and not diff.truncated
    # Reading wrote nothing: the worktree's own index still knows nothing of the new files.
    assert "?? fresh.txt" in git(ws.worktree, "status", "--porcelain")


def test_diff_is_cut_to_the_budget(repo, state, write):
    ws = create(repo, state)
    write(ws.worktree / "big.txt", "".join(f"line {i}\n" for i in range(20_000)))
    write(ws.worktree / "small.txt", "small\n")
    diff = ws.diff(max_bytes=2_000)
    assert diff.truncated and len(diff.text.encode()) <= 2_000
    assert diff.files == ["big.txt", "small.txt"] and "small.txt" in diff.cut_files


def test_log_lists_the_runs_commits_oldest_first(repo, state, write):
    ws = create(repo, state)
    for n in range(3):
        write(ws.worktree / f"f{n}.txt", f"{n}\n")
        ws.commit_step(step_id=f"s{n}", agent=["claude", "codex", "gemini"][n], task="task")
    log = ws.log()
    assert [(c.step_id, c.agent, c.files) for c in log] == [
        ("s0", "claude", ["f0.txt"]),
        ("s1", "codex", ["f1.txt"]),
        ("s2", "gemini", ["f2.txt"]),
    ]
    assert log[0].trailers["Orchestrator-Task"] == "task" and log[0].parents == [ws.base]
    assert ws.commit_for_step("s1") == log[1].sha and ws.commit_for_step("nope") is None


def test_rollback_moves_the_branch_back_and_keeps_what_it_removed(repo, state, git, write):
    ws = create(repo, state)
    shas = []
    for n in range(3):
        write(ws.worktree / f"f{n}.txt", f"{n}\n")
        shas.append(ws.commit_step(step_id=f"s{n}", agent="claude").sha)
    write(ws.worktree / "wip.txt", "uncommitted\n")
    backup = ws.rollback(shas[0])
    assert backup == "refs/orchestrator/backups/r1/rollback-1"
    assert ws.head() == shas[0]
    assert [c.step_id for c in ws.log()] == ["s0"]
    assert not (ws.worktree / "f1.txt").exists() and not (ws.worktree / "wip.txt").exists()
    assert git(ws.worktree, "status", "--porcelain") == ""
    kept = git(repo, "rev-parse", backup)
    assert git(repo, "rev-parse", f"{kept}^") == shas[2]  # the uncommitted work on top of the old tip
    assert git(repo, "show", f"{kept}:wip.txt") == "uncommitted"
    assert ws.rollback(ws.base) == "refs/orchestrator/backups/r1/rollback-2"
    assert ws.log() == []


def test_rollback_refuses_a_commit_that_is_not_the_runs(repo, state, git, write):
    ws = create(repo, state)
    write(repo / "README.md", "user's later work\n")
    git(repo, "commit", "-q", "-am", "user")
    with pytest.raises(UsageError, match="not a commit of run"):
        ws.rollback(git(repo, "rev-parse", "HEAD"))


def test_discard_uncommitted_undoes_a_reviewers_edits_and_keeps_them(repo, state, git, write):
    ws = create(repo, state)
    start = ws.head()
    write(ws.worktree / "README.md", "reviewer edited\n")
    write(ws.worktree / "reviewer-notes.txt", "left behind\n")
    undone = ws.discard_uncommitted(step_start=start)
    assert undone and sorted(undone.files) == ["README.md", "reviewer-notes.txt"]
    assert "+reviewer edited" in undone.diff and "+left behind" in undone.diff
    assert (ws.worktree / "README.md").read_text() == "# demo\n"
    assert not (ws.worktree / "reviewer-notes.txt").exists()
    assert ws.head() == start
    assert git(repo, "show", f"{undone.backup_ref}:README.md") == "reviewer edited"
    assert not ws.discard_uncommitted(step_start=start)  # nothing left to undo


def test_discard_uncommitted_also_undoes_commits_a_reviewer_made(repo, state, git, write):
    ws = create(repo, state)
    start = ws.head()
    write(ws.worktree / "README.md", "committed by the reviewer\n")
    git(ws.worktree, "commit", "-q", "-am", "sneaky")
    sneaky = git(ws.worktree, "rev-parse", "HEAD")
    undone = ws.discard_uncommitted(step_start=start)
    assert undone.files == ["README.md"] and ws.head() == start
    assert git(repo, "rev-parse", undone.backup_ref) == sneaky


def test_reset_to_drops_a_killed_steps_partial_edits_but_keeps_them(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "done.txt", "done\n")
    last = ws.commit_step(step_id="s1", agent="claude").sha
    write(ws.worktree / "done.txt", "half-written")
    write(ws.worktree / "partial.txt", "partial\n")
    kept = ws.reset_to(last)
    assert kept is not None and git(repo, "show", f"{kept}:partial.txt") == "partial"
    assert (ws.worktree / "done.txt").read_text() == "done\n"
    assert not (ws.worktree / "partial.txt").exists()
    assert ws.reset_to(last) is None  # clean already: nothing to keep


def test_open_finds_an_existing_run(repo, state, write):
    ws = create(repo, state, include_uncommitted=False)
    write(ws.worktree / "x.txt", "x\n")
    ws.commit_step(step_id="s1", agent="claude")
    again = RunWorkspace.open(repo / "src", "r1", state)
    assert (again.repo, again.base, again.first, again.head()) == (ws.repo, ws.base, ws.first, ws.head())
    assert [c.sha for c in again.log()] == [c.sha for c in ws.log()]
    with pytest.raises(RunNotFound):
        RunWorkspace.open(repo, "r-missing", state)


def test_discard_keeps_the_tip_then_removes_worktree_and_branch(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "x.txt", "x\n")
    tip = ws.commit_step(step_id="s1", agent="claude").sha
    write(ws.worktree / "wip.txt", "not committed\n")
    backup = ws.discard()
    assert backup == "refs/orchestrator/backups/r1/discarded"
    kept = git(repo, "rev-parse", backup)
    assert git(repo, "rev-parse", f"{kept}^") == tip
    assert git(repo, "show", f"{kept}:wip.txt") == "not committed"
    assert not ws.worktree.exists()
    assert git(repo, "branch", "--list", "orchestrator/r1") == ""
    assert str(ws.worktree) not in git(repo, "worktree", "list")
    with pytest.raises(RunNotFound):
        RunWorkspace.open(repo, "r1", state)


def test_remove_worktree_keeps_the_branch_and_resume_brings_it_back(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "x.txt", "x\n")
    tip = ws.commit_step(step_id="s1", agent="claude").sha
    write(ws.worktree / "wip.txt", "wip\n")
    kept = ws.remove_worktree()
    assert kept is not None and git(repo, "show", f"{kept}:wip.txt") == "wip"
    assert not ws.worktree.exists() and ws.head() == tip
    assert ws.diff().files == ["x.txt"]  # read from the branch when there is no worktree
    ws.reset_to(tip)
    assert (ws.worktree / "x.txt").read_text() == "x\n"
    assert git(ws.worktree, "symbolic-ref", "HEAD") == "refs/heads/orchestrator/r1"


def test_rollback_without_a_worktree_moves_only_the_branch(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "x.txt", "x\n")
    tip = ws.commit_step(step_id="s1", agent="claude").sha
    ws.remove_worktree()
    backup = ws.rollback(ws.base)
    assert ws.head() == ws.base and git(repo, "rev-parse", backup) == tip


def test_runs_in_a_linked_worktree_of_the_user(repo, state, tmp_path, git, write):
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    write(linked / "README.md", "wip in linked\n")
    ws = create(linked, state, include_uncommitted=True)
    assert (ws.worktree / "README.md").read_text() == "wip in linked\n"
    assert (linked / "README.md").read_text() == "wip in linked\n"


def test_a_second_repo_does_not_see_the_first_repos_runs(tmp_path, state, make_repo):
    one = make_repo(tmp_path / "one")
    two = make_repo(tmp_path / "two")
    create(one, state, "r1")
    with pytest.raises(RunNotFound):
        RunWorkspace.open(two, "r1", state)


def test_a_multi_line_message_keeps_its_body_and_unicode_survives(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "données" / "café.txt", "crème brûlée\n")
    result = ws.commit_step(
        step_id="s1", agent="claude", task="Écrire le café ☕", message="Add café\n\nWhy: the menu needs it."
    )
    assert result.files == ["données/café.txt"]
    [info] = ws.log()
    assert info.subject == "Add café" and info.files == ["données/café.txt"]
    assert info.trailers["Orchestrator-Task"] == "Écrire le café ☕"
    assert "Why: the menu needs it." in git(repo, "log", "-1", "--format=%b", result.sha)
    assert "+crème brûlée" in ws.diff().text


def test_resume_clears_lock_files_a_killed_process_left(repo, state, git, write):
    ws = create(repo, state)
    write(ws.worktree / "a.txt", "a\n")
    tip = ws.commit_step(step_id="s1", agent="claude").sha
    write(ws.worktree / "a.txt", "half")
    worktree_gitdir = ws.worktree / git(ws.worktree, "rev-parse", "--git-dir")
    (worktree_gitdir / "index.lock").write_text("")
    branch_lock = repo / ".git" / "refs" / "heads" / "orchestrator" / "r1.lock"
    branch_lock.write_text("")
    resumed = RunWorkspace.open(repo, "r1", state)
    resumed.reset_to(tip)
    assert not (worktree_gitdir / "index.lock").exists() and not branch_lock.exists()
    assert (ws.worktree / "a.txt").read_text() == "a\n"
    write(ws.worktree / "b.txt", "b\n")
    assert resumed.commit_step(step_id="s2", agent="claude").changed


def test_list_run_ids(repo, state):
    assert list_run_ids(repo) == []
    create(repo, state, "20261121-000001-aaaaaa")
    create(repo, state, "20261121-000000-bbbbbb").discard()
    assert list_run_ids(repo) == ["20261121-000000-bbbbbb", "20261121-000001-aaaaaa"]


def test_the_user_keeps_working_during_a_run_and_nothing_is_undone(repo, state, git, write):
    ws = create(repo, state)
    before = ws.user_refs()
    write(repo / "mine.txt", "the user's own work\n")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-q", "-m", "user commit during the run")
    git(repo, "checkout", "-q", "-b", "topic")
    user_main = git(repo, "rev-parse", "main")
    write(ws.worktree / "x.txt", "x\n")
    made = ws.commit_step(step_id="s1", agent="claude")
    assert git(repo, "rev-parse", "main") == user_main and git(repo, "branch", "--show-current") == "topic"
    assert git(repo, "rev-parse", "orchestrator/r1") == made.sha
    assert ws.changed_user_refs(before) == ["HEAD", "refs/heads/main", "refs/heads/topic"]
    assert ws.notes == []


def test_a_run_branch_the_user_checked_out_is_left_alone(repo, state, git, write):
    ws = create(repo, state)
    git(repo, "stash", "push", "-q", "--include-untracked")
    git(repo, "checkout", "-q", "orchestrator/r1")
    write(ws.worktree / "x.txt", "x\n")
    made = ws.commit_step(step_id="s1", agent="claude")
    assert git(repo, "rev-parse", "HEAD") == ws.base  # the user's checkout did not move under them
    assert ws.head() == made.sha and "checked out in" in ws.notes[0]
    assert git(repo, "status", "--porcelain") == ""
