"""Prometheus metrics for runs and steps, kept on a registry the caller passes in (never the global one).

    registry = CollectorRegistry()
    bus.subscribe(metrics_subscriber(registry))       # a run in this process
    body, content_type = render_metrics(registry)      # what GET /metrics answers
    run_metrics(registry).observe_delivery(event.ts)   # an event reached a dashboard client

The metrics follow the run's events only (orchestrator/events.py: the same events the store's event
log holds), so a subscriber on a run's bus and a follower of the store's log count the same things.
Every family, what it is for, and the alerts built on it: METRIC_FAMILIES below and monitoring/.
Counters get `_total` on exposition. No label ever holds a secret or free text: agents, tasks,
models, statuses, kinds are short names from our own vocabulary (or a CLI's model id).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, push_to_gateway

from orchestrator.errors import AgentErrorKind
from orchestrator.events import (
    AgentActivity,
    GateFinished,
    Notice,
    RunEvent,
    RunFinished,
    RunStarted,
    SessionStarted,
    StepFinished,
    StepStarted,
    Subscriber,
    Usage,
)

# Agent steps take seconds to tens of minutes.
STEP_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# From an event's creation to a dashboard client: milliseconds when all is well, seconds when not.
DELIVERY_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_KINDS = ("input", "output", "cached")
AGENT_ERROR_KINDS = frozenset(get_args(AgentErrorKind))
UNKNOWN = "unknown"
MAX_SESSIONS = 10_000  # sessions whose usage is remembered (see RunMetrics._sessions)

# name (as exposed) -> what it is for. The README's "Operating it" and the tests read this.
METRIC_FAMILIES: dict[str, str] = {
    "orchestrator_runs_started_total": "runs started, by workflow: the load",
    "orchestrator_runs_total": "runs finished, by status and workflow: the failure ratio alert",
    "orchestrator_runs_active": "runs started and not finished in this process's view",
    "orchestrator_steps_active": "agent steps running now",
    "orchestrator_steps_total": "steps finished, by agent, task and status",
    "orchestrator_step_duration_seconds": "how long steps take, by agent and task (histogram)",
    "orchestrator_tokens_total": "tokens used, by agent, model and kind (input, output, cached)",
    "orchestrator_cost_usd_total": "spend in US dollars, by agent and model: the budget alert",
    "orchestrator_agent_errors_total": "agent failures, by agent and kind (auth, rate_limit, timeout...)",
    "orchestrator_gates_total": "gate checks, by result (passed, failed)",
    "orchestrator_fallbacks_total": "steps given to another agent, by the agent replaced and why",
    "orchestrator_retries_total": "retries made on purpose, by what was retried",
    "orchestrator_run_last_event_timestamp_seconds": "per running run, when its last event was made: the stall alert",
    "orchestrator_event_delivery_lag_seconds": "from an event's creation to its delivery to a dashboard client",
    "orchestrator_daily_budget_usd": "the configured daily budget (0: none): the budget alert's threshold",
}


@dataclass
class _StepState:
    agent: str
    task: str
    started: float | None
    model: str = UNKNOWN
    # The step's usage so far (by the rule of events.Usage.scope) and what the counters already hold.
    current: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # in, out, cached, $
    counted: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    # For a CLI whose usage covers its whole session (codex on resume): the session, and what earlier
    # steps of it already counted (this step counts only what the session grew by).
    session: tuple[str, str] | None = None
    session_base: list[float] | None = None


def _accumulates_over_session(agent: str) -> bool:
    """Whether the agent's CLI reports the whole session's usage when a session is resumed."""
    from orchestrator.adapters import AGENT_NAMES, get_adapter

    return agent in AGENT_NAMES and get_adapter(agent).usage_accumulates_over_session


class RunMetrics:
    """The metrics on one registry, and what is needed to update them from events. Thread-safe:
    runs in parallel may share it."""

    def __init__(self, registry: CollectorRegistry, *, daily_budget_usd: float | None = None) -> None:
        r = registry
        self.runs_started = Counter(
            "orchestrator_runs_started", "Runs started, by workflow.", ["workflow"], registry=r
        )
        self.runs = Counter(
            "orchestrator_runs", "Runs finished, by status and workflow.", ["status", "workflow"], registry=r
        )
        self.runs_active = Gauge("orchestrator_runs_active", "Runs started and not yet finished.", registry=r)
        self.steps_active = Gauge("orchestrator_steps_active", "Agent steps running now.", registry=r)
        self.steps = Counter(
            "orchestrator_steps",
            "Steps finished, by agent, task and status.",
            ["agent", "task", "status"],
            registry=r,
        )
        self.step_duration = Histogram(
            "orchestrator_step_duration_seconds",
            "Wall-clock time of finished steps.",
            ["agent", "task"],
            buckets=STEP_DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "orchestrator_tokens",
            "Tokens used, by agent, model and kind.",
            ["agent", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "orchestrator_cost_usd", "Cost in US dollars, by agent and model.", ["agent", "model"], registry=r
        )
        self.agent_errors = Counter(
            "orchestrator_agent_errors", "Agent failures, by agent and kind.", ["agent", "kind"], registry=r
        )
        # By result only: a gate's name is often its command line, free text that may hold anything.
        self.gates = Counter("orchestrator_gates", "Gate checks, by result.", ["result"], registry=r)
        self.fallbacks = Counter(
            "orchestrator_fallbacks",
            "Steps another agent took, by the agent replaced and the reason.",
            ["agent", "reason"],
            registry=r,
        )
        self.retries = Counter("orchestrator_retries", "Retries, by what was retried.", ["what"], registry=r)
        self.last_event = Gauge(
            "orchestrator_run_last_event_timestamp_seconds",
            "Unix time of the last event of each running run (removed when it finishes).",
            ["run_id", "workflow"],
            registry=r,
        )
        self.delivery_lag = Histogram(
            "orchestrator_event_delivery_lag_seconds",
            "Time from an event's creation to its delivery to a dashboard client.",
            buckets=DELIVERY_LAG_BUCKETS,
            registry=r,
        )
        self.daily_budget = Gauge(
            "orchestrator_daily_budget_usd",
            "The configured daily budget in US dollars (0: none).",
            registry=r,
        )
        self.daily_budget.set(daily_budget_usd or 0.0)
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], _StepState] = {}
        self._active: dict[str, str] = {}  # run id -> workflow
        # (run id, session id) -> the session's usage counted so far, for CLIs that report it whole;
        # kept past the run's end (a resumed run resumes its sessions), the oldest dropped.
        self._sessions: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._accumulates: dict[str, bool] = {}

    def set_daily_budget(self, usd: float | None) -> None:
        self.daily_budget.set(usd or 0.0)

    def observe_delivery(self, event_created_ts: float, now: float | None = None) -> None:
        """An event made at `event_created_ts` (its `ts`) reached a client now."""
        lag = (time.time() if now is None else now) - event_created_ts
        self.delivery_lag.observe(max(lag, 0.0))

    def observe(self, event: RunEvent) -> None:
        with self._lock:
            run_id = getattr(event, "run_id", None)
            if isinstance(event, RunStarted):
                self.runs_started.labels(workflow=event.workflow).inc()
                self._active[event.run_id] = event.workflow
                self.runs_active.set(len(self._active))
            elif isinstance(event, StepStarted):
                self._steps[(event.run_id, event.step_id)] = _StepState(event.agent, event.task, event.ts)
                self.steps_active.set(self._running_steps())
            elif isinstance(event, AgentActivity):
                self._agent_event(event)
            elif isinstance(event, StepFinished):
                self._finish_step(event)
            elif isinstance(event, GateFinished):
                self.gates.labels(result="passed" if event.passed else "failed").inc()
            elif isinstance(event, Notice):
                self._notice(event)
            elif isinstance(event, RunFinished):
                self._finish_run(event)
                return
            if run_id is not None and run_id in self._active:
                self.last_event.labels(run_id=run_id, workflow=self._active[run_id]).set(event.ts)

    def _running_steps(self) -> int:
        return sum(1 for s in self._steps.values() if s.started is not None)

    def _agent_event(self, activity: AgentActivity) -> None:
        inner = activity.event
        key = (activity.run_id, activity.step_id)
        state = self._steps.get(key)
        if state is None:  # usage for a step never announced (a replayed log, a late subscriber)
            state = self._steps[key] = _StepState(activity.agent, UNKNOWN, None)
        if isinstance(inner, SessionStarted):
            if inner.session_id:
                self._join_session(state, (activity.run_id, inner.session_id))
            if inner.model:
                state.model = inner.model
                self._count(state)  # what waited for the model's name
        elif isinstance(inner, Usage):
            if inner.model:
                state.model = inner.model
            self._add_usage(state, inner)

    def _join_session(self, state: _StepState, key: tuple[str, str]) -> None:
        if state.agent not in self._accumulates:
            self._accumulates[state.agent] = _accumulates_over_session(state.agent)
        if not self._accumulates[state.agent]:
            return
        state.session = key
        base = self._sessions.get(key)
        if base is not None and state.counted == [0.0, 0.0, 0.0, 0.0]:
            state.current, state.counted, state.session_base = list(base), list(base), list(base)

    def _add_usage(self, state: _StepState, usage: Usage) -> None:
        values = [usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.cost_usd or 0.0]
        base = state.session_base
        if base is not None and usage.scope == "total" and state.counted == base and values[0] < base[0]:
            # Lower than the session's earlier total: not cumulative after all (as the runner judges
            # a step's share, adapters/runner.py), so this step's numbers are its own.
            state.counted, state.session_base = [0.0, 0.0, 0.0, 0.0], None
        if usage.scope == "total":
            state.current = [float(v) for v in values]
        else:
            state.current = [c + v for c, v in zip(state.current, values, strict=True)]
        # Counted once the model is known (a CLI may name it only in a later event), so tokens and
        # cost carry the same model; at the latest when the step ends.
        if state.model != UNKNOWN:
            self._count(state)

    def _count(self, state: _StepState) -> None:
        # Counters only go up: count what the step's usage grew by since we last looked. A "total"
        # lower than before (a CLI restating its numbers) adds nothing.
        growth = [max(c - k, 0.0) for c, k in zip(state.current, state.counted, strict=True)]
        for kind, amount in zip(TOKEN_KINDS, growth[:3], strict=True):
            if amount:
                self.tokens.labels(agent=state.agent, model=state.model, kind=kind).inc(amount)
        if growth[3]:
            self.cost.labels(agent=state.agent, model=state.model).inc(growth[3])
        state.counted = [max(c, k) for c, k in zip(state.current, state.counted, strict=True)]
        if state.session is not None:
            self._sessions[state.session] = list(state.counted)
            self._sessions.move_to_end(state.session)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)

    def _finish_step(self, event: StepFinished) -> None:
        state = self._steps.pop((event.run_id, event.step_id), None)
        if state is not None:
            self._count(state)  # under "unknown" if the CLI never named its model
        task = state.task if state is not None else UNKNOWN
        self.steps.labels(agent=event.agent, task=task, status=event.status).inc()
        if state is not None and state.started is not None:
            self.step_duration.labels(agent=event.agent, task=task).observe(
                max(event.ts - state.started, 0.0)
            )
        # One error per failed attempt, by the kind the step ended with (an agent may print several
        # error events before it gives up; the step's kind is the one that counts).
        if event.error_kind in AGENT_ERROR_KINDS and event.status in ("failed", "refused"):
            self.agent_errors.labels(agent=event.agent, kind=event.error_kind).inc()
        self.steps_active.set(self._running_steps())

    def _notice(self, event: Notice) -> None:
        if event.kind == "fallback":
            self.fallbacks.labels(agent=event.agent or UNKNOWN, reason=event.reason or UNKNOWN).inc()
            # The attempt that failed before another agent took over ends with no StepFinished of its
            # own: its error is counted here (a fallback because an agent was not ready is no error).
            if event.reason in AGENT_ERROR_KINDS:
                self.agent_errors.labels(agent=event.agent or UNKNOWN, kind=event.reason).inc()
        elif event.kind == "retry":
            self.retries.labels(what=event.reason or UNKNOWN).inc()

    def _finish_run(self, event: RunFinished) -> None:
        workflow = self._active.pop(event.run_id, UNKNOWN)
        self.runs.labels(status=event.status, workflow=workflow).inc()
        self.runs_active.set(len(self._active))
        # A finished run's series goes: the stall alert looks only at running runs, and run ids would
        # otherwise pile up as series for ever.
        try:
            self.last_event.remove(event.run_id, workflow)
        except KeyError:
            pass
        for key in [k for k in self._steps if k[0] == event.run_id]:
            self._count(self._steps.pop(key))
        self.steps_active.set(self._running_steps())


# One RunMetrics per registry: metrics can be registered on a registry only once, and every run's bus
# subscribes anew. Keyed weakly, so a registry that is dropped takes its metrics with it.
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, RunMetrics] = weakref.WeakKeyDictionary()
_by_registry_lock = threading.Lock()


def run_metrics(registry: CollectorRegistry, *, daily_budget_usd: float | None = None) -> RunMetrics:
    """The metrics on `registry`, registered on first use (a budget given later replaces the first)."""
    with _by_registry_lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = RunMetrics(registry, daily_budget_usd=daily_budget_usd)
        elif daily_budget_usd is not None:
            metrics.set_daily_budget(daily_budget_usd)
        return metrics


def metrics_subscriber(registry: CollectorRegistry) -> Subscriber:
    """An EventBus subscriber that updates the metrics on `registry`."""
    return run_metrics(registry).observe


def daily_budget_from_env(env: Mapping[str, str]) -> float | None:
    """$ORCHESTRATOR_DAILY_BUDGET_USD, the threshold of the budget alert (unset or not a number: none)."""
    raw = env.get("ORCHESTRATOR_DAILY_BUDGET_USD", "").strip()
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def render_metrics(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The body and Content-Type for GET /metrics (`accept`: the request's Accept header, so a scraper
    asking for OpenMetrics gets it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def push_metrics(
    url: str, registry: CollectorRegistry, *, job: str = "orchestrator", run_id: str | None = None
) -> None:
    """PUT the registry to a Prometheus Pushgateway at `url`, grouped by job (and run, when given): a CI
    run ends before any scrape could reach it."""
    grouping = {"run_id": run_id} if run_id else None
    push_to_gateway(url, job=job, registry=registry, grouping_key=grouping, timeout=30)
