"""structlog, imported without the modules of rich it would import for nothing.

With rich installed, structlog's package imports rich's traceback and pretty-printer modules (30 ms or
more at every start of the orchestrator) for exception formatters our set-up (logs.py) never calls:
format_exc_info renders an exception as plain text before any renderer sees it, and the console renderer
is given the plain formatter. A None in sys.modules makes an import fail, so while structlog is imported
here it falls back to what it does without rich; rich itself (the console, the tables) stays importable,
and those modules too once structlog is in. better_exceptions likewise (structlog would warn that its
support is deprecated). Where structlog is imported already this changes nothing.
"""

from __future__ import annotations

import sys

_HIDDEN = ("rich.traceback", "rich.pretty", "better_exceptions")


def _hide() -> list[str]:
    if "structlog" in sys.modules:
        return []
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    return hidden


_hidden = _hide()
try:
    import structlog
finally:
    for _name in _hidden:
        del sys.modules[_name]

__all__ = ["structlog"]
