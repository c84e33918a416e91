"""A pytest plugin for projects (ours included) that test with the real CLIs and no account.

Load it from a conftest.py with `pytest_plugins = ["orchestrator.testing.pytest_plugin"]`, then ask for
the `model_server` fixture: `model_server([{"write_file": {"path": "a.txt", "content": "x"}}, {"text":
"done"}])` starts a scripted model server on a free 127.0.0.1 port and returns it (stopped after the test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.scenario import Scenario, scenario_from_data

ServerFactory = Callable[[Any], ScriptedModelServer]


@pytest.fixture
def model_server() -> Iterator[ServerFactory]:
    """Start a scripted model server on a free 127.0.0.1 port for a scenario (data or Scenario)."""
    servers: list[ScriptedModelServer] = []

    def start(scenario: Any) -> ScriptedModelServer:
        if not isinstance(scenario, Scenario):
            scenario = scenario_from_data(scenario)
        server = ScriptedModelServer(scenario).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
