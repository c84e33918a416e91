"""The worker's sweep of finished runs' repositories: which go (the pure function), the step/sweep
guard, and the sweep itself with real git (a worker's mirror of a bare origin): a removed repository's
uncommitted work kept under a backup ref (on the URL with the run's next push; withheld when it holds a
given secret), the run folder left, and the next step making the repository again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from orchestrator.cluster.cleanup import (
    RunsInUse,
    StoredRun,
    candidate_ids,
    owner_run,
    removable_runs,
    run_folders,
    sweep_run_repos,
)
from orchestrator.workspace import RunWorkspace
from orchestrator.workspace.git import Git
from orchestrator.workspace.run_records import backup_prefix
from tests.cluster.test_mirror import ENV, RUN, Setup

NOW = 1_000_000.0
DONE = StoredRun("finished", finished_at=NOW - 600, url="u")


def test_which_repositories_may_go() -> None:
    stored = {
        "old": StoredRun("finished", finished_at=NOW - 7200, url="u"),
        "recent": DONE,
        "busy": StoredRun("running", url="u"),
        "mine": StoredRun("local"),
        "stepping": DONE,
        "unknown": StoredRun("absent"),
        "blank": StoredRun("finished", finished_at=None, url="u"),
    }
    folders = [*stored, "old-a1", "busy-a1", "old-i2-st-x", "ghost-a1"]
    kept_an_hour = removable_runs(folders, stored, executing={"stepping"}, now=NOW, keep_s=3600)
    assert kept_an_hour == ["old", "old-a1", "old-i2-st-x"]
    at_once = removable_runs(folders, stored, executing={"stepping"}, now=NOW, keep_s=0)
    assert at_once == ["old", "old-a1", "old-i2-st-x", "recent"]
    # Just at the keep period's end: it goes.
    assert removable_runs(["recent"], stored, executing=(), now=NOW, keep_s=600) == ["recent"]
    assert removable_runs(["recent"], stored, executing=(), now=NOW, keep_s=601) == []


def test_a_member_folder_belongs_to_the_longest_known_run_id() -> None:
    assert candidate_ids("a-b-c") == ["a-b-c", "a-b", "a"]
    stored = {"a": DONE, "a-b": DONE, "a-b-c-d": StoredRun("absent")}
    assert owner_run("a-b-c-d", stored) == "a-b"
    assert owner_run("a", stored) == "a"
    assert owner_run("z-b", stored) is None


def test_a_step_and_the_sweep_of_its_run_exclude_each_other() -> None:
    in_use = RunsInUse()
    with in_use.step("r"):
        assert in_use.executing() == {"r"}
        with in_use.sweeping("r") as free:
            assert not free
        with in_use.sweeping("other") as free:
            assert free
    assert in_use.executing() == frozenset()
    entered = threading.Event()
    with in_use.sweeping("r") as free:
        assert free

        def step() -> None:
            with in_use.step("r"):
                entered.set()

        thread = threading.Thread(target=step)
        thread.start()
        assert not entered.wait(0.3)  # waits while the sweep removes the repository
    assert entered.wait(10)
    thread.join(10)


class Sweep:
    def __init__(self, tmp_path: Path) -> None:
        self.setup = Setup(tmp_path, "origin")
        self.worker = self.setup.worker("w")
        self.in_use = RunsInUse()
        self.states: dict[str, StoredRun] = {}

    def lookup(self, run_id: str) -> StoredRun:
        return self.states.get(run_id, StoredRun("absent"))

    def run(self, keep_s: float = 0, given: dict[str, str] | None = None) -> list[str]:
        removed = sweep_run_repos(
            self.lookup,
            state_home=self.worker.home,
            env=ENV,
            in_use=self.in_use,
            keep_s=keep_s,
            given=given,
        )
        assert all(r.freed_bytes > 0 for r in removed)
        return [r.run_id for r in removed]


@pytest.fixture
def sweep(tmp_path: Path) -> Sweep:
    return Sweep(tmp_path)


def test_a_finished_runs_repository_goes_its_uncommitted_work_kept_in_a_backup_ref(sweep: Sweep) -> None:
    _, tip = sweep.worker.step("s1", "one\n")
    repository = sweep.worker.home / "repos" / RUN
    # A group member's repository (best of N) made from the mirror: it goes with its run.
    member = RunWorkspace.create(
        sweep.worker.mirror.path, f"{RUN}-a1", base=tip, state_home=sweep.worker.home, environ=ENV
    )
    (repository / "left.txt").write_text("left behind\n")
    (sweep.worker.home / "repos" / "not a run id").mkdir()
    assert run_folders(sweep.worker.home) == [RUN, f"{RUN}-a1"]

    sweep.states[RUN] = StoredRun("running", url=sweep.setup.url)
    assert sweep.run() == []  # running in the store: left
    sweep.states[RUN] = StoredRun("finished", finished_at=time.time(), url=sweep.setup.url)
    assert sweep.run(keep_s=3600) == []  # within the keep period: left
    with sweep.in_use.step(RUN):
        assert sweep.run() == []  # a step of this worker is executing it: left
    assert repository.is_dir()

    assert sweep.run() == [RUN, f"{RUN}-a1"]
    assert not repository.exists() and not member.worktree.exists()
    assert (sweep.worker.home / "runs" / RUN).is_dir()  # the run folder stays
    mirror = Git(sweep.worker.mirror.path)
    kept = mirror.out("for-each-ref", "--format=%(refname)", backup_prefix(RUN)).split()
    [removed] = [ref for ref in kept if "worktree-removed" in ref]
    assert mirror.out("show", f"{removed}:left.txt") == "left behind"
    origin = sweep.setup.url_git
    assert origin.rev_parse(f"refs/heads/orchestrator/{RUN}") == tip  # the run branch as pushed

    # The next step of the run on this worker makes the repository again from the mirror, and its
    # push takes the backup to the URL with the run's other refs.
    start, s2 = sweep.worker.step("s2", "two\n")
    assert start == tip and (repository / "s1.txt").read_text() == "one\n"
    assert Git(repository).out("rev-parse", "HEAD") == s2
    assert origin.out("show", f"{removed}:left.txt") == "left behind"
    assert sweep.run() == [RUN]


def test_repositories_of_runs_the_store_does_not_know_or_that_are_local_stay(sweep: Sweep) -> None:
    sweep.worker.step("s1", "one\n")
    assert sweep.run() == []  # "absent": this state home may be a user's, holding local runs
    sweep.states[RUN] = StoredRun("local")
    assert sweep.run() == []
    assert (sweep.worker.home / "repos" / RUN).is_dir()


def test_uncommitted_work_holding_a_given_secret_is_withheld_not_kept_in_a_ref(sweep: Sweep) -> None:
    secret = "sk-sweep-test-0123456789abcdef"
    sweep.worker.step("s1", "one\n")
    repository = sweep.worker.home / "repos" / RUN
    (repository / "creds.txt").write_text(f"key={secret}\n")
    (repository / "fine.txt").write_text("nothing secret\n")
    sweep.states[RUN] = StoredRun("finished", finished_at=time.time(), url=sweep.setup.url)
    assert sweep.run(given={secret: "agent:fake"}) == [RUN]
    assert not repository.exists()
    mirror = Git(sweep.worker.mirror.path)
    for ref in mirror.out("for-each-ref", "--format=%(refname)").split():
        listing = mirror.out("ls-tree", "-r", "--name-only", ref)
        assert "creds.txt" not in listing.split(), ref  # in no ref: nothing can push it anywhere
    withheld = sweep.worker.home / "runs" / RUN / "withheld"
    assert any(secret in p.read_text() for p in withheld.rglob("creds.txt"))
