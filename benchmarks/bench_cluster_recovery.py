"""From a worker's SIGKILL to its step running again on the other worker.

    python -m benchmarks.bench_cluster_recovery [--rounds 3] [--heartbeat-s 10]

A real Temporal dev server and a real PostgreSQL, 2 workers (--concurrency 1 each), the workflow
[implement, review] with the stand-in agent of benchmarks/cluster_bench.py. Each round submits one run
whose first step takes a long time, waits until the stand-in has started (and finds, from /proc, which
worker it runs under), lets it run 1 s, SIGKILLs that worker, and times until the stand-in starts again
under the other worker (the step retried there after its heartbeat timed out, resumed from the shared
store), and until the store has the retried step's StepStarted. The run must then approve; printed too:
whether the killed worker's agent process was left alive, and how often the step was accepted. The
killed worker is started again before the next round.

Goal: the heartbeat timeout (`cluster.heartbeat_timeout_s`, --heartbeat-s) + 5 s. Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.cluster_bench import ancestors, cluster_bench, summary
from orchestrator.testing.standins import is_alive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--heartbeat-s", type=float, default=10.0)
    args = parser.parse_args()
    recovered: list[float] = []
    in_store: list[float] = []
    with cluster_bench("recovery", heartbeat_timeout_s=args.heartbeat_s, long_s=120.0) as bench:
        names = ["a", "b"]
        for name in names:
            bench.start_worker(name, concurrency=1)
        for round_index in range(args.rounds):
            (bench.root / "long-once").touch()
            seen = len(bench.starts())
            submission = bench.submit(f"recovery round {round_index + 1}")
            _, pid = bench.wait_for_starts(seen + 1)[seen]
            owner = bench.worker_of(ancestors(pid))
            time.sleep(1.0)
            killed_at = time.time()
            bench.kill_worker(owner)
            started_again, pid_again = bench.wait_for_starts(seen + 2, timeout_s=args.heartbeat_s * 4 + 60)[
                seen + 1
            ]
            new_owner = bench.worker_of(ancestors(pid_again))
            recovered.append(started_again - killed_at)
            time.sleep(0.5)
            left_behind = is_alive(pid)
            bench.wait_all([submission])
            with bench.store() as store:
                run_id = bench.run_ids(store)[submission.task]
                starts = [e.event for e in store.events(run_id, types=["step_started"])]
                finishes = [e.event for e in store.events(run_id, types=["step_finished"])]
                implement = [e.ts for e in starts if getattr(e, "task", "") == "implement"]
                if len(implement) >= 2:
                    in_store.append(implement[-1] - killed_at)
                accepted = sum(1 for e in finishes if getattr(e, "status", "") == "succeeded")
                status = store.get_run(run_id).status
            print(
                f"round {round_index + 1}: killed worker {owner}, step running again on {new_owner} "
                f"after {recovered[-1]:.2f} s (StepStarted in the store after "
                f"{in_store[-1] if len(in_store) > round_index else float('nan'):.2f} s); run {status}, "
                f"exit {submission.exit_code}; steps accepted {accepted} "
                f"(of 2); killed worker's agent process left alive: {left_behind}",
                flush=True,
            )
            bench.start_worker(owner, concurrency=1)
    print(f"SIGKILL to the step running on the other worker: {summary(recovered)}")
    if in_store:
        print(f"SIGKILL to the retried step's StepStarted in the store: {summary(in_store)}")
    print(
        f"goal: heartbeat timeout + 5 s = {args.heartbeat_s + 5:g} s; "
        f"worst {max(recovered):.2f} s -> {'met' if max(recovered) <= args.heartbeat_s + 5 else 'NOT met'}"
    )
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
