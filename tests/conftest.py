from __future__ import annotations

import time

import pytest

from orchestrator.proc import kill_leftovers, leftover_processes
from orchestrator.store import Store

pytest_plugins = [
    "orchestrator.testing.pytest_plugin",
    "orchestrator.testing.postgres",
    "orchestrator.testing.temporal",
]


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    """Every process a test starts through orchestrator.proc must be gone when the test ends."""
    yield
    deadline = time.monotonic() + 3.0
    left = leftover_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftover_processes()
    if left:
        details = []
        for pid in left:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
                details.append(f"{pid}: {cmdline[:200]}")
            except OSError:
                details.append(str(pid))
        kill_leftovers()
        pytest.fail("processes left behind:\n" + "\n".join(details))


@pytest.fixture(autouse=True)
def _no_writes_to_real_home(tmp_path_factory, monkeypatch):
    """Tests never touch the developer's real state: HOME-derived folders point into a temp dir."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)


@pytest.fixture
def store(store_location):
    """An open store, once on each backend (see orchestrator/testing/postgres.py: store_location)."""
    with Store(store_location) as opened:
        yield opened
