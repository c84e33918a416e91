"""The harness for the conformance suite: the real CLIs, through `orchestrator run-agent`, against the
scripted model server. No test here is ever skipped: a missing CLI fails with the install command."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import cli_cache_bin_dir, install_hint, resolve_executable
from orchestrator.adapters.pins import PINNED
from orchestrator.cli.run_agent_cmd import agent_run_dir
from orchestrator.proc import run_command
from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.pointing import agent_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/real/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.real)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"


@dataclass
class AgentRun:
    agent: str
    data: dict[str, Any]
    exit_code: int
    duration_s: float
    cwd: Path
    stdout: str
    stderr: str
    transcript: list[str]
    transcript_path: Path
    tmp_path: Path
    env: dict[str, str]
    server_url: str

    @property
    def run_dir(self) -> Path:
        """The agent's own folder for this working directory (settings, usage reports)."""
        return agent_run_dir(self.agent, self.cwd.resolve(), self.env)

    def events(self) -> list[Any]:
        """The transcript through the adapter's parser, as the orchestrator saw it."""
        adapter = get_adapter(self.agent)
        return [event for line in self.transcript for event in adapter.parse_line(line)]

    def report(self, name: str) -> None:
        print(f"{name}: {self.duration_s:.2f} s, first CLI output after {self.data.get('first_output_s')} s")

    def record(self, name: str, extra: dict[str, Path] | None = None) -> None:
        """With ORCHESTRATOR_RECORD_TRANSCRIPTS=1, keep this real run's transcript (its stderr, and any
        `extra` files `finish` reads, by suffix) under tests/fixtures/transcripts/<agent>/ for the pure
        parser tests, with machine paths and ports made neutral."""
        if os.environ.get("ORCHESTRATOR_RECORD_TRANSCRIPTS") != "1":
            return
        stderr = self.transcript_path.with_name(self.transcript_path.name + ".stderr")
        files = {
            ".jsonl": self.transcript_path,
            ".stderr.txt": stderr,
            **{f".{k}": v for k, v in (extra or {}).items()},
        }
        target_dir = FIXTURES / self.agent
        target_dir.mkdir(parents=True, exist_ok=True)
        for suffix, source in files.items():
            text = self._neutral(source.read_text(encoding="utf-8")) if source.exists() else ""
            target = target_dir / f"{name}{suffix}"
            if text.strip():
                target.write_text(text, encoding="utf-8")
            elif target.exists() and suffix != ".jsonl":
                target.unlink()

    def _neutral(self, text: str) -> str:
        for real, neutral in (
            (str(self.cwd), "/home/dev/repo"),
            (str(self.tmp_path / "home"), "/home/dev"),
            (real_cache_home(), "/home/dev/.cache"),
            (str(self.tmp_path), "/tmp/run"),
            (self.server_url, "http://127.0.0.1:8000"),
        ):
            text = text.replace(real, neutral)
        # Streamed tool-call deltas may split a path; the first half names only the test's folder.
        return text.replace(str(self.tmp_path.parent), "/tmp")


def real_cache_home() -> str:
    return os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    ident = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "README.md").write_text("# sample\n", encoding="utf-8")
    run_command(["git", "add", "-A"], path, check=True)
    run_command(["git", *ident, "commit", "-q", "-m", "initial"], path, check=True)
    return path


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def require_cli(agent: str, env: dict[str, str]) -> None:
    if resolve_executable(PINNED[agent].binary, env) is None:
        pytest.fail(f"{agent} is not installed; {install_hint(agent)}", pytrace=False)


@pytest.fixture
def run_agent(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    counter = {"n": 0}

    def run(
        agent: str,
        prompt: str,
        *,
        server: ScriptedModelServer,
        cwd: Path | None = None,
        read_only: bool = False,
        resume: str | None = None,
        timeout_s: float = 90,
        idle_timeout_s: float | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> AgentRun:
        counter["n"] += 1
        n = counter["n"]
        if cwd is None:
            cwd = init_repo(tmp_path / f"repo{n}")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "XDG_CACHE_HOME": real_cache_home(),  # the CLIs' caches and our installed CLIs
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "ORCHESTRATOR_HOME": str(tmp_path / "orchestrator-state"),
            "CI": "true",
        }
        if os.environ.get("ORCHESTRATOR_CLI_DIR"):
            env["ORCHESTRATOR_CLI_DIR"] = os.environ["ORCHESTRATOR_CLI_DIR"]
        require_cli(agent, env)
        block = agent_config(agent, server.url)
        block["timeout_s"] = timeout_s
        block["idle_timeout_s"] = idle_timeout_s or timeout_s
        # The sandbox is required, not just allowed: the suite shows every CLI works inside it.
        config = deep_merge({"sandbox": "bwrap", "agents": {agent: block}}, extra_config or {})
        config_path = tmp_path / f"config{n}.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        transcript = tmp_path / f"transcript{n}.jsonl"
        argv = [
            sys.executable,
            "-m",
            "orchestrator",
            "run-agent",
            agent,
            prompt,
            "--cwd",
            str(cwd),
            "--config",
            str(config_path),
            "--json",
            "--transcript",
            str(transcript),
        ]
        if read_only:
            argv.append("--read-only")
        if resume:
            argv += ["--resume", resume]
        result = run_command(argv, REPO_ROOT, env=env, timeout_s=timeout_s + 30)
        assert not result.timed_out, f"run-agent itself did not end within {timeout_s + 30} s"
        try:
            data = json.loads(result.stdout)
        except ValueError:
            pytest.fail(
                f"run-agent printed no JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        lines = transcript.read_text(encoding="utf-8").splitlines() if transcript.exists() else []
        return AgentRun(
            agent,
            data,
            result.returncode,
            result.duration_s,
            cwd,
            result.stdout,
            result.stderr,
            lines,
            transcript,
            tmp_path,
            env,
            server.url,
        )

    return run


@pytest.fixture
def cli_bin_dir() -> Path:
    return cli_cache_bin_dir(os.environ)


@pytest.fixture
def expect_failure(run_agent, model_server):
    """The shape every error case shares: a scenario that fails, one run-agent step, its transcript kept,
    and a failed step of the expected kind within a time bound. Returns (run, server) for the
    CLI's own further checks (retries, messages)."""

    def check(
        agent: str,
        name: str,
        turns: list[Any],
        *,
        kind: str | set[str],
        within_s: float | None = None,
        max_requests: int | None = None,
        timeout_s: float = 60,
        idle_timeout_s: float | None = None,
        prompt: str = "Do something.",
        record_files: Any = None,
    ) -> tuple[AgentRun, ScriptedModelServer]:
        server = model_server(turns)
        run = run_agent(agent, prompt, server=server, timeout_s=timeout_s, idle_timeout_s=idle_timeout_s)
        run.record(name, record_files(run) if record_files else None)
        run.report(name)
        assert run.data["status"] == "failed", run.data
        assert run.data["error"]["kind"] in ({kind} if isinstance(kind, str) else kind), run.data
        if within_s is not None:  # a limit's own bound (limit + 5 s), which load only brings closer
            assert run.duration_s < within_s
        if max_requests is not None:
            # What keeps a failure fast is the CLI not retrying it for long: counted, not timed (a
            # wall-clock bound failed on a loaded machine while the CLI did exactly the same).
            assert len(server.main_requests()) <= max_requests, server.main_requests()
        return run, server

    return check
