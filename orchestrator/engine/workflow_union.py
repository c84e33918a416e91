"""Which kind a step of the YAML is, and the union of them all (one discriminator, one error)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from orchestrator.engine.workflow_plan_steps import ForEachStep, MergeStep, PlanStep
from orchestrator.engine.workflow_steps import AttemptsStep, ConsensusStep, GateStep, Step

# A step that an agent (or several) takes; everything but a gate.
TaskStep = Step | AttemptsStep | ConsensusStep | PlanStep | ForEachStep | MergeStep


def _step_kind(value: Any) -> str | None:
    if isinstance(value, GateStep) or (isinstance(value, dict) and "run" in value):
        return "gate step"
    if isinstance(value, MergeStep) or (isinstance(value, dict) and "merge" in value):
        return "merge step"
    if isinstance(value, ForEachStep) or (isinstance(value, dict) and "for_each" in value):
        return "for_each step"
    if isinstance(value, PlanStep) or (isinstance(value, dict) and value.get("task") == "plan"):
        return "plan step"
    if isinstance(value, AttemptsStep) or (isinstance(value, dict) and "attempts" in value):
        return "attempts step"
    if isinstance(value, ConsensusStep) or (isinstance(value, dict) and "reviewers" in value):
        return "consensus step"
    if isinstance(value, Step) or (isinstance(value, dict) and ("agent" in value or "task" in value)):
        return "agent step"
    return None


AnyStep = Annotated[
    Annotated[Step, Tag("agent step")]
    | Annotated[GateStep, Tag("gate step")]
    | Annotated[AttemptsStep, Tag("attempts step")]
    | Annotated[ConsensusStep, Tag("consensus step")]
    | Annotated[PlanStep, Tag("plan step")]
    | Annotated[ForEachStep, Tag("for_each step")]
    | Annotated[MergeStep, Tag("merge step")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=(
            "a step is an agent step (agent, task), attempts (task, attempts), a consensus review "
            "(task, reviewers), a plan (task: plan, agent), for_each (task, for_each, agents), "
            "merge: subtasks, or a gate (run)"
        ),
    ),
]

STEP_TAGS = frozenset(
    {"agent step", "gate step", "attempts step", "consensus step", "plan step", "for_each step", "merge step"}
)
STEP_KIND_ALLOWED = (
    "agent + task (+ description, optional, timeout_s, model, when); task + attempts (+ select); "
    "task: review + reviewers (+ quorum); task: plan + agent (+ max_subtasks); task + for_each: subtask + "
    "agents; merge: subtasks; or run (+ name, timeout_s, optional)"
)
