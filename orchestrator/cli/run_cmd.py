"""`orchestrator run "TASK"`: a workflow on a branch of its own, with a report at the end."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.common import config_option, print_json, settings_for
from orchestrator.cli.render import ConsoleRenderer
from orchestrator.cli.worker import run_cancellable
from orchestrator.engine.inputs import check_task, read_task_file
from orchestrator.engine.report import RunReport
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.errors import EXIT_INTERRUPTED, UsageError
from orchestrator.events import Notice, Subscriber
from orchestrator.workspace.git import Git
from orchestrator.workspace.run_locate import locate_repo

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def publish_outputs(report: RunReport, *, report_file: Path | None, summary_file: Path | None) -> None:
    if report_file is not None:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(report.to_json() + "\n", encoding="utf-8")
    from orchestrator.engine.report_render import render_markdown  # at the end of a run only

    markdown = render_markdown(report)
    if summary_file is not None:
        summary_file.parent.mkdir(parents=True, exist_ok=True)
        summary_file.write_text(markdown, encoding="utf-8")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")


def check_remote(where: Path, remote: str) -> None:
    """Fail before any agent runs (and spends) when --push names a remote the repository lacks."""
    result = Git(where, environ=os.environ).run("remote", "get-url", remote, check=False)
    if not result.ok:
        raise UsageError(
            f"cannot push to {remote!r}: {(result.stderr or result.stdout).strip()[-500:]}",
            hint=f"add it (git remote add {remote} URL) or name one that `git remote -v` lists",
        )


def push_branch(repo: Path, branch: str, remote: str) -> None:
    git = Git(repo, environ=os.environ)
    result = git.run("push", remote, f"refs/heads/{branch}:refs/heads/{branch}", check=False)
    if not result.ok:
        raise UsageError(
            f"could not push {branch} to {remote}: {(result.stderr or result.stdout).strip()[-500:]}",
            hint=f"check that the remote {remote!r} exists and accepts pushes (git remote -v)",
        )


def send_to_pushgateway(
    url: str, registry: CollectorRegistry, run_id: str, renderer: ConsoleRenderer
) -> None:
    """A push that fails is said, not fatal: the run's own result stands."""
    from orchestrator.metrics import push_metrics

    try:
        push_metrics(url, registry, run_id=run_id)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        text = f"could not push metrics to {url}: {exc}; the run's result stands"
        renderer.run_event(Notice(run_id=run_id, level="warning", text=text))


@click.command("run")
@click.argument("task", required=False)
@click.option(
    "--task-file",
    default=None,
    metavar="FILE",
    help="Read the task from FILE (`-`: stdin), for tasks too long for the command line.",
)
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The repository (default: the one holding the current directory; outside any, a new one).",
)
@click.option(
    "--workflow",
    default=None,
    help="A built-in name, a YAML file, or a name in <repo>/.orchestrator/workflows/.",
)
@click.option("--base", default="HEAD", show_default=True, help="The ref the run branches from.")
@click.option(
    "--include-uncommitted",
    is_flag=True,
    help="Copy your staged, unstaged and untracked changes in as the run's first commit.",
)
@click.option(
    "--budget-usd", type=float, default=None, help="Stop when the run's agents have spent this much."
)
@click.option(
    "--timeout", "timeout_s", type=float, default=None, help="Stop the run after this many seconds."
)
@click.option(
    "--max-iterations",
    type=click.IntRange(1, 50),
    default=None,
    help="Override the workflow's max_iterations.",
)
@click.option(
    "--agent",
    "agent_overrides",
    multiple=True,
    metavar="TASK=AGENT",
    help="Who does what, e.g. --agent review=gemini (repeatable).",
)
@click.option(
    "--no-base-gates",
    "no_base_gates",
    is_flag=True,
    help="Do not run the gates on the base as well (for slow suites; see `base_gates:`).",
)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the JSON report to this file.",
)
@click.option(
    "--summary",
    "summary_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY).",
)
@click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the run's Prometheus metrics there (text format, e.g. for node_exporter's textfile collector).",
)
@click.option(
    "--pushgateway",
    "pushgateway",
    default=None,
    metavar="URL",
    help="Push the run's Prometheus metrics to this Pushgateway at the end (job orchestrator, run_id label).",
)
@click.option(
    "--cluster",
    "on_cluster",
    is_flag=True,
    help="Run on the cluster's workers (Temporal); the default whenever cluster.temporal is configured.",
)
@click.option(
    "--remote",
    "cluster_remote",
    default=None,
    metavar="NAME|URL",
    help="With --cluster: the remote (or git URL) workers fetch from and push the run branch to "
    "(default: cluster.remote, else this repository's path).",
)
@click.option(
    "--push",
    "push_remote",
    default=None,
    metavar="REMOTE",
    help="Push the run branch to this remote at the end.",
)
def run(
    task: str | None,
    task_file: str | None,
    repo: Path | None,
    workflow: str | None,
    base: str,
    include_uncommitted: bool,
    budget_usd: float | None,
    timeout_s: float | None,
    max_iterations: int | None,
    agent_overrides: tuple[str, ...],
    no_base_gates: bool,
    config_path: Path | None,
    as_json: bool,
    report_file: Path | None,
    summary_file: Path | None,
    push_remote: str | None,
    metrics_file: Path | None,
    pushgateway: str | None,
    on_cluster: bool,
    cluster_remote: str | None,
) -> None:
    """Run a workflow on TASK (or --task-file). Exit 0 only when the review approved and the gates
    passed."""
    if (task is None) == (task_file is None):
        raise UsageError(
            "give the task as an argument or with --task-file, not both"
            if task is not None
            else "no task given",
            hint='orchestrator run "TASK", or orchestrator run --task-file FILE (`-` reads stdin)',
        )
    task = check_task(task) if task is not None else read_task_file(task_file or "-")
    if config_path is None and os.environ.get("ORCHESTRATOR_CONFIG"):
        config_path = Path(os.environ["ORCHESTRATOR_CONFIG"])
    cwd = Path.cwd()
    # The repository is located once, for the settings and for the run.
    location = locate_repo(repo or cwd, environ=os.environ)
    loaded = settings_for(config_path, repo or cwd, location=location)
    on_cluster = on_cluster or loaded.settings.cluster.enabled
    cluster_agents: tuple[str, ...] = ()
    if cluster_remote is not None and not on_cluster:
        raise UsageError(
            "--remote is where a cluster run's workers fetch from: it needs --cluster",
            hint="add --cluster (and a `cluster:` configuration), or use --push REMOTE to push the run branch",
        )
    if on_cluster:
        from orchestrator.cli.cluster_cmd import check_cluster_run

        # Before anything is created: exit 2 when unreachable.
        cluster_agents = check_cluster_run(loaded.settings)
    service = RunService(settings=loaded.settings, env=os.environ)
    spec = RunSpec(
        task=task,
        cwd=cwd,
        repo=repo,
        workflow=workflow,
        base=base,
        include_uncommitted=include_uncommitted,
        budget_usd=budget_usd,
        timeout_s=timeout_s,
        max_iterations=max_iterations,
        agent_overrides=agent_overrides,
        config_path=config_path,
        base_gates=False if no_base_gates else None,
        cluster=on_cluster,
        cluster_agents=cluster_agents,
        remote=cluster_remote,
    )
    try:
        if push_remote:
            check_remote(repo or cwd, push_remote)
        record = service.create(spec, location=location)
        renderer = ConsoleRenderer(stream=sys.stderr)
        subscribers: list[Subscriber] = [renderer.run_event]
        registry = None
        if metrics_file is not None or pushgateway:
            from prometheus_client import CollectorRegistry

            from orchestrator.metrics import metrics_subscriber

            registry = CollectorRegistry()
            subscribers.append(metrics_subscriber(registry))
        if on_cluster:
            from orchestrator.cli.cluster_cmd import run_on_cluster

            report, interrupted = run_on_cluster(service, record, subscribers)
        else:
            report, interrupted = run_cancellable(
                lambda cancel: service.execute(record.id, subscribers=subscribers, cancel=cancel)
            )
        publish_outputs(report, report_file=report_file, summary_file=summary_file)
        if registry is not None and metrics_file is not None:
            from prometheus_client import write_to_textfile

            metrics_file.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(metrics_file), registry)
        if registry is not None and pushgateway:
            send_to_pushgateway(pushgateway, registry, record.id, renderer)
        if push_remote:
            push_branch(Path(record.repo), record.branch, push_remote)
            renderer.run_event(Notice(run_id=record.id, text=f"pushed {record.branch} to {push_remote}"))
        if as_json:
            print_json(report.model_dump(mode="json"))
        else:
            from orchestrator.engine.report_render import render_text  # at the end of a run only

            click.echo(render_text(report))
    finally:
        service.close()
    sys.exit(EXIT_INTERRUPTED if interrupted else report.exit_code)
