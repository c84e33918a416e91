"""`orchestrator install-clis`: the pinned coding CLIs from npm, into our cache folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from orchestrator.adapters.base import cli_cache_bin_dir
from orchestrator.adapters.pins import PINNED
from orchestrator.errors import UsageError
from orchestrator.proc import child_env, run_command


def install_clis(agents: tuple[str, ...], prefix: Path, *, timeout_s: float = 900) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise UsageError("npm was not found", hint="install Node.js 20+ with npm, then run this again")
    packages = [f"{PINNED[a].package}@{PINNED[a].version}" for a in agents]
    prefix.mkdir(parents=True, exist_ok=True)
    # npm's own settings from your environment (registry, cafile, proxy) reach npm, and only npm.
    npm_settings = {k: v for k, v in os.environ.items() if k.lower().startswith("npm_config_")}
    env = child_env(
        os.environ, {**npm_settings, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    )
    # --prefer-online: a plain install may take a stale version from ~/.npm (CLI_FACTS.md).
    argv = [npm, "install", "--prefix", str(prefix), "--no-audit", "--prefer-online", *packages]
    result = run_command(argv, prefix, env=env, timeout_s=timeout_s)
    if not result.ok:
        tail = (result.stderr or result.stdout).strip()[-3000:]
        raise UsageError(
            f"npm install failed (exit {result.returncode}):\n{tail}",
            hint="check network access to the npm registry, then run again",
        )
    return packages


@click.command("install-clis")
@click.argument("agents", nargs=-1, type=click.Choice(sorted(PINNED)))
@click.option(
    "--prefix",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to install (default: the orchestrator's cache folder, found automatically).",
)
def install_clis_cmd(agents: tuple[str, ...], prefix: Path | None) -> None:
    """Install the pinned versions of the coding CLIs (all four by default)."""
    chosen = agents or tuple(PINNED)
    target = prefix or cli_cache_bin_dir(os.environ).parents[1]
    packages = install_clis(chosen, target)
    click.echo(f"installed {', '.join(packages)} into {target}")
    bin_dir = target / "node_modules" / ".bin"
    if prefix is not None:
        click.echo(f"set ORCHESTRATOR_CLI_DIR={target} (or put {bin_dir} on PATH) so the adapters find them")
