"""The step kinds: each one small module behind one interface, StepKind.

The runner (runner.py) walks a workflow's graph and hands each node to the kind that runs it: `run`
does the step (and records it in the store), `replay` rebuilds the run's state from a step that
completed before a resume, without running it. A further kind is one new module here and one line in
`KINDS`; a kind that runs several agents at once uses the scheduler (engine/scheduler.py), which
holds the concurrency limits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from orchestrator.engine.workflow import GateStep, TaskStep
from orchestrator.store import StepRecord

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


@dataclass(frozen=True)
class StepAt:
    """A node of the graph: `step`, the `index`th of the workflow, in `iteration` (from 1)."""

    iteration: int
    index: int
    step: TaskStep | GateStep


class StepKind(Protocol):
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None: ...

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None: ...


@functools.cache
def _kinds() -> dict[type, StepKind]:
    # Imported here: each kind's module imports this one (StepAt).
    from orchestrator.engine.steps.agent import AgentStepKind
    from orchestrator.engine.steps.attempts import AttemptsKind
    from orchestrator.engine.steps.consensus import ConsensusKind
    from orchestrator.engine.steps.for_each import ForEachKind
    from orchestrator.engine.steps.gate import GateKind
    from orchestrator.engine.steps.merge import MergeKind
    from orchestrator.engine.steps.plan_step import PlanKind
    from orchestrator.engine.workflow import (
        AttemptsStep,
        ConsensusStep,
        ForEachStep,
        MergeStep,
        PlanStep,
        Step,
    )

    return {
        Step: AgentStepKind(),
        GateStep: GateKind(),
        AttemptsStep: AttemptsKind(),
        ConsensusStep: ConsensusKind(),
        PlanStep: PlanKind(),
        ForEachStep: ForEachKind(),
        MergeStep: MergeKind(),
    }


def kind_for(step: TaskStep | GateStep) -> StepKind:
    return _kinds()[type(step)]
