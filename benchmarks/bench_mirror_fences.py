"""What the cluster's git and fencing cost: a worker's mirror and the run's pushes, and fencing tokens.

    python -m benchmarks.bench_mirror_fences                 # 3000 files, 5 steps, 300 tokens
    python -m benchmarks.bench_mirror_fences --files 5000 --steps 10 --tokens 1000

Git (real git, local bare origin): a user repository of --files files (about 1 KB each, in folders of
100) is pushed to a bare origin and a run is published there (`publish_run_start`); then two "workers"
(two state homes) take turns at --steps steps, each one: `RepoMirror.update` + `open_run_workspace`
(fetch, then make or move the run repository), a change of 3 files committed, and `push_run` with its
lease. Printed: the first mirror fetch (whole repository), the later incremental updates, the first
open (run repository checked out) and the later ones (moved to the other worker's tip), the pushes,
and `fetch_run_branch` on the submitting side, as medians (and max).

Slots: `try_acquire` + `release` of a per-CLI slot, flock files (one machine) against advisory locks
(ClusterSlots, a session per slot: its connect is most of the take).

Budget ledger: `reserve` (check and reserve in one transaction) and `record` + `release`, SQLite file
against the cluster's tables (a connection and an advisory lock per transaction).

Fencing tokens: `acquire_fence` then `hold_fence` per attempt, and an `add_event` checked against
the token, on an SQLite file and on a PostgreSQL database from orchestrator/testing/postgres.py
(local unix socket): median and p95 per call. Numbers, not asserts: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.cluster.mirror import RepoMirror, fetch_run_branch, open_run_workspace, publish_run_start
from orchestrator.events import Notice
from orchestrator.limits import BudgetLedger, Budgets, MachineSlots
from orchestrator.limits.cluster_ledger import ClusterBudgetLedger
from orchestrator.limits.cluster_slots import ClusterSlots
from orchestrator.store import Store
from orchestrator.testing.postgres import PostgresServer
from orchestrator.workspace import RunWorkspace
from orchestrator.workspace.git import Git

RUN = "20261203-070000-bench1"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"  {name:<44} median {statistics.median(ms):8.2f} ms   p95 {p95:8.2f} ms   n={len(ms)}"


def make_repo(path: Path, files: int) -> Git:
    path.mkdir(parents=True)
    git = Git(path)
    git.run("init", "-q", "--initial-branch=main")
    for n in range(files):
        target = path / f"pkg{n // 100:03d}" / f"mod{n:05d}.py"
        target.parent.mkdir(exist_ok=True)
        target.write_text(f"# module {n}\n" + "".join(f"VALUE_{i} = {n * i}\n" for i in range(60)))
    git.run("add", "-A")
    git.run("commit", "-q", "-m", "initial")
    return git


def bench_git(root: Path, files: int, steps: int) -> None:
    env = dict(os.environ)
    made = timed(lambda: make_repo(root / "user", files))
    user = root / "user"
    origin = root / "origin.git"
    Git(root).run("init", "-q", "--bare", str(origin))
    Git(user).run("push", "-q", str(origin), "main")
    ws = RunWorkspace.create(user, RUN, state_home=root / "submit", environ=env)
    published = timed(lambda: publish_run_start(user, str(origin), RUN, env))
    print(f"git: {files} files ({made:.1f} s to make), bare origin on a local path")
    print(f"  publish_run_start (submit side)              {published * 1000:8.1f} ms")

    workers = [RepoMirror.for_url(str(origin), state_home=root / f"home-{w}", env=env) for w in "ab"]
    first_update: list[float] = []
    updates: list[float] = []
    first_open: list[float] = []
    opens: list[float] = []
    pushes: list[float] = []
    fetches: list[float] = []
    for step in range(steps):
        mirror = workers[step % 2]
        home = mirror.path.parents[2]
        (first_update if step < 2 else updates).append(timed(mirror.update))
        began = time.perf_counter()
        run_ws = open_run_workspace(mirror, RUN, state_home=home, env=env)
        (first_open if step < 2 else opens).append(time.perf_counter() - began)
        start = run_ws.head()
        for n in range(3):
            target = run_ws.worktree / f"pkg{n // 100:03d}" / f"mod{n:05d}.py"
            target.write_text(target.read_text() + f"# step {step}\n")
        run_ws.commit_step(step_id=f"s{step}", agent="bench", step_start=start)
        began = time.perf_counter()
        mirror.push_run(RUN, expected=start)
        pushes.append(time.perf_counter() - began)
        began = time.perf_counter()
        fetch_run_branch(user, str(origin), RUN, env)
        fetches.append(time.perf_counter() - began)
    print(summary("mirror update, first (whole repository)", first_update))
    print(summary("mirror update, later (incremental)", updates))
    print(summary("open_run_workspace, first (checkout)", first_open))
    print(summary("open_run_workspace, later (moved to tip)", opens))
    print(summary("push_run (3 files changed, lease)", pushes))
    print(summary("fetch_run_branch (submit side)", fetches))
    final = RunWorkspace.open(user, RUN, root / "submit", environ=env)
    print(f"  the user's repository has the run's {len(final.log())} commits (base {ws.base[:12]})")


def bench_tokens(location: str, tokens: int, label: str) -> None:
    acquire: list[float] = []
    hold: list[float] = []
    write: list[float] = []
    with Store(location) as store:
        store.create_run(
            run_id="bench", repo="/tmp", task="t", workflow_name="w", workflow={}, base="HEAD", branch="b"
        )
        for _ in range(tokens):
            began = time.perf_counter()
            token = store.acquire_fence("bench")
            acquire.append(time.perf_counter() - began)
            began = time.perf_counter()
            store.hold_fence("bench", token)
            hold.append(time.perf_counter() - began)
            began = time.perf_counter()
            store.add_event("bench", Notice(run_id="bench", text="x"))
            write.append(time.perf_counter() - began)
        store.release_fence("bench")
        plain = [
            timed(lambda: store.add_event("bench", Notice(run_id="bench", text="x"))) for _ in range(tokens)
        ]
    print(f"fencing tokens, {label}:")
    print(summary("acquire_fence", acquire))
    print(summary("hold_fence", hold))
    print(summary("add_event holding a token (checked)", write))
    print(summary("add_event holding none (as before)", plain))


def bench_slots(slots: MachineSlots, rounds: int, label: str) -> None:
    take: list[float] = []
    release: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        slot = slots.try_acquire("claude")
        take.append(time.perf_counter() - began)
        assert slot is not None
        began = time.perf_counter()
        slot.release()
        release.append(time.perf_counter() - began)
    print(f"per-CLI slots, {label}:")
    print(summary("take (try_acquire, cap 4, none held)", take))
    print(summary("release", release))


def bench_ledger(ledger: BudgetLedger, rounds: int, label: str) -> None:
    reserve: list[float] = []
    record: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        held = ledger.reserve("bench", 0.01)
        reserve.append(time.perf_counter() - began)
        began = time.perf_counter()
        ledger.record("bench", 0.001, reservation=held)
        ledger.release(held)
        record.append(time.perf_counter() - began)
    print(f"budget ledger, {label}:")
    print(summary("reserve (check + reserve, atomic)", reserve))
    print(summary("record + release", record))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        bench_git(Path(tmp) / "git", args.files, args.steps)
        bench_tokens(str(Path(tmp) / "state.db"), args.tokens, "SQLite")
        server = PostgresServer().start()
        try:
            url = server.create_database()
            bench_tokens(url, args.tokens, "PostgreSQL (local socket)")
            bench_slots(MachineSlots(Path(tmp) / "home"), args.tokens, "one machine (flock files)")
            bench_slots(ClusterSlots(url, Path(tmp) / "home"), args.tokens, "cluster (advisory locks)")
            budgets = Budgets(hour_usd=1000.0)
            bench_ledger(BudgetLedger.at_state_home(Path(tmp) / "home", budgets), 100, "one machine (SQLite)")
            bench_ledger(ClusterBudgetLedger(url, budgets), 100, "cluster (PostgreSQL)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
