"""Stand-in CLIs for fault tests, a project to run them in, and checks a user could make.

A stand-in is a small Python script put in place of a coding CLI through `agents.fake.command`. The
helpers in `standin_lib.py` (written beside it) let it record its own pid and start grandchildren that
escape every usual way of finding them: `env -i` (no environment marker), `setsid` (a session and
process group of their own), a double fork (reparented). Each records its pid in `pids`, so the test
can tell whether anything it caused is still alive, whatever the orchestrator did or did not notice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import CommandResult, child_env, run_command
from orchestrator.testing.checkout import CheckoutSnapshot, snapshot_checkout

STANDIN_LIB = r'''
"""Helpers for stand-in CLIs (written by tests/faults/conftest.py)."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PIDS = os.path.join(HERE, "pids")


def record(pid=None):
    with open(PIDS, "a") as fh:
        fh.write(f"{pid or os.getpid()}\n")


def escapee():
    """A grandchild with no environment, in a session of its own, holding stdout and stderr open."""
    subprocess.Popen(["/usr/bin/env", "-i", "/usr/bin/setsid", sys.executable, __file__, "sleep"])


def daemon():
    """A double fork: the middle process exits at once, so the last one is reparented."""
    subprocess.Popen(["/usr/bin/env", "-i", sys.executable, __file__, "daemon"])


if __name__ == "__main__":
    if sys.argv[1] == "sleep":
        record()
        time.sleep(300)
    elif sys.argv[1] == "daemon":
        if os.fork() == 0:
            os.setsid()
            record()
            time.sleep(300)
        os._exit(0)
'''

# Runs a command and prints the peak resident set size of its largest process (KiB) on stderr.
RSS_WRAPPER = (
    "import resource,subprocess,sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def is_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def still_alive_after(pids: Sequence[int], seconds: float) -> list[int]:
    """The pids still alive once `seconds` have passed (returns early when none are)."""
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if is_alive(p)]
    return alive


def peak_rss_mb(stderr: str) -> float:
    line = next(line for line in reversed(stderr.splitlines()) if line.startswith("maxrss_kb "))
    return int(line.split()[1]) / 1024


@dataclass
class FaultProject:
    """A git repository with one commit, a one-step workflow for the fake agent, and a state home."""

    tmp: Path
    repo: Path
    config: Path
    workflow: Path
    env: dict[str, str]

    @property
    def pids_file(self) -> Path:
        return self.tmp / "pids"

    def standin(self, body: str) -> Path:
        """Write a stand-in CLI (Python; `from standin_lib import *` is done for it)."""
        (self.tmp / "standin_lib.py").write_text(STANDIN_LIB)
        path = self.tmp / "standin"
        header = f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(self.tmp)!r})\nfrom standin_lib import *\n"
        path.write_text(header + textwrap.dedent(body))
        path.chmod(0o755)
        return path

    def configure(self, standin: Path, **agent: Any) -> None:
        """Point `agents.fake.command` at the stand-in; `agent` adds keys (timeout_s, communicator...)."""
        # No sandbox: the stand-ins record their pids in the test's folder, and the tests look those pids
        # up in /proc (a sandbox's pid namespace would number them otherwise). tests/faults/test_sandbox.py
        # covers the sandboxed path.
        data = {
            "agents": {"fake": {"command": str(standin), **agent}},
            "fallback_order": ["fake"],
            "sandbox": "off",
        }
        self.config.write_text(yaml.safe_dump(data))

    def run_argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "make greet() return Hello",
            "--workflow",
            str(self.workflow),
            "--config",
            str(self.config),
            *extra,
        ]

    def run_agent_argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "orchestrator",
            "run-agent",
            "fake",
            "do the task",
            "--cwd",
            str(self.repo),
            "--config",
            str(self.config),
            *extra,
        ]

    def call(self, argv: Sequence[str], timeout_s: float = 120) -> CommandResult:
        return run_command(list(argv), self.repo, env=self.env, timeout_s=timeout_s)

    def recorded_pids(self) -> list[int]:
        if not self.pids_file.exists():
            return []
        return [int(line) for line in self.pids_file.read_text().split()]

    def wait_for_pids(self, count: int, timeout_s: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.recorded_pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"the stand-in recorded {self.recorded_pids()} (wanted {count} pids)")

    def snapshot(self) -> CheckoutSnapshot:
        return snapshot_checkout(self.repo)

    def runs(self) -> list[dict[str, Any]]:
        listed = self.call([sys.executable, "-m", "orchestrator", "runs", "list", "--json", "--all"])
        assert listed.returncode == 0, listed.stderr
        runs: list[dict[str, Any]] = json.loads(listed.stdout)
        return runs


def fault_project(tmp_path: Path) -> FaultProject:
    """A git repository with one commit, a one-step workflow for the fake agent, and a state home."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("def greet():\n    return 'hi'\n")
    home = tmp_path / "home"
    env = child_env(
        os.environ,
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "ORCHESTRATOR_HOME": str(tmp_path / "state"),
            "GIT_AUTHOR_NAME": "u",
            "GIT_AUTHOR_EMAIL": "u@example.com",
            "GIT_COMMITTER_NAME": "u",
            "GIT_COMMITTER_EMAIL": "u@example.com",
        },
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        run_command(["git", *args], repo, env=env, check=True)
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(
        yaml.safe_dump({"max_iterations": 1, "steps": [{"agent": "fake", "task": "implement"}]})
    )
    return FaultProject(tmp=tmp_path, repo=repo, config=tmp_path / "config.yaml", workflow=workflow, env=env)


def end_recorded(project: FaultProject) -> None:
    """SIGKILL whatever the stand-in recorded that is still alive (clean-up after a failed test)."""
    for pid in project.recorded_pids():
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
