"""What bench_attempts.py and bench_plan.py share: a timed fake-agent run through `RunService`, and the
interleaved rounds (concurrency N against 1) with their medians and ratio."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec


def timed_run(root: Path, repo: Path, scenario: Path, workflow: Path, task: str) -> float:
    """Seconds from the service's construction to its finished report; the run must approve."""
    data = {"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}, "timeout_s": 600}}}
    env = {**os.environ, "ORCHESTRATOR_HOME": str(root / "state")}
    started = time.monotonic()
    service = RunService(settings=settings_from_data(data), env=env)
    try:
        record = service.create(RunSpec(task=task, cwd=repo, workflow=str(workflow)))
        report = service.execute(record.id)
    finally:
        service.close()
    elapsed = time.monotonic() - started
    if report.status != "approved":
        raise SystemExit(f"the run was {report.status} ({report.stop_reason}), not approved")
    return elapsed


def compare(
    what: str, count: int, step_s: float, rounds: int, one_run: Callable[[Path, int, float, int], float]
) -> None:
    """`one_run(root, count, step_s, concurrency)` with concurrency `count` and 1, alternating which
    goes first; prints each round, the medians, their ratio and the load."""
    parallel: list[float] = []
    sequential: list[float] = []
    for round_index in range(rounds):
        order = [(count, parallel), (1, sequential)]
        for concurrency, times in order if round_index % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"bench-{what}-") as tmp:
                times.append(one_run(Path(tmp), count, step_s, concurrency))
        print(
            f"round {round_index + 1}: parallel {parallel[-1]:.2f} s, sequential {sequential[-1]:.2f} s",
            flush=True,
        )
    p, s = statistics.median(parallel), statistics.median(sequential)
    print(f"{count} {what} x {step_s:g} s: parallel {p:.2f} s, sequential {s:.2f} s (medians)")
    print(f"ratio parallel / sequential: {p / s:.2f}  (ideal {1 / count:.2f}; the issue asks <= 0.45)")
    print(f"load average: {os.getloadavg()[0]:.1f}")
