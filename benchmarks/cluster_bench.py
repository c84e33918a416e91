"""What the cluster benchmarks share: a real Temporal dev server and a real PostgreSQL (the project's own
testing helpers), a git repository, a stand-in agent that takes a fixed time per step, workers, and runs
submitted as a user submits them (`orchestrator run --cluster`, a process each), measured from the
shared store.

The stand-in is `agents.fake.command`: a small script that records when it started (and its pid),
sleeps the step's seconds, then becomes the fake agent (orchestrator/adapters/fake_agent.py, no
scenario: an editing step appends a line to orchestrator-fake.txt, a review approves). So every step
really spawns, really commits, really reviews; only the model is fake. A file `long-once` beside it
makes the next step to start sleep `long_s` instead (the recovery benchmark's step to kill).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import run_command
from orchestrator.store import Store
from orchestrator.testing.cluster import (
    OrchestratorProcess,
    WorkerProcess,
    cluster_env,
    start_worker,
    submit_run,
    write_cluster_config,
)
from orchestrator.testing.postgres import PostgresServer
from orchestrator.testing.temporal import TemporalDevServer

STANDIN = """#!{python}
import os, sys, time
here = {here!r}
step_s = {step_s!r}
try:
    os.rename(os.path.join(here, "long-once"), os.path.join(here, "long-taken-%d" % os.getpid()))
    step_s = {long_s!r}
except FileNotFoundError:
    pass
with open(os.path.join(here, "starts"), "a") as fh:
    fh.write("%f %d\\n" % (time.time(), os.getpid()))
time.sleep(step_s)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
WORKFLOW = {
    "max_iterations": 1,
    "steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {p95(values):.2f} s, max {max(values):.2f} s"
        f" (n={len(values)})"
    )


@dataclass
class Submission:
    """One `orchestrator run --cluster` process, timed from just before it was spawned."""

    task: str
    submitted: float  # time.time()
    process: OrchestratorProcess

    @property
    def exit_code(self) -> int | None:
        return self.process.result.exit_code if self.process.result is not None else None

    @property
    def done(self) -> float | None:
        """When it ended (time.time()), from the process's own duration."""
        result = self.process.result
        return self.submitted + result.duration_s if result is not None else None

    def output(self) -> str:
        return self.process.output


@dataclass
class ClusterBench:
    root: Path
    step_s: float = 2.0
    long_s: float = 60.0
    heartbeat_timeout_s: float = 10.0
    postgres: PostgresServer = field(init=False)
    temporal: TemporalDevServer = field(init=False)
    database: str = field(init=False)
    repo: Path = field(init=False)
    config: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)

    # --- set-up -------------------------------------------------------------------------------------

    def start(self) -> ClusterBench:
        started = time.monotonic()
        self.postgres = PostgresServer().start()
        try:
            self.database = self.postgres.create_database()
            self.temporal = TemporalDevServer().start()
        except BaseException:
            self.postgres.stop()
            raise
        print(
            f"PostgreSQL up in {self.postgres.start_seconds:.1f} s, Temporal dev server up in "
            f"{self.temporal.start_seconds:.1f} s ({time.monotonic() - started:.1f} s)",
            flush=True,
        )
        self.env = cluster_env(self.root, "submitter", {"CI": "true"})
        self.repo = self.root / "repo"
        self.repo.mkdir()
        (self.repo / "app.py").write_text("def greet():\n    return 'hi'\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
            run_command(["git", *args], self.repo, env=self.env, check=True)
        standin = self.root / "standin"
        standin.write_text(
            STANDIN.format(python=sys.executable, here=str(self.root), step_s=self.step_s, long_s=self.long_s)
        )
        standin.chmod(0o755)
        workflow = self.root / "workflow.yaml"
        workflow.write_text(yaml.safe_dump(WORKFLOW))
        self.config = write_cluster_config(
            self.root / "config.yaml",
            temporal=self.temporal.address,
            database=self.database,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
            extra={
                # No sandbox: the stand-in records its starts in the benchmark's folder.
                "agents": {"fake": {"command": str(standin), "timeout_s": 600}},
                "fallback_order": ["fake"],
                "workflow": str(workflow),
                "sandbox": "off",
                # The per-CLI cap holds cluster-wide: lifted, so that the workers' --concurrency is
                # what limits the runs.
                "limits": {"per_agent": {"fake": 32}},
            },
        )
        return self

    def stop(self) -> None:
        for submission in self.submissions:
            submission.process.stop()
        for worker in self.workers.values():
            worker.stop()
        try:
            self.temporal.stop()
        finally:
            self.postgres.stop()

    # --- workers ------------------------------------------------------------------------------------

    def start_worker(self, name: str, *, concurrency: int) -> WorkerProcess:
        """`orchestrator worker --name NAME` with a state home of its own (another "machine"), ready."""
        worker = start_worker(
            self.config, cluster_env(self.root, name), cwd=self.root, name=name, concurrency=concurrency
        )
        self.workers[name] = worker
        return worker

    def kill_worker(self, name: str) -> None:
        """SIGKILL, as when its machine dies."""
        self.workers.pop(name).kill()

    def stop_worker(self, name: str) -> None:
        self.workers.pop(name).stop()

    def worker_of(self, chain: list[int]) -> str:
        """The name of the worker among a process's ancestors ("?" when none is)."""
        by_pid = {worker.pid: name for name, worker in self.workers.items()}
        return next((by_pid[pid] for pid in chain if pid in by_pid), "?")

    # --- runs ---------------------------------------------------------------------------------------

    def submit(self, task: str) -> Submission:
        """`orchestrator run --cluster TASK` in a process of its own, as a user submits a run."""
        submitted = time.time()
        process = submit_run(self.config, self.env, task, cwd=self.repo)
        submission = Submission(task=task, submitted=submitted, process=process)
        self.submissions.append(submission)
        return submission

    def wait_all(self, submissions: list[Submission], timeout_s: float = 900) -> None:
        deadline = time.monotonic() + timeout_s
        for submission in submissions:
            submission.process.thread.join(max(0.0, deadline - time.monotonic()))

    def cpu_trees(self) -> dict[str, list[int]]:
        """The process trees whose CPU the benchmarks count: the workers, Temporal, PostgreSQL."""
        return {
            "workers": [w.pid for w in self.workers.values() if w.pid is not None],
            "temporal": [self.temporal.pid] if self.temporal.pid is not None else [],
            "postgres": [self.postgres.postmaster_pid] if self.postgres.postmaster_pid is not None else [],
        }

    def store(self) -> Store:
        return Store(self.database)

    def run_ids(self, store: Store) -> dict[str, str]:
        """task -> run id, for the runs in the store."""
        return {run.task: run.id for run in store.list_runs(limit=10_000)}

    def first_step_started(self, store: Store, run_id: str) -> float | None:
        events = store.events(run_id, types=["step_started"], limit=1)
        return events[0].event.ts if events else None

    def starts(self) -> list[tuple[float, int]]:
        """(time, pid) of every stand-in step start so far."""
        path = self.root / "starts"
        if not path.exists():
            return []
        return [(float(t), int(p)) for t, p in (line.split() for line in path.read_text().splitlines())]

    def wait_for_starts(self, count: int, timeout_s: float = 120) -> list[tuple[float, int]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            starts = self.starts()
            if len(starts) >= count:
                return starts
            time.sleep(0.02)
        raise SystemExit(f"only {len(self.starts())} step starts after {timeout_s:g} s (wanted {count})")


def ancestors(pid: int) -> list[int]:
    """pid's parent, grandparent, ... (from /proc), nearest first."""
    chain: list[int] = []
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        chain.append(pid)
    return chain


@contextlib.contextmanager
def cluster_bench(prefix: str, **kw: Any) -> Iterator[ClusterBench]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp:
        bench = ClusterBench(Path(tmp), **kw)
        try:
            yield bench.start()
        finally:
            bench.stop()
