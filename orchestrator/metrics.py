"""Prometheus metrics for runs and steps, kept on a registry the caller passes in (never the global one).

    registry = CollectorRegistry()
    bus.subscribe(metrics_subscriber(registry))

The subscriber reads only RunEvents (orchestrator/events.py). Metric names (counters get `_total` on
exposition): orchestrator_steps{agent,task,status}, orchestrator_step_duration_seconds{agent,task},
orchestrator_tokens{agent,kind}, orchestrator_cost_usd{agent}, orchestrator_runs{status},
orchestrator_runs_active, orchestrator_gates{result}.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.events import (
    AgentActivity,
    GateFinished,
    RunEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Subscriber,
    Usage,
)

# Agent steps take seconds to tens of minutes.
STEP_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
TOKEN_KINDS = ("input", "output", "cached")
UNKNOWN_TASK = "unknown"


@dataclass
class _StepState:
    agent: str
    task: str
    started: float | None
    # The step's usage so far (by the rule of events.Usage.scope) and what the counters already hold.
    current: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # in, out, cached, $
    counted: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])


class RunMetrics:
    """The metrics on one registry, and what is needed to update them from events. Thread-safe:
    runs in parallel may share it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = Counter(
            "orchestrator_steps",
            "Steps finished, by agent, task and status.",
            ["agent", "task", "status"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "orchestrator_step_duration_seconds",
            "Wall-clock time of finished steps.",
            ["agent", "task"],
            buckets=STEP_DURATION_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "orchestrator_tokens", "Tokens used, by agent and kind.", ["agent", "kind"], registry=registry
        )
        self.cost = Counter(
            "orchestrator_cost_usd", "Cost in US dollars, by agent.", ["agent"], registry=registry
        )
        self.runs = Counter("orchestrator_runs", "Runs finished, by status.", ["status"], registry=registry)
        self.runs_active = Gauge(
            "orchestrator_runs_active", "Runs started and not yet finished.", registry=registry
        )
        self.gates = Counter("orchestrator_gates", "Gate checks, by result.", ["result"], registry=registry)
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], _StepState] = {}
        self._active: set[str] = set()

    def observe(self, event: RunEvent) -> None:
        with self._lock:
            if isinstance(event, StepStarted):
                self._steps[(event.run_id, event.step_id)] = _StepState(event.agent, event.task, event.ts)
            elif isinstance(event, AgentActivity) and isinstance(event.event, Usage):
                self._add_usage(event, event.event)
            elif isinstance(event, StepFinished):
                self._finish_step(event)
            elif isinstance(event, GateFinished):
                self.gates.labels(result="passed" if event.passed else "failed").inc()
            elif isinstance(event, RunStarted):
                self._active.add(event.run_id)
                self.runs_active.set(len(self._active))
            elif isinstance(event, RunFinished):
                self.runs.labels(status=event.status).inc()
                self._active.discard(event.run_id)
                self.runs_active.set(len(self._active))
                for key in [k for k in self._steps if k[0] == event.run_id]:
                    del self._steps[key]

    def _add_usage(self, activity: AgentActivity, usage: Usage) -> None:
        key = (activity.run_id, activity.step_id)
        state = self._steps.setdefault(key, _StepState(activity.agent, UNKNOWN_TASK, None))
        values = [usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cost_usd or 0.0]
        if usage.scope == "total":
            state.current = [float(v) for v in values]
        else:
            state.current = [c + v for c, v in zip(state.current, values, strict=True)]
        # Counters only go up: count what the step's usage grew by since we last looked. A "total"
        # lower than before (a CLI restating its numbers) adds nothing.
        growth = [max(c - k, 0.0) for c, k in zip(state.current, state.counted, strict=True)]
        for kind, amount in zip(TOKEN_KINDS, growth[:3], strict=True):
            if amount:
                self.tokens.labels(agent=state.agent, kind=kind).inc(amount)
        if growth[3]:
            self.cost.labels(agent=state.agent).inc(growth[3])
        state.counted = [max(c, k) for c, k in zip(state.current, state.counted, strict=True)]

    def _finish_step(self, event: StepFinished) -> None:
        state = self._steps.pop((event.run_id, event.step_id), None)
        task = state.task if state is not None else UNKNOWN_TASK
        self.steps.labels(agent=event.agent, task=task, status=event.status).inc()
        if state is not None and state.started is not None:
            self.step_duration.labels(agent=event.agent, task=task).observe(
                max(event.ts - state.started, 0.0)
            )


# One RunMetrics per registry: metrics can be registered on a registry only once, and every run's bus
# subscribes anew. Keyed weakly, so a registry that is dropped takes its metrics with it.
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, RunMetrics] = weakref.WeakKeyDictionary()
_by_registry_lock = threading.Lock()


def run_metrics(registry: CollectorRegistry) -> RunMetrics:
    """The metrics on `registry`, registered on first use."""
    with _by_registry_lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = RunMetrics(registry)
        return metrics


def metrics_subscriber(registry: CollectorRegistry) -> Subscriber:
    """An EventBus subscriber that updates the metrics on `registry`."""
    return run_metrics(registry).observe
