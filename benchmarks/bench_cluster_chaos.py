"""A chaos round: runs on 2 workers while a worker is SIGKILLed and started again, at random, 3 times.

    python -m benchmarks.bench_cluster_chaos [--runs 20] [--kills 3] [--seed N] [--heartbeat-s 10]

A real Temporal dev server and a real PostgreSQL, 2 workers (--concurrency 2 each), --runs runs of
[implement, review] with the stand-in agent of benchmarks/cluster_bench.py, submitted at once
(`orchestrator run --cluster`, a process each). Meanwhile, --kills times, after a random pause, a random
worker is SIGKILLed and, after another random pause, started again under the same name. When every
submission has ended, counted from the shared store and the user's repository:

- lost runs: a run whose `run --cluster` did not exit 0, that is not in the store, or not approved;
- steps accepted twice: a step with more than one successful StepFinished in its run's log, or a run
  branch with more than one commit for its implement step (the fake agent appends a line per step);
- runs whose event sequence numbers are not exactly 1..N.

Goal: 0, 0, 0. Each count is printed; numbers, not asserts.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import threading
import time

from benchmarks.cluster_bench import cluster_bench
from orchestrator.proc import run_command


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--heartbeat-s", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}", flush=True)
    with cluster_bench("chaos", heartbeat_timeout_s=args.heartbeat_s) as bench:
        names = ["a", "b"]
        for name in names:
            bench.start_worker(name, concurrency=args.concurrency)
        started = time.monotonic()
        submissions = [bench.submit(f"chaos: task {n}") for n in range(args.runs)]
        kills: list[str] = []

        def chaos() -> None:
            for _ in range(args.kills):
                time.sleep(rng.uniform(2.0, 8.0))
                victim = rng.choice(names)
                bench.kill_worker(victim)
                kills.append(f"{victim} at {time.monotonic() - started:.1f} s")
                time.sleep(rng.uniform(1.0, 6.0))
                bench.start_worker(victim, concurrency=args.concurrency)

        monkey = threading.Thread(target=chaos)
        monkey.start()
        monkey.join()
        bench.wait_all(submissions, timeout_s=1800)
        took = time.monotonic() - started
        print(f"killed and restarted: {', '.join(kills)}; all submissions ended after {took:.1f} s")

        lost: list[str] = []
        twice: list[str] = []
        gaps: list[str] = []
        with bench.store() as store:
            ids = bench.run_ids(store)
            for submission in submissions:
                run_id = ids.get(submission.task)
                code = submission.exit_code
                status = store.get_run(run_id).status if run_id else None
                if run_id is None or code != 0 or status != "approved":
                    lost.append(f"{submission.task}: exit {code}, status {status}")
                if run_id is None:
                    continue
                events = store.events(run_id)
                seqs = [e.seq for e in events]
                if seqs != list(range(1, len(seqs) + 1)):
                    gaps.append(f"{run_id}: {len(seqs)} events, seqs not 1..N")
                accepted = collections.Counter(
                    e.event.step_id
                    for e in events
                    if e.event.type == "step_finished" and getattr(e.event, "status", "") == "succeeded"
                )
                twice += [f"{run_id} {step}: {n} times" for step, n in accepted.items() if n > 1]
                log = run_command(
                    [
                        "git",
                        "log",
                        "--format=%(trailers:key=Orchestrator-Step,valueonly)",
                        f"orchestrator/{run_id}",
                    ],
                    bench.repo,
                    env=bench.env,
                )
                steps = collections.Counter(line for line in log.stdout.split() if "implement" in line)
                twice += [f"{run_id} {step}: {n} commits" for step, n in steps.items() if n > 1]
        print(f"lost runs: {len(lost)}")
        for line in lost:
            print(f"  {line}")
        print(f"steps accepted twice: {len(twice)}")
        for line in twice:
            print(f"  {line}")
        print(f"runs with event sequence numbers not contiguous: {len(gaps)}")
        for line in gaps:
            print(f"  {line}")
        print(f"(goal: 0, 0, 0 over {args.runs} runs and {args.kills} kills)")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
