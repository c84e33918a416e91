"""How to point each real CLI at the scripted model server: the `agents.<name>` config block.

Each dialect module knows its CLI's variables (`agent_config(server_url)`); this maps agent -> dialect.
"""

from __future__ import annotations

import importlib
from typing import Any

AGENT_DIALECT: dict[str, str] = {
    "claude": "orchestrator.testing.dialects.anthropic",
    "codex": "orchestrator.testing.dialects.openai_responses",
    "gemini": "orchestrator.testing.dialects.gemini",
    "copilot": "orchestrator.testing.dialects.openai_chat",
}


def agent_config(agent: str, server_url: str) -> dict[str, Any]:
    """The config block (env, args, model) that points `agent` at a scripted server at `server_url`."""
    module = importlib.import_module(AGENT_DIALECT[agent])
    config: dict[str, Any] = module.agent_config(server_url)
    return config


def agents_config(server_url: str, agents: tuple[str, ...] = tuple(AGENT_DIALECT)) -> dict[str, Any]:
    return {"agents": {name: agent_config(name, server_url) for name in agents}}
