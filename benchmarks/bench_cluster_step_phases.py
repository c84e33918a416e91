"""Where a cluster step's time goes on the worker, outside the agent: three latencies, median over steps.

    python -m benchmarks.bench_cluster_step_phases [--runs 6] [--step-s 0.5]

One `orchestrator worker` (--concurrency 2) on a real Temporal dev server and PostgreSQL, the stand-in
agent of benchmarks/cluster_bench.py (it records its start, sleeps --step-s, then becomes the fake
agent), the workflow [implement, review]. After one warm-up run, --runs runs one after another (one
step in flight at a time, so nothing collides on the cores), each step timed from the store's events
and the stand-in's start file:

- (a) step_finished -> the next step's step_started (same run): the push of the run's refs, the
  activity's completion, Temporal's workflow task, the next activity polled and started, the
  workspace opened again, the engine built, the prompt rendered;
- (b) step_started -> the stand-in's start: the step's set-up after its event (the user refs noted,
  the supervisor, the spawn) and the stand-in's own Python start;
- (c) the step's last agent event -> step_finished: the commit (or the read-only step's check), its
  publishing into the worker's mirror, the step's events.

Also the worker's CPU per step (the worker process with everything it spawned: git, the supervisor,
the stand-in with its two Python starts) and the worker process alone. With --count-git, the worker
finds a `git` first on its PATH that counts its calls, then becomes the real one: the git commands
the worker runs per step (not the ones git starts itself: upload-pack, pack-objects...), a count the
machine's load does not blur (the shim's own start adds to the latencies: read those without it).
Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
from pathlib import Path

from benchmarks.cluster_bench import ClusterBench, cluster_bench
from benchmarks.cpu_meter import CpuDelta, sample
from orchestrator.events import StepStarted
from orchestrator.store import Store
from orchestrator.testing.cluster import WorkerProcess, cluster_env, start_worker

GIT_SHIM = """#!/bin/sh
echo x >> {log}
exec {git} "$@"
"""


def counting_worker(bench: ClusterBench, log: Path) -> WorkerProcess:
    """A worker whose PATH starts with a `git` that appends a line to `log` per call."""
    real = shutil.which("git")
    assert real is not None, "git is not installed"
    shims = bench.root / "git-shim"
    shims.mkdir()
    (shims / "git").write_text(GIT_SHIM.format(log=log, git=real))
    (shims / "git").chmod(0o755)
    env = cluster_env(bench.root, "w", {"PATH": f"{shims}:{os.environ.get('PATH', '')}"})
    worker = start_worker(bench.config, env, cwd=bench.root, name="w", concurrency=2)
    bench.workers["w"] = worker
    return worker


def phases(store: Store, run_id: str) -> tuple[list[float], list[tuple[float, str]], dict[str, list[float]]]:
    """Of one run: (a) finish-to-next-start, the steps' (start time, task), (c) last agent event to
    finish by task."""
    between: list[float] = []
    starts: list[tuple[float, str]] = []
    tails: dict[str, list[float]] = {}
    finished: float | None = None
    last_agent: float | None = None
    task = ""
    for stored in store.events(run_id):
        event = stored.event
        if isinstance(event, StepStarted):
            task = event.task
            starts.append((event.ts, task))
            if finished is not None:
                between.append(event.ts - finished)
            last_agent = None
        elif event.type == "agent":
            last_agent = event.ts
        elif event.type == "step_finished":
            finished = event.ts
            if last_agent is not None:
                tails.setdefault(task, []).append(event.ts - last_agent)
    return between, starts, tails


def ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.0f} ms "
        f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--step-s", type=float, default=0.5)
    parser.add_argument("--count-git", action="store_true")
    args = parser.parse_args()
    with cluster_bench("phases", step_s=args.step_s) as bench:
        calls = bench.root / "git-calls"
        worker = counting_worker(bench, calls) if args.count_git else bench.start_worker("w", concurrency=2)
        warm = bench.submit("warm-up")
        bench.wait_all([warm])
        seen = len(bench.starts())
        calls_before = len(calls.read_text().splitlines()) if calls.exists() else 0
        alone = {"worker process alone": [worker.pid] if worker.pid is not None else []}
        trees = {"worker": [worker.pid] if worker.pid is not None else []}
        before = sample(trees, alone)
        tasks = [f"task {n}" for n in range(args.runs)]
        wall = 0.0
        for task in tasks:
            submission = bench.submit(task)
            bench.wait_all([submission])
            if submission.exit_code != 0:
                raise SystemExit(f"a run did not approve:\n{submission.output()[-3000:]}")
            assert submission.done is not None
            wall += submission.done - submission.submitted
        cpu = CpuDelta.between(before, sample(trees, alone))
        between: list[float] = []
        tails: dict[str, list[float]] = {}
        step_starts: list[tuple[float, str]] = []
        with bench.store() as store:
            ids = bench.run_ids(store)
            for task in tasks:
                a, started, c = phases(store, ids[task])
                between += a
                step_starts += started
                for name, values in c.items():
                    tails.setdefault(name, []).extend(values)
        # One step at a time: the stand-in's starts, in order, are the steps'.
        standins = sorted(t for t, _ in bench.starts()[seen:])
        if len(standins) != len(step_starts):
            raise SystemExit(f"{len(standins)} stand-in starts for {len(step_starts)} steps")
        spawn: dict[str, list[float]] = {}
        for standin, (started_at, name) in zip(standins, sorted(step_starts), strict=True):
            spawn.setdefault(name, []).append(standin - started_at)
        steps = len(step_starts)
        print(
            f"{args.runs} runs x [implement, review], {args.step_s:g} s a step, one step at a time on 1 worker"
        )
        print(f"(a) step_finished -> next step_started: {ms(between)}")
        for name, values in spawn.items():
            print(f"(b) step_started -> stand-in agent started, {name}: {ms(values)}")
        for name, values in tails.items():
            print(f"(c) last agent event -> step_finished, {name}: {ms(values)}")
        print(f"  {cpu.line(steps=steps, wall_s=wall)}")
        if args.count_git:
            count = len(calls.read_text().splitlines()) - calls_before
            print(f"git commands the worker ran: {count / steps:.1f} per step ({count} for {steps} steps)")
        print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
