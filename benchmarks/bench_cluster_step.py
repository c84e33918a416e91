"""The cluster's own costs: the Temporal dev server's start, a step's overhead on the activity path
against a local run of the same workflow, and the time from a worker's SIGKILL to its step running
again on another worker.

    python -m benchmarks.bench_cluster_step [--rounds 3] [--steps 4] [--heartbeat-s 3]

- start: `TemporalDevServer().start()` (until a gRPC health check answers), --rounds times.
- per step: a workflow of --steps fake-agent nodes (implement x (steps-1), review), run with
  `orchestrator run` locally (SQLite, and the same PostgreSQL store the cluster uses) and with
  `orchestrator run --cluster` on one worker that is already up. Each timing is the command's wall
  time, so both include the CLI's own start; (cluster - local on PostgreSQL) / steps is what the
  activity path adds per node (a workflow task, an activity task, a fencing token, the mirror's fetch
  and push, a RunService and the resume path).
- recovery: a run whose first step hangs on worker w1; w2 is up; w1 is SIGKILLed; the time until the
  step's second StepStarted is in the store (the issue's goal: heartbeat timeout + 5 s).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.store import Store
from orchestrator.testing.cluster import (
    APPROVE,
    OrchestratorProcess,
    cluster_env,
    make_repo,
    start_worker,
    submit_run,
    wait_for_step,
    write_cluster_config,
)
from orchestrator.testing.postgres import PostgresServer
from orchestrator.testing.temporal import TemporalDevServer


def timed(process: OrchestratorProcess) -> float:
    started = time.monotonic()
    result = process.join(600)
    if result.exit_code != 0:
        raise SystemExit(f"a run failed ({result.exit_code}):\n{process.output}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--heartbeat-s", type=float, default=3.0)
    args = parser.parse_args()

    starts = []
    for _ in range(args.rounds):
        server = TemporalDevServer().start()
        starts.append(server.start_seconds or 0.0)
        server.stop()
    print(
        f"temporal dev server start: median {statistics.median(starts):.2f} s (each: {', '.join(f'{s:.2f}' for s in starts)})"
    )

    postgres = PostgresServer().start()
    temporal = TemporalDevServer().start()
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        database = postgres.create_database()
        repo = make_repo(root / "repo")
        workflow = root / "wf.yaml"
        steps: list[dict[str, Any]] = [{"agent": "fake", "task": "implement"}] * (args.steps - 1)
        workflow.write_text(
            yaml.safe_dump({"max_iterations": 1, "steps": [*steps, {"agent": "fake", "task": "review"}]})
        )
        extra = {
            "agents": {"fake": {"timeout_s": 120}},
            "fallback_order": ["fake"],
            "workflow": str(workflow),
        }
        config = write_cluster_config(
            root / "cluster.yaml",
            temporal=temporal.address,
            database=database,
            heartbeat_timeout_s=args.heartbeat_s,
            extra=extra,
        )
        local_sqlite = root / "local.yaml"
        local_sqlite.write_text(yaml.safe_dump(extra))
        local_pg = root / "local-pg.yaml"
        local_pg.write_text(yaml.safe_dump({**extra, "cluster": {"database": database}}))
        env = cluster_env(root, "submitter")
        worker = start_worker(config, cluster_env(root, "w1"), cwd=root, name="w1")
        try:
            task = "make greet() return Hello"
            timed(submit_run(config, env, task, cwd=repo))  # warm: the worker's first step imports
            times: dict[str, list[float]] = {"local, SQLite": [], "local, PostgreSQL": [], "cluster": []}
            for _ in range(args.rounds):
                times["local, SQLite"].append(
                    timed(
                        OrchestratorProcess(["run", task, "--config", str(local_sqlite)], cwd=repo, env=env)
                    )
                )
                times["local, PostgreSQL"].append(
                    timed(OrchestratorProcess(["run", task, "--config", str(local_pg)], cwd=repo, env=env))
                )
                times["cluster"].append(timed(submit_run(config, env, task, cwd=repo)))
            medians = {k: statistics.median(v) for k, v in times.items()}
            for name, value in medians.items():
                print(f"{args.steps}-step run, {name}: median {value:.2f} s")
            per_step = (medians["cluster"] - medians["local, PostgreSQL"]) / args.steps
            print(
                f"activity path overhead per step (cluster - local on PostgreSQL) / {args.steps}: {per_step * 1000:.0f} ms"
            )
            print(
                f"ratio cluster / local on PostgreSQL: {medians['cluster'] / medians['local, PostgreSQL']:.2f}"
            )
        finally:
            worker.stop()

        # Recovery from a worker's SIGKILL.
        scenario = root / "scenario.yaml"
        recoveries = []
        for _ in range(args.rounds):
            scenario.write_text(
                yaml.safe_dump({"turns": [{"hang": 600}, {"text": "done"}, {"text": APPROVE}]})
            )
            scenario.with_name("scenario.yaml.state").unlink(missing_ok=True)
            config = write_cluster_config(
                root / "cluster.yaml",
                temporal=temporal.address,
                database=database,
                heartbeat_timeout_s=args.heartbeat_s,
                extra={
                    **extra,
                    "agents": {
                        "fake": {"timeout_s": 600, "env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}
                    },
                },
            )
            doomed = start_worker(config, cluster_env(root, "w1"), cwd=root, name="w1")
            run = submit_run(config, env, task, cwd=repo)
            run_id = _new_run(database, run)
            wait_for_step(database, run_id, {"running"})
            other = start_worker(config, cluster_env(root, "w2"), cwd=root, name="w2")
            killed = time.monotonic()
            doomed.kill()
            with Store(database) as store:
                while len(store.events(run_id, types=("step_started",))) < 2:
                    time.sleep(0.02)
            recoveries.append(time.monotonic() - killed)
            run.join(300)
            other.stop()
        print(
            f"worker SIGKILL to its step started again elsewhere (heartbeat timeout {args.heartbeat_s:g} s): "
            f"median {statistics.median(recoveries):.2f} s (each: {', '.join(f'{r:.2f}' for r in recoveries)}); "
            f"goal <= {args.heartbeat_s + 5:g} s"
        )
    finally:
        temporal.stop()
        postgres.stop()


def _new_run(database: str, run: OrchestratorProcess) -> str:
    """The id of the run `run` created (the newest whose task is not finished)."""
    deadline = time.monotonic() + 60
    with Store(database) as store:
        while time.monotonic() < deadline:
            running = store.list_runs(status="running", limit=1)
            if running:
                return running[0].id
            time.sleep(0.05)
    raise SystemExit(f"no run was created:\n{run.output}")


if __name__ == "__main__":
    main()
