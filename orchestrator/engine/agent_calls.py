"""What every step kind needs to have an agent work: pick it (falling back when one is not ready), render
its prompt, call it under the concurrency limits, and keep a leaked secret out of every ref.

A mixin of RunEngine (runner.py): the step kinds (steps/) call these on the engine. Safe to call from
several threads at once for different agents: nothing here writes shared state but the bus and the
store, which lock, and `state.unavailable`, a set whose adds are atomic.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import AgentRequest, Availability, PermissionMode, credential_vars_for
from orchestrator.adapters.runner import AgentStepResult, run_agent_step
from orchestrator.audit import AuditLog, audit_agent_step
from orchestrator.config import Settings, agent_child_vars
from orchestrator.engine.leaks import Withheld, check_step
from orchestrator.engine.prompts import PromptContext, render_followup, render_review_retry, render_step
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.engine.review import ReviewVerdict, findings_fingerprint, parse_review, unparsed_review
from orchestrator.engine.run_state import DIFF_BUDGET_BYTES, RunState, usage_of
from orchestrator.engine.workflow import TaskKind, Workflow
from orchestrator.events import AgentActivity, AgentEvent, EventBus, Notice
from orchestrator.limits import MachineSlots, RunSlots, hold_slots
from orchestrator.secrets import SecretMasker
from orchestrator.store import RunRecord, Store, TokenUsage
from orchestrator.workspace.diffs import DiffText
from orchestrator.workspace.paths import RunPaths
from orchestrator.workspace.run_workspace import RunWorkspace
from orchestrator.workspace.sandbox import Sandbox

log = structlog.get_logger(__name__)

# Given to every agent process of a group (attempts, reviewers): which member it is, e.g. "claude-2".
# The CLIs ignore it; the fake agent plays the scenario of that member when there is one.
INSTANCE_VAR = "ORCHESTRATOR_INSTANCE"


class AgentCalls:
    store: Store
    settings: Settings
    env: Mapping[str, str]
    run_id: str
    run: RunRecord
    workflow: Workflow
    bus: EventBus
    cancel: threading.Event
    ws: RunWorkspace
    paths: RunPaths
    state: RunState
    readiness: AgentReadiness
    masker: SecretMasker
    sandbox: Sandbox
    audit: AuditLog
    run_slots: RunSlots
    machine_slots: MachineSlots
    agent_started: threading.Event  # set once the run's first agent process exists (the base run waits)
    _guard: dict[str, str] | None
    _head_cache: str | None
    _diff_cache: tuple[tuple[str, str], DiffText] | None

    def elapsed(self) -> float:
        raise NotImplementedError  # RunEngine's

    # --- picking an agent ---------------------------------------------------------------------------

    def fallback_exists(self, wanted: str, failed: str, avoid: Sequence[str]) -> bool:
        exclude = sorted({*self.state.unavailable, failed})
        return self.readiness.pick(wanted, exclude=exclude, avoid=avoid) is not None

    def pick_agent(self, wanted: str, notes: list[str], avoid: Sequence[str] = ()) -> str | None:
        agent = self.readiness.pick(wanted, exclude=sorted(self.state.unavailable), avoid=avoid)
        if agent is not None and agent != wanted:
            why = (
                "it failed earlier in this run"
                if wanted in self.state.unavailable
                else self.readiness.of(wanted).reason
            )
            note = f"{wanted} is not ready ({why}); {agent} takes the step"
            if note not in notes:
                notes.append(note)
                self.bus.publish(
                    Notice(
                        run_id=self.run_id,
                        level="warning",
                        text=note,
                        kind="fallback",
                        agent=wanted,
                        reason="failed_earlier" if wanted in self.state.unavailable else "not_ready",
                    )
                )
        return agent

    def availability_of(self, agent: str) -> Availability:
        return self.readiness.of(agent)

    # --- calling it ---------------------------------------------------------------------------------

    def call_agent(
        self,
        agent: str,
        task: str,
        step_id: str,
        prompt: str,
        *,
        read_only: bool,
        timeout_s: float | None = None,
        model: str | None = None,
        cwd: Path | None = None,
        instance: str | None = None,
    ) -> AgentStepResult:
        """One agent process, under the run's and the machine's concurrency limits (limits/)."""
        adapter = get_adapter(agent)
        config = self.settings.agent(agent)
        timeout = timeout_s or config.timeout_s
        if self.run.options.timeout_s is not None:
            timeout = max(min(timeout, self.run.options.timeout_s - self.elapsed()), 1.0)
        config = config.model_copy(update={"timeout_s": timeout})
        member = instance or agent
        env = {
            **agent_child_vars(agent, config, credential_vars_for(adapter, self.env, config.args), self.env),
            **self.guard_env(),
        }
        if instance is not None:
            env[INSTANCE_VAR] = instance
        request = AgentRequest(
            prompt=prompt,
            cwd=cwd or self.ws.worktree,
            run_dir=self.paths.run_dir / "agents" / member,
            permission=PermissionMode.READ_ONLY if read_only else PermissionMode.EDIT,
            resume_session=None if instance is not None else self.session_for(agent, read_only),
            model=model or config.model,
            extra_args=tuple(config.args),
            env=env,
            command=config.command,
        )

        def forward(event: AgentEvent) -> None:
            self.bus.publish(AgentActivity(run_id=self.run_id, step_id=step_id, agent=agent, event=event))

        with (
            structlog.contextvars.bound_contextvars(step_id=step_id, agent=member),
            hold_slots(self.run_slots, self.machine_slots, agent, cancel=self.cancel),
        ):
            result = run_agent_step(
                adapter,
                request,
                config,
                parent_env=self.env,
                on_event=forward,
                cancel=self.cancel,
                transcript=self.paths.run_dir / "transcripts" / f"{step_id}-{member}.jsonl",
                track_changes=False,
                sandbox=self.sandbox,
                masker=self.masker,
                on_started=self.agent_started.set,
            )
        if result.summary.error_kind == "rate_limit":
            cap = self.machine_slots.rate_limited(agent)  # every run on the machine starts fewer
            log.info("rate_limited", agent=agent, cap=cap)
        audit_agent_step(self.audit, result, run_id=self.run_id, step_id=step_id)
        return result

    def session_for(self, agent: str, read_only: bool) -> str | None:
        """Follow-ups to the same agent in the same run resume its CLI session, per role: a reviewer
        never continues the session in which the same CLI wrote the code (its review stays independent)."""
        session = None
        for record in self.store.steps(self.run_id):
            same_role = (record.task in ("review", "suggestions")) == read_only
            if record.agent == agent and same_role and record.session_id:
                session = record.session_id
        return session

    def review_verdict(
        self,
        agent: str,
        step_id: str,
        result: AgentStepResult,
        *,
        timeout_s: float | None = None,
        model: str | None = None,
        instance: str | None = None,
    ) -> tuple[ReviewVerdict, TokenUsage]:
        verdict = parse_review(result.summary.final_text)
        if verdict is not None:
            return verdict, TokenUsage()
        # Asked for once more, in the reviewer's own session; then the text itself is the finding.
        self.bus.publish(
            Notice(
                run_id=self.run_id,
                text=f"{step_id}: {instance or agent}'s review had no verdict; asking once more",
                kind="retry",
                agent=agent,
                reason="review_verdict",
            )
        )
        retry = self.call_agent(
            agent,
            "review",
            step_id,
            render_review_retry(result.summary.final_text),
            read_only=True,
            timeout_s=timeout_s,
            model=model,
            instance=instance,
        )
        again = parse_review(retry.summary.final_text) if retry.success else None
        return again or unparsed_review(result.summary.final_text), usage_of(retry)

    def take_verdict(self, verdict: ReviewVerdict, head: str, iteration: int | None = None) -> None:
        self.state.previous_fingerprint = self.state.fingerprint
        self.state.fingerprint = findings_fingerprint(verdict.findings)
        self.state.verdict = verdict
        self.state.verdict_head = head
        self.state.verdict_iteration = iteration
        self.state.findings = list(verdict.findings)

    def withhold_leaks(self, label: str, head_before: str, ws: RunWorkspace | None = None) -> Withheld | None:
        """Withhold the step's change when it holds a given secret (leaks.py), saying so."""
        withheld = check_step(
            ws or self.ws,
            step_id=label,
            step_start=head_before,
            given=self.masker.given,
            run_dir=self.paths.run_dir,
        )
        if withheld is not None:
            if ws is None:
                self.moved()
            self.bus.publish(Notice(run_id=self.run_id, level="error", text=f"{label}: {withheld.message()}"))
        return withheld

    # --- what a step leaves ------------------------------------------------------------------------

    def commit(
        self, step_id: str, agent: str, task: str, head_before: str, notes: list[str]
    ) -> tuple[str | None, list[str]]:
        """Commit what an editing step left on the run branch (and bring it into the user's repository)."""
        subject = f"{task} by {agent} (run {self.run_id}, {step_id})"
        made = self.ws.commit_step(
            step_id=step_id, agent=agent, task=task, message=subject, step_start=head_before
        )
        self.moved()
        if made.changed:
            self.audit.repo_write(
                "fetch_branch", repo=self.run.repo, ref=self.run.branch, commit=made.sha, run_id=self.run_id
            )
        if not made.changed:
            notes.append("no files changed")
        elif self.state.verdict is not None:
            self.state.verdict_head = None  # the verdict no longer describes the tree
        return made.sha, made.files

    def undo_read_only(self, step_id: str, agent: str, head_before: str, notes: list[str]) -> None:
        """Undo whatever a read-only step changed (kept under a backup ref), saying so."""
        undone = self.ws.discard_uncommitted(step_start=head_before)
        self.moved()
        if undone:
            note = f"{agent} changed {', '.join(undone.files)} in a read-only step; undone (kept at {undone.backup_ref})"
            notes.append(note)
            self.bus.publish(Notice(run_id=self.run_id, level="warning", text=f"{step_id}: {note}"))

    # --- the tree and the prompt --------------------------------------------------------------------

    def head(self) -> str:
        """The run branch's tip. Cached: during a run only this engine moves the branch (commit_step,
        discard_uncommitted and reset_to, after which `moved()` is called)."""
        if self._head_cache is None:
            self._head_cache = self.ws.head()
        return self._head_cache

    def moved(self) -> None:
        self._head_cache = None

    def guard_env(self) -> dict[str, str]:
        if self._guard is None:
            self._guard = self.ws.agent_env()
        return self._guard

    def diff_at(self, head: str) -> DiffText:
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

    def prompt(self, task: TaskKind, description: str, iteration: int, follow_up: str | None) -> str:
        head = self.head()
        diff = self.diff_at(head)
        failing = [g.failure for g in self.state.gates.values() if g.failure is not None and g.head == head]
        ctx = PromptContext(
            task=self.run.task,
            iteration=iteration,
            description=description,
            diff=diff.text,
            files=diff.files,
            diff_note=(f"cut to fit: {', '.join(diff.cut_files)}" if diff.truncated else ""),
            findings=self.state.findings,
            suggestions=self.state.suggestions,
            failing_gates=failing,
        )
        if follow_up is not None and task == "implement":
            return render_followup(ctx, follow_up)
        return render_step(task, ctx)
