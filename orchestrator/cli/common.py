"""What several commands share: loading settings for a directory, JSON output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.config import LoadedSettings, load_settings
from orchestrator.proc import run_command

if TYPE_CHECKING:
    from orchestrator.workspace.run_locate import RepoLocation


def repo_root_of(path: Path) -> Path | None:
    result = run_command(["git", "rev-parse", "--show-toplevel"], path, timeout_s=30)
    return Path(result.stdout.strip()) if result.ok and result.stdout.strip() else None


def settings_for(
    config: Path | None,
    where: Path,
    *,
    drop_untrusted: bool = False,
    location: RepoLocation | None = None,
) -> LoadedSettings:
    """`drop_untrusted` for commands that run no agent: see config.load_settings. `location`: what
    workspace.run_locate.locate_repo found for `where`, when the caller asked already."""
    if location is not None and location.path == where:
        repo_root = Path(location.toplevel) if location.toplevel else None
    else:
        repo_root = repo_root_of(where) if where.is_dir() else None
    return load_settings(
        config,
        repo_root=repo_root,
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
