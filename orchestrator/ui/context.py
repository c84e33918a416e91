"""What the dashboard's views share, built once by the app factory and passed down (no globals)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.engine.service import RunService
from orchestrator.store import Store
from orchestrator.ui.actions import Actions
from orchestrator.ui.bridge import Bridge

Audit = Callable[[str, str | None, dict[str, Any]], None]


@dataclass(frozen=True)
class Context:
    store: Store
    settings: Settings
    env: Mapping[str, str]
    service: RunService
    actions: Actions
    bridge: Bridge
    allowed_repos: tuple[Path, ...]
    token: str
    clock: Callable[[], float]
    audit: Audit
