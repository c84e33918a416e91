from __future__ import annotations

import threading

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.events import (
    AgentActivity,
    EventBus,
    GateFinished,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Usage,
)
from orchestrator.metrics import metrics_subscriber, run_metrics

RUN = "r1"


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def usage(step_id, agent="claude", run_id=RUN, **fields):
    return AgentActivity(run_id=run_id, step_id=step_id, agent=agent, event=Usage(**fields))


def publish_run(bus: EventBus, run_id: str = RUN) -> None:
    step = "i1-s1-implement"
    bus.publish(RunStarted(run_id=run_id, task="t", workflow="default", branch="b", base="main"))
    bus.publish(
        StepStarted(run_id=run_id, step_id=step, agent="claude", task="implement", iteration=1, ts=1000.0)
    )
    bus.publish(usage(step, run_id=run_id, input_tokens=100, output_tokens=10, cost_usd=0.01))
    bus.publish(usage(step, run_id=run_id, input_tokens=20, cached_tokens=5, cost_usd=0.002, scope="delta"))
    # A CLI restating a lower total must not make counters go backwards, nor count twice.
    bus.publish(usage(step, run_id=run_id, input_tokens=110, output_tokens=12, cost_usd=0.011))
    bus.publish(StepFinished(run_id=run_id, step_id=step, agent="claude", status="succeeded", ts=1042.5))
    bus.publish(
        StepStarted(
            run_id=run_id, step_id="i1-s2-review", agent="codex", task="review", iteration=1, ts=1050.0
        )
    )
    bus.publish(
        StepFinished(run_id=run_id, step_id="i1-s2-review", agent="codex", status="failed", ts=1051.0)
    )
    bus.publish(
        GateFinished(run_id=run_id, step_id="i1-s3-gate", command="pytest -q", passed=False, exit_code=1)
    )


def test_the_subscriber_counts_steps_tokens_cost_runs_and_gates():
    registry = CollectorRegistry()
    bus = EventBus()
    bus.subscribe(metrics_subscriber(registry))
    publish_run(bus)
    assert value(registry, "orchestrator_runs_active") == 1

    labels = {"agent": "claude", "task": "implement"}
    assert value(registry, "orchestrator_steps_total", status="succeeded", **labels) == 1
    assert value(registry, "orchestrator_steps_total", agent="codex", task="review", status="failed") == 1
    assert value(registry, "orchestrator_step_duration_seconds_count", **labels) == 1
    assert value(registry, "orchestrator_step_duration_seconds_sum", **labels) == pytest.approx(42.5)
    assert value(registry, "orchestrator_step_duration_seconds_bucket", le="30.0", **labels) == 0
    assert value(registry, "orchestrator_step_duration_seconds_bucket", le="60.0", **labels) == 1
    # 100 then +20 makes 120 input tokens; the restated total of 110 adds nothing.
    assert value(registry, "orchestrator_tokens_total", agent="claude", kind="input") == 120
    assert value(registry, "orchestrator_tokens_total", agent="claude", kind="output") == 12
    assert value(registry, "orchestrator_tokens_total", agent="claude", kind="cached") == 5
    assert value(registry, "orchestrator_cost_usd_total", agent="claude") == pytest.approx(0.012)
    assert value(registry, "orchestrator_gates_total", result="failed") == 1

    bus.publish(RunFinished(run_id=RUN, status="not_approved", stop_reason="step_failed", branch="b"))
    assert value(registry, "orchestrator_runs_total", status="not_approved") == 1
    assert value(registry, "orchestrator_runs_active") == 0
    exposition = generate_latest(registry).decode()
    assert 'orchestrator_steps_total{agent="claude",status="succeeded",task="implement"} 1.0' in exposition


def test_metrics_stay_on_the_registry_they_were_given():
    first, second = CollectorRegistry(), CollectorRegistry()
    bus = EventBus()
    bus.subscribe(metrics_subscriber(first))
    publish_run(bus)
    assert value(first, "orchestrator_gates_total", result="failed") == 1
    assert value(second, "orchestrator_gates_total", result="failed") is None
    assert (
        prometheus_client.REGISTRY.get_sample_value("orchestrator_gates_total", {"result": "failed"}) is None
    )


def test_every_run_may_subscribe_on_the_same_registry():
    registry = CollectorRegistry()
    assert run_metrics(registry) is run_metrics(registry)
    for run_id in ("r1", "r2"):
        bus = EventBus()
        bus.subscribe(metrics_subscriber(registry))  # registering twice would raise "Duplicated timeseries"
        publish_run(bus, run_id)
    assert value(registry, "orchestrator_tokens_total", agent="claude", kind="input") == 240
    assert value(registry, "orchestrator_runs_active") == 2


def test_usage_for_a_step_never_announced_is_still_counted():
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)
    observe(usage("i1-s9-review", agent="gemini", output_tokens=7, scope="delta"))
    observe(StepFinished(run_id=RUN, step_id="i1-s9-review", agent="gemini", status="succeeded"))
    assert value(registry, "orchestrator_tokens_total", agent="gemini", kind="output") == 7
    assert (
        value(registry, "orchestrator_steps_total", agent="gemini", task="unknown", status="succeeded") == 1
    )
    assert value(registry, "orchestrator_step_duration_seconds_count", agent="gemini", task="unknown") is None


def test_parallel_runs_count_exactly():
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)

    def run(n: int) -> None:
        for k in range(200):
            observe(usage(f"s{k}", run_id=f"run-{n}", input_tokens=1, scope="delta"))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert value(registry, "orchestrator_tokens_total", agent="claude", kind="input") == 800
