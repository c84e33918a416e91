"""What the engine knows while a run goes on (rebuilt from the store on resume), and small shared names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.adapters.runner import AgentStepResult
from orchestrator.engine.gates import GateResult
from orchestrator.engine.plan import Plan
from orchestrator.engine.review import Finding, ReviewVerdict
from orchestrator.engine.workflow import AttemptsStep, ConsensusStep, ForEachStep, GateStep, TaskStep
from orchestrator.store import TokenUsage

DIFF_BUDGET_BYTES = 60_000
# Errors after which another agent should take the step rather than the run failing.
FALLBACK_ERRORS = frozenset({"not_installed", "auth", "rate_limit"})

STATUS_FOR_REASON: dict[str, str] = {
    "approved": "approved",
    "budget_exceeded": "budget_exceeded",
    "timed_out": "timed_out",
    "step_failed": "failed",
    "cancelled": "cancelled",
}


def step_id_for(iteration: int, index: int, step: TaskStep | GateStep) -> str:
    return f"i{iteration}-s{index + 1}-{'gate' if isinstance(step, GateStep) else step.task}"


@dataclass
class RunState:
    """What the stop rules, `when:` and the prompts need, rebuilt from the store on resume."""

    verdict: ReviewVerdict | None = None
    verdict_head: str | None = None  # the commit the verdict was given on
    verdict_iteration: int | None = None  # the iteration whose review gave it
    fingerprint: str | None = None
    previous_fingerprint: str | None = None
    findings: list[Finding] = field(default_factory=list)
    suggestions: list[Finding] = field(default_factory=list)
    gates: dict[int, GateResult] = field(default_factory=dict)
    steps_run: int = 0
    failed_step: str | None = None
    unavailable: set[str] = field(default_factory=set)  # agents that failed with a fallback error
    attempts_total: int | None = None  # of the last best-of-N step
    attempts_passed: int | None = None
    plan_size: int | None = None
    plan: Plan | None = None  # the plan step's valid plan; None: none, or the plain loop instead


class Cancelled(Exception):
    """The user cancelled the run's current step."""


def usage_of(result: AgentStepResult) -> TokenUsage:
    s = result.summary
    return TokenUsage(
        input_tokens=s.input_tokens,
        output_tokens=s.output_tokens,
        cached_tokens=s.cached_tokens,
        cost_usd=s.cost_usd,
    )


def with_notes(detail: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    return {**detail, "notes": notes}


def members_of(step: TaskStep | GateStep, state: RunState) -> int:
    """How many agents a step runs at once (what a group reserves budget for)."""
    if isinstance(step, AttemptsStep):
        return len(step.attempts)
    if isinstance(step, ConsensusStep):
        return len(step.reviewers)
    if isinstance(step, ForEachStep) and state.plan is not None:
        return state.plan.size
    return 1


def agent_label(step: TaskStep) -> str:
    """The agent a step record names: its one agent, or the group's first (the others are sub-steps)."""
    return step.agents[0] if step.agents else step.task
