"""`orchestrator agents`: each coding CLI, installed or not, which version, which auth, ready or not."""

from __future__ import annotations

import os
from pathlib import Path

import click

from orchestrator.adapters import REAL_AGENTS
from orchestrator.adapters.base import Availability
from orchestrator.cli.common import config_option, print_json, settings_for
from orchestrator.config import LoadedSettings, agent_environments
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.errors import UsageError
from orchestrator.secrets import SecretMasker
from orchestrator.workspace.sandbox import resolve_sandbox


def check_agents(loaded: LoadedSettings, agents: tuple[str, ...] = REAL_AGENTS) -> list[Availability]:
    """Availability of each agent, judged with the environment its child would really get."""
    readiness = AgentReadiness(loaded.settings, os.environ)
    readiness.probe(agents)  # all at once
    found: list[Availability] = []
    for name in agents:
        availability = readiness.of(name)
        missing = loaded.unresolved.get(name)
        if missing and not availability.auth_configured:
            note = f"; agents.{name}.env refers to {', '.join('$' + m for m in missing)}, which is not set"
            availability = Availability(**{**availability.__dict__, "reason": availability.reason + note})
        found.append(availability)
    return found


def sandbox_line(loaded: LoadedSettings) -> str:
    """Whether agents and gates will run in the OS sandbox here, and if not, why and what to do."""
    try:
        sandbox = resolve_sandbox(loaded.settings.sandbox, os.environ)
    except UsageError as exc:
        return f"required by the config, but not available: {exc.message} ({exc.hint})"
    return sandbox.note


@click.command("agents")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def agents(config_path: Path | None, as_json: bool) -> None:
    """Show each coding CLI: installed, path, version (and whether we tested it), auth, ready or why not."""
    loaded = settings_for(config_path, Path.cwd())
    rows = check_agents(loaded)
    # A CLI's --version failure is quoted in `reason`: it may echo what the CLI was given.
    masker = SecretMasker.from_environments(os.environ, agent_environments(loaded.settings, os.environ))
    if as_json:
        print_json(masker.mask_value([row.to_json() for row in rows]))
        return
    from rich.table import Table

    from orchestrator.cli.render import make_console

    table = Table(title="Coding CLIs", show_lines=False)
    for column in ("agent", "ready", "version", "auth", "path / why not"):
        table.add_column(column)
    for row in rows:
        version = row.version or "-"
        if row.version and not row.version_tested:
            version += f" (tested: {row.tested_version})"
        detail = row.path or "-"
        if not row.ready:
            detail = masker.mask(row.reason + (f"\n  fix: {row.fix}" if row.fix else ""))
        table.add_row(
            row.agent,
            "[green]yes[/]" if row.ready else "[red]no[/]",
            version,
            row.auth_source or ("[red]none[/]" if row.installed else "-"),
            detail,
        )
    make_console().print(table)
    click.echo(f"sandbox: {sandbox_line(loaded)}")
    if loaded.source:
        click.echo(f"configuration: {loaded.source}")
