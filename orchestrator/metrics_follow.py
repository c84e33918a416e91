"""Metrics from the store's event log: for a process (the dashboard) that serves /metrics for runs
executed anywhere, by itself, the CLI or another worker sharing the store.

    follower = StoreMetricsFollower(store, registry)
    follower.poll()        # call every few seconds (the dashboard's event-forwarding loop)

Each run's events are read once, in sequence order, after the last one seen; so every run is counted
once whoever runs it. A process using this must not also put `metrics_subscriber` on its own runs'
buses (that would count its runs twice).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from orchestrator.metrics import RunMetrics, run_metrics
from orchestrator.store import Store


class StoreMetricsFollower:
    def __init__(
        self, store: Store, registry: CollectorRegistry, *, window: int = 500, since: float | None = None
    ) -> None:
        self._store = store
        self.metrics: RunMetrics = run_metrics(registry)
        self._window = window
        # Runs last changed before this are history, not counted (default: from now on; running runs are
        # always followed, from their first event).
        self._since = time.time() if since is None else since
        self._cursors: dict[str, int] = {}

    def poll(self) -> int:
        """Feed every event stored since the last poll to the metrics; returns how many."""
        fed = 0
        runs = {r.id: r for r in self._store.list_runs(limit=self._window)}
        for run in self._store.list_runs(status="running", limit=self._window):
            runs[run.id] = run
        for run_id, run in runs.items():
            if run_id not in self._cursors and run.status != "running" and run.updated_at < self._since:
                continue
            cursor = self._cursors.get(run_id, 0)
            for stored in self._store.events(run_id, cursor):
                self.metrics.observe(stored.event)
                cursor = stored.seq
                fed += 1
            self._cursors[run_id] = cursor
        # Runs gone from the window (finished long ago) need no cursor any more.
        for run_id in [r for r in self._cursors if r not in runs]:
            del self._cursors[run_id]
        return fed
