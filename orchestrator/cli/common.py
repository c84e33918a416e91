"""What several commands share: loading settings for a directory, JSON output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.config import LoadedSettings, load_settings
from orchestrator.proc import run_command


def repo_root_of(path: Path) -> Path | None:
    result = run_command(["git", "rev-parse", "--show-toplevel"], path, timeout_s=30)
    return Path(result.stdout.strip()) if result.ok and result.stdout.strip() else None


def settings_for(config: Path | None, where: Path, *, drop_untrusted: bool = False) -> LoadedSettings:
    """`drop_untrusted` for commands that run no agent: see config.load_settings."""
    return load_settings(
        config,
        repo_root=repo_root_of(where) if where.is_dir() else None,
        env=os.environ,
        drop_untrusted=drop_untrusted,
    )


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
