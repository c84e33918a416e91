"""The hour/day budgets across a whole cluster: BudgetLedger (ledger.py) over the shared PostgreSQL
database, in the store's tables budget_spend and budget_reservation (schema 4, store/schema.py).

The same methods and rules as on one machine (windows that roll, reservations with a ttl drawn down
by what is spent against them, an alert once per crossing); what makes "check, then reserve" atomic
between processes on any machine is a transaction-level advisory lock every ledger transaction takes
first (SQLite's BEGIN IMMEDIATE, on one machine): writers queue on it, readers too, so two processes
cannot both take the last dollar. It is held for a few small queries and released at commit, or when
the connection dies.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.limits.ledger import BudgetLedger, Budgets, LedgerConnection
from orchestrator.store.placeholders import to_pyformat

LEDGER_LOCK_KEY = 0x6F72636862756467  # "orchbudg": apart from the store's and the slots' keys
CONNECT_TIMEOUT_S = 10


class _Connection:
    """A psycopg connection taking the ledger's `?` SQL."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        return self.raw.execute(to_pyformat(sql), tuple(parameters))


class ClusterBudgetLedger(BudgetLedger):
    SPEND: ClassVar[str] = "budget_spend"
    RESERVATION: ClassVar[str] = "budget_reservation"
    GREATEST: ClassVar[str] = "GREATEST"

    def __init__(self, url: str, budgets: Budgets, *, clock: Callable[[], float] = time.time) -> None:
        # No file: the tables are the store's (made by its migrations when the store was opened).
        self.url = url
        self.path = Path("/nonexistent-cluster-ledger")  # never opened: _transaction is overridden
        self.budgets = budgets
        self.clock = clock

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[LedgerConnection]:
        import psycopg  # the [cluster] extra: present wherever the store is PostgreSQL

        raw = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="orchestrator-ledger",
        )
        try:
            raw.execute("BEGIN")
            try:
                # Readers take it too: a status read between a check and its reserve elsewhere is
                # harmless, but a check (read-only) must see every reservation committed before it.
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                yield _Connection(raw)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
        finally:
            raw.close()


def ledger_for(
    database_url: str | None, state_home: Path, budgets: Budgets, *, clock: Callable[[], float] = time.time
) -> BudgetLedger:
    """The ledger a run's budgets are held by: the cluster's when the store is a PostgreSQL database
    (its URL given), else this machine's (a file under the state home)."""
    if database_url is None:
        return BudgetLedger.at_state_home(state_home, budgets, clock=clock)
    return ClusterBudgetLedger(database_url, budgets, clock=clock)
