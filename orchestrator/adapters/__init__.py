"""One adapter per coding CLI, behind one Protocol (base.Adapter) and one registry."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from orchestrator.errors import UsageError

if TYPE_CHECKING:
    # Not at run time: `python -m orchestrator.adapters.fake_agent` imports this package first, and
    # base.py pulls in pydantic and the event models, which the fake agent does not need.
    from orchestrator.adapters.base import Adapter

# name -> "module:class". Imported on first use, so `orchestrator --help` stays fast.
_REGISTRY: dict[str, str] = {
    "claude": "orchestrator.adapters.claude:ClaudeAdapter",
    "codex": "orchestrator.adapters.codex:CodexAdapter",
    "gemini": "orchestrator.adapters.gemini:GeminiAdapter",
    "copilot": "orchestrator.adapters.copilot:CopilotAdapter",
    "fake": "orchestrator.adapters.fake:FakeAdapter",
}

AGENT_NAMES: tuple[str, ...] = tuple(_REGISTRY)
REAL_AGENTS: tuple[str, ...] = ("claude", "codex", "gemini", "copilot")


def get_adapter(name: str) -> Adapter:
    target = _REGISTRY.get(name)
    if target is None:
        raise UsageError(f"unknown agent {name!r}", hint=f"choose one of: {', '.join(AGENT_NAMES)}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    adapter: Adapter = cls()
    return adapter
