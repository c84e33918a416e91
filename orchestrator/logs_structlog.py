"""structlog, imported without the modules of rich it would import for nothing.

With rich installed, structlog's package imports rich's console, traceback and pretty-printer modules
(45 ms or more at every start of the orchestrator) for exception formatters our set-up (logs.py) never
calls: format_exc_info renders an exception as plain text before any renderer sees it, and the console
renderer is given the plain formatter. (rich's console is imported by whoever prints with it: not at all
when the output is plain, in CI and pipes; see cli/render.py.) A None in sys.modules makes an import fail, so while structlog is imported
here it falls back to what it does without rich; rich itself (the console, the tables) stays importable,
and those modules too once structlog is in. better_exceptions likewise (structlog would warn that its
support is deprecated). Where structlog is imported already this changes nothing.

asyncio likewise (16 ms with the ssl, socket and subprocess modules it brings): structlog's stdlib
module imports it only to call `asyncio.get_running_loop()` inside its async log methods, which run on
a loop, so with asyncio imported. While structlog is imported, `asyncio` is a stand-in that imports the
real module on its first attribute access; the stand-in leaves sys.modules at once, so any later
`import asyncio` gets the real one.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_HIDDEN = ("rich.console", "rich.traceback", "rich.pretty", "better_exceptions")


class _AsyncioOnUse(types.ModuleType):
    """Stands for asyncio in the modules of structlog that import it; the real one on first use."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("asyncio") is self:
            del sys.modules["asyncio"]
        return getattr(importlib.import_module("asyncio"), name)


def _hide() -> tuple[list[str], bool]:
    if "structlog" in sys.modules:
        return [], False
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    stand_in = "asyncio" not in sys.modules
    if stand_in:
        sys.modules["asyncio"] = _AsyncioOnUse("asyncio")
    return hidden, stand_in


_hidden, _stand_in = _hide()
try:
    import structlog
finally:
    for _name in _hidden:
        del sys.modules[_name]
    if _stand_in and isinstance(sys.modules.get("asyncio"), _AsyncioOnUse):
        del sys.modules["asyncio"]

__all__ = ["structlog"]
