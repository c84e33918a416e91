"""The plan step: the planner reads the repository (read-only) and answers with a JSON plan (plan.py). An
invalid plan gets one repair round with the validation errors; a second invalid answer leaves the run
on the plain loop: the for_each step then runs as one plain step and the merge step has nothing to do.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.runner import AgentStepResult
from orchestrator.engine.plan import (
    Plan,
    PlanInvalid,
    parse_plan,
    plan_format_instructions,
    schedule_plan,
    validate_plan,
)
from orchestrator.engine.rate_limits import call_with_rate_limit_retries
from orchestrator.engine.run_state import Cancelled, step_id_for, usage_of
from orchestrator.engine.steps import StepAt
from orchestrator.engine.workflow import PlanStep
from orchestrator.events import Notice, StepStarted
from orchestrator.store import StepRecord, TokenUsage

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


def plan_prompt(task: str, description: str, max_subtasks: int) -> str:
    return (
        "Plan the following task for several coding agents that will work on it at the same time, each on "
        "a branch of its own. Read the repository as you need to, but do not change any file.\n\n"
        f"## Task\n{task.strip()}\n\n"
        + (f"## Notes\n{description.strip()}\n\n" if description.strip() else "")
        + plan_format_instructions(max_subtasks)
    )


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "subtasks": [
            {"id": s.id, "prompt": s.prompt, "depends_on": list(s.depends_on), "files": list(s.files)}
            for s in plan.subtasks
        ]
    }


class PlanKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        step = at.step
        assert isinstance(step, PlanStep)
        step_id = step_id_for(at.iteration, at.index, step)
        notes: list[str] = []
        agent = engine.pick_agent(step.agent, notes)
        engine.store.start_step(
            engine.run_id,
            step_id,
            iteration=at.iteration,
            index=at.index,
            agent=agent or step.agent,
            task="plan",
        )
        if agent is None:
            reason = engine.availability_of(step.agent).reason
            engine.end_step(
                step_id,
                step.agent,
                "failed",
                error_kind="other",
                error_message=f"no agent could plan: {reason}",
            )
            engine.state.failed_step = None if step.optional else f"{step_id} ({step.agent}): {reason}"
            return
        engine.bus.publish(
            StepStarted(
                run_id=engine.run_id, step_id=step_id, agent=agent, task="plan", iteration=at.iteration
            )
        )
        head_before = engine.head()
        engine.watch_user_refs()
        prompt = plan_prompt(engine.run.task, step.description, step.max_subtasks)
        call = functools.partial(_ask, engine, step, agent, step_id)
        result, usage = call(prompt)
        plan: Plan | None = None
        problems: list[str] = []
        if result.success:
            try:
                plan = parse_plan(result.summary.final_text, max_subtasks=step.max_subtasks)
            except PlanInvalid as invalid:
                problems.append(invalid.message)
                engine.bus.publish(
                    Notice(
                        run_id=engine.run_id,
                        text=f"{step_id}: the plan is not valid; one repair round",
                        kind="retry",
                    )
                )
                again, more = call(f"{prompt}\n\n{invalid.repair_prompt()}")
                usage = usage + more
                try:
                    plan = (
                        parse_plan(again.summary.final_text, max_subtasks=step.max_subtasks)
                        if again.success
                        else None
                    )
                except PlanInvalid as still:
                    problems.append(still.message)
        engine.undo_read_only(step_id, agent, head_before, notes)
        if engine.cancel.is_set():
            engine.end_step(
                step_id, agent, "cancelled", usage=usage, error_kind="other", error_message="cancelled"
            )
            raise Cancelled
        if result.success and plan is None:
            notes.append("no usable plan after the repair round: the run goes on with the plain loop")
        engine.state.plan = plan
        engine.state.plan_size = plan.size if plan else None
        detail: dict[str, Any] = {
            "plan": plan_json(plan) if plan else None,
            "plan_problems": problems,
            "notes": notes,
        }
        if plan is not None:
            schedule = schedule_plan(plan)
            detail["merge_order"] = list(schedule.order)
            detail["serialized"] = [
                {"first": s.first, "then": s.then, "files": list(s.files)} for s in schedule.serialized
            ]
        engine.end_step(
            step_id,
            agent,
            "succeeded" if result.success else "failed",
            usage=usage,
            error_kind=None if result.success else result.summary.error_kind,
            error_message=None if result.success else result.summary.error_message,
            session_id=result.summary.session_id,
            detail=detail,
        )
        engine.state.steps_run += 1
        if not result.success and not step.optional:
            engine.state.failed_step = f"{step_id} ({agent}): {result.summary.error_kind}"

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        step = at.step
        assert isinstance(step, PlanStep)
        raw = record.detail.get("plan")
        engine.state.plan = (
            validate_plan(raw, max_subtasks=step.max_subtasks) if isinstance(raw, dict) else None
        )
        engine.state.plan_size = engine.state.plan.size if engine.state.plan else None


def _ask(
    engine: RunEngine, step: PlanStep, agent: str, step_id: str, prompt: str
) -> tuple[AgentStepResult, TokenUsage]:
    given_up: list[AgentStepResult] = []
    result = call_with_rate_limit_retries(
        functools.partial(
            engine.call_agent,
            agent,
            "plan",
            step_id,
            prompt,
            read_only=True,
            timeout_s=step.timeout_s,
            model=step.model,
        ),
        policy=engine.settings.agent(agent).retry,
        others_ready=lambda: False,
        cancel=engine.cancel,
        failed=given_up.append,
        label=f"{step_id} ({agent})",
    )
    return result, functools.reduce(lambda total, r: total + usage_of(r), given_up, usage_of(result))
