"""What the dashboard benchmarks share: a live `orchestrator serve` on a free port (a process of its own,
started through orchestrator.proc), a state folder, a repository, Debian's Chromium through Playwright."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from orchestrator.proc import ProcSpec, SubprocessCommunicator, child_env, run_command

TOKEN = "bench-token-0123456789abcdef0123456789"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    return (
        f"n={len(values)} p50={percentile(values, 50):.1f} p95={percentile(values, 95):.1f} "
        f"max={max(values):.1f} mean={statistics.mean(values):.1f}"
    )


class Bench:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="orchestrator-ui-bench-"))
        self.repo = self.tmp / "repo"
        self.repo.mkdir()
        run_command(["git", "init", "-q", "-b", "main"], self.repo, check=True)
        (self.repo / "README.md").write_text("# bench\n")
        run_command(["git", "add", "-A"], self.repo, check=True)
        run_command(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"],
            self.repo,
            check=True,
        )
        self.state = self.tmp / "state"
        self.env = child_env(
            os.environ,
            {
                "ORCHESTRATOR_HOME": str(self.state),
                "ORCHESTRATOR_UI_TOKEN": TOKEN,
                "XDG_STATE_HOME": str(self.tmp / "xdg-state"),
                "GIT_AUTHOR_NAME": "b",
                "GIT_AUTHOR_EMAIL": "b@b",
                "GIT_COMMITTER_NAME": "b",
                "GIT_COMMITTER_EMAIL": "b@b",
            },
        )
        self._cancels: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        self.base = ""

    def background(self, argv: list[str], lines: list[str]) -> threading.Event:
        cancel = threading.Event()
        spec = ProcSpec(argv=argv, cwd=self.repo, env=self.env, wall_timeout_s=3600)
        thread = threading.Thread(
            target=lambda: SubprocessCommunicator().run(spec, lambda _s, line: lines.append(line), cancel),
            daemon=True,
        )
        thread.start()
        self._cancels.append(cancel)
        self._threads.append(thread)
        return cancel

    def serve(self, config: Path | None = None) -> str:
        lines: list[str] = []
        argv = [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--port",
            "0",
            "--repo",
            str(self.repo),
            "--no-open",
        ]
        if config is not None:
            argv += ["--config", str(config)]
        self.background(argv, lines)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in list(lines):
                if line.startswith("Dashboard: "):
                    login = line.split("Dashboard: ", 1)[1].strip()
                    self.base = login.split("/?token=", 1)[0]
                    return login
            time.sleep(0.05)
        raise RuntimeError("the dashboard did not start:\n" + "\n".join(lines))

    def server_pid(self) -> int:
        port = self.base.rsplit(":", 1)[1]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The server itself, not the supervisor proc.py runs it under (whose argv holds the same).
            if (
                b"serve" in cmdline
                and b"--port" in cmdline
                and str(self.tmp / "repo").encode() in cmdline
                and not any(part.endswith(b"proc_shim.py") for part in cmdline)
            ):
                return int(entry.name)
        raise RuntimeError(f"no server process for port {port}")

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=60) as response:
            return json.loads(response.read())

    def close(self) -> None:
        for cancel in self._cancels:
            cancel.set()
        for thread in self._threads:
            thread.join(60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
