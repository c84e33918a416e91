"""The step kinds: each one small module behind one interface, StepKind.

The runner (runner.py) walks a workflow's graph and hands each node to the kind that runs it: `run`
does the step (and records it in the store), `replay` rebuilds the run's state from a step that
completed before a resume, without running it. A further kind is one new module here and one line in
`KINDS`; a kind that runs several agents at once uses the scheduler (engine/scheduler.py), which
holds the concurrency limits.
"""

from __future__ import annotations

import functools
import importlib
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


# Each kind's module, imported when a workflow first has a step of that kind (not all at once: the
# kinds a run does not use, with the scheduler and consensus they import, stay off its start).
_KIND_MODULES = {
    "Step": ("agent", "AgentStepKind"),
    "GateStep": ("gate", "GateKind"),
    "AttemptsStep": ("attempts", "AttemptsKind"),
    "ConsensusStep": ("consensus", "ConsensusKind"),
    "PlanStep": ("plan_step", "PlanKind"),
    "ForEachStep": ("for_each", "ForEachKind"),
    "MergeStep": ("merge", "MergeKind"),
}


@functools.cache
def _kind(step_type: type) -> StepKind:
    # Imported here: each kind's module imports this one (StepAt).
    from orchestrator.engine import workflow

    name = step_type.__name__
    if getattr(workflow, name, None) is not step_type or name not in _KIND_MODULES:
        raise KeyError(step_type)
    module, kind = _KIND_MODULES[name]
    kind_class: type[StepKind] = getattr(importlib.import_module(f"orchestrator.engine.steps.{module}"), kind)
    return kind_class()


def kind_for(step: TaskStep | GateStep) -> StepKind:
    return _kind(type(step))
