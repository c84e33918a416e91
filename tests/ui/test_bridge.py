"""The Socket.IO bridge against a live server: a client gets every event after its cursor, in order and
once, whether the cursor comes in `auth` (a reconnect) or in a subscribe message."""

from __future__ import annotations

import threading
import time

import socketio

from .conftest import TOKEN


def follow(server, run_id, *, cursors=None, subscribe_after=None, latest=None):
    got: list[dict] = []
    afters: list[int] = []
    done = threading.Event()
    client = socketio.Client(reconnection=False)

    def on_events(batch):
        afters.append(batch["after"])
        got.extend(batch["events"])
        if got and got[-1]["seq"] >= latest:
            done.set()
        return True

    client.on("events", on_events)
    client.connect(server.base, auth={"token": TOKEN, "cursors": cursors or {}}, transports=["websocket"])
    if subscribe_after is not None:
        answer = client.call("subscribe", {"run_id": run_id, "after": subscribe_after}, timeout=10)
        assert answer == {"ok": True, "latest": latest}
    done.wait(30)
    time.sleep(0.5)  # nothing more may come
    client.disconnect()
    return [e["seq"] for e in got], afters


def test_replay_from_a_cursor_in_auth_or_in_subscribe(world):
    assert world.run_in_terminal().join(120).exit_code == 0
    server = world.serve()
    run_id = server.get("/api/runs")[0]["id"]
    latest = server.get(f"/api/runs/{run_id}/events")["latest"]
    assert latest > 10
    seqs, afters = follow(server, run_id, cursors={run_id: 0}, latest=latest)
    assert seqs == list(range(1, latest + 1))
    assert afters[0] == 0  # each batch says which cursor it continues
    seqs, afters = follow(server, run_id, cursors={run_id: 7}, latest=latest)
    assert seqs == list(range(8, latest + 1)) and afters[0] == 7
    seqs, _ = follow(server, run_id, subscribe_after=latest - 2, latest=latest)
    assert seqs == [latest - 1, latest]


def test_live_events_from_another_process_arrive_in_order(world):
    world.set_turns(
        [{"hang": 2}, {"text": "done"}, {"text": '```json\n{"verdict": "approve", "findings": []}\n```'}]
    )
    server = world.serve()
    terminal = world.run_in_terminal()
    run_id = server.wait_for_runs(1)[0]["id"]
    got: list[int] = []
    finished = threading.Event()
    client = socketio.Client(reconnection=False)

    def on_events(batch):
        got.extend(e["seq"] for e in batch["events"])
        if any(e["event"]["type"] == "run_finished" for e in batch["events"]):
            finished.set()
        return True

    client.on("events", on_events)
    client.connect(server.base, auth={"token": TOKEN, "cursors": {run_id: 0}}, transports=["websocket"])
    assert finished.wait(120)
    client.disconnect()
    assert terminal.join(60).exit_code == 0
    assert got == list(range(1, server.get(f"/api/runs/{run_id}/events")["latest"] + 1))
