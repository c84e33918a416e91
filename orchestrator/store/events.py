"""The run's event log: sequence-numbered per run, the one source of truth that followers read."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from orchestrator.events import (
    AgentActivity,
    Result,
    RunEvent,
    SessionStarted,
    Subscriber,
    Usage,
    run_event_adapter,
)
from orchestrator.store.backend import Connection
from orchestrator.store.db import StoreBase
from orchestrator.store.records import StoredEvent


class EventsMixin(StoreBase):
    def add_event(self, run_id: str, event: RunEvent) -> int:
        """Appends an event to the run's log and returns its sequence number (1, 2, ...). An agent's
        usage and session id also update its step as they arrive, so budgets and follow-ups see them
        before the step ends."""
        with self._write() as tx:
            seq = self._insert_event(tx, run_id, event)
            if isinstance(event, AgentActivity):
                self._apply_agent_event(tx, run_id, event)
        return seq

    def subscriber(self, run_id: str) -> Subscriber:
        """An EventBus subscriber that stores the run's events."""

        def store_event(event: RunEvent) -> None:
            self.add_event(run_id, event)

        return store_event

    def _apply_agent_event(self, tx: Connection, run_id: str, activity: AgentActivity) -> None:
        inner = activity.event
        key = (run_id, activity.step_id)
        if isinstance(inner, Usage):
            # Same rule as adapters.base.summarize: "total" replaces what came before, "delta" adds.
            if inner.scope == "total":
                tx.execute(
                    "UPDATE steps SET input_tokens = ?, output_tokens = ?, cached_tokens = ?, cost_usd = ?"
                    " WHERE run_id = ? AND step_id = ?",
                    (inner.input_tokens, inner.output_tokens, inner.cached_tokens, inner.cost_usd, *key),
                )
            else:
                # An unpriced delta leaves the cost as it is (decided here: `? IS NULL` has no type
                # PostgreSQL could infer).
                cost = "cost_usd" if inner.cost_usd is None else "COALESCE(cost_usd, 0) + ?"
                costs = () if inner.cost_usd is None else (inner.cost_usd,)
                tx.execute(
                    "UPDATE steps SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
                    f" cached_tokens = cached_tokens + ?, cost_usd = {cost}"
                    " WHERE run_id = ? AND step_id = ?",
                    (inner.input_tokens, inner.output_tokens, inner.cached_tokens, *costs, *key),
                )
        elif isinstance(inner, SessionStarted | Result) and inner.session_id:
            tx.execute(
                "UPDATE steps SET session_id = ? WHERE run_id = ? AND step_id = ?", (inner.session_id, *key)
            )

    def events(
        self,
        run_id: str,
        after_seq: int = 0,
        *,
        limit: int | None = None,
        types: Collection[str] | None = None,
    ) -> list[StoredEvent]:
        """The run's events after `after_seq`, in order (a follower passes the last seq it saw)."""
        sql = "SELECT run_id, seq, step_id, data FROM events WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after_seq]
        if types is not None:
            sql += f" AND type IN ({', '.join('?' for _ in types)})"
            params += list(types)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            StoredEvent(
                run_id=row["run_id"],
                seq=row["seq"],
                step_id=row["step_id"],
                event=run_event_adapter.validate_json(row["data"]),
            )
            for row in self._conn().execute(sql, params)
        ]

    def last_seq(self, run_id: str) -> int:
        seq: int = (
            self._conn()
            .execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,))
            .fetchone()[0]
        )
        return seq
