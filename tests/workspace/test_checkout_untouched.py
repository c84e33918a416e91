"""The user's checkout (files, index, HEAD, stash, refs) is byte-identical before and after runs that
succeed, fail, time out and are killed with SIGKILL, and while two runs share the repository."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from orchestrator.proc import ProcSpec, SubprocessCommunicator, child_env
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace import RunWorkspace, resolve_repo

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def user_repo(repo, git, write, dirty_everything):
    """The user's checkout mid-work: staged, unstaged, untracked and ignored changes, and a stash."""
    write(repo / "stashed.txt", "stashed\n")
    git(repo, "add", "stashed.txt")
    git(repo, "stash", "push", "-q", "-m", "user's stash")
    dirty_everything(repo)
    return repo


def run_steps(ws: RunWorkspace, count: int) -> None:
    for n in range(1, count + 1):
        (ws.worktree / "src").mkdir(exist_ok=True)
        (ws.worktree / "src" / "app.py").write_text(f"def main():\n    return {n}\n")
        (ws.worktree / f"new_{n}.txt").write_text(f"{n}\n")
        ws.commit_step(step_id=f"implement-{n}", agent="claude", task="t")


@pytest.mark.parametrize("include_uncommitted", [False, True])
def test_a_successful_run(user_repo, state, include_uncommitted, write):
    before = snapshot_checkout(user_repo)
    ws = RunWorkspace.create(user_repo, "ok", state_home=state, include_uncommitted=include_uncommitted)
    run_steps(ws, 3)
    write(ws.worktree / "reviewer.txt", "a read-only step wrote this\n")
    ws.discard_uncommitted()
    ws.rollback(ws.log()[-2].sha)
    assert ws.diff().files
    ws.remove_worktree()
    after = snapshot_checkout(user_repo)
    assert after == before, before.differences(after)


def test_a_run_that_fails_midway(user_repo, state, write):
    before = snapshot_checkout(user_repo)
    with pytest.raises(RuntimeError, match="agent crashed"):
        ws = RunWorkspace.create(user_repo, "failed", state_home=state, include_uncommitted=True)
        run_steps(ws, 1)
        write(ws.worktree / "half.txt", "half-written")
        raise RuntimeError("agent crashed")
    after = snapshot_checkout(user_repo)
    assert after == before, before.differences(after)
    ws = RunWorkspace.open(user_repo, "failed", state)
    assert ws.reset_to(ws.head()) is not None  # the half-written file is kept under a backup ref
    assert not (ws.worktree / "half.txt").exists()


CHILD = """
import os, sys
from pathlib import Path
from orchestrator.workspace import RunWorkspace

repo, state, run_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ws = RunWorkspace.create(repo, run_id, state_home=state, include_uncommitted=True)
print("pid", os.getpid(), flush=True)
n = 0
while True:
    n += 1
    (ws.worktree / f"step-{n}.txt").write_text("x" * 1000)
    (ws.worktree / "src" / "app.py").write_text(f"def main():\\n    return {n}\\n")
    ws.commit_step(step_id=f"s{n}", agent="fake", task="loop")
    (ws.worktree / "partial.txt").write_text(f"partial {n}")
    print("committed", n, flush=True)
"""


@pytest.mark.parametrize("ending", ["sigkill", "timeout"])
def test_a_run_whose_process_dies_midway_then_resumes(user_repo, state, tmp_path, ending, git, write):
    before = snapshot_checkout(user_repo)
    seen: list[str] = []
    pid: list[int] = []

    def on_line(stream: str, line: str) -> None:
        seen.append(line)
        if line.startswith("pid "):
            pid.append(int(line.split()[1]))
        if ending == "sigkill" and line == "committed 3":
            os.kill(pid[0], signal.SIGKILL)  # mid-loop: most likely inside a git command

    spec = ProcSpec(
        argv=[sys.executable, "-c", CHILD, str(user_repo), str(state), "killed"],
        cwd=tmp_path,
        env=child_env(os.environ, {"PYTHONPATH": str(PROJECT)}),
        wall_timeout_s=60 if ending == "sigkill" else 4,
    )
    result = SubprocessCommunicator().run(spec, on_line)
    if ending == "sigkill":
        assert result.signal == signal.SIGKILL
    else:
        assert result.timed_out
    committed = [line for line in seen if line.startswith("committed")]
    assert len(committed) >= 3, seen

    after = snapshot_checkout(user_repo)
    assert after == before, before.differences(after)

    ws = RunWorkspace.open(user_repo, "killed", state)
    last = ws.head()
    ws.reset_to(last)
    assert git(ws.worktree, "status", "--porcelain") == ""
    write(ws.worktree / "resumed.txt", "resumed\n")
    resumed = ws.commit_step(step_id="resumed", agent="fake")
    assert resumed.changed and resumed.files == ["resumed.txt"]
    steps = [c.step_id for c in ws.log()]
    assert steps[0] == "uncommitted" and steps[-1] == "resumed"
    numbered = steps[1:-1]
    assert numbered == [f"s{n}" for n in range(1, len(numbered) + 1)] and len(numbered) >= 3
    assert snapshot_checkout(user_repo) == before


def test_two_runs_at_the_same_time_do_not_disturb_each_other(user_repo, state, git, write):
    before = snapshot_checkout(user_repo)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    results: dict[str, RunWorkspace] = {}

    def run(run_id: str) -> None:
        try:
            barrier.wait()
            ws = RunWorkspace.create(user_repo, run_id, state_home=state, include_uncommitted=True)
            for n in range(1, 6):
                write(ws.worktree / f"{run_id}-{n}.txt", f"{run_id} {n}\n")
                ws.commit_step(step_id=f"s{n}", agent=run_id)
            ws.rollback(ws.log()[-2].sha)
            results[run_id] = ws
        except BaseException as exc:  # reported below, on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for name, other in (("left", "right"), ("right", "left")):
        ws = results[name]
        log = ws.log()
        assert [c.step_id for c in log] == ["uncommitted", "s1", "s2", "s3", "s4"]
        assert {c.agent for c in log[1:]} == {name}
        assert [f for c in log[1:] for f in c.files] == [f"{name}-{n}.txt" for n in range(1, 5)]
        assert not any(p.name.startswith(other) for p in ws.worktree.iterdir())
    after = snapshot_checkout(user_repo)
    assert after == before, before.differences(after)
    # Both discarded at once: each keeps its tip, and the shared packed-refs lock is retried.
    barrier = threading.Barrier(2)

    def discard(ws: RunWorkspace) -> None:
        try:
            barrier.wait()
            ws.discard()
        except BaseException as exc:
            errors.append(exc)

    git(user_repo, "pack-refs", "--all")
    threads = [threading.Thread(target=discard, args=(ws,)) for ws in results.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert git(user_repo, "branch", "--list", "orchestrator/*") == ""
    assert len(git(user_repo, "for-each-ref", "refs/orchestrator/backups/*/discarded").splitlines()) == 2
    after = snapshot_checkout(user_repo)
    assert after == before, before.differences(after)


def test_a_run_outside_any_repository_gets_a_new_repository(tmp_path, state, write, make_repo):
    plain = tmp_path / "plain"
    plain.mkdir()
    write(plain / "mine.txt", "not in git\n")
    root = resolve_repo(plain, workspace_dir=tmp_path / "workspace", new_name="task-1")
    assert root == (tmp_path / "workspace" / "task-1").resolve()
    before = snapshot_checkout(root)
    ws = RunWorkspace.create(root, "r1", state_home=state)
    run_steps(ws, 2)
    assert [c.step_id for c in ws.log()] == ["implement-1", "implement-2"]
    assert snapshot_checkout(root) == before
    # Inside a repository, that repository is used; --repo must be a repository.
    inside = make_repo(tmp_path / "inside")
    assert (
        resolve_repo(inside / "src", workspace_dir=tmp_path / "workspace", new_name="x") == inside.resolve()
    )
    assert (plain / "mine.txt").read_text() == "not in git\n" and not (plain / ".git").exists()
