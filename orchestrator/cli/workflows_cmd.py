"""`orchestrator workflows list|show|validate`: what workflows there are, what one does, and whether a
file is valid (exit 2 when not, naming the file, the key path and what is allowed)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import click

from orchestrator.engine.workflow import (
    AttemptsStep,
    ConsensusStep,
    ForEachStep,
    GateStep,
    LoadedWorkflow,
    MergeStep,
    TaskStep,
    WorkflowListing,
    list_workflows,
    load_workflow,
    read_workflow_file,
)
from orchestrator.errors import ConfigError, UsageError

_SOURCE_LABEL = {"builtin": "built-in", "repo": "repository", "file": "file"}
LIST_WIDTH = 80

_repo_option = click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository whose .orchestrator/workflows/ to include (default: the one around the current directory).",
)


def find_repo_root(start: Path) -> Path | None:
    """The nearest directory from `start` upwards holding `.git` (a directory, or a worktree's file)."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _repo(repo: Path | None) -> Path | None:
    return repo if repo is not None else find_repo_root(Path.cwd().resolve())


@click.group()
def workflows() -> None:
    """List, show and validate workflows."""


@workflows.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_repo_option
def list_command(as_json: bool, repo: Path | None) -> None:
    """The repository's workflows, then the built-ins."""
    listings = list_workflows(_repo(repo))
    if as_json:
        click.echo(json.dumps([_listing_json(item) for item in listings], indent=2))
        return
    for line in listing_lines(listings, min(LIST_WIDTH, shutil.get_terminal_size((LIST_WIDTH, 24)).columns)):
        click.echo(line)


def _pack(parts: list[str], width: int, joint: str) -> list[str]:
    """`parts` joined by `joint` on lines of at most `width` (a part longer than that alone on its line);
    every line after the first starts with the joint, stripped, so a step chain reads on."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(joint) + len(part) <= width:
            lines[-1] += joint + part
        else:
            lines.append(part if not lines else f"{joint.strip()} {part}")
    return lines


def listing_lines(listings: list[WorkflowListing], width: int = LIST_WIDTH) -> list[str]:
    """`workflows list` for people: name, source, then the step chain and the description wrapped in
    a column of their own, so no row runs past `width` (80: a terminal's) unless one step alone does."""
    name_width = max((len(item.name) for item in listings), default=0)
    indent = " " * (name_width + 14)
    room = max(width - len(indent), 20)
    lines: list[str] = []
    for item in listings:
        head = f"{item.name:<{name_width}}  {_SOURCE_LABEL[item.source]:<10}  "
        if item.error is not None:
            body = textwrap.wrap(f"INVALID: {item.error.splitlines()[0]}", room)
        else:
            body = _pack(item.summary.split(" -> "), room, " -> ")
            if item.shadowed:
                body.insert(0, "(replaced by the repository's)")
            body += textwrap.wrap(item.description, room) if item.description else []
        lines += [(head if i == 0 else indent) + text for i, text in enumerate(body or [""])]
    return lines


@workflows.command("show")
@click.argument("name")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (the resolved workflow, as a run stores it)."
)
@_repo_option
def show_command(name: str, as_json: bool, repo: Path | None) -> None:
    """One workflow, by built-in name, repository name, or path (FILE#NAME picks one of several)."""
    loaded = load_workflow(name, repo=_repo(repo))
    if as_json:
        click.echo(json.dumps(_loaded_json(loaded), indent=2))
    else:
        click.echo(_render_loaded(loaded))


@workflows.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def validate_command(files: tuple[Path, ...]) -> None:
    """Check workflow files; every problem names the file, the key path and what is allowed."""
    invalid = 0
    for path in files:
        try:
            found = read_workflow_file(path)
        except ConfigError as exc:
            invalid += 1
            click.echo(f"invalid {exc}", err=True)
            continue
        names = ", ".join(fw.workflow.name for fw in found)
        click.echo(f"ok {path}: {names}")
        for note in dict.fromkeys(note for fw in found for note in fw.notes):
            click.echo(f"  note: {note}")
    if invalid:
        # An error, not ctx.exit(2): the top-level handler maps errors to their exit codes.
        raise UsageError(f"{invalid} of {len(files)} workflow file(s) are invalid")


def _listing_json(item: WorkflowListing) -> dict[str, Any]:
    return {
        "name": item.name,
        "source": item.source,
        "path": str(item.path),
        "description": item.description,
        "summary": item.summary,
        "shadowed": item.shadowed,
        "error": item.error,
    }


def _loaded_json(loaded: LoadedWorkflow) -> dict[str, Any]:
    return {
        "source": loaded.source,
        "path": str(loaded.path),
        "notes": list(loaded.notes),
        "workflow": loaded.workflow.model_dump(mode="json"),
    }


def _render_loaded(loaded: LoadedWorkflow) -> str:
    wf = loaded.workflow
    lines = [f"{wf.name}  ({_SOURCE_LABEL[loaded.source]}: {loaded.path})"]
    if wf.description:
        lines.append(wf.description)
    lines.append(
        f"max_iterations: {wf.max_iterations}   min_suggestions_threshold: {wf.min_suggestions_threshold}"
        f"   diff_base: {wf.diff_base}"
    )
    lines.append("steps:")
    for number, step in enumerate(wf.steps, 1):
        lines.append(f"  {number}. {_render_step(step)}")
    if any(step.task == "implement" for step in wf.task_steps):
        lines.append("later iterations skip implement and re-run the rest with the findings")
    for note in loaded.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _render_step(step: TaskStep | GateStep) -> str:
    if isinstance(step, GateStep):
        command = "auto (the repository's tests)" if step.is_auto else step.run
        flags = ", optional" if step.optional else ""
        return f"gate {step.label}: {command}  (timeout {step.timeout_s:g}s{flags})"
    if isinstance(step, MergeStep):
        return "merge the subtasks into the run branch, in dependency order"
    extras = [f"timeout {step.timeout_s:g}s"] if step.timeout_s is not None else []
    extras += [f"model {step.model}"] if step.model else []
    extras += ["optional"] if step.optional else []
    extras += ["read-only"] if step.read_only else []
    extras += [f"when {step.when}"] if step.when else []
    if isinstance(step, AttemptsStep):
        text = f"{step.task}, best of {len(step.attempts)}: {', '.join(step.attempts)} (select by {', '.join(step.select)})"
    elif isinstance(step, ForEachStep):
        text = f"{step.task} each subtask of the plan, by {', '.join(step.agents)} in turn"
    elif isinstance(step, ConsensusStep):
        text = f"{step.task} by {', '.join(step.reviewers)} at once (quorum {step.quorum})"
    else:
        text = f"{step.task} by {step.agent}"
    if extras:
        text += f"  ({', '.join(extras)})"
    if step.description:
        text += f": {step.description}"
    return text
