"""One read-only review of each usable attempt of a best of N, at once, for `select: [..., review, ...]`.

The reviewer is a CLI that wrote none of the attempts where a ready one exists, else any CLI but the
attempt's own author (consensus.choose_attempt_reviewer); the pool is the workflow's agents and the
fallback order. Each review is a sub-step `<attempt step>-review` run in the attempt's repository,
whose verdict gives the attempt its review score (selection.review_score). Resume: a finished review
is not asked again.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import TYPE_CHECKING

from orchestrator.engine.consensus import choose_attempt_reviewer
from orchestrator.engine.prompts import PromptContext, render_step
from orchestrator.engine.review import ReviewVerdict
from orchestrator.engine.run_state import DIFF_BUDGET_BYTES, usage_of
from orchestrator.engine.scheduler import Task, run_group
from orchestrator.engine.selection import review_score
from orchestrator.engine.steps import StepAt
from orchestrator.engine.workflow import AttemptsStep
from orchestrator.store import COMPLETED_STEP_STATUSES
from orchestrator.workspace.run_records import member_run_id
from orchestrator.workspace.run_workspace import RunWorkspace

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine
    from orchestrator.engine.steps.attempts import AttemptOutcome


def review_attempts(
    engine: RunEngine, at: StepAt, results: list[AttemptOutcome], base: str
) -> list[AttemptOutcome]:
    """`results` with each usable attempt's reviewer, verdict and score filled in."""
    from orchestrator.engine.steps.attempts import AttemptOutcome

    step = at.step
    assert isinstance(step, AttemptsStep)
    pool = [
        a for a in (*engine.workflow.agents, *engine.settings.fallback_order) if engine.readiness.of(a).ready
    ]
    pool = list(dict.fromkeys(pool))
    authors = [r.agent for r in results]

    def review(outcome: AttemptOutcome) -> AttemptOutcome:
        if not outcome.completed or outcome.commit is None:
            return outcome
        review_id = f"{outcome.step_id}-review"
        known = engine.store.step(engine.run_id, review_id)
        if known is not None and known.status in COMPLETED_STEP_STATUSES and "attempt_review" in known.detail:
            return AttemptOutcome(**{**asdict(outcome), **known.detail["attempt_review"]})  # resume
        reviewer = choose_attempt_reviewer(pool, author=outcome.agent, all_authors=authors)
        if reviewer is None:
            return outcome
        member = f"{reviewer}-on-{outcome.name}"
        engine.store.start_step(
            engine.run_id, review_id, iteration=at.iteration, index=at.index, agent=reviewer, task="review"
        )
        ws = RunWorkspace.open(
            engine.ws.repo,
            member_run_id(engine.run_id, outcome.name, at.iteration),
            engine.state_home,
            environ=engine.env,
        )
        diff = ws.diff(since=base, max_bytes=DIFF_BUDGET_BYTES, committed_only=True)
        ctx = PromptContext(task=engine.run.task, iteration=at.iteration, diff=diff.text, files=diff.files)
        result = engine.call_agent(
            reviewer,
            "review",
            review_id,
            render_step("review", ctx),
            read_only=True,
            cwd=ws.worktree,
            instance=member,
        )
        verdict: ReviewVerdict | None = None
        usage = usage_of(result)
        if result.success:
            verdict, extra = engine.review_verdict(reviewer, review_id, result, instance=member)
            usage = usage + extra
        ws.discard_uncommitted(step_start=outcome.commit)
        found = {
            "reviewer": reviewer,
            "review_verdict": verdict.verdict if verdict else None,
            "review_score": review_score(verdict),
        }
        engine.end_step(
            review_id,
            reviewer,
            "succeeded" if result.success else "failed",
            usage=usage,
            error_kind=None if result.success else result.summary.error_kind,
            error_message=None if result.success else result.summary.error_message,
            detail={
                "attempt_review": found,
                "review_findings": [f.model_dump(mode="json") for f in (verdict.findings if verdict else ())],
            },
        )
        return AttemptOutcome(**{**asdict(outcome), **found})

    group = [Task(r.name, functools.partial(review, r)) for r in results]
    done = run_group(
        group, max_workers=engine.run_slots.concurrency, cancel=engine.cancel, name="attempt-review"
    )
    return [done[r.name].value or r for r in results]
