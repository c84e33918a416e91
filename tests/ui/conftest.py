"""A live dashboard for the UI tests: a real `orchestrator serve` process on a free port of 127.0.0.1,
with runs made by the fake agent (a real process) on a real git repository, in a state folder of the
test's own."""

from __future__ import annotations

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
import yaml

from orchestrator.proc import ProcResult, ProcSpec, SubprocessCommunicator, child_env, run_command

TOKEN = "test-token-0123456789abcdef0123456789"
APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
CHANGES = (
    "Needs a fix.\n```json\n"
    '{"verdict": "request_changes", "findings": [{"severity": "high", "file": "app.py", "line": 2, '
    '"message": "greet() must return Hello"}]}\n```'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "README.md").write_text("# sample\n")
    (path / "app.py").write_text("def greet():\n    return 'hi'\n")
    run_command(["git", "add", "-A"], path, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "initial"], path, check=True
    )
    return path


class Background:
    """A process of ours (through orchestrator.proc), its output lines collected as they come."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 600) -> None:
        self.lines: list[str] = []
        self.cancel = threading.Event()
        self.result: ProcResult | None = None
        spec = ProcSpec(argv=argv, cwd=cwd, env=env, wall_timeout_s=timeout_s)

        def work() -> None:
            self.result = SubprocessCommunicator().run(
                spec, lambda _s, line: self.lines.append(line), self.cancel
            )

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

    def join(self, timeout_s: float) -> ProcResult | None:
        self.thread.join(timeout_s)
        return self.result


class World:
    """A repository, a state folder, a fake-agent configuration; serve and run as a user would."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.repo = make_repo(tmp_path / "repo")
        self.scenario = tmp_path / "scenario.yaml"
        self.set_turns(
            [
                {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
                {"text": "done"},
                {"text": APPROVE},
            ]
        )
        self.workflow = tmp_path / "wf.yaml"
        self.set_workflow(
            [
                {"agent": "fake", "task": "implement"},
                {"agent": "fake", "task": "review"},
                {"agent": "fake", "task": "refine"},
            ]
        )
        self.config = tmp_path / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "agents": {
                        "fake": {
                            "env": {"ORCHESTRATOR_FAKE_SCENARIO": str(self.scenario)},
                            "timeout_s": 120,
                            "idle_timeout_s": 120,
                        }
                    },
                    "fallback_order": ["fake"],
                    "workflow": str(self.workflow),
                }
            )
        )
        home = tmp_path / "home"
        self.env = child_env(
            os.environ,
            {
                "HOME": str(home),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "ORCHESTRATOR_HOME": str(tmp_path / "state"),
                "ORCHESTRATOR_UI_TOKEN": TOKEN,
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@t",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t",
            },
        )
        self.servers: list[Background] = []
        self.runs: list[Background] = []

    def set_turns(self, turns: list[dict[str, Any]]) -> None:
        self.scenario.write_text(yaml.safe_dump({"turns": turns}))
        state = self.scenario.with_name(self.scenario.name + ".state")
        if state.exists():
            state.unlink()

    def set_workflow(self, steps: list[dict[str, Any]], max_iterations: int = 2) -> None:
        self.workflow.write_text(yaml.safe_dump({"max_iterations": max_iterations, "steps": steps}))

    def cli(self, *args: str, check: bool = False, config: bool = True) -> Any:
        result = run_command(
            [
                sys.executable,
                "-m",
                "orchestrator",
                *args,
                *(["--config", str(self.config)] if config else []),
            ],
            self.repo,
            env=self.env,
            timeout_s=300,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def serve(self, port: int = 0, *extra: str) -> Server:
        argv = [sys.executable, "-m", "orchestrator", "serve", "--port", str(port), "--repo", str(self.repo)]
        argv += ["--no-open", "--config", str(self.config), *extra]
        process = Background(argv, self.repo, self.env)
        self.servers.append(process)
        line = process.wait_for("Dashboard: http://")
        return Server(process, line.split("Dashboard: ", 1)[1].strip())

    def run_in_terminal(self, task: str = "make greet() return Hello") -> Background:
        """`orchestrator run TASK` as in another terminal (a process of its own)."""
        argv = [sys.executable, "-m", "orchestrator", "run", task, "--config", str(self.config), "--json"]
        process = Background(argv, self.repo, self.env)
        self.runs.append(process)
        return process

    def close(self) -> None:
        for process in self.runs + self.servers:
            process.stop()


class Server:
    def __init__(self, process: Background, login_url: str) -> None:
        self.process = process
        self.login_url = login_url
        self.base = login_url.split("/?token=", 1)[0]
        self.port = int(self.base.rsplit(":", 1)[1])

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json"} if data is not None else {}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                raw = response.read()
                status, got = response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, got = exc.read(), exc.code, dict(exc.headers)
        try:
            return status, json.loads(raw), got
        except ValueError:
            return status, raw.decode(errors="replace"), got

    def get(self, path: str, **kw: Any) -> Any:
        status, data, _ = self.request("GET", path, **kw)
        assert status == 200, (status, data)
        return data

    def wait_run(
        self, run_id: str, statuses: set[str] | None = None, timeout_s: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            report = self.get(f"/api/runs/{run_id}")
            if (statuses is None and report["status"] != "running") or (
                statuses and report["status"] in statuses
            ):
                return report
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} still {report['status']}")

    def wait_for_runs(self, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self.get("/api/runs")
            if len(runs) >= count:
                return runs
            time.sleep(0.1)
        raise AssertionError(f"fewer than {count} runs: {runs}")


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()
