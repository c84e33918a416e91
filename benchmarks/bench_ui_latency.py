"""From a line on the agent's stdout to its row in the browser's DOM.

    python benchmarks/bench_ui_latency.py [--lines 600] [--rate 50]

A stand-in agent (the fake adapter pointed at a script with `command`, as a user points any adapter at
another binary) prints one assistant message per line at RATE lines/s, each holding the wall-clock time
it was written. The run goes through the whole path: proc.py, the adapter's parser, the engine's bus,
the store (SQLite, another process than the server), the server's watchdog wake-up, the Socket.IO
bridge, the page's script, the DOM. A MutationObserver in Chromium stamps each row as it is added;
latency = stamp - written. Prints p50 and p95 (goal: p95 <= 100 ms), and where the time went: the
adapter's parse (the agent event's `ts`), the engine (the run event's `ts`, just before the store
write), then store, wake-up, bridge, Socket.IO and the page together.
"""

from __future__ import annotations

import argparse
import sys
import time

import yaml
from playwright.sync_api import sync_playwright

from benchmarks.ui_harness import CHROMIUM_ARGS, Bench, summary

AGENT = """#!{python}
import json, sys, time
n, rate = {lines}, {rate}
def emit(o):
    sys.stdout.write(json.dumps(o) + "\\n"); sys.stdout.flush()
emit({{"type": "session", "session_id": "bench", "model": "bench"}})
start = time.time()
for i in range(n):
    time.sleep(max(0.0, start + i / rate - time.time()))
    emit({{"type": "message", "text": "line %d at %.6f" % (i, time.time())}})
emit({{"type": "result", "success": True, "text": "done", "session_id": "bench"}})
"""

OBSERVER = """() => {
  window.__stamps = [];
  window.__arrived = {};  // seq -> when its Socket.IO message reached the page
  const onevent = io.Socket.prototype.onevent;
  io.Socket.prototype.onevent = function (packet) {
    const d = packet.data;
    if (d && d[0] === 'events') { const now = Date.now(); for (const e of d[1].events) window.__arrived[e.seq] = now; }
    return onevent.call(this, packet);
  };
  const list = document.getElementById('timeline');
  new MutationObserver((records) => {
    const now = Date.now();
    for (const r of records) for (const node of r.addedNodes) {
      const text = node.querySelector && node.querySelector('.text');
      if (text) { const m = /line (\\d+) at ([\\d.]+)/.exec(text.textContent); if (m) window.__stamps.push([+node.dataset.seq, now, parseFloat(m[2]) * 1000]); }
    }
  }).observe(list, { childList: true });
}"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    bench = Bench()
    try:
        agent = bench.tmp / "streaming-agent"
        agent.write_text(AGENT.format(python=sys.executable, lines=args.lines, rate=args.rate))
        agent.chmod(0o755)
        workflow = bench.tmp / "wf.yaml"
        workflow.write_text(
            yaml.safe_dump({"max_iterations": 1, "steps": [{"agent": "fake", "task": "implement"}]})
        )
        config = bench.tmp / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "agents": {"fake": {"command": str(agent), "timeout_s": 600, "idle_timeout_s": 60}},
                    "fallback_order": ["fake"],
                    "workflow": str(workflow),
                }
            )
        )
        login = bench.serve(config)
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(bench.tmp / "profile"),
                executable_path="/usr/bin/chromium",
                headless=True,
                args=CHROMIUM_ARGS,
            )
            page = context.new_page()
            page.goto(login)
            # The run is started in another process, as `orchestrator run` in a terminal would.
            lines: list[str] = []
            bench.background(
                [sys.executable, "-m", "orchestrator", "run", "bench", "--config", str(config)], lines
            )
            deadline = time.monotonic() + 60
            while not bench.get("/api/runs") and time.monotonic() < deadline:
                time.sleep(0.05)
            run_id = bench.get("/api/runs")[0]["id"]
            page.goto(f"{bench.base}/runs/{run_id}")
            page.wait_for_selector("#timeline li")
            page.evaluate(OBSERVER)
            page.wait_for_selector(
                "#timeline li.run_finished", timeout=args.lines / args.rate * 1000 + 120_000
            )
            stamps = page.evaluate("window.__stamps")
            arrived = {int(k): v for k, v in page.evaluate("window.__arrived").items()}
            context.close()
        events = {e["seq"]: e["event"] for e in bench.get(f"/api/runs/{run_id}/events?limit=5000")["events"]}
        latencies, parse, engine, rest, server, page_ms = [], [], [], [], [], []
        for seq, shown, written in stamps:
            latencies.append(shown - written)
            ev = events.get(seq)
            if ev is not None and ev.get("type") == "agent":
                parse.append(ev["event"]["ts"] * 1000 - written)
                engine.append((ev["ts"] - ev["event"]["ts"]) * 1000)
                rest.append(shown - ev["ts"] * 1000)
                if seq in arrived:
                    server.append(arrived[seq] - ev["ts"] * 1000)
                    page_ms.append(shown - arrived[seq])
        print(f"agent lines: {args.lines} at {args.rate:g}/s; rows observed live: {len(stamps)}")
        print(f"stdout line -> DOM row latency (ms): {summary(latencies)}")
        print(f"  stdout -> adapter event (ms):      {summary(parse)}")
        print(f"  adapter -> engine (ms):            {summary(engine)}")
        print(f"  engine -> DOM row (ms):            {summary(rest)}")
        if server:
            print(f"    engine -> page's socket (ms):    {summary(server)}")
            print(f"    page's socket -> DOM row (ms):   {summary(page_ms)}")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
