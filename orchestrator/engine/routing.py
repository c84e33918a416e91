"""`agent: auto`: the CLI for a task chosen by its measured record in the store (all pure but `route_auto`).

For each ready candidate (the config's fallback_order), the finished steps of that task it took in
earlier runs give: how many, the share that succeeded, the mean cost and the mean duration. A candidate
with fewer than EXPLORE_BELOW records is tried first ("exploring": how else would it get a record), the
first such in fallback_order; otherwise the best success rate wins, then the lower mean cost (unknown
last), then the shorter mean duration, then fallback_order. The choice is made when the run is
created, recorded with the workflow (`routing`) and shown in the report with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.engine.readiness import AgentReadiness
from orchestrator.engine.workflow import Step, Workflow
from orchestrator.engine.workflow_model import RoutingChoice
from orchestrator.store import StepRecord, Store

AUTO = "auto"
EXPLORE_BELOW = 2
HISTORY_RUNS = 200
_FINISHED = frozenset({"succeeded", "failed", "refused", "timed_out"})


@dataclass(frozen=True)
class Record:
    agent: str
    steps: int
    succeeded: int
    mean_cost_usd: float | None
    mean_duration_s: float | None

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.steps if self.steps else 0.0

    def describe(self) -> str:
        cost = "cost unknown" if self.mean_cost_usd is None else f"${self.mean_cost_usd:.4f} a step"
        took = "" if self.mean_duration_s is None else f", {self.mean_duration_s:.0f} s"
        return f"{self.agent} {self.succeeded}/{self.steps} succeeded, {cost}{took}"


def records(task: str, history: Iterable[StepRecord], candidates: Sequence[str]) -> list[Record]:
    found = []
    steps = [s for s in history if s.task == task and s.status in _FINISHED]
    for agent in candidates:
        mine = [s for s in steps if s.agent == agent]
        costs = [s.usage.cost_usd for s in mine if s.usage.cost_usd is not None]
        durations = [s.finished_at - s.started_at for s in mine if s.finished_at and s.started_at]
        found.append(
            Record(
                agent=agent,
                steps=len(mine),
                succeeded=sum(1 for s in mine if s.status == "succeeded"),
                mean_cost_usd=sum(costs) / len(costs) if costs else None,
                mean_duration_s=sum(durations) / len(durations) if durations else None,
            )
        )
    return found


def choose(task: str, history: Iterable[StepRecord], candidates: Sequence[str]) -> RoutingChoice | None:
    """The choice for one `agent: auto` step, or None without any candidate."""
    table = records(task, history, candidates)
    if not table:
        return None
    known = "; ".join(r.describe() for r in table)
    fresh = next((r for r in table if r.steps < EXPLORE_BELOW), None)
    if fresh is not None:
        why = f"exploring: {fresh.agent} has {fresh.steps} recorded {task} step(s)"
        return RoutingChoice(task=task, agent=fresh.agent, reason=why, records=known)
    position = {r.agent: i for i, r in enumerate(table)}
    best = min(
        table,
        key=lambda r: (
            -round(r.success_rate, 6),
            float("inf") if r.mean_cost_usd is None else r.mean_cost_usd,
            float("inf") if r.mean_duration_s is None else r.mean_duration_s,
            position[r.agent],
        ),
    )
    why = f"best record for {task}: {best.describe()}"
    return RoutingChoice(task=task, agent=best.agent, reason=why, records=known)


def route_auto(
    workflow: Workflow,
    store: Store,
    readiness: AgentReadiness,
    order: Sequence[str],
    *,
    candidates: Sequence[str] | None = None,
) -> Workflow:
    """`workflow` with every `agent: auto` replaced by the chosen CLI, the choices in `routing`. The
    candidates are the ready CLIs of `order` here, unless given (a cluster run: those its workers serve)."""
    if not any(isinstance(s, Step) and s.agent == AUTO for s in workflow.steps):
        return workflow
    if candidates is None:
        readiness.probe(order)
        candidates = [a for a in order if readiness.of(a).ready]
    history = [step for run in store.list_runs(limit=HISTORY_RUNS) for step in store.steps(run.id)]
    steps = []
    choices: list[RoutingChoice] = []
    for step in workflow.steps:
        if isinstance(step, Step) and step.agent == AUTO:
            choice = choose(step.task, history, candidates)
            agent = choice.agent if choice is not None else (order[0] if order else "claude")
            if choice is None:
                choice = RoutingChoice(
                    task=step.task, agent=agent, reason="no CLI is ready; the first of fallback_order"
                )
            choices.append(choice)
            step = step.model_copy(update={"agent": agent})
        steps.append(step)
    return workflow.model_copy(update={"steps": tuple(steps), "routing": (*workflow.routing, *choices)})
