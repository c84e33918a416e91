"""The run store on its two backends: how fast events are appended and read back.

    python benchmarks/bench_store_backends.py               # 2000 events, 1 then 4 writer processes
    python benchmarks/bench_store_backends.py --events 500

For each backend (an SQLite file in a temporary folder; a PostgreSQL database on a throwaway server
from orchestrator/testing/postgres.py, local unix socket, fsync off), printed: the server's start time,
events appended per second by one writer, and by 4 writer processes on one run (sequence numbers
checked gap-free), and the time to read the whole log back. Numbers, not asserts: the machine may be
shared (run it with `nice` and say so).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.events import Notice
from orchestrator.proc import child_env, run_command
from orchestrator.store import Store
from orchestrator.testing.postgres import PostgresServer

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.events import Notice
    from orchestrator.store import Store
    with Store(sys.argv[1]) as store:
        store.last_seq("bench")
        while not Path(sys.argv[3]).exists():
            time.sleep(0.002)
        for n in range(int(sys.argv[2])):
            store.add_event("bench", Notice(run_id="bench", text=f"event {n}"))
    """
)


def new_run(store: Store) -> None:
    store.create_run(
        run_id="bench", repo="/tmp", task="t", workflow_name="w", workflow={}, base="HEAD", branch="b"
    )


def one_writer(location: str, events: int) -> float:
    with Store(location) as store:
        new_run(store)
        started = time.perf_counter()
        for n in range(events):
            store.add_event("bench", Notice(run_id="bench", text=f"event {n}"))
        return events / (time.perf_counter() - started)


def four_writers(location: str, events: int, tmp: Path) -> tuple[float, float]:
    with Store(location) as store:
        new_run(store)
    go = tmp / f"go-{time.monotonic_ns()}"
    env = child_env(
        os.environ, {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    )
    per = events // 4
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                run_command, [sys.executable, "-c", WRITER, location, str(per), str(go)], tmp, env=env
            )
            for _ in range(4)
        ]
        time.sleep(1.5)  # imported and connected
        started = time.perf_counter()
        go.write_text("")
        results = [f.result() for f in futures]
        took = time.perf_counter() - started
    assert all(r.ok for r in results), [r.stderr[-400:] for r in results]
    with Store(location) as store:
        read_started = time.perf_counter()
        stored = store.events("bench")
        read_s = time.perf_counter() - read_started
    assert [s.seq for s in stored] == list(range(1, 4 * per + 1))
    return 4 * per / took, read_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.events} events per case")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = PostgresServer().start()
        print(f"PostgreSQL test server started in {server.start_seconds:.2f} s")
        try:
            for name, fresh in (
                ("sqlite", lambda i: str(tmp / f"s{i}" / "state.db")),
                ("postgresql", lambda i: server.create_database()),
            ):
                single = one_writer(fresh(1), args.events)
                multi, read_s = four_writers(fresh(2), args.events, tmp)
                print(
                    f"{name:>10}: 1 writer {single:7.0f} events/s; 4 processes {multi:7.0f} events/s;"
                    f" read {args.events // 4 * 4} back in {read_s * 1000:.0f} ms"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
