"""The workflow runner: a scheduler over a run's graph of steps, in the run's own repository.

The graph: each iteration walks the workflow's steps in order; a step is a node of one kind (steps/:
agent step, gate, attempts, consensus review), and a node that runs several agents (attempts,
reviewers) fans out to threads through the scheduler (scheduler.py), under the run's `limits:` and the
machine's per-CLI slots (limits/). Threads, not asyncio: every agent and gate is a subprocess that
proc.py waits on with blocking reads, the store and git are blocking too, and a handful of agents at
once is what the providers allow; asyncio would mean rewriting proc.py and every adapter for no gain.

Around every node: `when:` is checked first (skipped when false), then the kind runs it and records it,
then the stop rules decide whether to go on. State lives in git and the store, so a killed run
resumes: completed steps are replayed from the store (each kind's `replay`), the rest run again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.audit import AuditLog
from orchestrator.config import Settings, agent_environments
from orchestrator.engine.agent_calls import AgentCalls
from orchestrator.engine.budgets import BudgetExceeded, RunBudget
from orchestrator.engine.expressions import WhenState, parse_expression
from orchestrator.engine.follow_ups import (
    legacy_follow_ups,
    next_follow_up,
    plan_follow_ups,
    stored_follow_ups,
)
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.engine.report import RunReport, build_report
from orchestrator.engine.resume import ResumeState
from orchestrator.engine.run_gates import RunGates, build_run_gates
from orchestrator.engine.run_state import (
    STATUS_FOR_REASON,
    Cancelled,
    RunState,
    agent_label,
    members_of,
    step_id_for,
)
from orchestrator.engine.steps import StepAt, StepKind, kind_for
from orchestrator.engine.stop import StopDecision, StopState, decide_stop, gates_passing
from orchestrator.engine.workflow import GateStep, Workflow
from orchestrator.events import BaseGateFinished, EventBus, Notice, RunFinished, StepFinished, StepStarted
from orchestrator.limits import MachineSlots, RunSlots
from orchestrator.limits.cluster_slots import machine_slots_for
from orchestrator.secrets import SecretMasker
from orchestrator.store import COMPLETED_STEP_STATUSES, RunRecord, StepStatus, Store, TokenUsage
from orchestrator.workspace.diffs import DiffText
from orchestrator.workspace.paths import run_paths
from orchestrator.workspace.run_workspace import RunWorkspace
from orchestrator.workspace.sandbox import resolve_sandbox

__all__ = ["Cancelled", "RunEngine", "step_id_for"]


class RunEngine(AgentCalls, ResumeState):
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        env: Mapping[str, str],
        state_home: Path,
        run_id: str,
        bus: EventBus,
        cancel: threading.Event | None = None,
        readiness: AgentReadiness | None = None,
        masker: SecretMasker | None = None,
        workspace: RunWorkspace | None = None,
        fresh_workspace: bool = False,
    ) -> None:
        """`workspace`: the run's workspace when the caller has it (else it is opened); `fresh_workspace`:
        it is the one RunWorkspace.create has just made, whose tip is its first commit."""
        self.store = store
        self.settings = settings
        self.env = env
        self.state_home = state_home
        self.run_id = run_id
        self.bus = bus
        self.cancel = cancel or threading.Event()
        self.run: RunRecord = store.get_run(run_id)
        self.workflow = Workflow.model_validate(self.run.workflow)
        # The workspace RunWorkspace.create has just made (no second open: 2 git processes), or the one
        # a cluster worker opened from its mirror (the run's repo is elsewhere).
        self.ws = workspace or RunWorkspace.open(Path(self.run.repo), run_id, state_home, environ=env)
        self.nodes_run = 0  # nodes (steps, gates, groups) newly run by this engine, replays not counted
        self.paths = run_paths(state_home, run_id)
        self.started = time.monotonic()
        self.state = RunState()
        self.readiness = readiness or AgentReadiness(settings, env)
        self.masker = masker or SecretMasker.from_environments(env, agent_environments(settings, env))
        self._guard: dict[str, str] | None = None
        self.sandbox = resolve_sandbox(settings.sandbox, env)
        self._user_refs_before: dict[str, str] | None = None
        # A fresh workspace's tip is the first commit create has just published (see head()).
        self._head_cache: str | None = None
        if workspace is not None and fresh_workspace:
            self._head_cache = workspace.first
        self._diff_cache: tuple[tuple[str, str], DiffText] | None = None
        self._gates: RunGates | None = None
        self.agent_started = threading.Event()
        self.audit = AuditLog.for_state_home(state_home, masker=self.masker)
        limits = self.workflow.limits
        self.run_slots = RunSlots(limits.concurrency, limits.per_agent)
        self.machine_slots: MachineSlots = machine_slots_for(
            store.database_url, state_home, settings.limits.per_agent
        )
        self.max_iterations = self.workflow.max_iterations
        self.budget = RunBudget(
            state_home, settings.budgets, run_id, bus.publish, database_url=store.database_url
        )

    # --- the walk -----------------------------------------------------------------------------------

    def execute(self, *, follow_up: str | None = None, one_node: bool = False) -> RunReport | None:
        """Run (or resume, or continue with a follow-up) until a stop rule says stop. `one_node` (a cluster
        worker's step): None after the first node newly run (not a skip or replay) if no rule decided."""
        options = self.run.options
        max_iterations = options.max_iterations or self.workflow.max_iterations
        first = 1
        known = stored_follow_ups(self.store, self.run_id)
        if follow_up is not None:
            event = next_follow_up(self.run, self.masker.mask(follow_up))
            self.bus.publish(event)  # into the event log, where a resume (on any machine) finds it
            known.append(event)
        plan = plan_follow_ups(known, legacy_follow_ups(self.paths.run_dir))
        if plan.first is not None and plan.max_iterations is not None:
            # The latest follow-up's iterations are walked (their finished steps replayed); the ones
            # before it only leave their last verdict and gate results.
            self.restore_latest(before_iteration=plan.first)
            first, max_iterations = plan.first, plan.max_iterations
        self.max_iterations = max_iterations
        follow_ups = plan.texts
        decision: StopDecision | None = None
        iteration = first
        self.run_gates().start()
        try:
            while decision is None:
                text = follow_ups.get(iteration)
                # A follow-up iteration starts with implement again (the follow-up request).
                steps = self.workflow.steps_for_iteration(1 if text is not None else iteration)
                paused = False
                for index, step in steps:
                    decision = self._one_step(StepAt(iteration, index, step), text)
                    paused = one_node and self.nodes_run > 0
                    if decision is not None or paused:
                        break
                else:
                    decision = decide_stop(self.stop_state(iteration, iteration_complete=True))
                if paused and decision is None:
                    self.run_gates().finish(cancelled=False)  # the base gates' results are stored
                    return None
                iteration += 1
        except Cancelled:
            self.run_gates().finish(cancelled=True)
            return self._finish(
                "cancelled", "cancelled", "the step was cancelled; the branch keeps every commit"
            )
        except BaseException:
            self.run_gates().finish(cancelled=True)
            raise
        self.run_gates().finish(cancelled=self.cancel.is_set())
        status = STATUS_FOR_REASON.get(decision.reason, "not_approved")
        return self._finish(status, decision.reason, decision.detail)

    def _one_step(self, at: StepAt, follow_up: str | None) -> StopDecision | None:
        step = at.step
        step_id = step_id_for(at.iteration, at.index, step)
        record = self.store.step(self.run_id, step_id)
        kind = kind_for(step)
        if record is not None and record.status in COMPLETED_STEP_STATUSES:
            kind.replay(self, at, record)  # resume: this step is done already
            self.state.steps_run += 1
        elif not isinstance(step, GateStep) and self._skip_after_approval(at.iteration):
            self.record_skip(at, "the review approved; nothing left to refine")
        elif not isinstance(step, GateStep) and step.when is not None and not self.when_holds(step.when, at):
            self.record_skip(at, f"when: {step.when} is false")
        elif not isinstance(step, GateStep):  # gates cost nothing: only agent steps are budgeted
            self.nodes_run += 1
            stopped = self._run_within_budget(kind, at, follow_up)
            if stopped is not None:
                return stopped
        else:
            self.nodes_run += 1
            kind.run(self, at, follow_up)
        self.store.set_iterations(self.run_id, max(at.iteration, self.run.iterations))
        just_reviewed = not isinstance(step, GateStep) and step.task == "review"
        return decide_stop(self.stop_state(at.iteration, just_reviewed=just_reviewed))

    def _run_within_budget(self, kind: StepKind, at: StepAt, follow_up: str | None) -> StopDecision | None:
        """Run the step unless the machine's hour or day budget says it may not start (budgets.py);
        a group reserves its expected cost first."""
        step_id = step_id_for(at.iteration, at.index, at.step)
        spent_before = self.store.usage_total(self.run_id).cost_usd or 0.0
        try:
            reservation = self.budget.before(
                step_id, members_of(at.step, self.state), spent_before / max(self.state.steps_run, 1)
            )
        except BudgetExceeded as exc:
            self.record_skip(at, exc.message)
            return StopDecision("budget_exceeded", exc.message)
        try:
            kind.run(self, at, follow_up)
        finally:
            spent = (self.store.usage_total(self.run_id).cost_usd or 0.0) - spent_before
            self.budget.after(step_id, spent, reservation)
        return None

    def _skip_after_approval(self, iteration: int) -> bool:
        """After an approving review of the current tree, only gates still run in this iteration."""
        return (
            self.state.verdict_iteration == iteration
            and self.state.verdict is not None
            and self.state.verdict.approved
            and self.state.verdict_head == self.head()
            # A required gate failing on this tree still needs the refine step (and its output).
            and gates_passing(self.workflow, self.latest_gates()) is not False
        )

    def latest_gates(self) -> dict[int, bool | None]:
        head = self.head()
        return {i: g.for_stop for i, g in self.state.gates.items() if g.head == head}

    def when_state(self, iteration: int) -> WhenState:
        verdict = self.state.verdict
        severities = [f.severity for f in verdict.findings] if verdict is not None else []
        failed, passed = [], []
        for index, result in sorted(self.state.gates.items()):
            gate = self.workflow.steps[index]
            label = gate.label if isinstance(gate, GateStep) else str(index)
            if result.passed is False:
                failed.append(label)
            elif result.passed is True:
                passed.append(label)
        return WhenState(
            iteration=iteration,
            max_iterations=self.max_iterations,
            review_verdict=verdict.verdict if verdict is not None else None,
            review_high=None if verdict is None else severities.count("high"),
            review_medium=None if verdict is None else severities.count("medium"),
            review_low=None if verdict is None else severities.count("low"),
            gates_failed_names=tuple(failed),
            gates_passed_names=tuple(passed),
            budget_used_usd=self.store.usage_total(self.run_id).cost_usd or 0.0,
            budget_limit_usd=self.run.options.budget_usd,
            plan_size=self.state.plan_size,
            attempts_total=self.state.attempts_total,
            attempts_passed=self.state.attempts_passed,
        )

    def when_holds(self, source: str, at: StepAt) -> bool:
        """`when:` was checked when the workflow loaded; here it is only evaluated."""
        return parse_expression(source).evaluate(self.when_state(at.iteration).values())

    def stop_state(
        self, iteration: int, *, iteration_complete: bool = False, just_reviewed: bool = False
    ) -> StopState:
        head = self.head()
        verdict = self.state.verdict if self.state.verdict_head == head else None
        usage = self.store.usage_total(self.run_id)
        return StopState(
            iteration=iteration,
            max_iterations=self.max_iterations,
            iteration_complete=iteration_complete,
            can_iterate=self.workflow.can_iterate,
            has_review=self.workflow.has_review,
            just_reviewed=just_reviewed,
            verdict=verdict.verdict if verdict else None,
            findings_count=len(self.state.findings),
            fingerprint=self.state.fingerprint,
            previous_fingerprint=self.state.previous_fingerprint,
            min_suggestions_threshold=self.workflow.min_suggestions_threshold,
            gates_passing=gates_passing(self.workflow, self.latest_gates()),
            failed_step=self.state.failed_step,
            spent_usd=usage.cost_usd or 0.0,
            budget_usd=self.run.options.budget_usd,
            elapsed_s=self.elapsed(),
            timeout_s=self.run.options.timeout_s,
            steps_run=self.state.steps_run,
        )

    def elapsed(self) -> float:
        # Time spent before a resume counts too: the run's clock started when it was created.
        return max(time.time() - self.run.created_at, time.monotonic() - self.started)

    # --- what the step kinds share ------------------------------------------------------------------

    def begin_step(self, step_id: str, at: StepAt, agent: str, task: str) -> None:
        """A step's row in the store and its StepStarted event (a group's parent step too)."""
        self.store.start_step(
            self.run_id, step_id, iteration=at.iteration, index=at.index, agent=agent, task=task
        )
        self.bus.publish(
            StepStarted(run_id=self.run_id, step_id=step_id, agent=agent, task=task, iteration=at.iteration)
        )

    def end_step(
        self,
        step_id: str,
        agent: str,
        status: StepStatus,
        *,
        commit: str | None = None,
        files: list[str] | None = None,
        usage: TokenUsage | None = None,
        error_kind: str | None = None,
        error_message: str | None = None,
        session_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record how a step ended, and tell the bus."""
        warnings = self._workspace_warnings(step_id)
        if warnings:
            detail = {**(detail or {}), "notes": [*(detail or {}).get("notes", []), *warnings]}
        # Masked here as well as in the store: a store handed in by a caller has a masker of its own.
        error_message = None if error_message is None else self.masker.mask(error_message)
        detail = None if detail is None else self.masker.mask_value(detail)
        self.store.finish_step(
            self.run_id,
            step_id,
            status=status,
            commit=commit,
            files_changed=files or [],
            usage=usage,
            error_kind=error_kind,
            error_message=error_message,
            session_id=session_id,
            detail=detail,
        )
        error = (
            f"{error_kind}: {error_message}" if error_message and error_kind not in (None, "gate") else None
        )
        self.bus.publish(
            StepFinished(
                run_id=self.run_id,
                step_id=step_id,
                agent=agent,
                status=status,
                commit=commit,
                files_changed=files or [],
                error=error,
                error_kind=None if status == "succeeded" else error_kind,
            )
        )

    def record_skip(self, at: StepAt, why: str) -> None:
        step = at.step
        assert not isinstance(step, GateStep)
        step_id = step_id_for(at.iteration, at.index, step)
        agent = agent_label(step)
        self.store.start_step(
            self.run_id, step_id, iteration=at.iteration, index=at.index, agent=agent, task=step.task
        )
        self.end_step(step_id, agent, "skipped", detail={"notes": [why]})

    def watch_user_refs(self) -> None:
        """Without a sandbox an agent could write the user's refs through a path (not through its own
        repository): note them before the step, to name any that moved after it."""
        watched = not self.ws.worker_mirror and not self.sandbox.on
        self._user_refs_before = self.ws.user_refs() if watched else None

    def _workspace_warnings(self, step_id: str) -> list[str]:
        """What the workspace has to tell (a branch left alone, a restored config) and the user's refs
        that changed during the step, each published as a warning."""
        warnings = list(self.ws.notes)
        self.ws.notes.clear()
        if self._user_refs_before is not None:
            changed = self.ws.changed_user_refs(self._user_refs_before)
            self._user_refs_before = None
            if changed:
                warnings.append(
                    f"your repository's {', '.join(changed)} changed during this step (no sandbox is on, "
                    "so the agent could have done it; if it was not you, check them)"
                )
        for text in warnings:
            self.bus.publish(Notice(run_id=self.run_id, level="warning", text=f"{step_id}: {text}"))
        return warnings

    def run_gates(self) -> RunGates:
        if self._gates is None:
            self._gates = build_run_gates(
                workflow=self.workflow,
                run_id=self.run_id,
                run_tree=self.ws.worktree,
                first_commit=self.ws.first,
                user_checkout=self.ws.repo,
                run_dir=self.paths.run_dir,
                state_home=self.state_home,
                env=self.env,
                guard_env=self.guard_env(),
                sandbox=self.sandbox,
                base_option=self.run.options.base_gates,
                head_start=self.agent_started,
                known_base=[
                    stored.event
                    for stored in self.store.events(self.run_id, types=("base_gate_finished",))
                    if isinstance(stored.event, BaseGateFinished)
                ],
                publish=self.bus.publish,
                cancel=self.cancel,
            )
        return self._gates

    # --- the end --------------------------------------------------------------------------------------

    def _finish(self, status: str, reason: str, detail: str) -> RunReport:
        self.store.update_run_status(self.run_id, status, stop_reason=reason)  # type: ignore[arg-type]
        self.bus.publish(Notice(run_id=self.run_id, level="info", text=f"stopped: {detail}"))
        self.bus.publish(
            RunFinished(run_id=self.run_id, status=status, stop_reason=reason, branch=self.ws.branch)
        )
        report = build_report(self.store, self.run_id)
        report_path = self.paths.run_dir / "report.json"
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(report.to_json(), encoding="utf-8")
        return report
