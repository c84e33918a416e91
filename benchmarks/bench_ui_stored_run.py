"""A stored run of 10,000 events: how soon the run page shows it, and the browser's main thread while
100 more events per second stream in.

    python -m benchmarks.bench_ui_stored_run [--events 10000] [--rate 100] [--seconds 15]

First screen: from navigation to the first timeline row, and to the run's last stored event in the DOM
(the page replays the log from its cursor and keeps at most 400 rows in the DOM). Then events stream in
from another writer at RATE/s for SECONDS; long tasks (main-thread tasks over 50 ms, PerformanceObserver
'longtask') are counted for both phases. Goals: first screen <= 1 s, no task over 50 ms while streaming.
"""

from __future__ import annotations

import argparse
import time

from playwright.sync_api import sync_playwright

from benchmarks.stored_runs import Stream, fill, make_run
from benchmarks.ui_harness import CHROMIUM_ARGS, Bench
from orchestrator.store import Store

LONG_TASKS = """() => {
  window.__long = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
    .observe({ type: 'longtask', buffered: true });
}"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    bench = Bench()
    store = Store(bench.state / "state.db")
    try:
        run_id = "20260101-000000-bench0"
        make_run(store, run_id, bench.repo)
        fill(store, run_id, args.events - 2)
        last = store.last_seq(run_id)
        login = bench.serve()
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(bench.tmp / "profile"),
                executable_path="/usr/bin/chromium",
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 900},
            )
            page = context.new_page()
            page.goto(login)
            page.add_init_script(f"({LONG_TASKS})()")
            started = time.perf_counter()
            page.goto(f"{bench.base}/runs/{run_id}", wait_until="commit")
            page.wait_for_selector("#timeline li.ev")
            first_row = time.perf_counter() - started
            page.wait_for_selector(f'#timeline li[data-seq="{last}"]', timeout=120_000)
            all_in = time.perf_counter() - started
            rows = page.eval_on_selector_all("#timeline li", "els => els.length")
            load_long = page.evaluate("window.__long.splice(0)")
            # The main thread's busy time (Chromium's TaskDuration) while streaming: a figure that the
            # machine's other load inflates less than the long tasks' wall-clock lengths.
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")

            def busy_s() -> dict[str, float]:
                metrics = cdp.send("Performance.getMetrics")["metrics"]
                return {m["name"]: float(m["value"]) for m in metrics if m["name"].endswith("Duration")}

            busy_before, streamed_from = busy_s(), time.perf_counter()
            with Stream(store, [run_id], args.rate) as stream:
                time.sleep(args.seconds)
            end = store.last_seq(run_id)
            page.wait_for_selector(f'#timeline li[data-seq="{end}"]', timeout=60_000)
            streamed_s = time.perf_counter() - streamed_from
            busy_after = busy_s()
            shares = {k: (busy_after[k] - busy_before.get(k, 0.0)) / streamed_s for k in busy_after}
            busy = shares.get("TaskDuration", 0.0)
            stream_long = page.evaluate("window.__long.splice(0)")
            heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null")
            context.close()
        print(f"stored run: {last} events")
        print(
            f"first screen: first row {first_row * 1000:.0f} ms; last stored event in the DOM {all_in * 1000:.0f} ms"
        )
        print(f"DOM rows held: {rows}")
        print(f"long tasks while loading: {len(load_long)} (max {max(load_long, default=0):.0f} ms)")
        print(
            f"streaming {args.rate:g} events/s for {args.seconds:g} s ({stream.written} events): "
            f"{len(stream_long)} long tasks over 50 ms (max {max(stream_long, default=0):.0f} ms); "
            f"main thread busy {busy * 100:.1f}% of the time"
        )
        parts = ", ".join(
            f"{k.removesuffix('Duration')} {v * 100:.1f}%" for k, v in shares.items() if k != "TaskDuration"
        )
        print(f"  of which: {parts}")
        if heap is not None:
            print(f"JS heap after: {heap:.1f} MB")
    finally:
        bench.close()
        store.close()


if __name__ == "__main__":
    main()
