"""When a run stops, as one pure function of what the engine knows after a step.

The engine calls `decide_stop` after every step (and once more when an iteration ends) and stops on the
first decision it gets. The order of the rules is the order of the checks below: a run that reached
approval at the very moment its budget ran out is reported as approved, because the work is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from orchestrator.engine.review import Verdict
from orchestrator.engine.workflow import GateStep, Workflow

StopReason = Literal[
    "approved",  # the latest review approves (or the workflow has none) and every required gate passes
    "below_threshold",  # a review found fewer problems than the workflow's min_suggestions_threshold
    "no_progress",  # a review repeated the previous findings, or no later iteration could edit anything
    "max_iterations",
    "budget_exceeded",  # --budget-usd
    "timed_out",  # --timeout, for the whole run
    "step_limit",  # the run's limit on the number of steps
    "step_failed",  # a required step failed and no fallback agent could take it
]
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)


@dataclass(frozen=True)
class StopState:
    """What the engine knows right after a step. Iterations count from 1."""

    iteration: int
    max_iterations: int
    # Every step of this iteration has run (the end-of-iteration call).
    iteration_complete: bool = False
    # Workflow.can_iterate: a later iteration has a step that edits files.
    can_iterate: bool = True
    # Workflow.has_review: without a review step, approval rests on the gates alone.
    has_review: bool = True
    # The step that just finished is a review: its findings are judged now.
    just_reviewed: bool = False
    # The latest review's verdict; None when there has been none, or files changed after it.
    verdict: Verdict | None = None
    findings_count: int = 0  # findings of that latest review
    fingerprint: str | None = None  # review.findings_fingerprint of those findings
    previous_fingerprint: str | None = None  # of the review before it, None for the first review
    min_suggestions_threshold: int = 0
    # gates_passing(): True when every required gate's latest run passed (or was skipped), False when
    # one failed, None while one has not run yet.
    gates_passing: bool | None = True
    failed_step: str | None = None  # a required step that failed, e.g. "i2-s3-refine (gemini): crashed"
    spent_usd: float = 0.0
    budget_usd: float | None = None
    elapsed_s: float = 0.0
    timeout_s: float | None = None
    steps_run: int = 0
    max_steps: int | None = None


@dataclass(frozen=True)
class StopDecision:
    reason: StopReason
    detail: str  # one sentence for the report

    @property
    def approved(self) -> bool:
        return self.reason == "approved"


def decide_stop(state: StopState) -> StopDecision | None:
    """The reason to stop now, or None to go on."""
    if state.failed_step is None and state.gates_passing is True:
        if state.verdict == "approve":
            return StopDecision("approved", "the latest review approves and every gate passes")
        if not state.has_review and state.iteration_complete:
            return StopDecision("approved", "the workflow has no review and every gate passes")
    if state.timeout_s is not None and state.elapsed_s >= state.timeout_s:
        return StopDecision("timed_out", f"the run took {state.elapsed_s:.0f}s of its {state.timeout_s:.0f}s")
    if state.budget_usd is not None and state.spent_usd >= state.budget_usd:
        return StopDecision(
            "budget_exceeded", f"${state.spent_usd:.2f} spent of a ${state.budget_usd:.2f} budget"
        )
    if state.failed_step is not None:
        return StopDecision("step_failed", f"a required step failed: {state.failed_step}")
    if state.just_reviewed:
        decision = _judge_review(state)
        if decision is not None:
            return decision
    if state.iteration_complete:
        if state.iteration >= state.max_iterations:
            return StopDecision(
                "max_iterations", f"{state.iteration} of {state.max_iterations} iterations ran"
            )
        if not state.can_iterate:
            return StopDecision("no_progress", "no step of a later iteration edits files")
    if state.max_steps is not None and state.steps_run >= state.max_steps:
        return StopDecision("step_limit", f"{state.steps_run} of {state.max_steps} steps ran")
    return None


def _judge_review(state: StopState) -> StopDecision | None:
    threshold = state.min_suggestions_threshold
    # Failing gates still need work, however few findings the review has.
    if threshold > 0 and state.findings_count < threshold and state.gates_passing is not False:
        return StopDecision(
            "below_threshold", f"the review has {state.findings_count} finding(s), fewer than {threshold}"
        )
    if (
        state.verdict == "request_changes"
        and state.previous_fingerprint is not None
        and state.fingerprint == state.previous_fingerprint
    ):
        return StopDecision("no_progress", "the review repeats the previous review's findings")
    return None


def gates_passing(workflow: Workflow, latest: Mapping[int, bool | None]) -> bool | None:
    """Sum up the gates for StopState: `latest` maps a gate's index in `workflow.steps` to its latest
    result (True passed, False failed, None skipped: `run: auto` found no tests). Optional gates never
    block."""
    required = [
        i for i, step in enumerate(workflow.steps) if isinstance(step, GateStep) and not step.optional
    ]
    if any(latest.get(i) is False for i in required):
        return False
    if any(i not in latest for i in required):
        return None
    return True
