"""`orchestrator doctor`: is this machine ready for runs? The state folder, its free space, the store
(readable, writable, intact) and the coding CLIs. `--repair` moves a damaged store aside (kept beside
it) and starts a new one. Exit 0 when nothing is in error (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import click

from orchestrator.cli.common import config_option, print_json, settings_for
from orchestrator.store.health import (
    Check,
    check_free_space,
    check_server_store,
    check_state_folder,
    check_store,
    move_store_aside,
    store_is_damaged,
)
from orchestrator.store.locate import store_location
from orchestrator.workspace.paths import state_home

_MARK = {"ok": "ok", "warning": "warn", "error": "FAIL"}


def cli_checks(config_path: Path | None) -> list[Check]:
    from orchestrator.adapters import REAL_AGENTS
    from orchestrator.engine.readiness import AgentReadiness

    loaded = settings_for(config_path, Path.cwd())
    readiness = AgentReadiness(loaded.settings, os.environ)
    readiness.probe(REAL_AGENTS)
    checks: list[Check] = []
    for name in REAL_AGENTS:
        found = readiness.of(name)
        if found.ready:
            detail = f"ready: {found.version}, {found.auth_source}"
            checks.append(Check(name, "ok", detail))
        else:
            checks.append(Check(name, "warning", f"not ready: {found.reason}", found.fix))
    if not any(c.level == "ok" for c in checks):
        # A warning, not a failure: a configuration may use only other agents (or a stand-in).
        checks.append(
            Check("coding CLIs", "warning", "no coding CLI is ready", "`orchestrator agents` says why")
        )
    return checks


@click.command("doctor")
@config_option
@click.option("--repair", is_flag=True, help="Move a damaged store aside (kept) and start a new one.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(config_path: Path | None, repair: bool, as_json: bool) -> None:
    """Check the state folder, free space, the run store and the coding CLIs."""
    home = state_home(os.environ)
    location = store_location(
        settings_for(config_path, Path.cwd(), drop_untrusted=True).settings.cluster.database, os.environ, home
    )
    store = location if isinstance(location, Path) else home / "state.db"
    checks = [check_state_folder(home), check_free_space(home)]
    checks.append(check_store(store) if isinstance(location, Path) else check_server_store(location))
    repaired: Path | None = None
    if repair and isinstance(location, Path) and store_is_damaged(checks[2]):
        from orchestrator.store import Store

        repaired = move_store_aside(store)
        Store(store).close()
        checks[2] = Check("store", "ok", f"{store} is new; the damaged one is kept as {repaired}", None)
    checks += cli_checks(config_path)
    failed = any(c.level == "error" for c in checks)
    if as_json:
        print_json(
            {
                "ok": not failed,
                "repaired": str(repaired) if repaired else None,
                "checks": [c.to_json() for c in checks],
            }
        )
    else:
        width = max(len(c.name) for c in checks)
        indent = " " * (width + 8)
        for check in checks:
            lines = [check.detail] + ([f"fix: {check.fix}"] if check.fix and check.level != "ok" else [])
            head = f"{_MARK[check.level]:<4}  {check.name:<{width}}  "
            for i, line in enumerate(lines):
                text = textwrap.fill(  # paths stay whole (copied from the terminal)
                    line,
                    80,
                    initial_indent=head if i == 0 else indent,
                    subsequent_indent=indent,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                click.echo(text)
        if repair and repaired is None:
            click.echo("nothing to repair: the store is not damaged")
    click.get_current_context().exit(1 if failed else 0)
