"""The issue's "done when": a real `orchestrator serve` (a process of its own on a free port of 127.0.0.1,
with ORCHESTRATOR_UI_TOKEN and a state home of the test's own), `orchestrator demo` (the real Claude Code,
Codex and Gemini CLI against the scripted model server) run into the same state home, and /metrics
scraped over HTTP with the token shows the demo's numbers.

The demo has no fallback, retry or agent error, and it is over before a client could follow it live; so
a second run follows it in the same state home (the fake agent, a real process): claude is not ready
(a fallback), the fake agent is rate-limited once (a retry), a gate holds the run open while the test
scrapes it and follows it over Socket.IO (the stall alert's last-event series, the delivery lag), and the
review is refused for its credentials (an auth error). After both, every family the code declares has
samples, and every metric the alert rules and the Grafana panels query is exported.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import socketio
import yaml

from orchestrator.metrics import METRIC_FAMILIES
from orchestrator.proc import ProcResult, ProcSpec, SubprocessCommunicator, run_command

from .queries import exported_names, parse, queried_metrics, sample, total, with_samples

pytestmark = [pytest.mark.real, pytest.mark.slow]

TOKEN = "metrics-test-token-0123456789abcdef"
# Made up: must never reach a scrape.
PLANTED = "sk-proj-plantedMetricsSecret0123456789abcdef"
APPROVE = '```json\n{"verdict": "approve", "findings": []}\n```'
# What the demo alone leaves without samples (see the module's docstring).
NOT_IN_THE_DEMO = {
    "orchestrator_agent_errors_total",
    "orchestrator_fallbacks_total",
    "orchestrator_retries_total",
    "orchestrator_run_last_event_timestamp_seconds",
    "orchestrator_event_delivery_lag_seconds",
}
# The gate: says it is waiting, then waits for the test's word (bounded, so it can never hang the run).
HOLD = """import pathlib, sys, time
here = pathlib.Path(sys.argv[1])
(here / "waiting").write_text("1")
deadline = time.monotonic() + 120
while not (here / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
"""


class Background:
    """A process of ours (through orchestrator.proc), its output lines collected as they come."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 600) -> None:
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self.cancel = threading.Event()
        self.result: ProcResult | None = None
        spec = ProcSpec(argv=argv, cwd=cwd, env=env, wall_timeout_s=timeout_s)

        def on_line(stream: str, line: str) -> None:
            self.lines.append(line)
            if stream == "stderr":
                self.stderr.append(line)

        def work() -> None:
            self.result = SubprocessCommunicator().run(spec, on_line, self.cancel)

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r}; output so far:\n" + "\n".join(self.lines))

    def stop(self, timeout_s: float = 60) -> ProcResult | None:
        self.cancel.set()
        self.thread.join(timeout_s)
        return self.result


def orchestrator(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def get(base: str, path: str, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if path == "/metrics":
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def scrape(base: str) -> tuple[str, dict[str, Any]]:
    status, text = get(base, "/metrics")
    assert status == 200, text
    return text, parse(text)


def wait_until(what: str, check: Any, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fault_run_files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A repository, and the config and workflow of the second run (see the module's docstring)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    (repo / "README.md").write_text("# r\n")
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "i"], repo, check=True)
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "hold.py").write_text(HOLD)
    scenario = tmp_path / "scenario.yaml"
    turns = [
        {"error": {"status": 429, "message": "slow down", "retry_after": 0.1}},  # implement: retried
        {"write_file": {"path": "a.txt", "content": "a\n"}},
        {"text": "done"},
        {"error": {"status": 401, "message": "invalid api key"}},  # review: refused
    ]
    scenario.write_text(yaml.safe_dump({"turns": turns}))
    workflow = tmp_path / "wf.yaml"
    steps = [
        {"agent": "claude", "task": "implement"},
        {"run": f"{sys.executable} {hold / 'hold.py'} {hold}", "name": "hold", "timeout_s": 150},
        {"agent": "fake", "task": "review"},
    ]
    workflow.write_text(yaml.safe_dump({"max_iterations": 1, "steps": steps}))
    config = tmp_path / "config.yaml"
    agents = {
        "claude": {"command": "/nonexistent/claude"},
        "fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario), "FAKE_KEY": PLANTED}},
    }
    # The gate writes outside the run's worktree (its word to the test): no sandbox.
    config.write_text(yaml.safe_dump({"agents": agents, "fallback_order": ["fake"], "sandbox": "off"}))
    return repo, config, workflow, hold


class Follower:
    """A Socket.IO client of the dashboard, as the browser is: every event of the runs it follows."""

    def __init__(self, base: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.finished = threading.Event()
        self.client = socketio.Client(reconnection=False)

        def on_events(batch: dict[str, Any]) -> bool:
            self.events.extend(batch["events"])
            if any(e["event"]["type"] == "run_finished" for e in batch["events"]):
                self.finished.set()
            return True  # the acknowledgement the bridge waits for

        self.client.on("events", on_events)
        self.client.connect(base, auth={"token": TOKEN}, transports=["websocket"], wait_timeout=30)

    def follow(self, run_id: str) -> None:
        answer = self.client.call("subscribe", {"run_id": run_id, "after": 0}, timeout=30)
        assert answer["ok"], answer


def test_the_demo_scraped_from_a_live_orchestrator_serve_shows_every_metric_family(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
        "ORCHESTRATOR_HOME": str(tmp_path / "state"),
        "ORCHESTRATOR_UI_TOKEN": TOKEN,
        "ORCHESTRATOR_DAILY_BUDGET_USD": "5",
        "CI": "true",
    }
    if os.environ.get("ORCHESTRATOR_CLI_DIR"):
        env["ORCHESTRATOR_CLI_DIR"] = os.environ["ORCHESTRATOR_CLI_DIR"]
    with socket.socket() as s:  # a free port: serve is given it, as a user would
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = Background(
        orchestrator("serve", "--host", "127.0.0.1", "--port", str(port), "--no-open"), tmp_path, env
    )
    follower: Follower | None = None
    try:
        base = serve.wait_for("Dashboard: http://").split("Dashboard: ", 1)[1].split("/?token=", 1)[0]
        assert base == f"http://127.0.0.1:{port}"
        # Loopback or not, /metrics is behind the token (Prometheus sends it as Bearer).
        assert get(base, "/metrics", token=None)[0] == 401
        assert get(base, "/metrics", token="wrong")[0] == 401
        assert get(base, "/healthz", token=None)[0] == 200
        signin = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        signin.request("GET", f"/?token={TOKEN}")  # the sign-in URL serve printed: a cookie, then /
        assert signin.getresponse().status == 303
        signin.close()

        # --- the demo, into the dashboard's state home -------------------------------------------
        demo = run_command(
            orchestrator("demo", "--dir", str(tmp_path / "demos"), "--json"), tmp_path, env=env, timeout_s=300
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        report = json.loads(demo.stdout)
        assert report["status"] == "approved"
        _, after_demo = scrape(base)
        assert sample(after_demo, "orchestrator_runs_started_total", workflow="default") == 1
        assert sample(after_demo, "orchestrator_runs_total", status="approved", workflow="default") == 1
        assert sample(after_demo, "orchestrator_runs_active") == 0
        assert sample(after_demo, "orchestrator_steps_active") == 0
        for agent, task in (("claude", "implement"), ("codex", "review"), ("gemini", "refine")):
            assert total(after_demo, "orchestrator_steps_total", agent=agent, task=task, status="succeeded")
            assert total(after_demo, "orchestrator_tokens_total", agent=agent, kind="input") > 0, agent
        # Codex reviewed twice; every step's duration is in the histogram.
        assert (
            sample(after_demo, "orchestrator_step_duration_seconds_count", agent="codex", task="review") == 2
        )
        assert total(after_demo, "orchestrator_step_duration_seconds_count") == len(report["steps"])
        assert sample(after_demo, "orchestrator_gates_total", result="failed") == 1
        assert sample(after_demo, "orchestrator_gates_total", result="passed") == 1
        assert total(after_demo, "orchestrator_cost_usd_total") == pytest.approx(report["usage"]["cost_usd"])
        assert sample(after_demo, "orchestrator_daily_budget_usd") == 5
        assert set(METRIC_FAMILIES) - with_samples(after_demo) == NOT_IN_THE_DEMO

        # --- the second run, followed live ---------------------------------------------------------
        repo, config, workflow, hold = fault_run_files(tmp_path)
        follower = Follower(base)
        run = Background(
            orchestrator("run", "make a.txt", "--workflow", str(workflow), "--config", str(config), "--json"),
            repo,
            env,
        )
        try:
            wait_until("the hold gate", lambda: (hold / "waiting").exists())
            running = [r for r in json.loads(get(base, "/api/runs")[1]) if r["status"] == "running"]
            assert len(running) == 1
            run_id = running[0]["id"]
            follower.follow(run_id)
            _, mid_run = scrape(base)
            # While it runs: active, its gate a running step, its last event's time for the stall alert.
            assert sample(mid_run, "orchestrator_runs_active") == 1
            assert sample(mid_run, "orchestrator_steps_active") == 1
            last = sample(
                mid_run, "orchestrator_run_last_event_timestamp_seconds", run_id=run_id, workflow="wf"
            )
            assert last is not None and last <= time.time()
            (hold / "release").write_text("1")
            assert follower.finished.wait(120), follower.events[-3:]
            result = run.stop(120)
            assert result is not None and result.exit_code != 0  # the review was refused
        finally:
            run.stop()
        text, families = scrape(base)

        # Every family the code declares had samples on a scrape (the last-event series only while
        # its run ran: it goes when the run ends); the second run's numbers.
        assert set(METRIC_FAMILIES) - with_samples(families) == {
            "orchestrator_run_last_event_timestamp_seconds"
        }
        assert "orchestrator_run_last_event_timestamp_seconds" in with_samples(mid_run)
        assert sample(families, "orchestrator_runs_total", status="failed", workflow="wf") == 1
        assert sample(families, "orchestrator_runs_total", status="approved", workflow="default") == 1
        assert sample(families, "orchestrator_fallbacks_total", agent="claude", reason="not_ready") == 1
        assert sample(families, "orchestrator_retries_total", what="rate_limit") == 1
        assert sample(families, "orchestrator_agent_errors_total", agent="fake", kind="auth") == 1
        assert sample(families, "orchestrator_run_last_event_timestamp_seconds", run_id=run_id) is None
        # The events made after the client subscribed reached it, each one a lag sample.
        live = [e for e in follower.events if e["event"]["ts"] > last]
        lag_count = sample(families, "orchestrator_event_delivery_lag_seconds_count")
        assert lag_count is not None and len(live) <= lag_count <= len(follower.events)
        assert [e["seq"] for e in follower.events] == list(range(1, len(follower.events) + 1))

        # Every metric an alert or a panel queries is exported.
        missing = queried_metrics() - exported_names(families)
        assert not missing, f"queried but never exported: {sorted(missing)}"
        assert PLANTED not in text and TOKEN not in text
    finally:
        if follower is not None:
            follower.client.disconnect()
        ended = serve.stop()
    # The dashboard stopped as on Ctrl-C (the ladder's SIGTERM may end it while it stops: the
    # machine's load decides), and its port is free again.
    assert ended is not None, serve.lines[-20:]
    assert any("stopping the dashboard" in line for line in serve.lines), serve.lines[-20:]
    # Its stderr, at the default level, holds no request lines (the HTTP server's own, in colour, had
    # the sign-in URL's token in them): with --log-level info they are JSON lines, masked
    # (tests/test_logs.py).
    assert not any("HTTP/1.1" in line for line in serve.stderr), serve.stderr[-20:]
    assert not any(TOKEN in line for line in serve.stderr)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
