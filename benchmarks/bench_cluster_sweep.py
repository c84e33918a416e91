"""What a worker's sweep of finished runs' repositories costs and frees (cluster/cleanup.py).

    python -m benchmarks.bench_cluster_sweep                 # 2000 files, 20 runs
    python -m benchmarks.bench_cluster_sweep --files 5000 --runs 50

Real git, a local bare origin: a user repository of --files files (about 1 KB each, in folders of
100) is pushed to the origin, --runs runs are published there and each opened on one "worker" (its
mirror, then a run repository of its own: a full checkout). Printed: a sweep that removes nothing (all
runs running: the scan of repos/ and the decisions), a sweep that removes them all (keep 0): its time,
per repository, and the disk it freed; then what making one run's repository again costs when its next
step comes (open_run_workspace), against opening one that is still there. What the store says is
answered from memory here: the store's lookups (one get_run per folder) are bench_store_backends'.
Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.cluster.cleanup import RunsInUse, StoredRun, sweep_run_repos
from orchestrator.cluster.mirror import RepoMirror, open_run_workspace, publish_run_start
from orchestrator.workspace import RunWorkspace
from orchestrator.workspace.git import Git

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b"}
ENV |= {"GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def make_repo(path: Path, files: int) -> Git:
    path.mkdir(parents=True)
    git = Git(path, environ=ENV)
    git.run("init", "-q", "--initial-branch=main")
    for n in range(files):
        folder = path / f"d{n // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{n:05d}.txt").write_text(f"file {n}\n" + "x" * 1000 + "\n")
    git.run("add", "-A")
    git.run("commit", "-q", "-m", "initial")
    return git


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        user = make_repo(tmp / "user", args.files)
        origin = tmp / "origin.git"
        Git(tmp, environ=ENV).run("init", "-q", "--bare", str(origin))
        user.run("push", "-q", str(origin), "main")
        home = tmp / "worker"
        mirror = RepoMirror.for_url(str(origin), state_home=home, env=ENV)
        mirror.update()
        runs = [f"20261204-210000-b{n:05d}" for n in range(args.runs)]
        for run_id in runs:
            RunWorkspace.create(tmp / "user", run_id, state_home=tmp / "submitter", environ=ENV)
            publish_run_start(tmp / "user", str(origin), run_id, ENV)
            open_run_workspace(mirror, run_id, state_home=home, env=ENV)
        states = {r: StoredRun("running", url=str(origin)) for r in runs}
        in_use = RunsInUse()

        def sweep() -> tuple[float, int, int]:
            started = time.perf_counter()
            removed = sweep_run_repos(states.__getitem__, state_home=home, env=ENV, in_use=in_use, keep_s=0)
            return time.perf_counter() - started, len(removed), sum(r.freed_bytes for r in removed)

        idle_s, _, _ = sweep()
        states = {r: StoredRun("finished", finished_at=time.time(), url=str(origin)) for r in runs}
        all_s, count, freed = sweep()
        remade_s = []
        for run_id in runs[:5]:
            started = time.perf_counter()
            open_run_workspace(mirror, run_id, state_home=home, env=ENV)
            remade_s.append(time.perf_counter() - started)  # made again: it was swept
        there_s = []
        for run_id in runs[:5]:
            started = time.perf_counter()
            open_run_workspace(mirror, run_id, state_home=home, env=ENV)
            there_s.append(time.perf_counter() - started)  # there already
        print(f"sweep of {args.runs} run repositories of {args.files} files each")
        print(f"  nothing to remove (all running)   {idle_s * 1000:9.1f} ms")
        print(
            f"  removing all {count:<4}                {all_s * 1000:9.1f} ms   "
            f"{all_s * 1000 / max(count, 1):7.1f} ms per repository"
        )
        print(
            f"  freed                             {freed / 1e6:9.1f} MB   {freed / max(count, 1) / 1e6:7.2f} MB per run"
        )
        remade, kept = statistics.median(remade_s), statistics.median(there_s)
        print(f"  next step, repository made again  {remade * 1000:9.1f} ms (median of 5)")
        print(
            f"  next step, repository still there {kept * 1000:9.1f} ms (median of 5)   ratio {remade / kept:.2f}x"
        )


if __name__ == "__main__":
    main()
