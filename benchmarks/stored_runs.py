"""Runs written straight into a store, as a process running agents would write them (for the benchmarks)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from orchestrator.events import AgentActivity, AssistantMessage, RunStarted, StepStarted, ToolUse
from orchestrator.store import Store

TEXT = "Reading the module and its tests; the change goes into calc.py next to add(). " * 2


def make_run(store: Store, run_id: str, repo: Path) -> None:
    store.create_run(
        run_id=run_id,
        repo=repo,
        task=f"benchmark run {run_id}",
        workflow_name="bench",
        workflow={"name": "bench", "steps": [{"agent": "fake", "task": "implement"}]},
        base="HEAD",
        branch=f"orchestrator/{run_id}",
    )
    store.start_step(run_id, "i1-s1-implement", iteration=1, index=1, agent="fake", task="implement")
    store.add_event(
        run_id, RunStarted(run_id=run_id, task="bench", workflow="bench", branch="b", base="HEAD")
    )
    store.add_event(
        run_id,
        StepStarted(run_id=run_id, step_id="i1-s1-implement", agent="fake", task="implement", iteration=1),
    )


def event(run_id: str, n: int) -> AgentActivity:
    inner = (
        ToolUse(tool="Edit", action="file_edit", status="succeeded", path=f"src/module_{n % 40}.py")
        if n % 5 == 0
        else AssistantMessage(text=f"{n}: {TEXT}")
    )
    return AgentActivity(run_id=run_id, step_id="i1-s1-implement", agent="fake", event=inner)


def fill(store: Store, run_id: str, count: int) -> None:
    """`count` agent events in few transactions (the engine writes one per event; this is only set-up)."""
    for start in range(0, count, 1000):
        with store._write() as tx:
            for n in range(start, min(count, start + 1000)):
                store._insert_event(tx, run_id, event(run_id, n))


class Stream:
    """Appends events to runs at `rate` per second each, in a thread, until stopped."""

    def __init__(self, store: Store, run_ids: list[str], rate: float) -> None:
        self.store, self.run_ids, self.rate = store, run_ids, rate
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        start = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            for run_id in self.run_ids:
                self.store.add_event(run_id, event(run_id, 100_000 + tick))
                self.written += 1
            tick += 1
            self._stop.wait(max(0.0, start + tick / self.rate - time.monotonic()))
