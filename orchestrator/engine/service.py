"""The run service: what every entry point (the `run` command, the shell, CI) asks for runs.

It resolves the repository and workflow, creates the run's workspace and record, and executes, resumes
or continues runs with a follow-up. Entry points add only their own rendering.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from orchestrator.audit import AuditLog
from orchestrator.config import Settings, agent_environments
from orchestrator.engine.control_watch import ControlWatch, take_follow_up
from orchestrator.engine.inputs import (
    check_base,
    check_not_bare,
    check_task,
    describe_submodule_change,
    submodule_changes,
)
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.engine.report import RunReport
from orchestrator.engine.routing import route_auto
from orchestrator.engine.runner import RunEngine
from orchestrator.engine.workflow import LoadedWorkflow, apply_agent_overrides, load_workflow
from orchestrator.errors import OrchestratorError, RunStopped, StoreError, UsageError
from orchestrator.events import EventBus, Notice, RunEvent, RunStarted
from orchestrator.logs import event_logger, run_log
from orchestrator.proc import use_process_records
from orchestrator.proc_tree import Leftovers, end_orphaned_processes
from orchestrator.retries import RetryNote, retries_reported_to, retry_text
from orchestrator.secrets import SecretMasker, mask_model, process_masker
from orchestrator.store import RunOptions, RunRecord, Store, store_location
from orchestrator.store.faults import caused_by_full_disk
from orchestrator.trust import is_inside, require_trust
from orchestrator.workspace.paths import default_workspace_dir, new_run_id, state_home
from orchestrator.workspace.run_locate import RepoLocation, locate_repo
from orchestrator.workspace.run_workspace import RunWorkspace, branch_name, resolve_repo
from orchestrator.workspace.sandbox import probe_in_background, resolve_sandbox

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunSpec:
    task: str
    cwd: Path
    repo: Path | None = None
    workflow: str | None = None  # a built-in name, a file, or a name in <repo>/.orchestrator/workflows
    base: str = "HEAD"
    include_uncommitted: bool = False
    budget_usd: float | None = None
    timeout_s: float | None = None
    max_iterations: int | None = None
    agent_overrides: Sequence[str] = ()
    config_path: Path | None = None  # the --config file, remembered for resume
    base_gates: bool | None = None  # False: do not run the gates on the base (--no-base-gates)
    cluster: bool = False  # runs on the cluster's workers: the record keeps the URL they fetch
    # A cluster run: the CLIs some worker serves (what `agent: auto` chooses from). This machine's
    # CLIs do not matter then: the workers check their own (a step waits for a worker that has its CLI).
    cluster_agents: tuple[str, ...] = ()
    remote: str | None = None  # --remote: where the workers fetch (default: cluster.remote, else the path)


class RunService:
    def __init__(self, *, settings: Settings, env: Mapping[str, str], store: Store | None = None) -> None:
        self.settings = settings
        self.env = env
        self.state_home = state_home(env)
        # The run's masker, from what its agents are given: handed to the store, the event bus (console,
        # dashboard, metrics follow it), the transcripts; and added to the process's (logs, errors).
        self.masker = SecretMasker.from_environments(env, agent_environments(settings, env))
        process_masker().add(self.masker)
        location = store_location(settings.cluster.database, env, self.state_home)
        self.store = store or Store(location, masker=self.masker)
        self.readiness = AgentReadiness(settings, env, state_home=self.state_home)
        self._pending_notices: dict[str, list[str]] = {}  # run id -> warnings from create, for execute
        self._created: dict[str, RunWorkspace] = {}  # run id -> the workspace create made, for execute
        # Runs whose orchestrator died (killed, crashed) show as interrupted from now on. On a full or
        # read-only disk that cannot be written; reading still works, so commands that only read do.
        # What an orchestrator that was killed left running is ended first; then its runs show as
        # interrupted from now on.
        records = self.state_home / "procs"
        use_process_records(records)
        ended = end_orphaned_processes(records)
        interrupted: list[str] = []
        try:
            interrupted = self.store.mark_interrupted_if_owner_dead()
        except StoreError as exc:
            if exc.problem not in ("disk_full", "read_only"):
                raise
            log.warning("runs of dead processes not marked", reason=exc.message)
        if ended:
            self._say_ended(ended, interrupted)

    def _say_ended(self, ended: Sequence[Leftovers], interrupted: Sequence[str]) -> None:
        owners: dict[int | None, str] = {}
        for run_id in interrupted:
            with contextlib.suppress(OrchestratorError):
                record = self.store.get_run(run_id)
                owners[record.owner_pid] = run_id
        for leftovers in ended:
            owner_run = owners.get(leftovers.owner_pid)
            whose = f"run {owner_run}" if owner_run else "an orchestrator command"
            text = (
                f"ended {len(leftovers.pids)} process(es) left by {whose} "
                f"(its orchestrator process {leftovers.owner_pid} is gone): {' '.join(map(str, leftovers.pids))}"
            )
            log.warning(text)
            if owner_run:
                self.store.subscriber(owner_run)(Notice(run_id=owner_run, level="warning", text=text))

    def close(self) -> None:
        self.store.close()

    def create(self, spec: RunSpec, *, location: RepoLocation | None = None) -> RunRecord:
        """`location`: what locate_repo found for `spec.repo or spec.cwd`, when the caller asked
        already (the repository is located once per run: every git process costs 5 to 15 ms)."""
        run_id = new_run_id()
        if not spec.cluster:  # a cluster run's agents run in its workers' sandboxes, not here
            probe_in_background(self.settings.sandbox, self.env)  # resolve_sandbox below waits for it
        check_task(spec.task)
        where = spec.repo or spec.cwd
        if location is None or location.path != where:
            location = locate_repo(where, environ=self.env)
        if location is not None:
            check_not_bare(where, self.env, location=location)
        else:
            check_not_bare(where.resolve(), self.env)
        workspace_dir = self.settings.workspace_dir or default_workspace_dir(self.env)
        repo = resolve_repo(
            spec.cwd,
            repo=spec.repo,
            workspace_dir=workspace_dir,
            new_name=f"run-{run_id}",
            environ=self.env,
            location=location,
        )
        if location is None or location.top != repo:
            location = None  # a new repository: RunWorkspace.create finds it
        start = check_base(repo, spec.base, self.env, run_id=run_id)
        repo_url = self._repo_url(spec, repo) if spec.cluster else None
        if spec.include_uncommitted:
            self._pending_notices[run_id] = [
                describe_submodule_change(change) for change in submodule_changes(repo, self.env)
            ]
        loaded = load_workflow(spec.workflow or self.settings.workflow, repo=repo)
        given = (spec.workflow or "").partition("#")[0]
        by_path = "/" in given or given.endswith((".yaml", ".yml"))
        self._check_workflow_trust(loaded, repo, chosen_by_path=by_path)
        workflow = apply_agent_overrides(loaded.workflow, spec.agent_overrides)
        candidates = (
            [a for a in self.settings.fallback_order if a in spec.cluster_agents] if spec.cluster else None
        )
        workflow = route_auto(
            workflow, self.store, self.readiness, self.settings.fallback_order, candidates=candidates
        )
        # Before anything is created: a run whose required steps no agent can take would only fail.
        blocked = [] if spec.cluster else self.readiness.blocked_steps(workflow)
        if blocked:
            raise UsageError(
                "no agent is ready for these steps:\n  - " + "\n  - ".join(blocked),
                hint="`orchestrator agents` shows what each CLI needs; or change fallback_order or --agent TASK=AGENT",
            )
        if not spec.cluster:  # the workers resolve their own (runner.py, on each step)
            resolve_sandbox(self.settings.sandbox, self.env)  # `sandbox: bwrap` where it cannot work: exit 2
        ws = RunWorkspace.create(
            repo,
            run_id,
            base=spec.base,
            include_uncommitted=spec.include_uncommitted,
            state_home=self.state_home,
            environ=self.env,
            location=location,
            start=start,
            run_repo=not spec.cluster,  # the workers make theirs from the branch
        )
        self.audit.repo_write(
            "create_branch", repo=repo, ref=branch_name(run_id), commit=ws.base, run_id=run_id
        )
        options = RunOptions(
            budget_usd=spec.budget_usd,
            timeout_s=spec.timeout_s,
            max_iterations=spec.max_iterations,
            agent_overrides=list(spec.agent_overrides),
            include_uncommitted=spec.include_uncommitted,
            config_path=str(spec.config_path.resolve()) if spec.config_path is not None else None,
            base_gates=spec.base_gates,
            # Where workers fetch the repository: a remote's URL, or its path (a shared path).
            **({"repo_url": repo_url} if repo_url is not None else {}),
        )
        record = self.store.create_run(
            run_id=run_id,
            repo=repo,
            task=self.masker.mask(spec.task),
            workflow_name=workflow.name,
            workflow=workflow.model_dump(mode="json"),
            base=spec.base,
            branch=branch_name(run_id),
            base_sha=ws.base,
            worktree=ws.worktree,
            options=options,
        )
        self._created[run_id] = ws  # handed to the run's engine (see execute), not opened again
        return record

    def _repo_url(self, spec: RunSpec, repo: Path) -> str:
        """The URL a cluster run's workers go through, resolved and reached before anything of the run
        exists (a wrong or unreachable remote: exit 2)."""
        from orchestrator.cluster.remote import cluster_repo_url

        remote = spec.remote or self.settings.cluster.remote
        return cluster_repo_url(repo, remote, cwd=spec.cwd, env=self.env)

    def _check_workflow_trust(self, loaded: LoadedWorkflow, repo: Path, *, chosen_by_path: bool) -> None:
        """A workflow file from the repository (.orchestrator/workflows, or named by the repository's
        config) runs its gate commands only once trusted; `run: auto` and a file the user gave by path
        need no trust (trust.py says why)."""
        if chosen_by_path or not is_inside(loaded.path, repo):
            return
        commands = {f"gate {gate.label!r}": gate.run for gate in loaded.workflow.gates if not gate.is_auto}
        require_trust(loaded.path, commands, self.env, repo_root=repo)

    def execute(
        self,
        run_id: str,
        *,
        subscribers: Sequence[Callable[[RunEvent], None]] = (),
        cancel: threading.Event | None = None,
        follow_up: str | None = None,
        resume: bool = False,
    ) -> RunReport:
        report = self._execute(
            run_id, subscribers=subscribers, cancel=cancel, follow_up=follow_up, resume=resume
        )
        assert report is not None  # only one node at a time returns None
        return report

    def execute_node(
        self,
        run_id: str,
        *,
        workspace: RunWorkspace,
        cancel: threading.Event,
        first: bool,
        subscribers: Sequence[Callable[[RunEvent], None]] = (),
    ) -> RunReport | None:
        """A cluster worker's step (cluster/activities.py): the run's next node, in `workspace` (this
        worker's run repository, opened from its mirror), through the resume path; None when the run
        goes on (no stop rule decided), else its report. `first`: the run's first node (RunStarted)."""
        return self._execute(
            run_id,
            subscribers=subscribers,
            cancel=cancel,
            follow_up=None,
            resume=not first,
            one_node=workspace,
        )

    def _execute(
        self,
        run_id: str,
        *,
        subscribers: Sequence[Callable[[RunEvent], None]],
        cancel: threading.Event | None,
        follow_up: str | None,
        resume: bool,
        one_node: RunWorkspace | None = None,
    ) -> RunReport | None:
        run = self.store.claim_run(run_id) if resume or follow_up is not None else self.store.get_run(run_id)
        bus = EventBus(transform=partial(mask_model, self.masker))
        cancel = cancel or threading.Event()
        store_failures: list[StoreError] = []
        bus.subscribe(self._store_subscriber(run_id, cancel, store_failures), replay=False)
        bus.subscribe(event_logger(), replay=False)
        for subscriber in subscribers:
            bus.subscribe(subscriber, replay=False)
        # A run this service has just created starts with the workspace create made (its refs are
        # the ones create wrote); any other run opens its workspace from the repository.
        fresh = self._created.pop(run_id, None) if not resume and follow_up is None else None
        engine = RunEngine(
            store=self.store,
            settings=self.settings,
            env=self.env,
            state_home=self.state_home,
            run_id=run_id,
            bus=bus,
            cancel=cancel,
            readiness=self.readiness,
            masker=self.masker,
            workspace=one_node or fresh,
            fresh_workspace=fresh is not None and one_node is None,
        )
        # A cluster worker's workspace is usually at the run's tip already (open_run_workspace moved a
        # clean copy there, and says so): then there is nothing to keep aside or reset.
        at_tip = one_node is not None and (one_node.at_tip_checked or one_node.ready_at_head())
        if one_node is not None:
            one_node.at_tip_checked = False  # this step's: the next one checks again
        if (resume and one_node is None) or (one_node is not None and not at_tip):
            # The interrupted step starts again from the last commit; partial edits are kept aside
            # (under a backup ref, or only in the run's folder when they hold a secret). A worker's
            # run repository is made here when this worker has none for the run yet.
            engine.withhold_leaks("interrupted", engine.ws.head())
            engine.ws.reset_to(engine.ws.head())
        # The run's own log (runs/<run-id>/log.jsonl); everything logged meanwhile is bound to the run.
        with run_log(engine.paths.run_dir / "log.jsonl", run_id, masker=self._masker()):
            if not resume and follow_up is None:
                bus.publish(
                    RunStarted(
                        run_id=run_id,
                        task=run.task,
                        workflow=run.workflow_name,
                        branch=run.branch,
                        base=run.base,
                    )
                )
            for text in self._pending_notices.pop(run_id, []):
                bus.publish(Notice(run_id=run_id, level="warning", text=text))
            try:
                # A cancel from another process (the dashboard) sets the same Event as Ctrl-C does.
                with (
                    retries_reported_to(functools.partial(_publish_retry, bus, run_id)),
                    ControlWatch(self.store, run_id, cancel, bus.publish),
                ):
                    report = engine.execute(follow_up=follow_up, one_node=one_node is not None)
            except (OrchestratorError, OSError) as exc:
                if caused_by_full_disk(exc, self.state_home):
                    raise self._stopped_for_full_disk(run_id, exc) from exc
                raise
        if store_failures:
            # The store failed under the run (its events could not be kept) and the run was cancelled.
            if caused_by_full_disk(store_failures[0], self.state_home):
                raise self._stopped_for_full_disk(run_id, store_failures[0]) from store_failures[0]
            raise store_failures[0]
        if report is None or one_node is not None:
            return report  # a cluster run's follow-ups wait in the store (not taken by workers yet)
        # Follow-ups asked for while the run went on continue it now, on the same branch.
        request = None if cancel.is_set() else take_follow_up(self.store, run_id)
        if request is None:
            return report
        text = str(request.payload.get("text", ""))
        self.store.finish_control(request.id, "done", "continued the run")
        bus.publish(Notice(run_id=run_id, text=f"follow-up received: {text}"))
        return self.execute(run_id, subscribers=subscribers, cancel=cancel, follow_up=text)

    def _store_subscriber(
        self, run_id: str, cancel: threading.Event, failures: list[StoreError]
    ) -> Callable[[RunEvent], None]:
        """Stores the run's events. When the store fails (a full disk), the run is cancelled rather
        than going on with nothing recorded."""

        def store_event(event: RunEvent) -> None:
            try:
                self.store.add_event(run_id, event)
            except StoreError as exc:
                log.error("store fault", problem=exc.problem, path=exc.path, error=exc.message)
                failures.append(exc)
                cancel.set()
                raise

        return store_event

    def _stopped_for_full_disk(self, run_id: str, exc: BaseException) -> RunStopped:
        marked = self.store.stop_for_full_disk(run_id)
        reason = exc.message if isinstance(exc, OrchestratorError) else str(exc)
        where = "marked failed" if marked else "will be marked failed by the next `orchestrator` command"
        return RunStopped(
            f"run {run_id} was stopped because the disk is full ({reason}); the run {where}",
            hint=f"free some space, then `orchestrator runs resume {run_id}` goes on from its last commit",
        )

    @property
    def audit(self) -> AuditLog:
        """The audit trail under this service's state home (agent commands, writes to repositories)."""
        return AuditLog.for_state_home(self.state_home, masker=self._masker())

    def _masker(self) -> SecretMasker:
        # The run's masker (resolved agent environments and credential variables), for the audit and
        # the run's log too.
        return self.masker

    def workspace(self, run_id: str) -> RunWorkspace:
        run = self.store.get_run(run_id)
        return RunWorkspace.open(Path(run.repo), run_id, state_home=self.state_home, environ=self.env)


def _publish_retry(bus: EventBus, run_id: str, note: RetryNote) -> None:
    """Each retry during a run is a notice in its event log (kind "retry", what was retried as the
    reason: what metrics count); the log line is written by report_retry."""
    bus.publish(
        Notice(
            run_id=run_id,
            level="warning",
            kind="retry",
            reason=note.what,
            text=retry_text(note),
        )
    )
