"""What the submitter's questions to Temporal cost (cluster/watch.py), against a real dev server.

    python -m benchmarks.bench_cluster_watch [--rounds 50]

- reachable and served: the connection, then the one-agent queues some worker polls (a
  DescribeTaskQueue per CLI, at once), asked once per `run --cluster` before the run is created (what
  `agent: auto` chooses from);
- queue check: the run's step queue and the workflow queue (2 calls plus the connection), asked once
  per submit;
- describe: one DescribeWorkflowExecution on an open client, what the follow loop's WorkflowWatch asks
  every CHECK_EVERY_S while a run is followed (a workflow of the run's id that does not exist: the
  NOT_FOUND path).
p50/p95 of --rounds each; numbers, not asserts (the machine may be shared: the load is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

from benchmarks.cluster_bench import p95
from orchestrator.cluster.frontend import connect_frontend
from orchestrator.cluster.watch import CHECK_EVERY_S, check_queues, reachable_and_served, workflow_status
from orchestrator.config import Settings
from orchestrator.testing.temporal import TemporalDevServer


def settings_for(address: str) -> Settings:
    return Settings.model_validate(
        {"cluster": {"temporal": address, "database": "postgresql://unused/unused", "task_queue_prefix": "b"}}
    )


def ms(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values) * 1000:.1f} ms, p95 {p95(values) * 1000:.1f} ms, "
        f"max {max(values) * 1000:.1f} ms (n={len(values)})"
    )


def timed(rounds: int, work: Callable[[], object]) -> list[float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        took.append(time.perf_counter() - started)
    return took


async def describes(settings: Settings, rounds: int) -> list[float]:
    frontend = await connect_frontend(settings)
    took = []
    for n in range(rounds):
        started = time.perf_counter()
        await workflow_status(frontend, f"no-such-run-{n}")
        took.append(time.perf_counter() - started)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with TemporalDevServer() as server:
        settings = settings_for(server.address)
        served = timed(args.rounds, lambda: reachable_and_served(settings))
        queues = timed(args.rounds, lambda: check_queues(settings, ["claude", "codex"]))
        described = asyncio.run(describes(settings, args.rounds))
    print(f"reachable and served (connect + 5 queue describes), per submit: {ms(served)}")
    print(f"queue check (connect + 2 queue describes), per submit:   {ms(queues)}")
    print(f"workflow describe, every {CHECK_EVERY_S:g} s while following:     {ms(described)}")


if __name__ == "__main__":
    main()
