"""The agent step: one agent does one task in the run's repository.

Pick the agent (another takes over when it is not ready or fails with a fallback error), render the
prompt, call it (rate-limit retries included), then commit what it changed, or undo what a read-only
step changed; a review's verdict and a suggestions step's findings go into the run's state.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.runner import AgentStepResult
from orchestrator.engine.rate_limits import call_with_rate_limit_retries
from orchestrator.engine.readiness import unready_kind
from orchestrator.engine.review import Finding, ReviewVerdict, parse_review, unparsed_review
from orchestrator.engine.run_state import FALLBACK_ERRORS, Cancelled, step_id_for, usage_of
from orchestrator.engine.steps import StepAt
from orchestrator.engine.workflow import Step
from orchestrator.events import Notice, StepStarted
from orchestrator.store import StepRecord, StepStatus, TokenUsage
from orchestrator.workspace.run_repo import RunRepoTampered

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


class AgentStepKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        assert isinstance(at.step, Step)
        run_agent_step_kind(engine, at.iteration, at.index, at.step, follow_up)

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        step, detail = at.step, record.detail
        assert isinstance(step, Step)
        if step.task == "review" and "verdict" in detail:
            verdict = ReviewVerdict(
                verdict=detail["verdict"],
                findings=[Finding.model_validate(f) for f in detail.get("findings", [])],
            )
            head = record.commit or engine.head_at(record)
            engine.take_verdict(verdict, head, record.iteration)
        elif step.task == "suggestions":
            engine.state.suggestions = [Finding.model_validate(f) for f in detail.get("suggestions", [])]
        elif record.commit and engine.state.verdict is not None:
            engine.state.verdict_head = None


def run_agent_step_kind(
    engine: RunEngine, iteration: int, index: int, step: Step, follow_up: str | None
) -> None:
    step_id = step_id_for(iteration, index, step)
    notes: list[str] = []
    avoid = engine.readiness.avoid_for(step, engine.workflow)  # a review never goes to the code's authors
    agent = engine.pick_agent(step.agent, notes, avoid)
    if agent is None:
        agent_unavailable(engine, iteration, index, step, notes)
        return
    head_before = engine.head()
    engine.watch_user_refs()
    prompt = engine.prompt(step.task, step.description, iteration, follow_up)
    usage = TokenUsage()
    while True:
        engine.store.start_step(
            engine.run_id, step_id, iteration=iteration, index=index, agent=agent, task=step.task
        )
        engine.bus.publish(
            StepStarted(
                run_id=engine.run_id, step_id=step_id, agent=agent, task=step.task, iteration=iteration
            )
        )
        given_up: list[AgentStepResult] = []
        result = call_with_rate_limit_retries(
            functools.partial(
                engine.call_agent,
                agent,
                step.task,
                step_id,
                prompt,
                read_only=step.read_only,
                timeout_s=step.timeout_s,
                model=step.model,
            ),
            policy=engine.settings.agent(agent).retry,
            others_ready=functools.partial(engine.fallback_exists, step.agent, agent, avoid),
            cancel=engine.cancel,
            failed=given_up.append,
            label=f"{step_id} ({agent})",
        )
        for earlier in given_up:
            usage = usage + usage_of(earlier)
        usage = usage + usage_of(result)
        kind = result.summary.error_kind
        if result.success or kind not in FALLBACK_ERRORS or engine.cancel.is_set():
            break
        # This agent cannot work now: the next ready one takes the step.
        engine.state.unavailable.add(agent)
        replacement = engine.pick_agent(step.agent, notes, avoid)
        if replacement is None:
            break
        note = f"{agent} failed ({kind}: {result.summary.error_message}); {replacement} took the step"
        notes.append(note)
        engine.bus.publish(
            Notice(
                run_id=engine.run_id,
                level="warning",
                text=f"{step_id}: {note}",
                kind="fallback",
                agent=agent,
                reason=kind,
            )
        )
        engine.store.finish_step(
            engine.run_id,
            step_id,
            status="failed",
            usage=usage,
            error_kind=kind,
            error_message=result.summary.error_message,
            detail={"notes": notes},
        )
        # The failed attempt's edits are kept under a backup ref by reset_to, unless they hold a
        # secret: then only in the run's folder.
        engine.withhold_leaks(f"{step_id}-{agent}-failed", head_before)
        engine.ws.reset_to(head_before)
        engine.moved()
        agent = replacement

    detail: dict[str, Any] = {"notes": notes}
    if step.read_only and result.success and step.task == "review":
        verdict, extra_usage = engine.review_verdict(
            agent, step_id, result, timeout_s=step.timeout_s, model=step.model
        )
        usage = usage + extra_usage
        engine.take_verdict(verdict, head_before, iteration)
        detail["verdict"] = verdict.verdict
        detail["findings"] = [f.model_dump(mode="json") for f in verdict.findings]
    elif step.read_only and result.success and step.task == "suggestions":
        parsed = parse_review(result.summary.final_text)
        engine.state.suggestions = (
            list(parsed.findings) if parsed else [unparsed_review(result.summary.final_text).findings[0]]
        )
        detail["suggestions"] = [f.model_dump(mode="json") for f in engine.state.suggestions]

    commit = None
    files: list[str] = []
    try:
        withheld = engine.withhold_leaks(step_id, head_before)
        if withheld is not None:
            # A secret the run was given is in the change: nothing of it reaches a ref (leaks.py).
            engine.end_step(
                step_id,
                agent,
                "failed",
                usage=usage,
                error_kind="secret_leak",
                error_message=withheld.message(),
                session_id=result.summary.session_id,
                detail=detail,
            )
            engine.state.steps_run += 1
            engine.state.failed_step = f"{step_id} ({agent}): secret_leak"
            return
        if step.read_only:
            engine.undo_read_only(step_id, agent, head_before, notes)
        else:
            commit, files = engine.commit(step_id, agent, step.task, head_before, notes)
    except RunRepoTampered as exc:
        # The agent rewrote its repository's .git to point our git elsewhere: nothing is committed.
        engine.end_step(
            step_id,
            agent,
            "failed",
            usage=usage,
            error_kind="other",
            error_message=exc.message,
            detail=detail,
        )
        engine.state.failed_step = f"{step_id} ({agent}): its repository was tampered with"
        return

    if engine.cancel.is_set():
        engine.end_step(
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
        "succeeded" if result.success else ("refused" if result.summary.error_kind == "refused" else "failed")
    )
    engine.end_step(
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
    engine.state.steps_run += 1
    if not result.success and not step.optional:
        engine.state.failed_step = f"{step_id} ({agent}): {result.summary.error_kind}"


def agent_unavailable(engine: RunEngine, iteration: int, index: int, step: Step, notes: list[str]) -> None:
    step_id = step_id_for(iteration, index, step)
    availability = engine.availability_of(step.agent)
    others = [a for a in engine.readiness.candidates(step.agent) if a != step.agent]
    message = (
        f"no agent could take the step: {step.agent} is not ready ({availability.reason})"
        + (f" and neither is {', '.join(others)}" if others else "")
        + "; `orchestrator agents` says what each needs"
    )
    engine.store.start_step(
        engine.run_id, step_id, iteration=iteration, index=index, agent=step.agent, task=step.task
    )
    status: StepStatus = "skipped" if step.optional else "failed"
    engine.end_step(
        step_id,
        step.agent,
        status,
        error_kind=unready_kind(availability),
        error_message=message,
        detail={"notes": notes},
    )
    if not step.optional:
        engine.state.failed_step = f"{step_id} ({step.agent}): {availability.reason}"
