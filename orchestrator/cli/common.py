"""What several commands share: loading settings for a directory, JSON output."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from orchestrator.config import LoadedSettings, load_settings
from orchestrator.proc import run_command

T = TypeVar("T")


def repo_root_of(path: Path) -> Path | None:
    result = run_command(["git", "rev-parse", "--show-toplevel"], path, timeout_s=30)
    return Path(result.stdout.strip()) if result.ok and result.stdout.strip() else None


def settings_for(config: Path | None, where: Path) -> LoadedSettings:
    return load_settings(config, repo_root=repo_root_of(where) if where.is_dir() else None, env=os.environ)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
    sys.stdout.flush()


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: $ORCHESTRATOR_CONFIG, .orchestrator.yaml, ~/.config/orchestrator/config.yaml).",
)


def run_cancellable(work: Callable[[threading.Event], T]) -> tuple[T | None, bool]:
    """Run `work(cancel)` in a worker thread; Ctrl-C sets `cancel` (the current step's process group
    ends) and waits for the work to wind down. Returns (result, interrupted)."""
    cancel = threading.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work(cancel)
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="orchestrator-run", daemon=True)
    worker.start()
    interrupted = False
    while worker.is_alive():
        try:
            worker.join(0.2)
        except KeyboardInterrupt:
            if interrupted:  # a second Ctrl-C: stop waiting
                raise
            interrupted = True
            cancel.set()
            click.echo("\ncancelling the current step (Ctrl-C again to quit at once)...", err=True)
    if "error" in box:
        raise box["error"]
    return box.get("result"), interrupted
