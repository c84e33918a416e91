"""`orchestrator trust [--repo DIR] [--revoke]`: allow a repository's own configuration to run programs.

Shows what the repository's `.orchestrator.yaml` and `.orchestrator/workflows/*.yaml` would be allowed
(agent commands, arguments, environment, gate commands), then records each file's SHA-256 in the state
home. A file changed afterwards is refused again until trusted again (trust.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import yaml

from orchestrator.cli.common import print_json, repo_root_of
from orchestrator.errors import UsageError
from orchestrator.secrets import process_masker
from orchestrator.trust import (
    describe,
    repo_config_files,
    revoke_files,
    trust_files,
    trust_path,
    trust_state,
    untrusted_config_keys,
    untrusted_gate_commands,
)


def _what_it_allows(path: Path) -> list[str]:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        return [f"(cannot be read: {exc})"]
    found = (
        untrusted_config_keys(data) if path.name == ".orchestrator.yaml" else untrusted_gate_commands(data)
    )
    return describe(found)


@click.command("trust")
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The repository (default: the one holding the current directory).",
)
@click.option("--revoke", is_flag=True, help="Forget the trust given to this repository's files.")
@click.option("--json", "as_json", is_flag=True, help="Print what was trusted (or revoked) as JSON.")
def trust(repo: Path | None, revoke: bool, as_json: bool) -> None:
    """Trust this repository's own configuration: its agent commands, arguments and environment
    (${VAR} included) and its gate commands are used from now on, until a file changes."""
    where = (repo or Path.cwd()).resolve()
    root = repo_root_of(where)
    if root is None:
        raise UsageError(f"{where} is not inside a git repository", hint="pass --repo DIR")
    files = repo_config_files(root)
    if revoke:
        removed = revoke_files(files, os.environ, under=root)
        if as_json:
            print_json({"repo": str(root), "revoked": removed})
            return
        if not removed:
            click.echo(f"nothing of {root} was trusted")
        for name in removed:
            click.echo(f"no longer trusted: {name}")
        return
    if not files and not as_json:
        click.echo(f"{root} has no .orchestrator.yaml or .orchestrator/workflows/: nothing to trust")
        return
    shown = []
    for path in files:
        lines = [process_masker().mask(line) for line in _what_it_allows(path)]
        state = trust_state(path, os.environ)
        shown.append({"path": str(path), "was": state, "allows": lines})
        if as_json:
            continue
        note = {"trusted": " (already trusted)", "changed": " (changed since trusted)"}.get(state, "")
        click.echo(f"{path.relative_to(root)}{note}")
        if lines:
            click.echo("  allows:")
            for line in lines:
                click.echo(f"    {line}")
        else:
            click.echo("  runs nothing and reads no variables")
    added = trust_files(files, os.environ)
    if as_json:
        print_json({"repo": str(root), "files": shown, "record": str(trust_path(os.environ))})
        return
    click.echo(f"trusted {len(added)} file(s), recorded in {trust_path(os.environ)}")
    click.echo(
        "a file that changes needs `orchestrator trust` again; `orchestrator trust --revoke` undoes this"
    )
