"""The shell's session: the workflow and agents for the next run, the current run, and what each
/command does. Runs go through the RunService and the helpers the `run` and `runs` commands use; the
session adds only its state and its words.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from orchestrator.adapters import REAL_AGENTS
from orchestrator.cli.agents_cmd import check_agents
from orchestrator.cli.common import repo_root_of
from orchestrator.cli.runs_cmd import discard_run, rollback_last_step
from orchestrator.cli.shell.commands import Command, Invalid, Message, Parsed, help_text
from orchestrator.cli.shell.progress import ProgressView, format_summary, format_tokens
from orchestrator.cli.worker import run_interruptible
from orchestrator.config import LoadedSettings
from orchestrator.engine.report import RunReport, build_report
from orchestrator.engine.report_group_lines import WIDTH, group_lines
from orchestrator.engine.report_render import format_cost
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.engine.workflow import apply_agent_overrides, list_workflows, load_workflow
from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.store import RunRecord, TokenUsage

DIFF_MAX_BYTES = 10_000_000


def short_run_id(run_id: str) -> str:
    """'20261121-061502-a1b2c3' -> '061502-a1b2' (for the prompt)."""
    parts = run_id.split("-")
    if len(parts) == 3 and len(parts[0]) == 8 and parts[0].isdigit():
        return f"{parts[1]}-{parts[2][:4]}"
    return run_id[:12]


@dataclass
class ShellSession:
    service: RunService
    loaded: LoadedSettings
    cwd: Path
    repo: Path | None
    workflow_spec: str
    out: TextIO
    plain: bool
    run_id: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)  # task -> agent, for the next new run
    workflow_name: str = ""
    # How a run is waited for (the REPL passes Ctrl-C to it); tests may replace it.
    runner: Callable[..., tuple[RunReport, bool]] = field(default=run_interruptible)

    def __post_init__(self) -> None:
        loaded = load_workflow(self.workflow_spec, repo=self._repo())
        self.workflow_name = loaded.workflow.name

    # --- the prompt and the dispatch ---------------------------------------------------------------

    def prompt(self) -> str:
        inside = self.workflow_name + (f" {short_run_id(self.run_id)}" if self.run_id else "")
        return f"orchestrator[{inside}]> "

    def handle(self, parsed: Parsed) -> bool:
        """Act on one parsed line; False when the shell should end."""
        try:
            if parsed is None:
                return True
            if isinstance(parsed, Invalid):
                self.say(f"{parsed.error}\n  {parsed.hint}")
            elif isinstance(parsed, Message):
                self.send(parsed.text)
            elif isinstance(parsed, Command):
                return self.command(parsed)
        except OrchestratorError as exc:
            self.say(f"error: {exc}")
        return True

    def command(self, cmd: Command) -> bool:
        if cmd.name == "/exit":
            return False
        actions: dict[str, Callable[[tuple[str, ...]], None]] = {
            "/help": lambda _: self.say(help_text()),
            "/new": self.new,
            "/workflow": self.workflow,
            "/agent": self.agent,
            "/agents": lambda _: self.agents(),
            "/status": lambda _: self.status(),
            "/groups": lambda _: self.groups(),
            "/diff": lambda _: self.diff(),
            "/log": lambda _: self.log(),
            "/undo": lambda _: self.undo(),
            "/merge": lambda _: self.merge(),
            "/discard": lambda _: self.discard(),
            "/cost": lambda _: self.cost(),
            "/runs": lambda _: self.runs(),
        }
        actions[cmd.name](cmd.args)
        return True

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # --- messages: a new run, or a follow-up on the current one -------------------------------------

    def send(self, text: str) -> None:
        run_id = self.run_id
        on_cluster = self.service.settings.cluster.enabled
        cluster_run = run_id is not None and self.service.store.is_cluster_run(run_id)
        view = ProgressView(self.out, plain=self.plain)
        started: dict[str, str] = {}

        def work(cancel: threading.Event) -> RunReport:
            if run_id is not None:
                return self.service.execute(run_id, subscribers=[view.event], cancel=cancel, follow_up=text)
            record = self.service.create(
                RunSpec(
                    task=text,
                    cwd=self.cwd,
                    repo=self.repo,
                    workflow=self.workflow_spec,
                    agent_overrides=[f"{task}={agent}" for task, agent in self.overrides.items()],
                )
            )
            started["id"] = record.id
            return self.service.execute(record.id, subscribers=[view.event], cancel=cancel)

        def interrupted(first: bool) -> None:
            view.line(
                "cancelling the current step..."
                if first
                else "still cancelling: waiting for the step's processes to end"
            )

        view.start()
        try:
            if run_id is not None and cluster_run:
                report, cancelled = self._follow_up_on_cluster(run_id, text, view, interrupted)
            elif run_id is None and on_cluster:
                report, cancelled = self._send_to_cluster(text, view, started, interrupted)
            else:
                report, cancelled = self.runner(work, interrupted)
        finally:
            view.stop()
            if run_id is None and "id" in started:
                self.run_id = started["id"]
        for line in self._group_lines(report):
            self.say(line)
        view.line(format_summary(report), "bold")
        if (cancelled or report.status in ("cancelled", "interrupted")) and self.run_id is not None:
            if self.service.store.is_cluster_run(self.run_id):
                self.say(
                    f"`orchestrator runs resume {self.run_id}` goes on with it on the cluster; your next "
                    "message follows up on this run and branch (on the cluster); /new starts a fresh run"
                )
            else:
                self.say("your next message follows up on this run and branch; /new starts a fresh run")

    def _send_to_cluster(
        self,
        text: str,
        view: ProgressView,
        started: dict[str, str],
        interrupted: Callable[[bool], None],
    ) -> tuple[RunReport, bool]:
        """A new run submitted to the cluster (cluster.temporal is configured), as `run` does; Ctrl-C
        cancels it on its worker and comes back to the prompt."""
        from orchestrator.cli.cluster_cmd import check_cluster_run, run_on_cluster

        cluster_agents = check_cluster_run(self.service.settings)
        record = self.service.create(
            RunSpec(
                task=text,
                cwd=self.cwd,
                repo=self.repo,
                workflow=self.workflow_spec,
                agent_overrides=self._override_list(),
                cluster=True,
                cluster_agents=cluster_agents,
            )
        )
        started["id"] = record.id
        return run_on_cluster(
            self.service, record, [view.event], runner=lambda work: self.runner(work, interrupted)
        )

    def _follow_up_on_cluster(
        self, run_id: str, text: str, view: ProgressView, interrupted: Callable[[bool], None]
    ) -> tuple[RunReport, bool]:
        """A follow-up on a cluster run: recorded in the run's event log and the run resubmitted, as
        `runs resume` does; its steps run on the workers, this shell follows them."""
        from orchestrator.cli.cluster_cmd import FollowUpAsked, check_cluster_run, run_on_cluster

        run = self.service.store.get_run(run_id)
        if not self.service.settings.cluster.enabled:
            raise UsageError(
                f"run {run_id} runs on the cluster, and this shell has no cluster configured",
                hint="start the shell with the cluster's configuration (`cluster: {temporal: ...}`)",
            )
        check_cluster_run(self.service.settings)
        return run_on_cluster(
            self.service,
            run,
            [view.event],
            follow_up=FollowUpAsked(text, "the shell"),
            runner=lambda work: self.runner(work, interrupted),
        )

    # --- commands ----------------------------------------------------------------------------------

    def new(self, args: tuple[str, ...]) -> None:
        if self.run_id is not None:
            run = self._run()
            self.say(f"left run {run.id} (branch {run.branch} stays; `orchestrator runs` manages it)")
        self.run_id = None
        if args:
            self.send(args[0])
        else:
            self.say(f"your next message starts a new run with workflow {self.workflow_name}")

    def workflow(self, args: tuple[str, ...]) -> None:
        if not args:
            self.say(f"workflow for the next new run: {self.workflow_name}")
            for listing in list_workflows(self._repo()):
                if listing.error is not None or listing.shadowed:
                    continue
                mark = "*" if listing.name == self.workflow_name else " "
                self.say(f" {mark} {listing.name:<14} {listing.summary or listing.description}")
            return
        loaded = load_workflow(args[0], repo=self._repo())
        apply_agent_overrides(loaded.workflow, self._override_list())  # refuses overrides it cannot take
        self.workflow_spec, self.workflow_name = args[0], loaded.workflow.name
        self.say(f"workflow {self.workflow_name}: {loaded.workflow.summary()}")
        self._next_run_note()

    def agent(self, args: tuple[str, ...]) -> None:
        if not args:
            shown = ", ".join(self._override_list()) or "as the workflow says"
            self.say(f"agents for the next new run: {shown}")
            return
        if args[0] == "clear":
            self.overrides.clear()
            self.say("agents for the next new run: as the workflow says")
            return
        task, _, agent = (part.strip() for part in args[0].partition("="))
        wanted = {**self.overrides, task: agent}
        loaded = load_workflow(self.workflow_spec, repo=self._repo())
        apply_agent_overrides(loaded.workflow, [f"{t}={a}" for t, a in wanted.items()])
        self.overrides = wanted
        self.say(f"{task} by {agent} from the next new run on")
        self._next_run_note()

    def agents(self) -> None:
        names = list(dict.fromkeys([*REAL_AGENTS, *self.loaded.settings.fallback_order]))
        for row in check_agents(self.loaded, tuple(names)):
            if row.ready:
                version = row.version or "?"
                if row.version and not row.version_tested:
                    version += f" (tested: {row.tested_version})"
                self.say(f"  {row.agent:<8} ready      {version}  auth: {row.auth_source or '-'}")
            else:
                fix = f" (fix: {row.fix})" if row.fix else ""
                self.say(f"  {row.agent:<8} not ready  {row.reason}{fix}")

    def status(self) -> None:
        agents = ", ".join(self._override_list())
        self.say(f"workflow for new runs: {self.workflow_name}" + (f"; agents: {agents}" if agents else ""))
        if self.run_id is None:
            self.say("no run yet: type a task to start one")
            return
        report = build_report(self.service.store, self.run_id)
        self.say(f"run {report.run_id}: {format_summary(report)}")
        self.say(f"task: {report.task}")
        for step in report.steps:
            commit = f" commit {step.commit[:10]}" if step.commit else ""
            self.say(f"  {step.id:<20} {step.agent:<8} {step.status}{commit}")
        for line in self._group_lines(report):
            self.say(line)

    def groups(self) -> None:
        report = build_report(self.service.store, self._run().id)
        lines = self._group_lines(report)
        for line in lines or ["this run has no attempts, consensus reviews or subtasks"]:
            self.say(line)

    def _group_lines(self, report: RunReport) -> list[str]:
        """The run's groups at the terminal's width (at most 80 columns: what the lines are laid out for)."""
        width = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
        return group_lines(report.attempts, report.reviews, report.subtasks, report.routing, max(width, 40))

    def diff(self) -> None:
        run = self._run()
        diff = self.service.workspace(run.id).diff(max_bytes=DIFF_MAX_BYTES)
        if not diff.text.strip():
            self.say(f"no changes on {run.branch} since its base")
            return
        self.out.write(diff.text if diff.text.endswith("\n") else diff.text + "\n")
        self.out.flush()

    def log(self) -> None:
        run = self._run()
        commits = self.service.workspace(run.id).log()
        if not commits:
            self.say(f"no commits on {run.branch} since its base")
        for c in commits:
            self.say(
                f"{c.sha[:10]}  {c.step_id or '-':<18} {c.agent or '-':<8} {c.subject}  ({_files(len(c.files))})"
            )

    def undo(self) -> None:
        run = self._run()
        undone = rollback_last_step(self.service, run)
        files = ", ".join(undone.files) or "no files"
        self.say(
            f"undid {undone.step_id} by {undone.agent or '?'} (commit {undone.commit[:10]}: {files}); "
            f"{run.branch} is now at {undone.to} ({undone.target[:10]})"
        )
        self.say(f"the undone commit is kept at {undone.backup_ref}")

    def merge(self) -> None:
        run = self._run()
        result = self.service.workspace(run.id).merge_into(None)
        if result.up_to_date:
            self.say(f"{result.target_branch} already has everything from {result.run_branch}")
            return
        how = "fast-forward" if result.fast_forward else "merge commit"
        self.say(
            f"merged {result.run_branch} into {result.target_branch} ({how}, {_files(len(result.files))})"
        )

    def discard(self) -> None:
        run = self._run()
        kept = discard_run(self.service, run)
        self.run_id = None
        self.say(f"discarded {run.branch}; its commits are kept at {kept} (git log {kept})")
        self.say("your next message starts a new run")

    def cost(self) -> None:
        run = self._run()
        store = self.service.store
        self.say("per step:")
        for step in store.steps(run.id):
            self.say(f"  {step.step_id:<20} {step.agent:<8} {_usage(step.usage)}")
        self.say("per agent:")
        for agent, usage in store.usage_by_agent(run.id).items():
            self.say(f"  {agent:<8} {_usage(usage)}")
        self.say(f"total: {_usage(store.usage_total(run.id))}")

    def runs(self) -> None:
        repo = self._repo()
        found = self.service.store.list_runs(repo=repo, limit=20)
        if not found:
            self.say("no runs yet" + (f" in {repo}" if repo else ""))
        for r in found:
            mark = "*" if r.id == self.run_id else " "
            cost = format_cost(self.service.store.usage_total(r.id).cost_usd)
            self.say(f"{mark} {r.id}  {r.status:<15} {r.workflow_name:<12} {cost:>9}  {r.task[:60]}")

    # --- helpers -----------------------------------------------------------------------------------

    def _run(self) -> RunRecord:
        if self.run_id is None:
            raise UsageError("there is no current run", hint="type a task to start one")
        return self.service.store.get_run(self.run_id)

    def _repo(self) -> Path | None:
        if self.run_id is not None:
            return Path(self.service.store.get_run(self.run_id).repo)
        return self.repo or repo_root_of(self.cwd)

    def _override_list(self) -> list[str]:
        return [f"{task}={agent}" for task, agent in self.overrides.items()]

    def _next_run_note(self) -> None:
        if self.run_id is not None:
            self.say("the current run keeps its own; /new starts a fresh run with this")


def _usage(usage: TokenUsage) -> str:
    cached = f" ({usage.cached_tokens:,} cached)" if usage.cached_tokens else ""
    return f"{format_tokens(usage)}{cached}  {format_cost(usage.cost_usd)}"


def _files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"
