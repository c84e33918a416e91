"""What going through a remote costs a cluster run (`run --cluster --remote`), against the shared path.

    python -m benchmarks.bench_cluster_remote [--rounds 5]

- check: `cluster_repo_url` for a bare repository given by path (a credentials check, one `git
  ls-remote`) and for a named remote (one `git remote get-url` more), median of --rounds x 10.
- per run: the same two-step run (implement, review; the fake agent) on one worker that is already up,
  submitted through the repository's own path (no push or fetch on the submitting side), through a
  bare repository by path, and through a bare repository over ssh:// (a stand-in ssh that runs the
  command here: the ssh transport's processes, not a network). Each timing is the command's wall time
  (the CLI's start included); the differences are what publishing the run's start, fetching from the
  remote, waiting for the workflow to close and fetching the branch back add.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.bench_cluster_step import make_repo, timed
from orchestrator.cluster.remote import cluster_repo_url
from orchestrator.proc import run_command
from orchestrator.testing.cluster import cluster_env, start_worker, submit_run, write_cluster_config
from orchestrator.testing.postgres import PostgresServer
from orchestrator.testing.temporal import TemporalDevServer

FAKE_SSH = '#!/bin/sh\nfor last; do :; done\nexec sh -c "$last"\n'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    repo = make_repo(root / "repo")
    bare = root / "remote.git"
    run_command(["git", "init", "-q", "--bare", str(bare)], root, check=True)
    run_command(["git", "remote", "add", "shared", str(bare)], repo, check=True)
    env = dict(os.environ)
    for label, remote in (("a path", str(bare)), ("a named remote", "shared")):
        times = []
        for _ in range(args.rounds * 10):
            started = time.perf_counter()
            cluster_repo_url(repo, remote, cwd=repo, env=env)
            times.append(time.perf_counter() - started)
        print(f"remote check, {label}: median {statistics.median(times) * 1000:.1f} ms")

    postgres = PostgresServer().start()
    temporal = TemporalDevServer().start()
    try:
        workflow = root / "wf.yaml"
        steps = [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]
        workflow.write_text(yaml.safe_dump({"max_iterations": 1, "steps": steps}))
        config = write_cluster_config(
            root / "cluster.yaml",
            temporal=temporal.address,
            database=postgres.create_database(),
            extra={
                "agents": {"fake": {"timeout_s": 120}},
                "fallback_order": ["fake"],
                "workflow": str(workflow),
            },
        )
        ssh = root / "fake-ssh"
        ssh.write_text(FAKE_SSH)
        ssh.chmod(0o755)
        via_ssh = {"GIT_SSH_COMMAND": str(ssh), "GIT_SSH_VARIANT": "simple"}
        submitter = cluster_env(root, "submitter", via_ssh)
        worker = start_worker(config, cluster_env(root, "w1", via_ssh), cwd=root, name="w1")
        task = "make greet() return Hello"
        ways = {
            "shared path": ("--json",),
            "bare repository by path": ("--json", "--remote", str(bare)),
            "bare repository over ssh://": ("--json", "--remote", f"ssh://bench.example{bare}"),
        }
        try:
            timed(submit_run(config, submitter, task, cwd=repo))  # warm: the worker's first step imports
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, extra in ways.items():
                    times[name].append(timed(submit_run(config, submitter, task, cwd=repo, extra=extra)))
        finally:
            worker.stop()
        medians = {name: statistics.median(values) for name, values in times.items()}
        base = medians["shared path"]
        for name, value in medians.items():
            print(
                f"2-step cluster run, {name}: median {value:.2f} s ({value - base:+.2f} s, ratio {value / base:.2f})"
            )
    finally:
        temporal.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
