"""`orchestrator audit`: what agents ran and what was written to your repositories (the audit trail)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import click

from orchestrator.audit import audit_log
from orchestrator.cli.common import print_json


def describe(entry: dict[str, Any]) -> str:
    """One entry as a line for people."""
    when = datetime.fromtimestamp(float(entry.get("ts", 0)), UTC).strftime("%Y-%m-%d %H:%M:%S")
    kind = entry.get("kind")
    where = " ".join(str(entry[k]) for k in ("run_id", "step_id") if entry.get(k))
    if kind == "agent_command":
        argv = entry.get("argv") or []
        ended = (
            f"signal {entry['signal']}"
            if entry.get("signal")
            else ("timed out" if entry.get("timed_out") else f"exit {entry.get('exit_code')}")
        )
        sandbox = "sandbox" if entry.get("sandbox") else "no sandbox"
        name = os.path.basename(str(argv[0])) if argv else "?"
        what = f"{entry.get('agent') or name}: {name} ({len(argv)} args) in {entry.get('cwd')}; {ended}, {entry.get('duration_s')} s, {sandbox}"
    elif kind == "repo_write":
        commit = f" at {str(entry['commit'])[:10]}" if entry.get("commit") else ""
        what = f"{entry.get('action')} {entry.get('ref') or ''}{commit} in {entry.get('repo')}"
    elif kind == "dashboard_action":
        what = f"{entry.get('action')} {entry.get('target')} from {entry.get('remote_addr') or '?'}"
    else:
        what = str(kind)
    return f"{when}  {kind:<16}  {where + '  ' if where else ''}{what}"


@click.command("audit")
@click.option("--run", "run_id", default=None, help="Only this run's entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as a JSON list on stdout.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the newest N entries.")
def audit(run_id: str | None, as_json: bool, limit: int | None) -> None:
    """Show the audit trail: every agent command (argv masked, cwd, names of its environment variables,
    sandbox, exit, duration), every write to your repositories, every dashboard action. Oldest first."""
    log = audit_log(os.environ)
    entries = list(log.entries(run_id=run_id))
    if limit is not None:
        entries = entries[-limit:]
    if as_json:
        print_json(entries)
        return
    if not entries:
        click.echo(f"no audit entries{' for run ' + run_id if run_id else ''} in {log.path}")
        return
    for entry in entries:
        click.echo(describe(entry))
