"""The run service: what every entry point (the `run` command, the shell, CI) asks for runs.

It resolves the repository and workflow, creates the run's workspace and record, and executes, resumes
or continues runs with a follow-up. Entry points add only their own rendering.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.engine.control_watch import ControlWatch, take_follow_up
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.engine.report import RunReport
from orchestrator.engine.runner import RunEngine
from orchestrator.engine.workflow import apply_agent_overrides, load_workflow
from orchestrator.errors import UsageError
from orchestrator.events import EventBus, Notice, RunEvent, RunStarted
from orchestrator.store import RunOptions, RunRecord, Store
from orchestrator.workspace.paths import default_workspace_dir, new_run_id, state_home
from orchestrator.workspace.run_workspace import RunWorkspace, branch_name, resolve_repo


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


class RunService:
    def __init__(self, *, settings: Settings, env: Mapping[str, str], store: Store | None = None) -> None:
        self.settings = settings
        self.env = env
        self.state_home = state_home(env)
        self.store = store or Store(self.state_home / "state.db")
        self.readiness = AgentReadiness(settings, env)
        # Runs whose orchestrator died (killed, crashed) show as interrupted from now on.
        self.store.mark_interrupted_if_owner_dead()

    def close(self) -> None:
        self.store.close()

    def create(self, spec: RunSpec) -> RunRecord:
        run_id = new_run_id()
        workspace_dir = self.settings.workspace_dir or default_workspace_dir(self.env)
        repo = resolve_repo(
            spec.cwd, repo=spec.repo, workspace_dir=workspace_dir, new_name=f"run-{run_id}", environ=self.env
        )
        loaded = load_workflow(spec.workflow or self.settings.workflow, repo=repo)
        workflow = apply_agent_overrides(loaded.workflow, spec.agent_overrides)
        # Before anything is created: a run whose required steps no agent can take would only fail.
        blocked = self.readiness.blocked_steps(workflow)
        if blocked:
            raise UsageError(
                "no agent is ready for these steps:\n  - " + "\n  - ".join(blocked),
                hint="`orchestrator agents` shows what each CLI needs; or change fallback_order or --agent TASK=AGENT",
            )
        ws = RunWorkspace.create(
            repo,
            run_id,
            base=spec.base,
            include_uncommitted=spec.include_uncommitted,
            state_home=self.state_home,
            environ=self.env,
        )
        options = RunOptions(
            budget_usd=spec.budget_usd,
            timeout_s=spec.timeout_s,
            max_iterations=spec.max_iterations,
            agent_overrides=list(spec.agent_overrides),
            include_uncommitted=spec.include_uncommitted,
        )
        return self.store.create_run(
            run_id=run_id,
            repo=repo,
            task=spec.task,
            workflow_name=workflow.name,
            workflow=workflow.model_dump(mode="json"),
            base=spec.base,
            branch=branch_name(run_id),
            base_sha=ws.base,
            worktree=ws.worktree,
            options=options,
        )

    def execute(
        self,
        run_id: str,
        *,
        subscribers: Sequence[Callable[[RunEvent], None]] = (),
        cancel: threading.Event | None = None,
        follow_up: str | None = None,
        resume: bool = False,
    ) -> RunReport:
        run = self.store.claim_run(run_id) if resume or follow_up is not None else self.store.get_run(run_id)
        bus = EventBus()
        bus.subscribe(self.store.subscriber(run_id), replay=False)
        for subscriber in subscribers:
            bus.subscribe(subscriber, replay=False)
        engine = RunEngine(
            store=self.store,
            settings=self.settings,
            env=self.env,
            state_home=self.state_home,
            run_id=run_id,
            bus=bus,
            cancel=cancel,
            readiness=self.readiness,
        )
        if resume:
            # The interrupted step starts again from the last commit; partial edits are kept aside.
            engine.ws.reset_to(engine.ws.head())
        if not resume and follow_up is None:
            bus.publish(
                RunStarted(
                    run_id=run_id, task=run.task, workflow=run.workflow_name, branch=run.branch, base=run.base
                )
            )
        cancel = engine.cancel
        # A cancel from another process (the dashboard) sets the same Event as Ctrl-C does.
        with ControlWatch(self.store, run_id, cancel, bus.publish):
            report = engine.execute(follow_up=follow_up)
        # Follow-ups asked for while the run went on continue it now, on the same branch.
        request = None if cancel.is_set() else take_follow_up(self.store, run_id)
        if request is None:
            return report
        text = str(request.payload.get("text", ""))
        self.store.finish_control(request.id, "done", "continued the run")
        bus.publish(Notice(run_id=run_id, text=f"follow-up received: {text}"))
        return self.execute(run_id, subscribers=subscribers, cancel=cancel, follow_up=text)

    def workspace(self, run_id: str) -> RunWorkspace:
        run = self.store.get_run(run_id)
        return RunWorkspace.open(Path(run.repo), run_id, state_home=self.state_home, environ=self.env)
