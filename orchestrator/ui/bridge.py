"""The Socket.IO bridge: every client follows runs from a cursor into the store's event log.

The store is the buffer. A client subscribes to a run with the last sequence number it holds; the
bridge sends it every later event in order, in batches, one batch in flight per subscription (the
client acknowledges each), so a slow client only falls behind in the log, it never grows the server.
The snapshot and the subscription cannot leave a gap between them: there is only the cursor. A batch
says which cursor it continues (`after`), so a client that sees anything else knows it has a gap and
says so. A client that stops acknowledging is told to resync (its batch is dropped, nothing more is
sent until it subscribes again from its cursor) rather than being sent more. Run list changes are
coalesced the same way: one `runs` message in flight per client; what changes meanwhile waits, one
summary per run, and goes when the client acknowledges. So what the server holds for a client is
bounded by the number of runs, however slow the client.

The follower thread wakes when the store's files change (watchdog, see follower.py) and at least every
`poll_s` seconds (the safety net for file systems without change notification).

`on_delivered(ts)` (the metrics' event-delivery lag) hears the creation time of each event sent to a
client that was already following the run when the event was made: a replay of older events is no lag.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.store import RunRecord, Store, StoredEvent

BATCH = 500  # events per message
RECENT = 1000  # events per run kept in memory (two batches), so followers of a live run do not each query
# the store; a follower further behind reads the store. 4000 held ~38 MB for 8 busy runs.
ACK_TIMEOUT_S = 20.0  # a batch not acknowledged by then: the client is told to resync
RUNS_EVERY_S = 0.25  # how often the run list is compared for changes at most
STALE_EVERY_S = 2.0  # how often runs whose owner died are looked for

Send = Callable[[str, Any, str, Callable[..., None] | None], None]  # (event, data, to sid, on ack)
RunSummary = Callable[[Store, RunRecord], dict[str, Any]]


def event_json(stored: StoredEvent) -> dict[str, Any]:
    """One event as the API and the bridge send it."""
    return {"seq": stored.seq, "step_id": stored.step_id, "event": stored.event.model_dump(mode="json")}


@dataclass
class _Subscription:
    run_id: str
    cursor: int  # the client holds every event up to here
    since: float = field(default_factory=time.time)  # when the client began to follow (wall clock)
    lag_seen: int = 0  # the last seq whose delivery lag was observed (a batch sent again is not)
    in_flight: int | None = None  # the last seq of the batch awaiting its ack
    sent_at: float = 0.0
    resync: bool = False  # told to resync: nothing more until it subscribes again


@dataclass
class _Client:
    sid: str
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    follows_runs: bool = False
    runs_in_flight: bool = False  # a `runs` message awaits its ack
    runs_sent_at: float = 0.0
    runs_pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> latest summary


class _Recent:
    """The tail of one run's log, as sent."""

    def __init__(self) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.last = 0

    def first(self) -> int:
        return self.events[0]["seq"] if self.events else self.last + 1

    def after(self, cursor: int, limit: int) -> list[dict[str, Any]] | None:
        """The events after `cursor` if this tail holds them all; None when it does not reach back."""
        if cursor + 1 < self.first():
            return None
        start = cursor + 1 - self.first()
        return [self.events[i] for i in range(max(start, 0), min(len(self.events), start + limit))]


class Bridge:
    def __init__(
        self,
        store: Store,
        send: Send,
        run_summary: RunSummary,
        *,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_delivered: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.on_delivered = on_delivered
        self.send = send
        self.run_summary = run_summary
        self.poll_s = poll_s
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}
        self._recent: dict[str, _Recent] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runs_seen: dict[str, tuple[float, str]] = {}
        self._runs_checked = 0.0
        self._runs_dirty = False
        self._stale_checked = 0.0
        self.ticks = 0  # for the benchmarks

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._runs_seen = {r.id: (r.updated_at, r.status) for r in self.store.list_runs(limit=500)}
        self._thread = threading.Thread(target=self._loop, name="dashboard-bridge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def wake(self) -> None:
        """Something in the store changed (or may have): look now."""
        self._wake.set()

    # --- what clients ask for -------------------------------------------------------------------------

    def connect(self, sid: str, cursors: dict[str, int] | None = None) -> None:
        with self._lock:
            client = self._clients.setdefault(sid, _Client(sid))
            client.follows_runs = True
            for run_id, cursor in (cursors or {}).items():
                client.subscriptions[run_id] = _Subscription(run_id, max(int(cursor), 0))
        self.wake()

    def disconnect(self, sid: str) -> None:
        with self._lock:
            self._clients.pop(sid, None)
            followed = {run for c in self._clients.values() for run in c.subscriptions}
            for run_id in list(self._recent):
                if run_id not in followed:
                    del self._recent[run_id]

    def subscribe(self, sid: str, run_id: str, after: int) -> int:
        """Follow `run_id` from `after` (the last seq the client holds). Returns the log's last seq."""
        self.store.get_run(run_id)  # RunNotFound for a run that does not exist
        with self._lock:
            client = self._clients.setdefault(sid, _Client(sid))
            client.subscriptions[run_id] = _Subscription(run_id, max(after, 0))
        self.wake()
        return self.store.last_seq(run_id)

    def unsubscribe(self, sid: str, run_id: str) -> None:
        with self._lock:
            client = self._clients.get(sid)
            if client is not None:
                client.subscriptions.pop(run_id, None)

    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    # --- the follower ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            timeout = self.poll_s
            if self._runs_dirty:  # a run list comparison was put off: do it when its turn comes
                timeout = max(0.0, min(timeout, RUNS_EVERY_S - (self.clock() - self._runs_checked)))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a busy store, a closed socket: the next tick retries
                time.sleep(0.05)

    def tick(self) -> None:
        """One look at the store: new events to their followers (first: they are what a page waits
        for), then run list changes to everyone."""
        self.ticks += 1
        now = self.clock()
        with self._lock:
            subscriptions = [(c.sid, s) for c in self._clients.values() for s in c.subscriptions.values()]
        for run_id in {s.run_id for _, s in subscriptions}:
            self._refresh(run_id)
        for sid, sub in subscriptions:
            self._feed(sid, sub, now)
        if now - self._stale_checked >= STALE_EVERY_S:
            self._stale_checked = now
            self._mark_stale()
        if now - self._runs_checked >= RUNS_EVERY_S:
            self._runs_checked, self._runs_dirty = now, False
            self._send_run_changes()
        else:
            self._runs_dirty = True
        self._send_pending_runs(now)

    def _refresh(self, run_id: str) -> None:
        recent = self._recent.setdefault(run_id, _Recent())
        while True:
            fresh = self.store.events(run_id, recent.last, limit=BATCH)
            for stored in fresh:
                recent.events.append(event_json(stored))
                recent.last = stored.seq
            if len(fresh) < BATCH:
                return

    def _feed(self, sid: str, sub: _Subscription, now: float) -> None:
        with self._lock:
            if sub.resync:
                return
            if sub.in_flight is not None:
                if now - sub.sent_at < ACK_TIMEOUT_S:
                    return
                # Never acknowledged: tell the client to resync from its cursor, and wait for it.
                sub.in_flight, sub.resync = None, True
                resync = True
            else:
                resync = False
            cursor = sub.cursor
        if resync:
            self.send("resync", {"run_id": sub.run_id, "after": cursor}, sid, None)
            return
        recent = self._recent.get(sub.run_id)
        batch = recent.after(cursor, BATCH) if recent is not None else None
        if batch is None:  # older than the tail: straight from the log
            batch = [event_json(e) for e in self.store.events(sub.run_id, cursor, limit=BATCH)]
        if not batch:
            return
        last = batch[-1]["seq"]
        with self._lock:
            sub.in_flight, sub.sent_at = last, now

        def acked(*_: Any) -> None:
            with self._lock:
                if sub.in_flight == last:
                    sub.cursor, sub.in_flight = last, None
            self.wake()

        latest = recent.last if recent is not None else last
        self.send(
            "events", {"run_id": sub.run_id, "after": cursor, "events": batch, "latest": latest}, sid, acked
        )
        self._observe_lag(sub, batch)

    def _observe_lag(self, sub: _Subscription, batch: list[dict[str, Any]]) -> None:
        if self.on_delivered is None:
            return
        for item in batch:
            ts = item["event"].get("ts")
            if item["seq"] > sub.lag_seen and isinstance(ts, int | float) and ts >= sub.since:
                self.on_delivered(float(ts))
        sub.lag_seen = max(sub.lag_seen, batch[-1]["seq"])

    def _send_run_changes(self) -> None:
        runs = self.store.list_runs(limit=500)
        changed = [r for r in runs if self._runs_seen.get(r.id) != (r.updated_at, r.status)]
        self._runs_seen = {r.id: (r.updated_at, r.status) for r in runs}
        if not changed:
            return
        summaries = {r.id: self.run_summary(self.store, r) for r in changed}
        with self._lock:
            for client in self._clients.values():
                if client.follows_runs:
                    client.runs_pending.update(summaries)

    def _send_pending_runs(self, now: float) -> None:
        """Each client's waiting run list changes, in one message, when its last one was acknowledged."""
        ready: list[tuple[_Client, list[dict[str, Any]]]] = []
        with self._lock:
            for client in self._clients.values():
                if client.runs_in_flight and now - client.runs_sent_at < ACK_TIMEOUT_S:
                    continue
                if not client.runs_pending:
                    continue
                runs, client.runs_pending = list(client.runs_pending.values()), {}
                client.runs_in_flight, client.runs_sent_at = True, now
                ready.append((client, runs))
        for client, runs in ready:

            def acked(*_: Any, client: _Client = client) -> None:
                with self._lock:
                    client.runs_in_flight = False
                if client.runs_pending:
                    self.wake()

            self.send("runs", {"runs": runs}, client.sid, acked)

    def _mark_stale(self) -> None:
        running = self.store.list_runs(limit=500, status="running")
        if any(not self.store.owner_alive(r.owner_pid, r.owner_token) for r in running):
            self.store.mark_interrupted_if_owner_dead()
