"""One module per model API the scripted server speaks. Each answers in its API's own wire format and
its CLI's own tool vocabulary (it finds the write/edit/shell tool among the tools the CLI offered)."""

from __future__ import annotations

import importlib

from orchestrator.testing.dialects.base import Dialect

# Imported lazily; a dialect module that fails to import fails only requests for its API.
DIALECT_MODULES: tuple[str, ...] = (
    "orchestrator.testing.dialects.anthropic",
    "orchestrator.testing.dialects.openai_responses",
    "orchestrator.testing.dialects.openai_chat",
    "orchestrator.testing.dialects.gemini",
)


def load_dialects() -> list[Dialect]:
    dialects: list[Dialect] = []
    for module_name in DIALECT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        dialects.append(module.DIALECT)
    return dialects
