"""The dashboard server's memory with 8 runs in flight and 10 connected clients, over time.

    python -m benchmarks.bench_ui_memory [--minutes 10] [--runs 8] [--clients 10] [--rate 10]

8 runs are written to the store by another process (this one) at RATE events/s each, as 8 engines would;
10 Socket.IO clients (python-socketio, acknowledging every batch as the page does) each follow one run
from the start, and every client also gets the run list changes. The server's RSS (/proc/PID/status
VmRSS) is sampled every 15 s. Goal: <= 150 MB, flat.
"""

from __future__ import annotations

import argparse
import time

import socketio

from benchmarks.stored_runs import Stream, make_run
from benchmarks.ui_harness import TOKEN, Bench, rss_mb
from orchestrator.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    bench = Bench()
    store = Store(bench.state / "state.db")
    clients: list[socketio.Client] = []
    received = [0] * args.clients
    try:
        run_ids = [f"20260101-000000-mem{i:03d}" for i in range(args.runs)]
        for run_id in run_ids:
            make_run(store, run_id, bench.repo)
        bench.serve()
        pid = bench.server_pid()
        idle = rss_mb(pid)
        for n in range(args.clients):
            client = socketio.Client(reconnection=True)

            def on_events(batch, n=n):
                received[n] += len(batch["events"])
                return True  # the ack: the next batch may come

            client.on("events", on_events)
            client.on("runs", lambda _data: True)  # acknowledged, as the pages do
            client.connect(
                bench.base,
                auth={"token": TOKEN, "cursors": {run_ids[n % args.runs]: 0}},
                transports=["websocket"],
            )
            clients.append(client)
        samples: list[tuple[float, float]] = []
        start = time.monotonic()
        with Stream(store, run_ids, args.rate) as stream:
            while time.monotonic() - start < args.minutes * 60:
                samples.append((time.monotonic() - start, rss_mb(pid)))
                time.sleep(15)
            samples.append((time.monotonic() - start, rss_mb(pid)))
        print(f"server RSS idle (no clients): {idle:.1f} MB")
        print(f"{args.runs} runs x {args.rate:g} events/s, {args.clients} clients, {args.minutes:g} min")
        for t, mb in samples:
            print(f"  t={t:6.0f} s  RSS {mb:6.1f} MB")
        values = [mb for _, mb in samples]
        half = len(values) // 2
        print(
            f"max {max(values):.1f} MB; first half mean {sum(values[:half]) / max(half, 1):.1f} MB, "
            f"second half mean {sum(values[half:]) / max(len(values) - half, 1):.1f} MB"
        )
        print(
            f"events written: {stream.written}; delivered to clients: {sum(received)} (each client follows one run)"
        )
    finally:
        for client in clients:
            client.disconnect()
        bench.close()
        store.close()


if __name__ == "__main__":
    main()
