"""`orchestrator worker` and the cluster side of `orchestrator run` (`--cluster`, or whenever
`cluster.temporal` is configured) and of `runs resume`: the run goes to a pool of workers as a Temporal
workflow; this process follows its events from the shared store and renders them exactly as a local
run does (the same renderer, report and exit codes). Ctrl-C cancels it (exit 130, as locally)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.common import config_option, settings_for
from orchestrator.cli.worker import run_cancellable
from orchestrator.config import Settings
from orchestrator.engine.follow_ups import next_follow_up
from orchestrator.engine.report import RunReport, build_report
from orchestrator.engine.service import RunService
from orchestrator.engine.workflow import Workflow
from orchestrator.errors import GitError
from orchestrator.events import FollowUp, Notice, RunEvent
from orchestrator.retries import short
from orchestrator.secrets import mask_urls, masked_url
from orchestrator.store import RunRecord, Store

if TYPE_CHECKING:
    from orchestrator.cluster.worker import WorkerPlan


def run_on_cluster(
    service: RunService,
    record: RunRecord,
    subscribers: Sequence[Callable[[RunEvent], None]],
    *,
    resume: bool = False,
    follow_up: FollowUpAsked | None = None,
    runner: Callable[[Callable[[threading.Event], RunReport]], tuple[RunReport, bool]] = run_cancellable,
) -> tuple[RunReport, bool]:
    """Submits (or resubmits) `record` and follows it to its end: (report, interrupted). `runner` waits
    for the following (the shell passes its own, which returns to the prompt on Ctrl-C). A `follow_up`
    goes into the run's event log first (cluster_follow_up): the workers' engine, resuming the run,
    continues it from there (engine/follow_ups.py)."""
    from orchestrator.cluster import submit
    from orchestrator.cluster.watch import check_queues

    settings = service.settings
    store = service.store
    resume = resume or follow_up is not None
    after = store.last_seq(record.id) if resume else 0
    if follow_up is not None:
        # Followed (and shown) below, like the run's own events.
        cluster_follow_up(store, record.id, follow_up.text, source=follow_up.source)
    if not resume and record.worktree and (Path(record.worktree) / ".git").exists():
        # The run's repository is the workers' (made from their mirrors). This machine made one only
        # to carry uncommitted work onto another base; it would only go stale: `runs diff` and the
        # rest read the run's tip.
        service.workspace(record.id).remove_worktree()
    # This machine's CLIs do not matter (the workers check theirs): does any worker serve this run?
    missing = check_queues(settings, Workflow.model_validate(record.workflow).agents or ("fake",))
    if missing is not None:
        for subscriber in subscribers:
            subscriber(Notice(run_id=record.id, level="warning", text=missing))
    submit.submit(settings, store, record, service.env, resume=resume)

    def follow(cancel: threading.Event) -> RunReport:
        submit.follow(
            store,
            record.id,
            subscribers,
            after_seq=after,
            cancel=cancel,
            on_cancel=lambda: submit.request_cancel(settings, store, record.id, "run --cluster (Ctrl-C)"),
            settings=settings,
        )
        submit.wait_closed(settings, record.id)  # the last step's push has landed
        fetch_back_or_say(record, service.env, subscribers)
        return build_report(store, record.id)

    return runner(follow)


@dataclass(frozen=True)
class FollowUpAsked:
    text: str
    source: str  # who asks: "the shell", "the dashboard"


def cluster_follow_up(store: Store, run_id: str, text: str, *, source: str) -> FollowUp:
    """Records a follow-up on a finished cluster run and sets it running, for its workflow to be
    started again (run_on_cluster, the dashboard). A run still running on the cluster is refused: its
    submitter follows it to its RunFinished, and nothing on the cluster would take a follow-up queued
    behind it."""
    return store.continue_cluster_run(run_id, lambda run: next_follow_up(run, text, source=source))


def fetch_back_or_say(
    record: RunRecord, env: Mapping[str, str], subscribers: Sequence[Callable[[RunEvent], None]]
) -> None:
    """The run branch into the user's repository. A fetch that fails (the remote went away) is said,
    not fatal: the run's result stands, and its branch is on the remote."""
    from orchestrator.cluster import submit

    try:
        submit.fetch_back(record, env)
    except GitError as exc:
        url = masked_url(submit.repo_url_of(record))
        ref = f"refs/heads/{record.branch}"
        text = (
            f"could not fetch the run branch from {url}: {short(mask_urls(exc.message), 600)}; the run's "
            f"result stands and its branch is there (git fetch {url} {ref}:{ref})"
        )
        for subscriber in subscribers:
            subscriber(Notice(run_id=record.id, level="warning", text=text))


def check_cluster_run(settings: Settings) -> tuple[str, ...]:
    """`run --cluster` needs the cluster's configuration and a reachable Temporal (exit 2 otherwise).
    Returns the CLIs its workers serve now (RunSpec.cluster_agents)."""
    from orchestrator.cluster.client import check_cluster
    from orchestrator.cluster.watch import reachable_and_served

    check_cluster(settings, os.environ)
    return reachable_and_served(settings)


@click.command("worker")
@click.option(
    "--agents",
    default=None,
    metavar="A,B",
    help="Serve only these CLIs (default: every real CLI that is ready here).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Steps at once on this worker, across all its queues.",
)
@click.option("--name", default=None, help="This worker's name in Temporal (default: HOST-PID).")
@click.option(
    "--sweep-every",
    "sweep_every_s",
    type=click.FloatRange(0.1, 86400),
    default=300,  # cluster/cleanup.py SWEEP_EVERY_S (not imported here: the CLI starts fast)
    show_default=True,
    metavar="SECONDS",
    help="How often to remove finished runs' repositories from this machine (cluster.keep_finished_runs_s"
    " says how long they stay).",
)
@config_option
def worker(
    agents: str | None, concurrency: int, name: str | None, sweep_every_s: float, config_path: Path | None
) -> None:
    """Serve this machine's ready coding CLIs to the cluster until SIGTERM or Ctrl-C."""
    from orchestrator.cluster.worker import check_cluster, plan_worker, serve

    loaded = settings_for(config_path, Path.cwd())
    settings = loaded.settings
    check_cluster(settings, os.environ)
    names = [a.strip() for a in (agents or "").split(",") if a.strip()]
    plan = plan_worker(settings, os.environ, agents=names, concurrency=concurrency, name=name)
    # Opens the shared store once (a clear error if it is unreachable) and ends what a killed worker
    # of this state home left running (process records).
    RunService(settings=settings, env=os.environ).close()

    def say_ready(plan: WorkerPlan) -> None:
        click.echo(
            f"worker {plan.name} (pid {os.getpid()}) ready: agents {', '.join(plan.agents)}; "
            f"{len(plan.queues)} step queue(s), concurrency {plan.concurrency}",
            err=True,
        )

    asyncio.run(serve(plan, settings, os.environ, ready=say_ready, sweep_every_s=sweep_every_s))
    click.echo(f"worker {plan.name} stopped", err=True)
    sys.exit(0)
