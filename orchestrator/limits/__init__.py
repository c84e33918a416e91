"""Limits that hold across every run on the machine: per-CLI concurrency (with 429 back-off) and the
hour and day budgets. Both live under <state home>/limits/ and use only file locks, so they hold
between processes that know nothing of each other (two `orchestrator run`s, the dashboard, CI).
"""

from orchestrator.limits.ledger import (
    Alert,
    BudgetExceeded,
    BudgetLedger,
    Budgets,
    BudgetStatus,
    Reservation,
    WindowStatus,
)
from orchestrator.limits.slots import (
    DEFAULT_AGENT_CAP,
    MachineSlots,
    RunSlots,
    Slot,
    SlotUnavailable,
    hold_slots,
)
from orchestrator.limits.throttle import DEFAULT_COOLDOWN_S, Throttle

__all__ = [
    "DEFAULT_AGENT_CAP",
    "DEFAULT_COOLDOWN_S",
    "Alert",
    "BudgetExceeded",
    "BudgetLedger",
    "BudgetStatus",
    "Budgets",
    "MachineSlots",
    "Reservation",
    "RunSlots",
    "Slot",
    "SlotUnavailable",
    "Throttle",
    "WindowStatus",
    "hold_slots",
]
