"""The bridge's flow control, tick by tick on a clock of the test's own: one batch in flight per
subscription, a client that stops acknowledging told to resync and then sent nothing until it subscribes
again, run list changes coalesced per client while one message awaits its ack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.events import AgentActivity, AssistantMessage
from orchestrator.store import RunRecord, Store
from orchestrator.ui.bridge import ACK_TIMEOUT_S, BATCH, Bridge


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Any, str, Callable[..., None] | None]] = []

    def __call__(self, event: str, data: Any, sid: str, ack: Callable[..., None] | None) -> None:
        self.messages.append((event, data, sid, ack))

    def take(self, event: str | None = None) -> list[tuple[str, Any, str, Callable[..., None] | None]]:
        got = [m for m in self.messages if event is None or m[0] == event]
        self.messages = [m for m in self.messages if m not in got]
        return got


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add_run(store: Store, run_id: str, events: int) -> None:
    store.create_run(
        run_id=run_id,
        repo=store.path.parent,
        task="t",
        workflow_name="w",
        workflow={"steps": []},
        base="HEAD",
        branch=f"orchestrator/{run_id}",
    )
    for n in range(events):
        store.add_event(
            run_id,
            AgentActivity(run_id=run_id, step_id="s", agent="fake", event=AssistantMessage(text=f"line {n}")),
        )


def summary(_store: Store, run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "status": run.status}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state.db") as opened:
        yield opened


def test_one_batch_in_flight_and_the_next_only_after_the_ack(store):
    add_run(store, "r1", BATCH + 20)
    sent, clock = Sent(), Clock()
    bridge = Bridge(store, sent, summary, clock=clock)
    bridge.connect("a", {"r1": 0})
    bridge.tick()
    [(_, batch, sid, ack)] = sent.take("events")
    assert sid == "a" and batch["after"] == 0 and len(batch["events"]) == BATCH
    for _ in range(3):  # not acknowledged yet: nothing more, however often the bridge looks
        clock.now += 1
        bridge.tick()
    assert sent.take("events") == []
    assert ack is not None
    ack()
    bridge.tick()
    [(_, batch, _, _)] = sent.take("events")
    assert batch["after"] == BATCH and [e["seq"] for e in batch["events"]] == list(
        range(BATCH + 1, BATCH + 21)
    )


def test_a_client_that_stops_acknowledging_is_told_to_resync_and_then_left_alone(store):
    add_run(store, "r1", 30)
    sent, clock = Sent(), Clock()
    bridge = Bridge(store, sent, summary, clock=clock)
    bridge.connect("slow", {"r1": 0})
    bridge.tick()
    assert len(sent.take("events")) == 1
    clock.now += ACK_TIMEOUT_S + 1
    bridge.tick()
    assert [data for _, data, _, _ in sent.take("resync")] == [{"run_id": "r1", "after": 0}]
    add_run(store, "r2", 0)  # the log and the run list go on changing
    for _ in range(5):
        clock.now += ACK_TIMEOUT_S + 1
        bridge.tick()
    assert sent.take("events") == [] and sent.take("resync") == []
    # It subscribes again from its cursor: the events come again, from there.
    assert bridge.subscribe("slow", "r1", 10) == 30
    bridge.tick()
    [(_, batch, _, _)] = sent.take("events")
    assert batch["after"] == 10 and batch["events"][0]["seq"] == 11


def test_run_list_changes_wait_for_the_ack_and_go_coalesced(store):
    sent, clock = Sent(), Clock()
    bridge = Bridge(store, sent, summary, clock=clock)
    bridge.connect("a")
    add_run(store, "r1", 0)
    clock.now += 1
    bridge.tick()
    [(_, data, _, ack)] = sent.take("runs")
    assert [r["id"] for r in data["runs"]] == ["r1"]
    for n in range(2, 6):  # four more runs while the first message is not acknowledged
        add_run(store, f"r{n}", 0)
        clock.now += 1
        bridge.tick()
    assert sent.take("runs") == []
    assert ack is not None
    ack()
    bridge.tick()
    [(_, data, _, _)] = sent.take("runs")
    assert sorted(r["id"] for r in data["runs"]) == ["r2", "r3", "r4", "r5"]
