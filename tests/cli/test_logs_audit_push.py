"""Logs, the audit trail and the Pushgateway, as a user gets them from `orchestrator run` with the fake
agent: log lines bound to run, step and agent (never on stdout), a per-run log.jsonl, audit entries for
every agent command and every write to the repository, `orchestrator audit`, and planted secrets
nowhere in any of it."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from orchestrator.audit import AuditLog, record_action
from orchestrator.proc import child_env, run_command

APPROVE = '```json\n{"verdict": "approve", "findings": []}\n```'
# Made up, long, unique: never real credentials.
ENV_SECRET = "sk-proj-plantedEnvSecret0123456789abcdefXYZ"  # the orchestrator's environment
AGENT_SECRET = "planted-agent-env-value-7f3a9c1e5b"  # agents.fake.env, named like nothing secret


class Cli:
    def __init__(self, tmp_path: Path, **extra_env: str):
        self.tmp = tmp_path
        self.repo = tmp_path / "repo"
        self.repo.mkdir()
        run_command(["git", "init", "-q", "-b", "main"], self.repo, check=True)
        (self.repo / "README.md").write_text("# r\n")
        run_command(["git", "add", "-A"], self.repo, check=True)
        ident = ["-c", "user.name=u", "-c", "user.email=u@u"]
        run_command(["git", *ident, "commit", "-q", "-m", "i"], self.repo, check=True)
        self.workflow = tmp_path / "wf.yaml"
        self.workflow.write_text(
            yaml.safe_dump(
                {"steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]}
            )
        )
        self.state = tmp_path / "state"
        self.env = child_env(
            os.environ,
            {"ORCHESTRATOR_HOME": str(self.state), "CI": "true", "OPENAI_API_KEY": ENV_SECRET, **extra_env},
        )
        self.runs = 0

    def fresh_config(self) -> Path:
        """A scenario of its own for each run (the fake agent works through a scenario's turns once)."""
        self.runs += 1
        scenario = self.tmp / f"scenario{self.runs}.yaml"
        turns = [{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "done"}, {"text": APPROVE}]
        scenario.write_text(yaml.safe_dump({"turns": turns}))
        config = self.tmp / f"config{self.runs}.yaml"
        agent = {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario), "FAKE_SETTING": AGENT_SECRET}}
        config.write_text(yaml.safe_dump({"agents": {"fake": agent}}))
        return config

    def __call__(self, *args: str, env: dict[str, str] | None = None):
        return run_command(
            [sys.executable, "-m", "orchestrator", *args], self.repo, env=env or self.env, timeout_s=120
        )

    def run(self, *extra: str, options: tuple[str, ...] = (), env: dict[str, str] | None = None):
        """`orchestrator [options] run TASK ... [extra]`."""
        # The task carries both secrets: it reaches the agent's argv (the fake agent takes the prompt
        # as its last argument), so the audit's argv must show them masked.
        task = f"write a.txt; key {ENV_SECRET}; setting {AGENT_SECRET}"
        return self(
            *options,
            "run",
            task,
            "--workflow",
            str(self.workflow),
            "--config",
            str(self.fresh_config()),
            *extra,
            env=env,
        )

    def logs_and_audit_text(self) -> str:
        """Every log and audit file under the state home (the store and reports are checked elsewhere)."""
        files = [*self.state.glob("audit.jsonl*"), *self.state.glob("runs/*/log.jsonl")]
        assert files
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def test_log_lines_are_bound_to_run_step_and_agent_and_never_on_stdout(tmp_path):
    log_file = tmp_path / "logs" / "orchestrator.log"
    cli = Cli(tmp_path, ORCHESTRATOR_LOG_FILE=str(log_file))
    result = cli.run("--json", options=("--log-format", "json"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is the report and nothing else
    run_id = report["run_id"]

    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    by_event: dict[str, list[dict]] = {}
    for record in records:
        by_event.setdefault(record["event"], []).append(record)
    for event in ("run started", "step started", "agent spawned", "agent exited", "commit", "step finished"):
        assert event in by_event, sorted(by_event)
    assert by_event["run finished"][0]["status"] == "approved"
    spawned = by_event["agent spawned"][0]
    assert (spawned["run_id"], spawned["agent"]) == (run_id, "fake")
    assert spawned["step_id"] == "i1-s1-implement"
    exited = by_event["agent exited"][0]
    assert exited["exit_code"] == 0 and exited["step_id"] == "i1-s1-implement"
    assert all(r["run_id"] == run_id for r in records if r["event"] != "run started" or r.get("run_id"))

    # The run's own log holds the same lines, under the state home.
    run_log = cli.state / "runs" / run_id / "log.jsonl"
    own = [json.loads(line) for line in run_log.read_text().splitlines()]
    assert {r["event"] for r in own} >= {"run started", "agent spawned", "agent exited", "run finished"}
    assert {r["run_id"] for r in own} == {run_id}

    assert ENV_SECRET not in log_file.read_text() and ENV_SECRET not in run_log.read_text()


def test_human_log_lines_and_the_log_level(tmp_path):
    cli = Cli(tmp_path)
    quiet = cli.run()
    assert quiet.returncode == 0, quiet.stderr
    assert "agent spawned" not in quiet.stderr  # default: warnings only on the console
    loud = cli.run(options=("--log-level", "info", "--log-format", "human"))
    assert loud.returncode == 0, loud.stderr
    line = next(line for line in loud.stderr.splitlines() if "agent spawned" in line)
    assert "[info" in line and "agent=fake" in line and "step_id=i1-s1-implement" in line
    assert "agent spawned" not in loud.stdout
    # Not a terminal and no --log-format: JSON lines.
    piped = cli.run(env={**cli.env, "ORCHESTRATOR_LOG_LEVEL": "info"})
    json_lines = [json.loads(x) for x in piped.stderr.splitlines() if x.startswith("{")]
    assert any(r["event"] == "agent spawned" for r in json_lines)


def test_audit_trail_of_a_run_and_orchestrator_audit(tmp_path):
    cli = Cli(tmp_path)
    result = cli.run("--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    discarded = cli("runs", "discard", run_id)
    assert discarded.returncode == 0, discarded.stderr

    shown = cli("audit", "--run", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    commands = [e for e in entries if e["kind"] == "agent_command"]
    assert len(commands) == 2  # implement and review
    first = commands[0]
    assert (first["run_id"], first["step_id"], first["agent"]) == (run_id, "i1-s1-implement", "fake")
    assert first["exit_code"] == 0 and first["signal"] is None and first["duration_s"] > 0
    assert first["sandbox"] in (True, False)
    assert Path(first["cwd"]).is_absolute()
    # Names of what the agent was given, never the values.
    assert "FAKE_SETTING" in first["env_names"] and "ORCHESTRATOR_FAKE_SCENARIO" in first["env_names"]
    assert "fake_agent" in " ".join(first["argv"])
    assert "key ***;" in first["argv"][-1] and "setting ***" in first["argv"][-1]
    writes = [(e["action"], e["ref"]) for e in entries if e["kind"] == "repo_write"]
    branch = f"orchestrator/{run_id}"
    assert writes == [("create_branch", branch), ("fetch_branch", branch), ("discard", branch)]

    human = cli("audit", "--run", run_id)
    assert human.returncode == 0
    assert "agent_command" in human.stdout and "discard orchestrator/" in human.stdout
    for text in (shown.stdout, human.stdout, cli.logs_and_audit_text()):
        assert ENV_SECRET not in text and AGENT_SECRET not in text

    none = cli("audit", "--run", "no-such-run")
    assert none.returncode == 0 and "no audit entries for run no-such-run" in none.stdout


def test_dashboard_actions_reach_the_audit(tmp_path):
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "state"), "GH_TOKEN": "ghp_plantedDashboardToken0123456789"}
    record_action("cancel", "run-123", "127.0.0.1", env=env)
    record_action("follow_up", "run-123", "10.0.0.7", env=env, text="use ghp_plantedDashboardToken0123456789")
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    entries = list(log.entries())
    assert [(e["action"], e["target"], e["remote_addr"]) for e in entries] == [
        ("cancel", "run-123", "127.0.0.1"),
        ("follow_up", "run-123", "10.0.0.7"),
    ]
    assert "ghp_planted" not in (tmp_path / "state" / "audit.jsonl").read_text()


def test_audit_rotates_by_size_and_reads_oldest_first(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=2000, backups=3)
    for n in range(200):
        log.record("repo_write", action="merge", n=n, run_id=f"r{n % 2}")
    files = log.files()
    assert [p.name for p in files] == ["audit.jsonl.3", "audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
    assert all(p.stat().st_size <= 2000 for p in files)
    numbers = [e["n"] for e in log.entries()]
    assert numbers == list(range(numbers[0], 200))  # the oldest went; nothing else is lost or reordered
    assert [e["n"] for e in log.entries(run_id="r1")] == [n for n in numbers if n % 2]


def test_audit_appends_from_many_threads_without_tearing(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    threads = [
        threading.Thread(target=lambda k=k: [log.record("x", k=k, i=i, pad="p" * 500) for i in range(50)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["kind"] == "x" for line in lines)


class _Pushgateway(BaseHTTPRequestHandler):
    pushes: list[tuple[str, str, str]] = []
    status = 200

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        type(self).pushes.append((self.command, self.path, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pushgateway():
    handler = type("Handler", (_Pushgateway,), {"pushes": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_run_pushes_its_metrics_to_a_pushgateway(tmp_path, pushgateway):
    handler, url = pushgateway
    cli = Cli(tmp_path)
    result = cli.run("--json", "--pushgateway", url)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    assert len(handler.pushes) == 1
    method, path, body = handler.pushes[0]
    assert (method, path) == ("PUT", f"/metrics/job/orchestrator/run_id/{run_id}")
    assert 'orchestrator_runs_total{status="approved",workflow="wf"} 1.0' in body
    assert 'orchestrator_steps_total{agent="fake",status="succeeded",task="implement"} 1.0' in body
    assert ENV_SECRET not in body and AGENT_SECRET not in body


def test_a_failed_push_is_a_warning_not_a_failed_run(tmp_path, pushgateway):
    handler, url = pushgateway
    handler.status = 500
    cli = Cli(tmp_path)
    result = cli.run("--pushgateway", url)
    assert result.returncode == 0, result.stderr
    assert f"could not push metrics to {url}" in result.stderr
    unreachable = cli.run("--pushgateway", "http://127.0.0.1:9")  # nothing listens on port 9 here
    assert unreachable.returncode == 0 and "could not push metrics" in unreachable.stderr
