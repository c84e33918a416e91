"""Git across machines, with real git: workers (each a state home of its own) taking turns at one run's
steps through their bare mirrors, via a bare origin or via the user's repository as a shared path; a
stale worker's push refused by the lease with nothing lost; the submitting side's fetch leaving the
user's checkout as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cluster.mirror import (
    RepoMirror,
    StaleLease,
    fetch_run_branch,
    mirror_key,
    open_run_workspace,
    publish_run_start,
)
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace import RunWorkspace
from orchestrator.workspace.git import Git

RUN = "20261203-070000-abc123"
ENV = dict(os.environ)


def git(path: Path, *args: str) -> str:
    return Git(path).out(*args)


def make_user_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "--initial-branch=main")
    (path / "README.md").write_text("# demo\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("def main():\n    return 1\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


class Setup:
    """A user's repository with a run started in it, and the URL the workers use."""

    def __init__(self, tmp: Path, via: str) -> None:
        self.tmp = tmp
        self.user = make_user_repo(tmp / "user")
        self.submit_home = tmp / "submit-home"
        self.ws = RunWorkspace.create(self.user, RUN, state_home=self.submit_home, environ=ENV)
        if via == "origin":
            origin = tmp / "origin.git"
            git(tmp, "init", "-q", "--bare", str(origin))
            git(self.user, "push", "-q", str(origin), "main")
            self.url = str(origin)
        else:
            self.url = str(self.user)  # a shared path: the user's repository itself
        publish_run_start(self.user, self.url, RUN, ENV)

    def worker(self, name: str) -> Worker:
        return Worker(self.tmp / f"home-{name}", self.url)

    @property
    def url_git(self) -> Git:
        return Git(Path(self.url))


class Worker:
    def __init__(self, home: Path, url: str) -> None:
        self.home = home
        self.mirror = RepoMirror.for_url(url, state_home=home, env=ENV)

    def open(self) -> RunWorkspace:
        self.mirror.update()
        return open_run_workspace(self.mirror, RUN, state_home=self.home, env=ENV)

    def step(self, name: str, text: str, *, push: bool = True) -> tuple[str, str]:
        """One step: opens the run, writes a file, commits, pushes with a lease on where it began."""
        ws = self.open()
        start = ws.head()
        (ws.worktree / f"{name}.txt").write_text(text)
        commit = ws.commit_step(step_id=name, agent="fake", step_start=start)
        assert commit.sha is not None
        if push:
            assert self.mirror.push_run(RUN, expected=start) == commit.sha
        return start, commit.sha


@pytest.mark.parametrize("via", ["origin", "shared_path"])
def test_two_workers_take_turns_at_one_runs_steps(tmp_path, via):
    setup = Setup(tmp_path, via)
    a, b = setup.worker("a"), setup.worker("b")
    assert a.mirror.path.parent == tmp_path / "home-a" / "cluster" / "mirrors"
    assert a.mirror.path.name == f"{mirror_key(setup.url)}.git"
    assert a.mirror.git.out("rev-parse", "--is-bare-repository") == "true"

    _, s1 = a.step("s1", "one\n")
    _, s2 = b.step("s2", "two\n")
    ws_b = b.open()
    assert (ws_b.worktree / "s1.txt").read_text() == "one\n"  # b started from a's push

    # A group step on b: a member repository made from the (bare) mirror, its winner taken.
    member = RunWorkspace.create(b.mirror.path, f"{RUN}-a1", base=s2, state_home=b.home, environ=ENV)
    (member.worktree / "member.txt").write_text("member\n")
    won = member.commit_step(step_id="s3-a1", agent="fake", step_start=s2).sha
    assert won is not None
    ws_b.advance_to(won)
    assert b.mirror.push_run(RUN, expected=s2) == won

    # Back on a, whose run repository is two steps behind: moved to the tip, what it held kept.
    ws_a = a.open()
    assert ws_a.head() == won
    assert (ws_a.worktree / "member.txt").read_text() == "member\n"
    assert git(ws_a.worktree, "rev-parse", "HEAD") == won
    _, s4 = a.step("s4", "four\n")

    tip = fetch_run_branch(setup.user, setup.url, RUN, ENV)
    assert tip == s4
    user = Git(setup.user)
    assert user.out("rev-parse", f"refs/heads/orchestrator/{RUN}") == s4
    assert user.out("rev-parse", f"refs/orchestrator/runs/{RUN}/tip") == s4
    subjects = user.out("log", "--format=%s", f"{setup.ws.base}..{s4}").splitlines()
    assert subjects == ["s4: fake", "s3-a1: fake", "s2: fake", "s1: fake"]
    assert user.rev_parse(f"refs/orchestrator/runs/{RUN}-a1/tip") == won  # the member's record too
    assert RunWorkspace.open(setup.user, RUN, setup.submit_home, environ=ENV).head() == s4
    assert s1 != s2


@pytest.mark.parametrize("via", ["origin", "shared_path"])
def test_a_stale_workers_push_is_refused_and_nothing_is_lost(tmp_path, via):
    setup = Setup(tmp_path, via)
    zombie, retry = setup.worker("zombie"), setup.worker("retry")
    ws_zombie = zombie.open()
    start = ws_zombie.head()
    (ws_zombie.worktree / "late.txt").write_text("the zombie's late work\n")
    late = ws_zombie.commit_step(step_id="s1", agent="fake", step_start=start).sha
    assert late is not None

    _, newer = retry.step("s1", "the retry's work\n")  # the step retried elsewhere, pushed first

    with pytest.raises(StaleLease, match="another attempt moved it"):
        zombie.mirror.push_run(RUN, expected=start)
    url = setup.url_git
    branch = f"refs/heads/orchestrator/{RUN}"
    assert url.out("rev-parse", branch) == newer  # the lease held: the newer attempt's work stands
    assert url.out("rev-parse", f"refs/orchestrator/runs/{RUN}/tip") == newer  # atomic: record too
    holders = url.out("for-each-ref", "--format=%(refname)", "--contains", late).splitlines()
    assert holders == [f"refs/orchestrator/backups/{RUN}/stale-{late[:16]}"]  # kept, reachable

    # Refused again (twice is harmless), and the zombie's next turn starts from the newer tip.
    with pytest.raises(StaleLease):
        zombie.mirror.push_run(RUN, expected=start)
    ws = zombie.open()
    assert ws.head() == newer and not (ws.worktree / "late.txt").exists()
    _, after = zombie.step("s2", "two\n")
    assert url.out("rev-parse", branch) == after


def test_a_lease_on_the_right_commit_may_move_the_branch_back(tmp_path):
    """A rollback is a push that moves the run branch backwards: the lease, not fast-forward, rules."""
    setup = Setup(tmp_path, "origin")
    worker = setup.worker("a")
    first, s1 = worker.step("s1", "one\n")
    ws = worker.open()
    kept = ws.rollback(first)
    assert worker.mirror.push_run(RUN, expected=s1) == first
    assert setup.url_git.out("rev-parse", f"refs/heads/orchestrator/{RUN}") == first
    assert setup.url_git.out("rev-parse", kept) == s1  # the rolled-back commit is kept on the URL


def test_the_submitting_side_leaves_a_checkout_in_progress_untouched(tmp_path):
    setup = Setup(tmp_path, "origin")
    user = setup.user
    (user / "src" / "app.py").write_text("def main():\n    return 2  # staged\n")
    git(user, "add", "src/app.py")
    (user / "src" / "app.py").write_text("def main():\n    return 3  # then edited\n")
    (user / "notes.txt").write_text("untracked\n")
    git(user, "checkout", "-q", "-b", "feature")
    before = snapshot_checkout(user)

    _, s1 = setup.worker("a").step("s1", "one\n")
    assert fetch_run_branch(user, setup.url, RUN, ENV) == s1
    assert snapshot_checkout(user) == before, before.differences(snapshot_checkout(user))
    assert git(user, "rev-parse", f"refs/heads/orchestrator/{RUN}") == s1

    # The run branch checked out by the user (files edited on it): it is left where it is.
    git(user, "checkout", "-q", f"orchestrator/{RUN}")
    (user / "README.md").write_text("# the user's own edit\n")
    before = snapshot_checkout(user)
    _, s2 = setup.worker("b").step("s2", "two\n")
    assert fetch_run_branch(user, setup.url, RUN, ENV) == s2
    assert snapshot_checkout(user) == before, before.differences(snapshot_checkout(user))
    assert git(user, "rev-parse", f"refs/heads/orchestrator/{RUN}") == s1
    assert git(user, "rev-parse", f"refs/orchestrator/runs/{RUN}/tip") == s2


def test_publishing_a_run_id_the_url_has_already_is_refused(tmp_path):
    setup = Setup(tmp_path, "origin")
    publish_run_start(setup.user, setup.url, RUN, ENV)  # the same refs again: nothing to change
    setup.worker("a").step("s1", "one\n")
    with pytest.raises(StaleLease, match="already has a branch"):
        publish_run_start(setup.user, setup.url, RUN, ENV)
    assert publish_run_start(setup.user, str(setup.user), RUN, ENV) is None  # the URL is the repo: no-op


def test_on_a_shared_path_the_run_branch_the_user_checked_out_is_left_alone(tmp_path):
    """The URL is the user's repository and they checked the run branch out: a worker's push moves
    the run's record, not their branch; a stale attempt is refused all the same (by the record's
    lease)."""
    setup = Setup(tmp_path, "shared_path")
    user = setup.user
    git(user, "checkout", "-q", f"orchestrator/{RUN}")
    before = snapshot_checkout(user)
    zombie, retry = setup.worker("zombie"), setup.worker("retry")
    ws_zombie = zombie.open()
    start = ws_zombie.head()
    (ws_zombie.worktree / "late.txt").write_text("late\n")
    assert ws_zombie.commit_step(step_id="s1", agent="fake", step_start=start).sha

    _, newer = retry.step("s1", "the retry's\n")
    assert git(user, "rev-parse", f"refs/orchestrator/runs/{RUN}/tip") == newer
    assert git(user, "rev-parse", f"refs/heads/orchestrator/{RUN}") == start  # the user's, as it was
    with pytest.raises(StaleLease):
        zombie.mirror.push_run(RUN, expected=start)
    assert git(user, "rev-parse", f"refs/orchestrator/runs/{RUN}/tip") == newer
    assert snapshot_checkout(user) == before, before.differences(snapshot_checkout(user))
    assert fetch_run_branch(user, setup.url, RUN, ENV) == newer


def test_workers_on_one_machine_share_a_mirror_safely(tmp_path):
    """Several steps starting at once on one machine: one mirror, made once, fetched into by all of
    them without a failure. (It passes without the mirror's flock too: git's ref locks plus git.py's
    retry on a lock collision already cope at this scale; the flock keeps fetches and pushes of one
    mirror from interleaving at all, so no step ever pays those retries.)"""
    from concurrent.futures import ThreadPoolExecutor

    setup = Setup(tmp_path, "origin")
    home = tmp_path / "home-shared"

    def start() -> str:
        mirror = RepoMirror.for_url(setup.url, state_home=home, env=ENV)
        mirror.update()
        mirror.update_run(RUN)
        tip = mirror.tip(RUN)
        assert tip is not None
        return tip

    with ThreadPoolExecutor(max_workers=6) as pool:
        tips = list(pool.map(lambda _: start(), range(12)))
    assert set(tips) == {setup.ws.head()}
    assert [p.name for p in (home / "cluster" / "mirrors").iterdir() if p.suffix == ".git"] == [
        f"{mirror_key(setup.url)}.git"
    ]


def test_a_workers_next_step_keeps_its_workspace_and_publishes_tip_and_branch_together(tmp_path):
    setup = Setup(tmp_path, "origin")
    worker = setup.worker("a")
    ws = worker.open()
    assert ws.worker_mirror and ws.at_tip_checked  # made at the tip: the engine need not look again
    start = ws.head()
    (ws.worktree / "one.txt").write_text("one\n")
    one = ws.commit_step(step_id="s1", agent="fake", step_start=start).sha
    assert one is not None
    worker.mirror.push_run(RUN, expected=start)

    # The next step here (this worker pushed the refs the mirror holds): the same workspace, nothing
    # fetched, still checked at the tip. An agent's leftover file makes it not at the tip.
    ws.at_tip_checked = False
    again = open_run_workspace(worker.mirror, RUN, state_home=worker.home, env=ENV, kept=ws)
    assert again is ws and again.at_tip_checked
    (ws.worktree / "stray.txt").write_text("left by a cut-short attempt\n")
    assert not open_run_workspace(worker.mirror, RUN, state_home=worker.home, env=ENV, kept=ws).at_tip_checked
    (ws.worktree / "stray.txt").unlink()

    # Tip and branch move together in the mirror; a branch moved by someone else is left where it is
    # (a note says so) while the run's tip still moves.
    mirror = worker.mirror.git
    branch = f"refs/heads/orchestrator/{RUN}"
    assert mirror.rev_parse(branch) == mirror.rev_parse(f"refs/orchestrator/runs/{RUN}/tip") == one
    (ws.worktree / "two.txt").write_text("two\n")
    two = ws.commit_step(step_id="s2", agent="fake", step_start=one).sha
    assert two is not None and mirror.rev_parse(branch) == two
    mirror.run("update-ref", branch, start)
    (ws.worktree / "three.txt").write_text("three\n")
    three = ws.commit_step(step_id="s3", agent="fake", step_start=two).sha
    assert mirror.rev_parse(f"refs/orchestrator/runs/{RUN}/tip") == three
    assert mirror.rev_parse(branch) == start
    assert any("was left as it is" in note for note in ws.notes)
