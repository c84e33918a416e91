"""What finding a run's follow-ups costs: every engine start (a resume, and every step of a cluster run
on its worker) reads the run's FollowUp events from the event log (engine/follow_ups.py).

    python benchmarks/bench_follow_up_lookup.py                 # a run of 10000 events
    python benchmarks/bench_follow_up_lookup.py --events 2000 --rounds 50

For each backend (an SQLite file in a temporary folder; a PostgreSQL database on a throwaway server
from orchestrator/testing/postgres.py), the run gets `--events` events (agent-like notices) with two
FollowUp events among them; printed: the median and p95 of `stored_follow_ups` over `--rounds` calls,
and, for scale, of `last_seq` (one indexed row) and of reading the whole log. Numbers, not asserts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.engine.follow_ups import stored_follow_ups
from orchestrator.events import FollowUp, Notice
from orchestrator.store import Store
from orchestrator.testing.postgres import PostgresServer


def fill(store: Store, events: int) -> None:
    store.create_run(
        run_id="bench", repo="/tmp", task="t", workflow_name="w", workflow={}, base="HEAD", branch="b"
    )
    for n in range(events):
        if n in (events // 3, 2 * events // 3):
            event: FollowUp | Notice = FollowUp(
                run_id="bench", text=f"follow-up {n}", iteration=n, max_iterations=n + 2
            )
        else:
            event = Notice(run_id="bench", text=f"agent line {n}: " + "x" * 80)
        store.add_event("bench", event)


def timed(call: Callable[[], object], rounds: int) -> tuple[float, float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    took.sort()
    return statistics.median(took) * 1000, took[max(0, int(len(took) * 0.95) - 1)] * 1000


def measure(name: str, location: str, events: int, rounds: int) -> None:
    with Store(location) as store:
        started = time.perf_counter()
        fill(store, events)
        print(f"{name}: {events} events written in {time.perf_counter() - started:.1f} s")
        assert len(stored_follow_ups(store, "bench")) == 2
        for label, call in (
            ("stored_follow_ups", lambda: stored_follow_ups(store, "bench")),
            ("last_seq", lambda: store.last_seq("bench")),
            ("whole log", lambda: store.events("bench")),
        ):
            median, p95 = timed(call, rounds if label != "whole log" else max(3, rounds // 10))
            print(f"  {label:<18} median {median:8.2f} ms   p95 {p95:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", str(Path(tmp) / "state.db"), args.events, args.rounds)
    server = PostgresServer().start()
    try:
        measure("postgresql", server.create_database(), args.events, args.rounds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
