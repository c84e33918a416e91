"""What a fault test needs around `orchestrator` run as a user runs it: a real repository, the fake agent
with a scenario, a home and a state folder of its own, a planted secret, and the checks every fault case
makes (exit code, time bound, nothing written to the user's repository, nothing leaked).

    project = FaultProject(tmp_path, turns=[{"text": "done"}])
    result = project.orchestrator("runs", "list", limit_s=10)
    project.assert_clean(result)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import CommandResult, child_env, run_command
from orchestrator.testing.checkout import CheckoutSnapshot, snapshot_checkout

# A value shaped like no known key format, 8+ characters: it must never appear in any output.
PLANTED_SECRET = "plantedSecretValue-7f3a9c21"
# How much longer than its own limit a fault case may take before it counts as hanging.
GRACE_S = 5.0


@dataclass
class Timed:
    result: CommandResult
    seconds: float

    @property
    def code(self) -> int | None:
        return self.result.returncode

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


class FaultProject:
    def __init__(
        self,
        tmp: Path,
        turns: Sequence[dict[str, Any]] = ({"text": "done"},),
        *,
        state: Path | None = None,
        workflow: Sequence[dict[str, Any]] | None = None,
        agent_config: dict[str, Any] | None = None,
    ) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.repo.mkdir()
        (self.repo / "app.py").write_text("def greet():\n    return 'hi'\n")
        git_env = child_env(os.environ, {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp / "home")})
        for argv in (
            ["git", "init", "-q", "-b", "main"],
            ["git", "add", "-A"],
            ["git", "-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "initial"],
        ):
            run_command(argv, self.repo, env=git_env, check=True)
        self.scenario = tmp / "scenario.yaml"
        self.scenario.write_text(yaml.safe_dump({"turns": list(turns)}))
        fake = {
            "env": {"ORCHESTRATOR_FAKE_SCENARIO": str(self.scenario), "FAKE_SERVICE_TOKEN": PLANTED_SECRET},
            **(agent_config or {}),
        }
        self.config = tmp / "config.yaml"
        self.config.write_text(yaml.safe_dump({"agents": {"fake": fake}, "fallback_order": ["fake"]}))
        self.workflow = tmp / "workflow.yaml"
        steps = workflow or [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}]
        self.workflow.write_text(yaml.safe_dump({"max_iterations": 1, "steps": list(steps)}))
        self.home = tmp / "home"
        self.state = state or tmp / "state"
        self.before: CheckoutSnapshot = snapshot_checkout(self.repo)

    def env(self, **extra: str) -> dict[str, str]:
        values = {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "ORCHESTRATOR_HOME": str(self.state),
            **extra,
        }
        if os.environ.get("PYTHONPATH"):  # the checkout under test, when it is not the installed one
            values["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return child_env(os.environ, values)

    def orchestrator(self, *args: str, limit_s: float, **env: str) -> Timed:
        """`python -m orchestrator ARGS` in the repository; fails the test if it outlives its limit."""
        argv = [sys.executable, "-m", "orchestrator", *args]
        started = time.monotonic()
        result = run_command(argv, self.repo, env=self.env(**env), timeout_s=limit_s + GRACE_S)
        seconds = time.monotonic() - started
        assert not result.timed_out, f"`orchestrator {' '.join(args)}` ran past {limit_s + GRACE_S} s"
        assert seconds < limit_s + GRACE_S
        return Timed(result, seconds)

    def run(self, *extra: str, limit_s: float = 60.0, **env: str) -> Timed:
        return self.orchestrator(
            "run",
            "make greet() return Hello",
            "--config",
            str(self.config),
            "--workflow",
            str(self.workflow),
            *extra,
            limit_s=limit_s,
            **env,
        )

    def assert_untouched(self) -> None:
        """Nothing written to the user's checkout: files, index, HEAD, stash and refs (the run's own
        refs aside)."""
        assert self.before.differences(snapshot_checkout(self.repo)) == []

    def assert_no_leak(self, *texts: str, secrets: Sequence[str] = ()) -> None:
        """The planted secret (and `secrets`) in none of `texts` and no file of the state or home."""
        planted = (PLANTED_SECRET, *secrets)
        for text in texts:
            assert not any(secret in text for secret in planted)
        for folder in (self.state, self.home):
            for path in _files(folder):
                with contextlib.suppress(OSError):
                    raw = path.read_bytes()
                    assert not any(s.encode() in raw for s in planted), f"a secret is in {path}"

    def run_branches(self) -> list[str]:
        out = run_command(
            ["git", "for-each-ref", "--format=%(refname)", "refs/heads/orchestrator/"], self.repo, check=True
        ).stdout
        return out.split()


def _files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path
