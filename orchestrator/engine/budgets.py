"""Budgets across runs (`budgets: {hour_usd, day_usd, alert_at}` in the config), held by the machine's
ledger (limits/ledger.py), or the cluster's (limits/cluster_ledger.py) when the store is PostgreSQL:
a step that would start past a budget does not start, a group of agents at once reserves its expected
cost first, what each step spent is recorded, and crossing `alert_at` of a budget is an event and a
log line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from orchestrator.events import Notice, RunEvent
from orchestrator.limits.cluster_ledger import ledger_for
from orchestrator.limits.ledger import BudgetExceeded, BudgetLedger, Budgets, Reservation

log = structlog.get_logger(__name__)

__all__ = ["BudgetExceeded", "RunBudget"]


class RunBudget:
    def __init__(
        self,
        state_home: Path,
        budgets: Budgets,
        run_id: str,
        publish: Callable[[RunEvent], None],
        *,
        database_url: str | None = None,
    ) -> None:
        on = budgets.hour_usd is not None or budgets.day_usd is not None
        # The cluster's ledger (tables in the shared database) when the store is PostgreSQL.
        self.ledger: BudgetLedger | None = ledger_for(database_url, state_home, budgets) if on else None
        self.run_id = run_id
        self.publish = publish

    def before(self, label: str, members: int, per_step_usd: float) -> Reservation | None:
        """Before a step: BudgetExceeded when it may not start; a group (members > 1) reserves what
        its members are expected to cost (the run's average step so far, each)."""
        if self.ledger is None:
            return None
        if members <= 1:
            self.ledger.check()
            return None
        return self.ledger.reserve(self.run_id, members * per_step_usd, label=label)

    def after(self, label: str, spent_usd: float, reservation: Reservation | None) -> None:
        if self.ledger is None:
            return
        if spent_usd > 0:
            for alert in self.ledger.record(self.run_id, spent_usd, reservation=reservation, label=label):
                log.warning("budget alert", run_id=self.run_id, window=alert.window, text=alert.message())
                self.publish(Notice(run_id=self.run_id, level="warning", text=alert.message()))
        if reservation is not None:
            self.ledger.release(reservation)
