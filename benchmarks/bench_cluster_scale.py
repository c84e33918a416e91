"""Runs on 1 worker, then on 2: what a second worker buys, and how soon a submitted run starts.

    python -m benchmarks.bench_cluster_scale [--runs 8] [--step-s 2] [--concurrency 2]

A real Temporal dev server and a real PostgreSQL (orchestrator/testing/), one repository, the workflow
[implement, review] with a stand-in agent that takes --step-s seconds per step (benchmarks/
cluster_bench.py). Each `orchestrator worker` runs at most --concurrency steps at once.

1. Makespan: after one warm-up run (on a worker of its own, counted on neither side), --runs runs
   submitted at once (`orchestrator run --cluster`, a process each) on 1 worker, then the same on 2
   new workers; from the first submit to the last run's end; the ratio (goal: 2 workers at least
   1.7x faster). Every run must approve. CPU per step: of the workers (with what they spawn: git,
   the stand-in agent), the worker processes alone, Temporal, PostgreSQL, the submitters, and how
   busy the whole machine was (it may be shared: "not ours"). Also printed: the time from the
   first step started to the last run finished, and its ratio: the cluster's part alone, without
   the submitting CLIs' start and end (all --runs of them start at once on this same machine).
2. Submit to first step started, with capacity free: on the 2 workers, --runs runs submitted one at a
   time, --spacing s apart (fewer in flight than the workers' slots), each timed from just before its
   `run --cluster` process was spawned to its first StepStarted event in the store; p50/p95 (goal: p95
   <= 2 s). The same figure from the 8-at-once rounds is printed too: there, runs past the workers'
   slots wait for one, on purpose.
Numbers, not asserts: the machine may be shared (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

from benchmarks.cluster_bench import ClusterBench, Submission, cluster_bench, summary
from benchmarks.cpu_meter import CpuDelta, sample


@dataclass
class Batch:
    makespan: float  # first submit to the last `run --cluster` process's end: the goal's figure
    on_workers: float  # the first step started to the last run finished (the store's times)
    latencies: list[float]  # each run's submit to its first StepStarted
    phases: str  # where the rest of the makespan went: the submitting side's start and end
    cpu: CpuDelta


def finished(bench: ClusterBench, submissions: list[Submission]) -> tuple[float, list[float], float, str]:
    """The batch's makespan, each run's submit-to-first-step latency, the time from its first step
    started to its last run finished, and the submitting side's share; every run must approve."""
    failed = [s for s in submissions if s.exit_code != 0]
    if failed:
        detail = failed[0].output()[-3000:]
        raise SystemExit(f"{len(failed)} of {len(submissions)} runs did not approve; the first:\n{detail}")
    ends = [s.done for s in submissions if s.done is not None]
    makespan = max(ends) - min(s.submitted for s in submissions)
    latencies: list[float] = []
    starts: list[float] = []
    finishes: list[float] = []
    tails: list[float] = []  # each run's RunFinished in the store to its `run --cluster` process's end
    with bench.store() as store:
        ids = bench.run_ids(store)
        for submission in submissions:
            started = bench.first_step_started(store, ids[submission.task])
            assert started is not None, submission.task
            latencies.append(started - submission.submitted)
            starts.append(started)
            ended = [e.event.ts for e in store.events(ids[submission.task], types=["run_finished"])]
            finishes += ended
            if ended and submission.done is not None:
                tails.append(submission.done - ended[-1])
    first_submit = min(s.submitted for s in submissions)
    phases = (
        f"first submit to first step {min(starts) - first_submit:.2f} s, last run finished to last "
        f"process end {max(ends) - max(finishes):.2f} s (each run's finish to its process's end: "
        f"{summary(tails)})"
    )
    return makespan, latencies, max(finishes) - min(starts), phases


def batch(bench: ClusterBench, label: str, runs: int) -> Batch:
    """`runs` runs submitted at once; the CPU is counted from just before the first submit to the
    last run's end (the workers' and servers' trees, the submitters once they ended)."""
    alone = {"worker processes alone": [w.pid for w in bench.workers.values() if w.pid is not None]}
    before = sample(bench.cpu_trees(), alone)
    submissions = [bench.submit(f"{label}: task {n}") for n in range(runs)]
    bench.wait_all(submissions)
    cpu = CpuDelta.between(before, sample(bench.cpu_trees(), alone))
    makespan, latencies, on_workers, phases = finished(bench, submissions)
    return Batch(makespan, on_workers, latencies, phases, cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--step-s", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=4.0)
    args = parser.parse_args()
    with cluster_bench("scale", step_s=args.step_s) as bench:
        # Warm-up, counted against neither side: the servers' first workflow and queries, the
        # submitting machine's first run. Each round's workers are new processes on their own state
        # homes (cold mirrors, first imports): the same cost on both sides, paid once per worker.
        bench.start_worker("warm-up", concurrency=args.concurrency)
        batch(bench, "warm-up", 1)
        bench.stop_worker("warm-up")
        makespans: dict[int, float] = {}
        on_workers: dict[int, float] = {}
        for count in (1, 2):
            names = [f"w{count}-{n}" for n in range(count)]
            for name in names:
                bench.start_worker(name, concurrency=args.concurrency)
            result = batch(bench, f"{count} workers", args.runs)
            makespans[count], on_workers[count] = result.makespan, result.on_workers
            print(
                f"{args.runs} runs x 2 steps x {args.step_s:g} s on {count} worker(s) "
                f"(--concurrency {args.concurrency}): makespan {result.makespan:.2f} s "
                f"(first step started to last run finished: {result.on_workers:.2f} s); "
                f"submit to first step: {summary(result.latencies)}",
                flush=True,
            )
            print(f"  {result.phases}", flush=True)
            print(f"  {result.cpu.line(steps=2 * args.runs, wall_s=result.makespan)}", flush=True)
            if count == 2:
                spaced: list[Submission] = []
                for n in range(args.runs):
                    spaced.append(bench.submit(f"spaced: task {n}"))
                    time.sleep(args.spacing)
                bench.wait_all(spaced)
                _, free, _, _ = finished(bench, spaced)
                print(
                    f"submit to first step started, capacity free ({args.runs} runs {args.spacing:g} s "
                    f"apart on 2 workers): {summary(free)}  (goal: p95 <= 2 s)"
                )
            if os.environ.get("BENCH_DUMP"):
                for name in names:
                    print("\n".join(bench.workers[name].lines[-400:]))
            for name in names:
                bench.stop_worker(name)
        ratio = makespans[1] / makespans[2]
        print(f"makespan 1 worker / 2 workers: {ratio:.2f}x  (goal >= 1.7x; ideal 2.0x)")
        # Without the submitting side's start (8 CLIs starting at once on this machine) and end:
        print(
            f"first step started to last run finished, 1 worker / 2 workers: "
            f"{on_workers[1] / on_workers[2]:.2f}x"
        )
        print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
