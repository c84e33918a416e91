from __future__ import annotations

import threading
import time

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.events import (
    AgentActivity,
    EventBus,
    GateFinished,
    Notice,
    RunFinished,
    RunStarted,
    SessionStarted,
    StepFinished,
    StepStarted,
    Usage,
)
from orchestrator.metrics import (
    METRIC_FAMILIES,
    daily_budget_from_env,
    metrics_subscriber,
    render_metrics,
    run_metrics,
)

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
    bus.publish(
        AgentActivity(
            run_id=run_id, step_id=step, agent="claude", event=SessionStarted(model="claude-sonnet-4-5")
        )
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
        StepFinished(
            run_id=run_id,
            step_id="i1-s2-review",
            agent="codex",
            status="failed",
            error_kind="timeout",
            ts=1051.0,
        )
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
    model = {"agent": "claude", "model": "claude-sonnet-4-5"}
    assert value(registry, "orchestrator_tokens_total", kind="input", **model) == 120
    assert value(registry, "orchestrator_tokens_total", kind="output", **model) == 12
    assert value(registry, "orchestrator_tokens_total", kind="cached", **model) == 5
    assert value(registry, "orchestrator_cost_usd_total", **model) == pytest.approx(0.012)
    assert value(registry, "orchestrator_gates_total", result="failed") == 1
    assert value(registry, "orchestrator_agent_errors_total", agent="codex", kind="timeout") == 1
    assert value(registry, "orchestrator_runs_started_total", workflow="default") == 1
    # The run is running: its last event's time is there for the stall alert.
    assert value(registry, "orchestrator_run_last_event_timestamp_seconds", run_id=RUN, workflow="default")

    bus.publish(RunFinished(run_id=RUN, status="not_approved", stop_reason="step_failed", branch="b"))
    assert value(registry, "orchestrator_runs_total", status="not_approved", workflow="default") == 1
    assert value(registry, "orchestrator_runs_active") == 0
    assert value(registry, "orchestrator_steps_active") == 0
    # ... and gone once it finished: the stall alert looks at running runs only.
    exposition = generate_latest(registry).decode()
    assert "orchestrator_run_last_event_timestamp_seconds{" not in exposition
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
    assert (
        value(registry, "orchestrator_tokens_total", agent="claude", model="claude-sonnet-4-5", kind="input")
        == 240
    )
    assert value(registry, "orchestrator_runs_active") == 2


def test_usage_for_a_step_never_announced_is_still_counted():
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)
    observe(usage("i1-s9-review", agent="gemini", output_tokens=7, scope="delta"))
    observe(StepFinished(run_id=RUN, step_id="i1-s9-review", agent="gemini", status="succeeded"))
    assert value(registry, "orchestrator_tokens_total", agent="gemini", model="unknown", kind="output") == 7
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
            observe(StepFinished(run_id=f"run-{n}", step_id=f"s{k}", agent="claude", status="succeeded"))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert value(registry, "orchestrator_tokens_total", agent="claude", model="unknown", kind="input") == 800


def test_steps_active_while_a_step_runs():
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)
    observe(RunStarted(run_id=RUN, task="t", workflow="quick", branch="b", base="main"))
    observe(StepStarted(run_id=RUN, step_id="i1-s1-implement", agent="fake", task="implement", iteration=1))
    assert value(registry, "orchestrator_steps_active") == 1
    observe(StepFinished(run_id=RUN, step_id="i1-s1-implement", agent="fake", status="succeeded"))
    assert value(registry, "orchestrator_steps_active") == 0


def test_fallbacks_retries_and_the_errors_behind_them():
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)
    # claude failed signing in: codex took the step. The failed attempt has no StepFinished of its own.
    observe(Notice(run_id=RUN, text="x", kind="fallback", agent="claude", reason="auth"))
    # gemini was not ready from the start: a fallback, but no error of an attempt.
    observe(Notice(run_id=RUN, text="x", kind="fallback", agent="gemini", reason="not_ready"))
    observe(Notice(run_id=RUN, text="x", kind="retry", agent="codex", reason="review_verdict"))
    observe(Notice(run_id=RUN, text="a plain note"))
    assert value(registry, "orchestrator_fallbacks_total", agent="claude", reason="auth") == 1
    assert value(registry, "orchestrator_fallbacks_total", agent="gemini", reason="not_ready") == 1
    assert value(registry, "orchestrator_agent_errors_total", agent="claude", kind="auth") == 1
    assert value(registry, "orchestrator_agent_errors_total", agent="gemini", kind="not_ready") is None
    assert value(registry, "orchestrator_retries_total", what="review_verdict") == 1


def test_a_gate_failure_is_not_an_agent_error():
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)
    observe(StepFinished(run_id=RUN, step_id="i1-s2-gate", agent="gate", status="failed", error_kind="gate"))
    assert value(registry, "orchestrator_steps_total", agent="gate", task="unknown", status="failed") == 1
    assert "orchestrator_agent_errors_total{" not in generate_latest(registry).decode()


def test_delivery_lag_is_a_histogram():
    registry = CollectorRegistry()
    metrics = run_metrics(registry)
    metrics.observe_delivery(100.0, now=100.02)
    metrics.observe_delivery(100.0, now=103.0)
    metrics.observe_delivery(100.0, now=99.0)  # a clock a little behind counts as no lag, not negative
    assert value(registry, "orchestrator_event_delivery_lag_seconds_count") == 3
    assert value(registry, "orchestrator_event_delivery_lag_seconds_sum") == pytest.approx(3.02)
    assert value(registry, "orchestrator_event_delivery_lag_seconds_bucket", le="0.025") == 2
    assert value(registry, "orchestrator_event_delivery_lag_seconds_bucket", le="2.5") == 2


def test_daily_budget_gauge():
    registry = CollectorRegistry()
    assert value(registry, "orchestrator_daily_budget_usd") is None
    run_metrics(registry)
    assert value(registry, "orchestrator_daily_budget_usd") == 0
    run_metrics(registry, daily_budget_usd=25.0)
    assert value(registry, "orchestrator_daily_budget_usd") == 25
    assert daily_budget_from_env({"ORCHESTRATOR_DAILY_BUDGET_USD": "12.5"}) == 12.5
    assert daily_budget_from_env({"ORCHESTRATOR_DAILY_BUDGET_USD": "lots"}) is None
    assert daily_budget_from_env({"ORCHESTRATOR_DAILY_BUDGET_USD": "-1"}) is None
    assert daily_budget_from_env({}) is None


def test_render_for_prometheus_and_openmetrics():
    registry = CollectorRegistry()
    bus = EventBus()
    bus.subscribe(metrics_subscriber(registry))
    publish_run(bus)
    body, content_type = render_metrics(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE orchestrator_steps_total counter" in text
    body, content_type = render_metrics(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


def test_every_family_is_documented_and_exported():
    registry = CollectorRegistry()
    run_metrics(registry)
    exported = set()
    for family in registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        exported.add(family.name + suffix)
    assert exported == set(METRIC_FAMILIES)


def test_the_dashboard_bridge_observes_the_delivery_lag_of_live_events_only(tmp_path):
    """The Socket.IO bridge, on a real store: an event a follower gets is a lag sample, from the event's
    own creation time; the history a client asks for when it subscribes is not (no lag: a replay), nor
    is a batch sent again after a client failed to acknowledge it and subscribed again."""
    from orchestrator.store import Store
    from orchestrator.ui.bridge import ACK_TIMEOUT_S, Bridge

    registry = CollectorRegistry()
    metrics = run_metrics(registry)
    sent: list[tuple[str, dict]] = []
    now = [0.0]
    with Store(tmp_path / "state.db") as store:
        store.create_run(
            run_id=RUN,
            repo=tmp_path,
            task="t",
            workflow_name="default",
            workflow={"name": "default", "steps": []},
            base="main",
            branch=f"orchestrator/{RUN}",
        )
        old = RunStarted(run_id=RUN, task="t", workflow="default", branch="b", base="main", ts=1000.0)
        store.add_event(RUN, old)  # made long before anyone follows the run
        bridge = Bridge(
            store,
            lambda event, data, sid, ack: sent.append((event, data)),
            lambda _store, run: {"id": run.id},
            clock=lambda: now[0],
            on_delivered=metrics.observe_delivery,
        )
        bridge.subscribe("client", RUN, 0)
        bridge.tick()
        assert [e["seq"] for e in sent[-1][1]["events"]] == [1]
        assert value(registry, "orchestrator_event_delivery_lag_seconds_count") == 0

        # The client never acknowledged: the bridge tells it to resync, and sends nothing more until the
        # client subscribes again (as the page does, from the cursor it holds).
        now[0] += ACK_TIMEOUT_S + 1
        bridge.tick()
        assert sent[-1][0] == "resync"
        bridge.tick()
        assert sent[-1][0] == "resync"
        bridge.subscribe("client", RUN, 0)
        live = StepStarted(
            run_id=RUN, step_id="i1-s1-implement", agent="claude", task="implement", iteration=1
        )
        store.add_event(RUN, live)
        bridge.tick()
        assert [e["seq"] for e in sent[-1][1]["events"]] == [1, 2]
        delivered_by = time.time()
        assert value(registry, "orchestrator_event_delivery_lag_seconds_count") == 1
        # From the live event's creation (its ts) to its sending, not from the old event's.
        lag = value(registry, "orchestrator_event_delivery_lag_seconds_sum")
        assert 0 <= lag <= delivered_by - live.ts

        now[0] += ACK_TIMEOUT_S + 1
        bridge.tick()  # resync again
        assert sent[-1][0] == "resync"
        bridge.subscribe("client", RUN, 0)
        bridge.tick()  # the same two events again: no new sample
        assert [e["seq"] for e in sent[-1][1]["events"]] == [1, 2]
        assert value(registry, "orchestrator_event_delivery_lag_seconds_count") == 1


def test_a_resumed_session_counts_only_what_it_grew_by_and_tokens_wait_for_the_model():
    """Codex, as the demo records it: its usage covers the whole session when a review resumes it, and
    its first usage event of a turn names no model (a second one does). Counted as the run report
    counts it (adapters/runner.py: a step's share of its session), tokens and cost under one model."""
    registry = CollectorRegistry()
    observe = metrics_subscriber(registry)
    observe(RunStarted(run_id=RUN, task="t", workflow="default", branch="b", base="main"))
    for step, session_total in (("i1-s3-review", 123), ("i2-s3-review", 246)):
        observe(StepStarted(run_id=RUN, step_id=step, agent="codex", task="review", iteration=1))
        observe(
            AgentActivity(run_id=RUN, step_id=step, agent="codex", event=SessionStarted(session_id="th1"))
        )
        observe(usage(step, agent="codex", input_tokens=session_total, output_tokens=session_total // 10))
        # No model named yet: nothing counted under "unknown".
        assert (
            value(registry, "orchestrator_tokens_total", agent="codex", model="unknown", kind="input") is None
        )
        cost = session_total * 1e-6
        observe(
            usage(step, agent="codex", input_tokens=session_total, output_tokens=session_total // 10,
                  cost_usd=cost, model="gpt-5-codex")
        )  # fmt: skip
        observe(StepFinished(run_id=RUN, step_id=step, agent="codex", status="succeeded"))
    model = {"agent": "codex", "model": "gpt-5-codex"}
    assert value(registry, "orchestrator_tokens_total", kind="input", **model) == 246  # not 123 + 246
    assert value(registry, "orchestrator_tokens_total", kind="output", **model) == 24
    assert value(registry, "orchestrator_cost_usd_total", **model) == pytest.approx(246e-6)
    assert 'model="unknown"' not in generate_latest(registry).decode()

    # A new session (or numbers lower than the session's: not cumulative after all) counts whole.
    step = "i3-s3-review"
    observe(StepStarted(run_id=RUN, step_id=step, agent="codex", task="review", iteration=3))
    observe(AgentActivity(run_id=RUN, step_id=step, agent="codex", event=SessionStarted(session_id="th1")))
    observe(usage(step, agent="codex", input_tokens=50, model="gpt-5-codex"))
    assert value(registry, "orchestrator_tokens_total", kind="input", **model) == 296
    # A CLI whose usage is per step (claude) is never netted against its session.
    for step in ("i1-s1-implement", "i2-s1-implement"):
        observe(
            AgentActivity(run_id=RUN, step_id=step, agent="claude", event=SessionStarted(session_id="s9"))
        )
        observe(usage(step, input_tokens=100, model="claude-sonnet-4-5"))
    assert (
        value(registry, "orchestrator_tokens_total", agent="claude", model="claude-sonnet-4-5", kind="input")
        == 200
    )
    # A step whose CLI never names its model is counted under "unknown" when it ends.
    observe(usage("i4-s1-implement", agent="gemini", input_tokens=9))
    observe(RunFinished(run_id=RUN, status="failed", stop_reason="step_failed", branch="b"))
    assert value(registry, "orchestrator_tokens_total", agent="gemini", model="unknown", kind="input") == 9
