"""`orchestrator install-clis`: the pinned coding CLIs from npm, into our cache folder.

With `--latest`, the newest published versions instead, into a folder of their own (`--prefix`), so the
drift check (scripts/drift.sh) can run the real-CLI suite against them beside the pinned ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from orchestrator.adapters.base import cli_cache_bin_dir
from orchestrator.adapters.pins import PINNED
from orchestrator.errors import UsageError
from orchestrator.proc import child_env, run_command


def package_specs(agents: tuple[str, ...], *, latest: bool = False) -> list[str]:
    """npm install arguments: `pkg@pinned`, or `pkg@latest` (the registry's `latest` dist-tag)."""
    return [f"{PINNED[a].package}@{'latest' if latest else PINNED[a].version}" for a in agents]


def install_clis(
    agents: tuple[str, ...], prefix: Path, *, timeout_s: float = 900, latest: bool = False
) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise UsageError("npm was not found", hint="install Node.js 20+ with npm, then run this again")
    packages = package_specs(agents, latest=latest)
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


def installed_versions(prefix: Path, agents: tuple[str, ...]) -> dict[str, str]:
    """The version npm put under `prefix` for each agent's package (from its package.json)."""
    import json

    versions: dict[str, str] = {}
    for agent in agents:
        manifest = prefix / "node_modules" / PINNED[agent].package / "package.json"
        if manifest.is_file():
            versions[agent] = str(json.loads(manifest.read_text(encoding="utf-8")).get("version", "?"))
    return versions


@click.command("install-clis")
@click.argument("agents", nargs=-1, type=click.Choice(sorted(PINNED)))
@click.option(
    "--prefix",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to install (default: the orchestrator's cache folder, found automatically).",
)
@click.option(
    "--latest",
    is_flag=True,
    help="The newest published versions instead of the pinned ones (needs --prefix: the pinned stay).",
)
def install_clis_cmd(agents: tuple[str, ...], prefix: Path | None, latest: bool) -> None:
    """Install the pinned versions of the coding CLIs (all four by default)."""
    if latest and prefix is None:
        raise UsageError(
            "--latest needs --prefix DIR",
            hint="the pinned CLIs in the cache folder stay as they are; e.g. --latest --prefix /tmp/clis-latest",
        )
    chosen = agents or tuple(PINNED)
    target = prefix or cli_cache_bin_dir(os.environ).parents[1]
    packages = install_clis(chosen, target, latest=latest)
    if latest:
        versions = installed_versions(target, chosen)
        packages = [f"{PINNED[a].package}@{versions.get(a, '?')}" for a in chosen]
    click.echo(f"installed {', '.join(packages)} into {target}")
    bin_dir = target / "node_modules" / ".bin"
    if prefix is not None:
        click.echo(f"set ORCHESTRATOR_CLI_DIR={target} (or put {bin_dir} on PATH) so the adapters find them")
