"""`orchestrator runs list|show|diff|log|rollback|resume|merge|discard`."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import config_option, print_json, repo_root_of, settings_for
from orchestrator.cli.render import ConsoleRenderer
from orchestrator.cli.worker import run_cancellable
from orchestrator.engine.report import build_report
from orchestrator.engine.report_render import render_text
from orchestrator.engine.service import RunService
from orchestrator.errors import EXIT_INTERRUPTED, RunNotFound, UsageError
from orchestrator.events import Notice
from orchestrator.store import RunRecord, Store
from orchestrator.workspace.run_workspace import UNCOMMITTED_STEP

if TYPE_CHECKING:
    from orchestrator.workspace.merge import MergeResult


def _service(config_path: Path | None, *, runs_agents: bool = False) -> RunService:
    # Listing, showing, merging or discarding runs no agent: a repository's untrusted commands are
    # left out rather than refused (trust.py). Resume runs agents, and needs the trust.
    loaded = settings_for(config_path, Path.cwd(), drop_untrusted=not runs_agents)
    return RunService(settings=loaded.settings, env=os.environ)


def find_run(service: RunService, run_ref: str) -> RunRecord:
    """A run by id, by a unique prefix of it, or `last` (the newest run of this repository)."""
    if run_ref == "last":
        repo = repo_root_of(Path.cwd())
        runs = service.store.list_runs(repo=repo, limit=1) if repo else service.store.list_runs(limit=1)
        if not runs:
            raise RunNotFound("there are no runs yet", hint='start one with `orchestrator run "TASK"`')
        return runs[0]
    matches = [r for r in service.store.list_runs(limit=10_000) if r.id.startswith(run_ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run {run_ref!r}", hint="`orchestrator runs list` shows the runs")
    raise UsageError(f"{run_ref!r} matches {len(matches)} runs", hint="give more of the run id")


def run_summary_json(store: Store, run: RunRecord, *, now: float | None = None) -> dict[str, Any]:
    """One run as `runs list --json` (and the dashboard's /api/runs) shows it: the record without its
    resolved workflow, plus what it cost, which agents its workflow names, how long it took, and
    whether it is stale (still "running" in the store, but its process is gone)."""
    data: dict[str, Any] = run.model_dump(mode="json", exclude={"workflow"})
    steps = run.workflow.get("steps", [])
    end = run.finished_at if run.finished_at is not None else (now if now is not None else time.time())
    data["agents"] = list(dict.fromkeys(s["agent"] for s in steps if isinstance(s, dict) and s.get("agent")))
    data["cost_usd"] = store.usage_total(run.id).cost_usd
    data["duration_s"] = round(max(end - run.created_at, 0.0), 3)
    data["stale"] = run.status == "running" and not store.owner_alive(run.owner_pid, run.owner_token)
    return data


def rollback_run(service: RunService, run: RunRecord, to: str) -> tuple[str, str]:
    """Move the run branch back to after step `to` (a step id, `base`, or a commit). Returns (target
    commit, backup ref). What is removed stays reachable under the backup ref."""
    ws = service.workspace(run.id)
    target = ws.first if to == "base" else ws.commit_for_step(to)
    if target is None:
        target = to  # a commit of the run
    kept = ws.rollback(target)
    service.audit.repo_write(
        "rollback", repo=run.repo, ref=run.branch, commit=target, run_id=run.id, backup_ref=kept
    )
    text = f"rolled back to {to} ({target[:10]}); what was removed is kept at {kept}"
    service.store.add_event(run.id, Notice(run_id=run.id, level="warning", text=text))
    return target, kept


@dataclass(frozen=True)
class UndoneStep:
    step_id: str  # the step whose commit was undone
    agent: str | None
    commit: str
    files: list[str]
    to: str  # the step now at the branch's tip, or `base`
    target: str  # the branch's new tip
    backup_ref: str  # where the undone commit is kept


def rollback_last_step(service: RunService, run: RunRecord) -> UndoneStep:
    """Undo the run's last editing step: the branch moves back to the commit before it (the previous
    step's, or the run's start) through `rollback_run`, so the undone commit stays under a backup ref."""
    commits = service.workspace(run.id).log()
    last = commits[-1] if commits else None
    if last is None or last.step_id in (None, UNCOMMITTED_STEP):
        raise UsageError(
            f"run {run.id} has no step commit to undo",
            hint="`orchestrator runs log` shows its commits; `runs rollback --to` moves the branch anywhere",
        )
    before = commits[-2] if len(commits) > 1 else None
    to = before.step_id if before is not None and before.step_id not in (None, UNCOMMITTED_STEP) else None
    if to is None:
        to = before.sha if before is not None and before.step_id is None else "base"
    target, kept = rollback_run(service, run, to)
    return UndoneStep(last.step_id, last.agent, last.sha, last.files, to, target, kept)


def merge_run_into(service: RunService, run: RunRecord, target: str | None) -> MergeResult:
    """Merge the run branch into `target` (default: the checked-out branch), in the audit trail."""
    result = service.workspace(run.id).merge_into(target)
    if not result.up_to_date:
        service.audit.repo_write(
            "merge",
            repo=run.repo,
            ref=result.target_branch,
            commit=result.after,
            run_id=run.id,
            run_branch=result.run_branch,
            before=result.before,
            fast_forward=result.fast_forward,
        )
    return result


def discard_run(service: RunService, run: RunRecord) -> str:
    """Remove the run's worktree and branch; returns the backup ref that keeps its commits. Refused
    while the process that runs it is alive: its agent works in that worktree."""
    current = service.store.get_run(run.id)
    if current.status == "running" and service.store.owner_alive(current.owner_pid, current.owner_token):
        raise UsageError(
            f"run {run.id} is running (process {current.owner_pid}); discarding it would remove the "
            "folder its agent works in",
            hint=f"stop it first (Ctrl-C where it runs, or kill {current.owner_pid}), then discard it",
        )
    kept = service.workspace(run.id).discard()
    service.audit.repo_write("discard", repo=run.repo, ref=run.branch, run_id=run.id, backup_ref=kept)
    service.store.add_event(run.id, Notice(run_id=run.id, level="warning", text=f"discarded; kept at {kept}"))
    return kept


def settle_cluster_run(service: RunService, run: RunRecord) -> RunRecord:
    """A cluster run the store says is running, while no submitter follows it: when its workflow is
    gone (terminated, lost), it is ended as failed here (cluster/watch.py), so that `runs show` tells
    the truth and `runs resume` can submit it again. `runs list` does not ask Temporal per run."""
    if run.status != "running" or not service.settings.cluster.enabled:
        return run
    if not service.store.is_cluster_run(run.id):
        return run
    from orchestrator.cluster.watch import settle_vanished

    settle_vanished(service.settings, service.store, run.id)
    return service.store.get_run(run.id)


@click.group("runs")
def runs() -> None:
    """Inspect and manage runs (a run id, a unique prefix of one, or `last`)."""


@runs.command("list")
@click.option("--all", "all_repos", is_flag=True, help="Runs of every repository, not only this one.")
@click.option("--limit", type=int, default=20, show_default=True)
@config_option
@click.option("--json", "as_json", is_flag=True)
def list_cmd(all_repos: bool, limit: int, config_path: Path | None, as_json: bool) -> None:
    """The newest runs (of the repository here, unless --all)."""
    service = _service(config_path)
    repo = None if all_repos else repo_root_of(Path.cwd())
    found = service.store.list_runs(repo=repo, limit=limit)
    if as_json:
        print_json([run_summary_json(service.store, r) for r in found])
        return
    if not found:
        click.echo("no runs yet" + ("" if all_repos else " in this repository (try --all)"))
    for r in found:
        cost = service.store.usage_total(r.id).cost_usd
        cost_text = f"${cost:.4f}" if cost is not None else "-"
        click.echo(f"{r.id}  {r.status:<15} {r.workflow_name:<12} {cost_text:>9}  {r.task[:60]}")


@runs.command("show")
@click.argument("run_ref")
@config_option
@click.option("--json", "as_json", is_flag=True)
def show_cmd(run_ref: str, config_path: Path | None, as_json: bool) -> None:
    """The run's report."""
    service = _service(config_path)
    run = settle_cluster_run(service, find_run(service, run_ref))
    report = build_report(service.store, run.id)
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        click.echo(render_text(report))


@runs.command("diff")
@click.argument("run_ref")
@config_option
@click.option("--stat", is_flag=True, help="Only the list of changed files.")
@click.option("--json", "as_json", is_flag=True)
def diff_cmd(run_ref: str, config_path: Path | None, stat: bool, as_json: bool) -> None:
    """What the run changed since its base."""
    service = _service(config_path)
    diff = service.workspace(find_run(service, run_ref).id).diff(max_bytes=10_000_000)
    if as_json:
        print_json({"files": diff.files, "diff": diff.text, "truncated": diff.truncated})
    elif stat:
        click.echo("\n".join(diff.files))
    else:
        click.echo(diff.text, nl=False)


@runs.command("log")
@click.argument("run_ref")
@config_option
@click.option("--json", "as_json", is_flag=True)
def log_cmd(run_ref: str, config_path: Path | None, as_json: bool) -> None:
    """The run branch's commits: one per editing step, with the agent that made it."""
    service = _service(config_path)
    commits = service.workspace(find_run(service, run_ref).id).log()
    if as_json:
        print_json([asdict(c) for c in commits])
        return
    for c in commits:
        click.echo(
            f"{c.sha[:10]}  {c.step_id or '-':<18} {c.agent or '-':<8} {c.subject}  ({len(c.files)} files)"
        )


@runs.command("rollback")
@click.argument("run_ref")
@click.option("--to", "to", required=True, help="A step id (e.g. i1-s1-implement), `base`, or a commit.")
@config_option
@click.option("--json", "as_json", is_flag=True)
def rollback_cmd(run_ref: str, to: str, config_path: Path | None, as_json: bool) -> None:
    """Move the run branch back to after a step. What it removes stays under a backup ref."""
    service = _service(config_path)
    run = find_run(service, run_ref)
    target, kept = rollback_run(service, run, to)
    if as_json:
        print_json({"run_id": run.id, "branch": run.branch, "head": target, "backup_ref": kept})
    else:
        click.echo(f"{run.branch} is now at {target[:10]}; what was removed is kept at {kept}")


@runs.command("resume")
@click.argument("run_ref")
@config_option
@click.option("--json", "as_json", is_flag=True)
def resume_cmd(run_ref: str, config_path: Path | None, as_json: bool) -> None:
    """Go on with an interrupted run from its last completed step (with the --config it was started
    with, unless another is given)."""
    service = _service(config_path, runs_agents=True)
    run = find_run(service, run_ref)
    remembered = run.options.config_path
    if config_path is None and remembered is not None:
        if not Path(remembered).is_file():
            raise UsageError(
                f"run {run.id} was started with --config {remembered}, which no longer exists",
                hint="pass --config FILE to resume it with another configuration",
            )
        service.close()
        service = _service(Path(remembered), runs_agents=True)
    run = settle_cluster_run(service, run)
    if run.status == "running":
        raise UsageError(f"run {run.id} is still running", hint="wait for it, or stop its process first")
    renderer = ConsoleRenderer(stream=sys.stderr)
    if service.store.is_cluster_run(run.id):
        # A cluster run is resubmitted under its own id (cluster/submit.py says why).
        from orchestrator.cli.cluster_cmd import check_cluster_run, run_on_cluster

        check_cluster_run(service.settings)
        report, interrupted = run_on_cluster(service, run, [renderer.run_event], resume=True)
    else:
        report, interrupted = run_cancellable(
            lambda cancel: service.execute(
                run.id, subscribers=[renderer.run_event], cancel=cancel, resume=True
            )
        )
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        click.echo(render_text(report))
    sys.exit(EXIT_INTERRUPTED if interrupted else report.exit_code)


@runs.command("merge")
@click.argument("run_ref")
@click.option("--into", "target", default=None, help="Branch to merge into (default: your current branch).")
@config_option
@click.option("--json", "as_json", is_flag=True)
def merge_cmd(run_ref: str, target: str | None, config_path: Path | None, as_json: bool) -> None:
    """Merge the run branch into your branch. Refuses if that would overwrite uncommitted changes."""
    service = _service(config_path)
    run = find_run(service, run_ref)
    result = merge_run_into(service, run, target)
    if as_json:
        print_json(asdict(result))
    elif result.up_to_date:
        click.echo(f"{result.target_branch} already has everything from {result.run_branch}")
    else:
        how = "fast-forward" if result.fast_forward else "merge commit"
        click.echo(
            f"merged {result.run_branch} into {result.target_branch} ({how}, {len(result.files)} files)"
        )


@runs.command("discard")
@click.argument("run_ref")
@config_option
@click.option("--json", "as_json", is_flag=True)
def discard_cmd(run_ref: str, config_path: Path | None, as_json: bool) -> None:
    """Remove the run's worktree and branch. Its commits stay reachable under a backup ref."""
    service = _service(config_path)
    run = find_run(service, run_ref)
    kept = discard_run(service, run)
    if as_json:
        print_json({"run_id": run.id, "backup_ref": kept})
    else:
        click.echo(f"discarded {run.branch}; its commits are kept at {kept} (git log {kept})")
