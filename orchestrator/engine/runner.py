"""The workflow runner: walks a run's workflow, step by step, on the run's own worktree.

Every step goes: pick an agent (falling back when one is not ready), render a prompt from only what the
step needs, run it through the agent step runner, commit what it changed (or undo what a read-only step
changed), record it in the store, and ask the stop rules whether to go on. State lives in git and the
store, so a killed run resumes: completed steps are replayed from the store, the rest run again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import AgentRequest, Availability, PermissionMode
from orchestrator.adapters.runner import AgentStepResult, run_agent_step
from orchestrator.config import Settings, agent_child_vars
from orchestrator.engine.prompts import (
    GateFailure,
    PromptContext,
    render_followup,
    render_review_retry,
    render_step,
)
from orchestrator.engine.readiness import AgentReadiness, unready_kind
from orchestrator.engine.report import RunReport, build_report
from orchestrator.engine.review import (
    Finding,
    ReviewVerdict,
    findings_fingerprint,
    parse_review,
    unparsed_review,
)
from orchestrator.engine.stop import StopDecision, StopState, decide_stop, gates_passing
from orchestrator.engine.workflow import GateStep, Step, Workflow, resolve_gate_argv
from orchestrator.events import (
    AgentActivity,
    AgentEvent,
    EventBus,
    GateFinished,
    Notice,
    RunFinished,
    StepFinished,
    StepStarted,
)
from orchestrator.proc import child_env, run_command
from orchestrator.store import COMPLETED_STEP_STATUSES, RunRecord, StepRecord, StepStatus, Store, TokenUsage
from orchestrator.workspace.diffs import DiffText
from orchestrator.workspace.paths import run_paths
from orchestrator.workspace.run_workspace import RunWorkspace

log = structlog.get_logger(__name__)

DIFF_BUDGET_BYTES = 60_000
GATE_TAIL_CHARS = 4_000
# Errors after which another agent should take the step rather than the run failing.
FALLBACK_ERRORS = frozenset({"not_installed", "auth", "rate_limit"})

_STATUS_FOR_REASON: dict[str, str] = {
    "approved": "approved",
    "budget_exceeded": "budget_exceeded",
    "timed_out": "timed_out",
    "step_failed": "failed",
    "cancelled": "cancelled",
}


def step_id_for(iteration: int, index: int, step: Step | GateStep) -> str:
    return f"i{iteration}-s{index + 1}-{step.task if isinstance(step, Step) else 'gate'}"


@dataclass
class _GateResult:
    passed: bool | None  # None: skipped (`run: auto` found no tests)
    head: str
    failure: GateFailure | None = None


@dataclass
class _State:
    """What the stop rules and the prompts need, rebuilt from the store on resume."""

    verdict: ReviewVerdict | None = None
    verdict_head: str | None = None  # the commit the verdict was given on
    verdict_iteration: int | None = None  # the iteration whose review gave it
    fingerprint: str | None = None
    previous_fingerprint: str | None = None
    findings: list[Finding] = field(default_factory=list)
    suggestions: list[Finding] = field(default_factory=list)
    gates: dict[int, _GateResult] = field(default_factory=dict)
    steps_run: int = 0
    failed_step: str | None = None
    unavailable: set[str] = field(default_factory=set)  # agents that failed with a fallback error


class Cancelled(Exception):
    """The user cancelled the run's current step."""


class RunEngine:
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
    ) -> None:
        self.store = store
        self.settings = settings
        self.env = env
        self.state_home = state_home
        self.run_id = run_id
        self.bus = bus
        self.cancel = cancel or threading.Event()
        self.run: RunRecord = store.get_run(run_id)
        self.workflow = Workflow.model_validate(self.run.workflow)
        self.ws = RunWorkspace.open(Path(self.run.repo), run_id, state_home=state_home, environ=env)
        self.paths = run_paths(state_home, run_id)
        self.started = time.monotonic()
        self.state = _State()
        self.readiness = readiness or AgentReadiness(settings, env)
        self._guard: dict[str, str] | None = None
        self._head_cache: str | None = None
        self._diff_cache: tuple[tuple[str, str], DiffText] | None = None

    # --- the walk -----------------------------------------------------------------------------------

    def execute(self, *, follow_up: str | None = None) -> RunReport:
        """Run (or resume, or continue with a follow-up) until a stop rule says stop."""
        options = self.run.options
        max_iterations = options.max_iterations or self.workflow.max_iterations
        first = 1
        if follow_up is not None:
            self._restore_latest()
            first = max(self.run.iterations, 0) + 1
            max_iterations = first - 1 + max_iterations
            self._save_follow_up(first, follow_up)
        follow_ups = self._follow_ups()
        decision: StopDecision | None = None
        iteration = first
        try:
            while decision is None:
                text = follow_ups.get(iteration)
                steps = self._steps_for(iteration, followed_up=text is not None)
                for index, step in steps:
                    decision = self._one_step(iteration, index, step, max_iterations, text)
                    if decision is not None:
                        break
                if decision is None:
                    decision = decide_stop(
                        self._stop_state(iteration, max_iterations, iteration_complete=True)
                    )
                iteration += 1
        except Cancelled:
            return self._finish(
                "cancelled", "cancelled", "the step was cancelled; the branch keeps every commit"
            )
        status = _STATUS_FOR_REASON.get(decision.reason, "not_approved")
        return self._finish(status, decision.reason, decision.detail)

    def _steps_for(self, iteration: int, *, followed_up: bool) -> tuple[tuple[int, Step | GateStep], ...]:
        # A follow-up iteration starts with implement again (the follow-up request).
        return self.workflow.steps_for_iteration(1 if followed_up else iteration)

    def _one_step(
        self, iteration: int, index: int, step: Step | GateStep, max_iterations: int, follow_up: str | None
    ) -> StopDecision | None:
        step_id = step_id_for(iteration, index, step)
        record = self.store.step(self.run_id, step_id)
        if record is not None and record.status in COMPLETED_STEP_STATUSES:
            self._replay(index, step, record)  # resume: this step is done already
        elif isinstance(step, Step) and self._skip_after_approval(iteration):
            self._record_skip(iteration, index, step, "the review approved; nothing left to refine")
        elif isinstance(step, GateStep):
            self._run_gate(iteration, index, step)
        else:
            self._run_agent(iteration, index, step, follow_up)
        self.store.set_iterations(self.run_id, max(iteration, self.run.iterations))
        just_reviewed = isinstance(step, Step) and step.task == "review"
        return decide_stop(self._stop_state(iteration, max_iterations, just_reviewed=just_reviewed))

    def _skip_after_approval(self, iteration: int) -> bool:
        """After an approving review of the current tree, only gates still run in this iteration."""
        return (
            self.state.verdict_iteration == iteration
            and self.state.verdict is not None
            and self.state.verdict.approved
            and self.state.verdict_head == self._head()
        )

    def _stop_state(
        self,
        iteration: int,
        max_iterations: int,
        *,
        iteration_complete: bool = False,
        just_reviewed: bool = False,
    ) -> StopState:
        head = self._head()
        verdict = self.state.verdict if self.state.verdict_head == head else None
        latest = {i: g.passed for i, g in self.state.gates.items() if g.head == head}
        usage = self.store.usage_total(self.run_id)
        return StopState(
            iteration=iteration,
            max_iterations=max_iterations,
            iteration_complete=iteration_complete,
            can_iterate=self.workflow.can_iterate,
            has_review=self.workflow.has_review,
            just_reviewed=just_reviewed,
            verdict=verdict.verdict if verdict else None,
            findings_count=len(self.state.findings),
            fingerprint=self.state.fingerprint,
            previous_fingerprint=self.state.previous_fingerprint,
            min_suggestions_threshold=self.workflow.min_suggestions_threshold,
            gates_passing=gates_passing(self.workflow, latest),
            failed_step=self.state.failed_step,
            spent_usd=usage.cost_usd or 0.0,
            budget_usd=self.run.options.budget_usd,
            elapsed_s=self._elapsed(),
            timeout_s=self.run.options.timeout_s,
            steps_run=self.state.steps_run,
        )

    def _elapsed(self) -> float:
        # Time spent before a resume counts too: the run's clock started when it was created.
        return max(time.time() - self.run.created_at, time.monotonic() - self.started)

    # --- agent steps --------------------------------------------------------------------------------

    def _run_agent(self, iteration: int, index: int, step: Step, follow_up: str | None) -> None:
        step_id = step_id_for(iteration, index, step)
        notes: list[str] = []
        agent = self._pick_agent(step.agent, notes)
        if agent is None:
            self._agent_unavailable(iteration, index, step, notes)
            return
        head_before = self._head()
        prompt = self._prompt(step, iteration, follow_up)
        usage = TokenUsage()
        while True:
            self.store.start_step(
                self.run_id, step_id, iteration=iteration, index=index, agent=agent, task=step.task
            )
            self.bus.publish(
                StepStarted(
                    run_id=self.run_id, step_id=step_id, agent=agent, task=step.task, iteration=iteration
                )
            )
            result = self._call_agent(agent, step, step_id, prompt)
            usage = usage + _usage_of(result)
            kind = result.summary.error_kind
            if result.success or kind not in FALLBACK_ERRORS or self.cancel.is_set():
                break
            # This agent cannot work now: the next ready one takes the step.
            self.state.unavailable.add(agent)
            replacement = self._pick_agent(step.agent, notes)
            if replacement is None:
                break
            note = f"{agent} failed ({kind}: {result.summary.error_message}); {replacement} took the step"
            notes.append(note)
            self.bus.publish(Notice(run_id=self.run_id, level="warning", text=f"{step_id}: {note}"))
            self.store.finish_step(
                self.run_id,
                step_id,
                status="failed",
                usage=usage,
                error_kind=kind,
                error_message=result.summary.error_message,
                detail={"notes": notes},
            )
            self.ws.reset_to(head_before)
            self._moved()
            agent = replacement

        detail: dict[str, Any] = {"notes": notes}
        if step.read_only and result.success and step.task == "review":
            verdict, extra_usage = self._review_verdict(agent, step, step_id, result)
            usage = usage + extra_usage
            self._take_verdict(verdict, head_before, iteration)
            detail["verdict"] = verdict.verdict
            detail["findings"] = [f.model_dump(mode="json") for f in verdict.findings]
        elif step.read_only and result.success and step.task == "suggestions":
            parsed = parse_review(result.summary.final_text)
            self.state.suggestions = (
                list(parsed.findings) if parsed else [unparsed_review(result.summary.final_text).findings[0]]
            )
            detail["suggestions"] = [f.model_dump(mode="json") for f in self.state.suggestions]

        commit = None
        files: list[str] = []
        if step.read_only:
            undone = self.ws.discard_uncommitted(step_start=head_before)
            self._moved()
            if undone:
                note = f"{agent} changed {', '.join(undone.files)} in a read-only step; undone (kept at {undone.backup_ref})"
                notes.append(note)
                self.bus.publish(Notice(run_id=self.run_id, level="warning", text=f"{step_id}: {note}"))
        else:
            subject = f"{step.task} by {agent} (run {self.run_id}, {step_id})"
            made = self.ws.commit_step(
                step_id=step_id, agent=agent, task=step.task, message=subject, step_start=head_before
            )
            self._moved()
            commit, files = made.sha, made.files
            if not made.changed:
                notes.append("no files changed")
            elif self.state.verdict is not None:
                self.state.verdict_head = None  # the verdict no longer describes the tree

        if self.cancel.is_set():
            self._end_step(
                step_id,
                agent,
                "cancelled",
                commit=commit,
                files=files,
                usage=usage,
                error_kind="other",
                error_message="cancelled",
                detail=detail,
            )
            raise Cancelled
        status: StepStatus = (
            "succeeded"
            if result.success
            else ("refused" if result.summary.error_kind == "refused" else "failed")
        )
        self._end_step(
            step_id,
            agent,
            status,
            commit=commit,
            files=files,
            usage=usage,
            error_kind=None if result.success else result.summary.error_kind,
            error_message=None if result.success else result.summary.error_message,
            session_id=result.summary.session_id,
            detail=detail,
        )
        self.state.steps_run += 1
        if not result.success and not step.optional:
            self.state.failed_step = f"{step_id} ({agent}): {result.summary.error_kind}"

    def _call_agent(self, agent: str, step: Step, step_id: str, prompt: str) -> AgentStepResult:
        adapter = get_adapter(agent)
        config = self.settings.agent(agent)
        timeout = step.timeout_s or config.timeout_s
        if self.run.options.timeout_s is not None:
            timeout = max(min(timeout, self.run.options.timeout_s - self._elapsed()), 1.0)
        config = config.model_copy(update={"timeout_s": timeout})
        request = AgentRequest(
            prompt=prompt,
            cwd=self.ws.worktree,
            run_dir=self.paths.run_dir / "agents" / agent,
            permission=PermissionMode.READ_ONLY if step.read_only else PermissionMode.EDIT,
            resume_session=self._session_for(agent, step.read_only),
            model=step.model or config.model,
            extra_args=tuple(config.args),
            # The guard keeps the agent's git off the user's stash, tags and branches (a worktree shares
            # every ref but HEAD with the user's repository).
            env={**agent_child_vars(agent, config, adapter.credential_vars, self.env), **self._guard_env()},
            command=config.command,
        )

        def forward(event: AgentEvent) -> None:
            self.bus.publish(AgentActivity(run_id=self.run_id, step_id=step_id, agent=agent, event=event))

        return run_agent_step(
            adapter,
            request,
            config,
            parent_env=self.env,
            on_event=forward,
            cancel=self.cancel,
            transcript=self.paths.run_dir / "transcripts" / f"{step_id}-{agent}.jsonl",
            track_changes=False,
        )

    def _head(self) -> str:
        """The run branch's tip. Cached: during a run only this engine moves the branch (commit_step,
        discard_uncommitted and reset_to, after which `_moved()` is called)."""
        if self._head_cache is None:
            self._head_cache = self.ws.head()
        return self._head_cache

    def _moved(self) -> None:
        self._head_cache = None

    def _guard_env(self) -> dict[str, str]:
        if self._guard is None:
            self._guard = self.ws.agent_env()
        return self._guard

    def _session_for(self, agent: str, read_only: bool) -> str | None:
        """Follow-ups to the same agent in the same run resume its CLI session, per role: a reviewer
        never continues the session in which the same CLI wrote the code (its review stays independent)."""
        session = None
        for record in self.store.steps(self.run_id):
            same_role = (record.task in ("review", "suggestions")) == read_only
            if record.agent == agent and same_role and record.session_id:
                session = record.session_id
        return session

    def _review_verdict(
        self, agent: str, step: Step, step_id: str, result: AgentStepResult
    ) -> tuple[ReviewVerdict, TokenUsage]:
        verdict = parse_review(result.summary.final_text)
        if verdict is not None:
            return verdict, TokenUsage()
        # Asked for once more, in the reviewer's own session; then the text itself is the finding.
        retry = self._call_agent(agent, step, step_id, render_review_retry(result.summary.final_text))
        again = parse_review(retry.summary.final_text) if retry.success else None
        return again or unparsed_review(result.summary.final_text), _usage_of(retry)

    def _take_verdict(self, verdict: ReviewVerdict, head: str, iteration: int | None = None) -> None:
        self.state.previous_fingerprint = self.state.fingerprint
        self.state.fingerprint = findings_fingerprint(verdict.findings)
        self.state.verdict = verdict
        self.state.verdict_head = head
        self.state.verdict_iteration = iteration
        self.state.findings = list(verdict.findings)

    def _pick_agent(self, wanted: str, notes: list[str]) -> str | None:
        agent = self.readiness.pick(wanted, exclude=sorted(self.state.unavailable))
        if agent is not None and agent != wanted:
            why = (
                "it failed earlier in this run"
                if wanted in self.state.unavailable
                else self._availability_of(wanted).reason
            )
            note = f"{wanted} is not ready ({why}); {agent} takes the step"
            if note not in notes:
                notes.append(note)
                self.bus.publish(Notice(run_id=self.run_id, level="warning", text=note))
        return agent

    def _availability_of(self, agent: str) -> Availability:
        return self.readiness.of(agent)

    def _agent_unavailable(self, iteration: int, index: int, step: Step, notes: list[str]) -> None:
        step_id = step_id_for(iteration, index, step)
        availability = self._availability_of(step.agent)
        others = [a for a in self.readiness.candidates(step.agent) if a != step.agent]
        message = (
            f"no agent could take the step: {step.agent} is not ready ({availability.reason})"
            + (f" and neither is {', '.join(others)}" if others else "")
            + "; `orchestrator agents` says what each needs"
        )
        reason = availability.reason
        self.store.start_step(
            self.run_id, step_id, iteration=iteration, index=index, agent=step.agent, task=step.task
        )
        status: StepStatus = "skipped" if step.optional else "failed"
        self._end_step(
            step_id,
            step.agent,
            status,
            error_kind=unready_kind(availability),
            error_message=message,
            detail={"notes": notes},
        )
        if not step.optional:
            self.state.failed_step = f"{step_id} ({step.agent}): {reason}"

    def _end_step(
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
            )
        )

    def _record_skip(self, iteration: int, index: int, step: Step, why: str) -> None:
        step_id = step_id_for(iteration, index, step)
        self.store.start_step(
            self.run_id, step_id, iteration=iteration, index=index, agent=step.agent, task=step.task
        )
        self._end_step(step_id, step.agent, "skipped", detail={"notes": [why]})

    def _diff_at(self, head: str) -> DiffText:
        """The run's diff for prompts, once per head: a review and the refine after it see one tree."""
        since = self.ws.first if self.workflow.diff_base == "run_start" else self.ws.base
        if self._diff_cache is not None and self._diff_cache[0] == (since, head):
            return self._diff_cache[1]
        if head == since:
            diff = DiffText(text="", files=[])
        else:
            # Every step is committed or undone before the next prompt: the committed tree is the run.
            diff = self.ws.diff(since=since, max_bytes=DIFF_BUDGET_BYTES, committed_only=True)
        self._diff_cache = ((since, head), diff)
        return diff

    def _prompt(self, step: Step, iteration: int, follow_up: str | None) -> str:
        head = self._head()
        diff = self._diff_at(head)
        failing = [g.failure for g in self.state.gates.values() if g.failure is not None and g.head == head]
        ctx = PromptContext(
            task=self.run.task,
            iteration=iteration,
            description=step.description,
            diff=diff.text,
            files=diff.files,
            diff_note=(f"cut to fit: {', '.join(diff.cut_files)}" if diff.truncated else ""),
            findings=self.state.findings,
            suggestions=self.state.suggestions,
            failing_gates=failing,
        )
        if follow_up is not None and step.task == "implement":
            return render_followup(ctx, follow_up)
        return render_step(step.task, ctx)

    # --- gates --------------------------------------------------------------------------------------

    def _run_gate(self, iteration: int, index: int, gate: GateStep) -> None:
        step_id = step_id_for(iteration, index, gate)
        self.store.start_step(
            self.run_id, step_id, iteration=iteration, index=index, agent="gate", task="gate"
        )
        self.bus.publish(
            StepStarted(run_id=self.run_id, step_id=step_id, agent="gate", task="gate", iteration=iteration)
        )
        head = self._head()
        argv = resolve_gate_argv(gate, self.ws.worktree)
        if argv is None:
            self.state.gates[index] = _GateResult(passed=None, head=head)
            self._end_step(
                step_id,
                "gate",
                "skipped",
                detail={"notes": ["no test suite found for `run: auto`"], "gate": {"command": gate.label}},
            )
            return
        command = " ".join(argv)
        env = child_env(
            self.env, {"PYTHONDONTWRITEBYTECODE": "1", **self._guard_env()}, tmpdir=self.paths.tmp_dir
        )
        try:
            # contain: a gate (a test suite) may start servers or daemons; none outlives the gate.
            result = run_command(
                list(argv), self.ws.worktree, env=env, timeout_s=gate.timeout_s, contain=True
            )
            output = (result.stdout + result.stderr)[-GATE_TAIL_CHARS:]
            passed = result.ok
            exit_code: int | None = None if result.timed_out else result.returncode
            if result.timed_out:
                output += f"\n[the gate ran past its {gate.timeout_s:g} s limit and was stopped]"
        except Exception as exc:  # a missing command is a failing gate, not a crash
            output, passed, exit_code = str(exc), False, None
        # A gate checks the run; it does not change it. What it left behind (caches, build output not
        # covered by .gitignore) is removed, kept under a backup ref, and never reaches a later commit.
        left = self.ws.discard_uncommitted(step_start=head)
        self._moved()
        gate_notes = (
            [f"the gate left {', '.join(left.files[:10])}; removed (kept at {left.backup_ref})"]
            if left
            else []
        )
        failure = (
            None
            if passed
            else GateFailure(name=gate.label, command=command, exit_code=exit_code, output_tail=output)
        )
        self.state.gates[index] = _GateResult(passed=passed, head=head, failure=failure)
        self.bus.publish(
            GateFinished(
                run_id=self.run_id,
                step_id=step_id,
                command=command,
                passed=passed,
                exit_code=exit_code,
                output_tail=output,
            )
        )
        self._end_step(
            step_id,
            "gate",
            "succeeded" if passed else "failed",
            error_kind=None if passed else "gate",
            error_message=None if passed else f"`{command}` failed (exit {exit_code})",
            detail={
                "gate": {
                    "command": command,
                    "passed": passed,
                    "exit_code": exit_code,
                    "head": head,
                    "output_tail": output,
                },
                "notes": gate_notes,
            },
        )
        self.state.steps_run += 1

    # --- resume and follow-ups ------------------------------------------------------------------------

    def _replay(self, index: int, step: Step | GateStep, record: StepRecord) -> None:
        """Rebuild state from a step that completed before a resume, without running it."""
        detail = record.detail
        if isinstance(step, GateStep):
            gate = detail.get("gate") or {}
            passed = gate.get("passed") if record.status == "succeeded" else None
            head = gate.get("head") or self._head()
            failure = None
            if gate.get("passed") is False:
                failure = GateFailure(
                    name=step.label,
                    command=gate.get("command", ""),
                    exit_code=gate.get("exit_code"),
                    output_tail=gate.get("output_tail", ""),
                )
            self.state.gates[index] = _GateResult(passed=passed, head=head, failure=failure)
        elif step.task == "review" and "verdict" in detail:
            verdict = ReviewVerdict(
                verdict=detail["verdict"],
                findings=[Finding.model_validate(f) for f in detail.get("findings", [])],
            )
            head = record.commit or self._head_at(record)
            self._take_verdict(verdict, head, record.iteration)
        elif step.task == "suggestions":
            self.state.suggestions = [Finding.model_validate(f) for f in detail.get("suggestions", [])]
        elif record.commit and self.state.verdict is not None:
            self.state.verdict_head = None
        self.state.steps_run += 1

    def _head_at(self, record: StepRecord) -> str:
        """The run's commit when a (read-only) step ran: the last commit made by an earlier step."""
        last = None
        for other in self.store.steps(self.run_id):
            if other.step_id == record.step_id:
                break
            if other.commit:
                last = other.commit
        return last or self.ws.first

    def _restore_latest(self) -> None:
        """For a follow-up: the last review's findings and the gates' latest results."""
        head = self._head()
        for record in self.store.steps(self.run_id):
            if "verdict" in record.detail:
                verdict = ReviewVerdict(
                    verdict=record.detail["verdict"],
                    findings=[Finding.model_validate(f) for f in record.detail.get("findings", [])],
                )
                self._take_verdict(verdict, self._head_at(record))
            gate = record.detail.get("gate")
            if isinstance(gate, dict) and "passed" in gate:
                self.state.gates[record.index] = _GateResult(
                    passed=gate["passed"], head=gate.get("head", head)
                )

    def _follow_ups_path(self) -> Path:
        return self.paths.run_dir / "follow-ups.json"

    def _follow_ups(self) -> dict[int, str]:
        try:
            raw = json.loads(self._follow_ups_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {int(k): str(v) for k, v in raw.items()}

    def _save_follow_up(self, iteration: int, text: str) -> None:
        known = self._follow_ups()
        known[iteration] = text
        self._follow_ups_path().parent.mkdir(parents=True, exist_ok=True)
        self._follow_ups_path().write_text(
            json.dumps({str(k): v for k, v in known.items()}), encoding="utf-8"
        )

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


def _usage_of(result: AgentStepResult) -> TokenUsage:
    s = result.summary
    return TokenUsage(
        input_tokens=s.input_tokens,
        output_tokens=s.output_tokens,
        cached_tokens=s.cached_tokens,
        cost_usd=s.cost_usd,
    )
