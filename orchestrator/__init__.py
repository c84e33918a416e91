"""ai-agents-orchestrator: the real coding CLIs working one task in turns, on a git branch of its own."""

from __future__ import annotations

__version__ = "0.1.0"

# The public API is curated and pinned by tests/test_public_api.py; names are added on purpose only.
__all__ = ["__version__"]
