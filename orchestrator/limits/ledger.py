"""Budgets across runs: `budgets: {hour_usd, day_usd, alert_at: 0.8}`, held by a ledger every run shares.

The ledger is its own SQLite file, <state home>/limits/budget.db, apart from the run store (whose
package another change owns; see the report for how it moves there). Every write is one `BEGIN
IMMEDIATE` transaction, SQLite's own file lock, so "check, then reserve" is atomic between processes:
two runs cannot both take the last dollar.

- Windows roll: "hour" is the last 3600 s, "day" the last 86400 s, whatever the clock on the wall says.
- Used = spent in the window + reserved (reservations count in every window: they are money about to
  be spent). A step or a group does not start when used + its expected cost would pass a limit, nor
  when the limit is already reached (BudgetExceeded, kind "budget_exceeded").
- A reservation is taken before a parallel group starts, for the group's expected cost. Spending
  recorded against it draws it down (what is held is amount - spent against it, never below 0), and
  the group releases it when it ends. A run that dies keeps nothing for ever: a reservation expires
  after its ttl.
- An alert is returned once per crossing: when a record moves a window's spending from below
  `alert_at` of its limit to at or above it. The caller turns it into an event and a log line.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import OrchestratorError

Window = Literal["hour", "day"]


class LedgerConnection(Protocol):
    """What the ledger's transactions use: sqlite3's connection, or cluster_ledger.py's wrapper."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


WINDOW_SECONDS: dict[Window, float] = {"hour": 3600.0, "day": 86400.0}
DEFAULT_RESERVATION_TTL_S = 6 * 3600.0
_KEEP_S = 2 * 86400.0  # rows older than this no longer fall in any window

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    run_id TEXT NOT NULL,
    usd REAL NOT NULL,
    reservation TEXT,
    label TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS spend_at ON spend(at);
CREATE TABLE IF NOT EXISTS reservation (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    run_id TEXT NOT NULL,
    usd REAL NOT NULL,
    expires_at REAL NOT NULL,
    released_at REAL,
    label TEXT NOT NULL DEFAULT ''
);
"""


class Budgets(BaseModel):
    """The config's `budgets:` block (to be embedded in orchestrator/config.py's Settings)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    hour_usd: float | None = Field(default=None, gt=0)
    day_usd: float | None = Field(default=None, gt=0)
    alert_at: float = Field(default=0.8, gt=0, le=1)

    def limit(self, window: Window) -> float | None:
        return self.hour_usd if window == "hour" else self.day_usd


@dataclass(frozen=True)
class WindowStatus:
    window: Window
    limit_usd: float | None
    spent_usd: float
    reserved_usd: float

    @property
    def used_usd(self) -> float:
        return self.spent_usd + self.reserved_usd

    @property
    def fraction(self) -> float | None:
        return None if self.limit_usd is None else self.used_usd / self.limit_usd


@dataclass(frozen=True)
class BudgetStatus:
    windows: tuple[WindowStatus, ...]

    def window(self, window: Window) -> WindowStatus:
        return next(w for w in self.windows if w.window == window)


@dataclass(frozen=True)
class Reservation:
    id: str
    run_id: str
    usd: float
    expires_at: float


@dataclass(frozen=True)
class Alert:
    window: Window
    spent_usd: float
    limit_usd: float
    alert_at: float

    def message(self) -> str:
        return (
            f"{self.window} budget: ${self.spent_usd:.2f} of ${self.limit_usd:.2f} spent "
            f"({self.spent_usd / self.limit_usd:.0%}, alert at {self.alert_at:.0%})"
        )


class BudgetExceeded(OrchestratorError):
    kind: ClassVar[str] = "budget_exceeded"

    def __init__(self, status: WindowStatus, asked_usd: float) -> None:
        assert status.limit_usd is not None
        super().__init__(
            f"the {status.window} budget of ${status.limit_usd:.2f} would be exceeded: "
            f"${status.spent_usd:.2f} spent and ${status.reserved_usd:.2f} reserved in the last "
            f"{status.window}, and this needs ${asked_usd:.2f}",
            hint=f"wait for the {status.window} to roll on, or raise budgets.{status.window}_usd in the config",
        )
        self.status = status
        self.asked_usd = asked_usd


class BudgetLedger:
    # Where the rows are, and SQL's two-argument maximum: the cluster ledger (cluster_ledger.py) keeps
    # the same rows in the shared PostgreSQL database, through the same methods.
    SPEND: ClassVar[str] = "spend"
    RESERVATION: ClassVar[str] = "reservation"
    GREATEST: ClassVar[str] = "MAX"

    def __init__(self, path: Path, budgets: Budgets, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.budgets = budgets
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)  # IF NOT EXISTS: safe when several processes open it at once
        finally:
            db.close()

    @classmethod
    def at_state_home(
        cls, state_home: Path, budgets: Budgets, *, clock: Callable[[], float] = time.time
    ) -> BudgetLedger:
        return cls(state_home / "limits" / "budget.db", budgets, clock=clock)

    def status(self) -> BudgetStatus:
        with self._transaction(write=False) as db:
            return self._status(db, self.clock())

    def check(self, usd: float = 0.0) -> None:
        """BudgetExceeded when something costing `usd` may not start now."""
        with self._transaction(write=False) as db:
            self._check(self._status(db, self.clock()), usd)

    def reserve(
        self, run_id: str, usd: float, *, label: str = "", ttl_s: float = DEFAULT_RESERVATION_TTL_S
    ) -> Reservation:
        """Hold `usd` for a group about to start, atomically with the check (BudgetExceeded)."""
        if usd < 0 or ttl_s <= 0:
            raise ValueError(f"a reservation needs usd >= 0 and ttl_s > 0, not {usd}, {ttl_s}")
        with self._transaction() as db:
            now = self.clock()
            self._check(self._status(db, now), usd)
            reservation = Reservation(uuid.uuid4().hex, run_id, usd, now + ttl_s)
            db.execute(
                f"INSERT INTO {self.RESERVATION} (id, at, run_id, usd, expires_at, label)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (reservation.id, now, run_id, usd, reservation.expires_at, label),
            )
            return reservation

    def release(self, reservation: Reservation | str) -> None:
        reservation_id = reservation if isinstance(reservation, str) else reservation.id
        with self._transaction() as db:
            db.execute(
                f"UPDATE {self.RESERVATION} SET released_at = ? WHERE id = ? AND released_at IS NULL",
                (self.clock(), reservation_id),
            )

    def record(
        self, run_id: str, usd: float, *, reservation: Reservation | str | None = None, label: str = ""
    ) -> list[Alert]:
        """Record money spent (after a step). Returns the alerts this record crossed into."""
        if usd < 0:
            raise ValueError(f"spending cannot be negative: {usd}")
        reservation_id = reservation.id if isinstance(reservation, Reservation) else reservation
        with self._transaction() as db:
            now = self.clock()
            before = self._status(db, now)
            db.execute(
                f"INSERT INTO {self.SPEND} (at, run_id, usd, reservation, label) VALUES (?, ?, ?, ?, ?)",
                (now, run_id, usd, reservation_id, label),
            )
            after = self._status(db, now)
            db.execute(f"DELETE FROM {self.SPEND} WHERE at < ?", (now - _KEEP_S,))
            db.execute(f"DELETE FROM {self.RESERVATION} WHERE expires_at < ?", (now - _KEEP_S,))
        alerts = []
        for old, new in zip(before.windows, after.windows, strict=True):
            if new.limit_usd is None:
                continue
            threshold = self.budgets.alert_at * new.limit_usd
            if old.spent_usd < threshold <= new.spent_usd:
                alerts.append(Alert(new.window, new.spent_usd, new.limit_usd, self.budgets.alert_at))
        return alerts

    # --- inside a transaction ------------------------------------------------------------------

    def _status(self, db: LedgerConnection, now: float) -> BudgetStatus:
        (reserved,) = db.execute(
            f"""SELECT COALESCE(SUM({self.GREATEST}(0, r.usd - COALESCE(
                   (SELECT SUM(s.usd) FROM {self.SPEND} s WHERE s.reservation = r.id), 0))), 0)
               FROM {self.RESERVATION} r WHERE r.released_at IS NULL AND r.expires_at > ?""",
            (now,),
        ).fetchone()
        windows = []
        for window, seconds in WINDOW_SECONDS.items():
            (spent,) = db.execute(
                f"SELECT COALESCE(SUM(usd), 0) FROM {self.SPEND} WHERE at > ?", (now - seconds,)
            ).fetchone()
            windows.append(WindowStatus(window, self.budgets.limit(window), float(spent), float(reserved)))
        return BudgetStatus(tuple(windows))

    def _check(self, status: BudgetStatus, usd: float) -> None:
        for window in status.windows:
            limit = window.limit_usd
            # A cent's thousandth of slack: sums of floats must not refuse what exactly fits.
            if limit is not None and (window.used_usd >= limit or window.used_usd + usd > limit + 1e-9):
                raise BudgetExceeded(window, usd)

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[LedgerConnection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()
