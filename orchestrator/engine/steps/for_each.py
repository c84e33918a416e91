"""for_each: the task once per subtask of the plan, each in a run repository and on a branch of its own
(`orchestrator/<run-id>-st-<subtask>`), by the workflow's `agents` in turn, at once where the plan
allows (plan.schedule_plan: what a subtask depends on, and subtasks declaring one file one after the
other).

A subtask starts once everything it waits for is in the run branch, from the run's tip then, so it
builds on that work. When it is done it is merged into the run branch at once (one merge at a time,
`git merge-tree`, no work tree touched), so the merges go in dependency order. A conflict goes back to
the subtask's agent with both sides, then to a third CLI (conflicts.py). A subtask that fails or still
does not merge stops what depends on it; its branch keeps its commits, and the merge step then stops
the run for a human. Without a usable plan the step is one plain agent step (the plain loop).

Resume: a subtask already merged is not run again; one that finished but was not merged is merged; the
rest start over.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, NoReturn

from orchestrator.adapters.runner import AgentStepResult
from orchestrator.engine.plan import Subtask, schedule_plan
from orchestrator.engine.prompts import PromptContext, render_step
from orchestrator.engine.rate_limits import call_with_rate_limit_retries
from orchestrator.engine.run_state import Cancelled, step_id_for, usage_of
from orchestrator.engine.scheduler import Task, run_group
from orchestrator.engine.steps import StepAt
from orchestrator.engine.steps.agent import run_agent_step_kind
from orchestrator.engine.steps.conflicts import merged_order_add, resolve_conflicts
from orchestrator.engine.workflow import ForEachStep, Step
from orchestrator.errors import RunNotFound
from orchestrator.events import Notice
from orchestrator.store import COMPLETED_STEP_STATUSES, StepRecord, TokenUsage
from orchestrator.workspace.run_records import branch_name, member_run_id
from orchestrator.workspace.run_workspace import RunWorkspace

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


@dataclass(frozen=True)
class SubtaskOutcome:
    id: str
    agent: str
    step_id: str
    branch: str
    depends_on: tuple[str, ...] = ()
    state: str = "pending"  # merged, failed, conflict, not_started
    commit: str | None = None
    merge_commit: str | None = None
    conflicts: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "depends_on": list(self.depends_on), "conflicts": list(self.conflicts)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubtaskOutcome:
        return cls(**{**data, "depends_on": tuple(data["depends_on"]), "conflicts": tuple(data["conflicts"])})


class SubtaskFailed(Exception):
    def __init__(self, outcome: SubtaskOutcome) -> None:
        super().__init__(outcome.error or outcome.state)
        self.outcome = outcome


class ForEachKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        step = at.step
        assert isinstance(step, ForEachStep)
        plan = engine.state.plan
        if plan is None:  # the plain loop: one step by the first agent
            plain = Step(
                agent=step.agents[0],
                task=step.task,
                description=step.description,
                optional=step.optional,
                timeout_s=step.timeout_s,
                model=step.model,
            )
            run_agent_step_kind(engine, at.iteration, at.index, plain, follow_up)
            return
        parent_id = step_id_for(at.iteration, at.index, step)
        schedule = schedule_plan(plan)
        engine.begin_step(parent_id, at, step.agents[0], step.task)
        merging = threading.Lock()
        merged_order: list[str] = []
        agent_of = {s.id: step.agents[i % len(step.agents)] for i, s in enumerate(plan.subtasks)}
        group = [
            Task(
                s.id,
                functools.partial(_subtask, engine, at, parent_id, s, agent_of[s.id], merging, merged_order),
                schedule.waits_for[s.id],
            )
            for s in plan.subtasks
        ]
        outcomes = run_group(
            group, max_workers=engine.run_slots.concurrency, cancel=engine.cancel, name="subtask"
        )
        engine.moved()
        results = []
        for s in plan.subtasks:
            outcome = outcomes[s.id]
            if isinstance(outcome.error, SubtaskFailed):
                results.append(outcome.error.outcome)
            elif outcome.value is not None:
                results.append(outcome.value)
            else:
                error = None if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}"
                state = "failed" if outcome.started else "not_started"
                results.append(
                    _pending(engine, at.iteration, parent_id, s, agent_of[s.id], state=state, error=error)
                )
        if engine.cancel.is_set():
            engine.end_step(
                parent_id, step.agents[0], "cancelled", error_kind="other", error_message="cancelled"
            )
            raise Cancelled
        if engine.state.verdict is not None:
            engine.state.verdict_head = None
        unmerged = [r for r in results if r.state != "merged"]
        detail = {
            "subtasks": [r.to_json() for r in results],
            "merge_order": merged_order,
            "serialized": [
                {"first": s.first, "then": s.then, "files": list(s.files)} for s in schedule.serialized
            ],
            "notes": [f"subtask {r.id}: {r.state}" + (f" ({r.error})" if r.error else "") for r in unmerged],
        }
        message = None if not unmerged else ", ".join(f"{r.id} {r.state}" for r in unmerged)
        engine.end_step(
            parent_id,
            step.agents[0],
            "failed" if unmerged else "succeeded",
            commit=engine.head(),
            error_kind="other" if unmerged else None,
            error_message=message,
            detail=detail,
        )
        engine.state.steps_run += 1

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        if record.commit and engine.state.verdict is not None:
            engine.state.verdict_head = None


def _pending(
    engine: RunEngine,
    iteration: int,
    parent_id: str,
    subtask: Subtask,
    agent: str,
    *,
    state: str = "pending",
    error: str | None = None,
) -> SubtaskOutcome:
    return SubtaskOutcome(
        id=subtask.id,
        agent=agent,
        step_id=f"{parent_id}-{subtask.id}",
        branch=branch_name(member_run_id(engine.run_id, f"st-{subtask.id}", iteration)),
        depends_on=subtask.depends_on,
        state=state,
        error=error,
    )


def _subtask(
    engine: RunEngine,
    at: StepAt,
    parent_id: str,
    subtask: Subtask,
    agent: str,
    merging: threading.Lock,
    merged_order: list[str],
) -> SubtaskOutcome:
    step = at.step
    assert isinstance(step, ForEachStep)
    outcome = _pending(engine, at.iteration, parent_id, subtask, agent)
    known = engine.store.step(engine.run_id, outcome.step_id)
    if known is not None and known.status in COMPLETED_STEP_STATUSES and "subtask" in known.detail:
        done = SubtaskOutcome.from_json(known.detail["subtask"])
        if done.state == "merged":
            with merging:
                merged_order.append(done.id)
            return done  # resume: done and merged before
    child = member_run_id(engine.run_id, f"st-{subtask.id}", at.iteration)
    with merging:
        base = engine.ws.head()  # everything it waits for is in by now
    engine.store.start_step(
        engine.run_id, outcome.step_id, iteration=at.iteration, index=at.index, agent=agent, task=step.task
    )
    try:
        ws = RunWorkspace.open(engine.ws.repo, child, engine.state_home, environ=engine.env)
        ws.reset_to(ws.first)  # resume: it starts over; what it left is kept under its backups
    except RunNotFound:
        ws = RunWorkspace.create(
            engine.ws.repo, child, base=base, state_home=engine.state_home, environ=engine.env
        )
    context = f"{engine.run.task.strip()}\n\nYour part of it (subtask {subtask.id}):\n{subtask.prompt}"
    if subtask.files:
        context += f"\n\nThe files this part is expected to change: {', '.join(subtask.files)}"
    prompt = render_step(
        step.task, PromptContext(task=context, iteration=at.iteration, description=step.description)
    )
    result, usage = _call(engine, step, agent, outcome.step_id, prompt, ws, subtask.id)
    if not result.success:
        ws.reset_to(ws.first)
        return _fail(
            engine, outcome, usage, "failed", f"{result.summary.error_kind}: {result.summary.error_message}"
        )
    if engine.withhold_leaks(outcome.step_id, ws.first, ws) is not None:
        return _fail(engine, outcome, usage, "failed", "secret_leak: the change held a secret; withheld")
    subject = f"{step.task} {subtask.id} by {agent} (run {engine.run_id}, {outcome.step_id})"
    made = ws.commit_step(
        step_id=outcome.step_id, agent=agent, task=step.task, message=subject, step_start=ws.first
    )
    commit = made.sha if made.changed else None
    merge_commit = None
    if commit is not None:
        trailers = {
            "Orchestrator-Run": engine.run_id,
            "Orchestrator-Step": outcome.step_id,
            "Orchestrator-Agent": agent,
            "Orchestrator-Task": "merge",
        }
        subject = f"merge subtask {subtask.id} ({agent}) into run {engine.run_id}"
        with merging:
            merge_commit, conflicts = engine.ws.merge_in(commit, subject=subject, trailers=trailers)
            if merge_commit is not None:
                merged_order.append(subtask.id)
        if merge_commit is None:
            merge_commit, conflicts, more = resolve_conflicts(
                engine, step, ws, outcome.step_id, subtask.id, agent, conflicts, merging, subject, trailers
            )
            usage = usage + more
            if merge_commit is not None:
                merged_order_add(merging, merged_order, subtask.id)
        if merge_commit is None:
            conflicted = replace(outcome, commit=commit, conflicts=tuple(conflicts))
            return _fail(engine, conflicted, usage, "conflict", f"does not merge: {', '.join(conflicts)}")
    else:
        with merging:
            merged_order.append(subtask.id)
    final = replace(outcome, state="merged", commit=commit, merge_commit=merge_commit)
    engine.end_step(
        outcome.step_id,
        agent,
        "succeeded",
        commit=commit,
        files=made.files,
        usage=usage,
        detail={"subtask": final.to_json(), "notes": [] if commit else ["no files changed"]},
    )
    return final


def _call(
    engine: RunEngine, step: ForEachStep, agent: str, step_id: str, prompt: str, ws: RunWorkspace, member: str
) -> tuple[AgentStepResult, TokenUsage]:
    given_up: list[AgentStepResult] = []
    result = call_with_rate_limit_retries(
        functools.partial(
            engine.call_agent,
            agent,
            step.task,
            step_id,
            prompt,
            read_only=False,
            timeout_s=step.timeout_s,
            model=step.model,
            cwd=ws.worktree,
            instance=member,
        ),
        policy=engine.settings.agent(agent).retry,
        others_ready=lambda: False,
        cancel=engine.cancel,
        failed=given_up.append,
        label=f"{step_id} ({agent})",
    )
    return result, functools.reduce(lambda total, r: total + usage_of(r), given_up, usage_of(result))


def _fail(engine: RunEngine, outcome: SubtaskOutcome, usage: TokenUsage, state: str, error: str) -> NoReturn:
    failed = replace(outcome, state=state, error=error)
    engine.bus.publish(Notice(run_id=engine.run_id, level="error", text=f"{outcome.step_id}: {error}"))
    engine.end_step(
        outcome.step_id,
        outcome.agent,
        "failed",
        commit=failed.commit,
        usage=usage,
        error_kind="merge_conflict" if state == "conflict" else "other",
        error_message=error,
        detail={"subtask": failed.to_json()},
    )
    raise SubtaskFailed(failed)
