"""One adapter per coding CLI, behind one Protocol (base.Adapter) and one registry."""

from __future__ import annotations

import importlib

from orchestrator.adapters.base import Adapter
from orchestrator.errors import UsageError

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
