"""The hour and day budgets across runs, on both backends: a real SQLite ledger under the state home
(one machine), and the cluster's ledger in a real PostgreSQL database; shared by processes."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.limits import BudgetExceeded, BudgetLedger, Budgets
from orchestrator.limits.cluster_ledger import ledger_for
from orchestrator.proc import child_env, run_command
from orchestrator.store import Store


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(store_backend, new_store_location):
    """ledger(folder, clock, **budgets): a ledger of this test's backend, one per folder (on
    PostgreSQL, a database of its own per folder, its tables made by the store's migrations)."""
    databases: dict[Path, str] = {}

    def make(folder: Path, clock: Clock | None = None, **budgets: float) -> BudgetLedger:
        url = None
        if store_backend == "postgresql":
            if folder not in databases:
                databases[folder] = new_store_location()
                Store(databases[folder]).close()
            url = databases[folder]
        return ledger_for(url, folder, Budgets(**budgets), clock=clock or Clock())

    return make


def test_budgets_model_refuses_bad_values():
    assert Budgets().hour_usd is None and Budgets().alert_at == 0.8
    for bad in ({"hour_usd": 0}, {"day_usd": -1}, {"alert_at": 1.5}, {"weekly_usd": 3}):
        with pytest.raises(ValidationError):
            Budgets(**bad)


def test_spending_rolls_out_of_the_hour_and_the_day(tmp_path, ledger):
    clock = Clock()
    book = ledger(tmp_path, clock, hour_usd=2, day_usd=5)
    book.record("r1", 1.5)
    status = book.status()
    assert status.window("hour").spent_usd == 1.5 and status.window("day").spent_usd == 1.5
    with pytest.raises(BudgetExceeded) as caught:
        book.check(0.6)
    assert caught.value.status.window == "hour"
    assert str(caught.value).startswith(
        "the hour budget of $2.00 would be exceeded: $1.50 spent and $0.00 reserved in the last hour, and this needs $0.60"
    )
    assert "budgets.hour_usd" in caught.value.hint and caught.value.kind == "budget_exceeded"
    book.check(0.5)  # exactly fits
    clock.now += 3601
    book.check(0.6)  # the hour rolled on
    assert book.status().window("hour").spent_usd == 0 and book.status().window("day").spent_usd == 1.5
    book.record("r2", 1.9)
    clock.now += 3601
    book.record("r3", 1.5)  # hour: 1.5 of 2; day: 4.9 of 5
    book.check(0.1)
    with pytest.raises(BudgetExceeded, match="day budget of \\$5.00"):
        book.check(0.2)
    clock.now += 86401
    assert book.status().window("day").spent_usd == 0
    book.check(2.0)  # the hour limit is the tighter one now


def test_a_reached_limit_refuses_even_a_free_start(tmp_path, ledger):
    book = ledger(tmp_path, hour_usd=1)
    book.record("r", 1.0)
    with pytest.raises(BudgetExceeded):
        book.check(0)


def test_no_budgets_means_no_limit(tmp_path, ledger):
    book = ledger(tmp_path)
    book.record("r", 1000.0)
    book.check(1000.0)
    assert book.reserve("r", 50.0).usd == 50.0
    assert book.status().window("hour").fraction is None


def test_reservations_count_until_spent_released_or_expired(tmp_path, ledger):
    clock = Clock()
    book = ledger(tmp_path, clock, hour_usd=3)
    group = book.reserve("r1", 2.0, label="attempts", ttl_s=600)
    assert book.status().window("hour").reserved_usd == 2.0
    with pytest.raises(BudgetExceeded, match="\\$2.00 reserved"):
        book.reserve("r2", 1.5)
    book.record("r1", 0.5, reservation=group)  # spent against the reservation: it shrinks
    hour = book.status().window("hour")
    assert (hour.spent_usd, hour.reserved_usd, hour.used_usd) == (0.5, 1.5, 2.0)
    book.record("r1", 2.0, reservation=group.id)  # spent past it: held never goes below 0
    hour = book.status().window("hour")
    assert (hour.spent_usd, hour.reserved_usd) == (2.5, 0.0)
    other = book.reserve("r2", 0.5)
    book.release(other)
    book.release(other)  # twice is harmless
    assert book.status().window("hour").reserved_usd == 0.0
    stale = book.reserve("r3", 0.4, ttl_s=60)
    assert book.status().window("hour").reserved_usd == pytest.approx(0.4)
    clock.now += 61  # its run died: the reservation expires
    assert book.status().window("hour").reserved_usd == 0.0
    assert stale.expires_at == clock.now - 1
    with pytest.raises(ValueError):
        book.reserve("r", -1)
    with pytest.raises(ValueError):
        book.record("r", -0.1)


def test_an_alert_comes_once_when_spending_crosses_alert_at(tmp_path, ledger):
    clock = Clock()
    book = ledger(tmp_path, clock, hour_usd=10, day_usd=100, alert_at=0.8)
    assert book.record("r", 7.9) == []
    (alert,) = book.record("r", 0.1)
    assert alert.window == "hour" and alert.spent_usd == pytest.approx(8.0)
    assert alert.message() == "hour budget: $8.00 of $10.00 spent (80%, alert at 80%)"
    assert book.record("r", 1.0) == []  # already past: no second alert
    assert book.record("r", 0.0) == []
    big = ledger(tmp_path / "other", Clock(), hour_usd=1, day_usd=2)
    windows = [a.window for a in big.record("r", 1.7)]
    assert windows == ["hour", "day"]


def test_the_hour_alert_fires_again_in_a_new_hour(tmp_path, ledger):
    clock = Clock()
    book = ledger(tmp_path, clock, hour_usd=10)
    assert [a.window for a in book.record("r", 8.5)] == ["hour"]
    clock.now += 3601
    assert [a.window for a in book.record("r", 8.5)] == ["hour"]


def test_old_rows_are_pruned(tmp_path, ledger):
    clock = Clock()
    book = ledger(tmp_path, clock, day_usd=100)
    for _ in range(5):
        book.record("r", 1.0)
    clock.now += 3 * 86400
    book.record("r", 1.0)
    with book._transaction(write=False) as db:
        assert tuple(db.execute(f"SELECT COUNT(*) FROM {book.SPEND}").fetchone()) == (1,)


RESERVER = r"""
import json, sys, time
from pathlib import Path
from orchestrator.limits import BudgetExceeded, Budgets
from orchestrator.limits.cluster_ledger import ledger_for
home, ident, url = sys.argv[1:4]
book = ledger_for(url or None, Path(home), Budgets(hour_usd=3.0))
go = Path(home) / "go"
(Path(home) / f"ready-{ident}").touch()
while not go.exists():
    time.sleep(0.005)
try:
    book.reserve(f"run-{ident}", 1.0)
    print(json.dumps({"id": ident, "ok": True}))
except BudgetExceeded as exc:
    print(json.dumps({"id": ident, "ok": False, "why": str(exc)}))
"""


@pytest.mark.slow
def test_processes_racing_for_the_last_dollars_never_overbook(tmp_path, store_backend, new_store_location):
    url = ""
    if store_backend == "postgresql":  # processes as if on several machines: one shared database
        url = new_store_location()
        Store(url).close()
    home = tmp_path / "home"
    (home / "limits").mkdir(parents=True)
    script = tmp_path / "reserver.py"
    script.write_text(RESERVER)
    env = child_env(os.environ)
    results = []
    count = 7

    def one(ident):
        results.append(
            run_command(
                [sys.executable, str(script), str(home), str(ident), url], tmp_path, env=env, timeout_s=120
            )
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(list(home.glob("ready-*"))) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    (home / "go").touch()
    for thread in threads:
        thread.join()
    assert all(r.ok for r in results), [r.stderr[-400:] for r in results]
    answers = [json.loads(r.stdout) for r in results]
    assert sum(a["ok"] for a in answers) == 3  # $3 an hour, $1 each: exactly three get theirs
    assert all("hour budget of $3.00" in a["why"] for a in answers if not a["ok"])
    book = ledger_for(url or None, home, Budgets(hour_usd=3.0))
    assert book.status().window("hour").reserved_usd == 3.0


def test_a_run_on_a_postgresql_store_books_into_the_clusters_ledger(postgres_url, tmp_path):
    """RunBudget (what the engine builds) takes the cluster's ledger when given the store's URL: what
    one machine spends holds back another machine's group."""
    from orchestrator.engine.budgets import RunBudget
    from orchestrator.events import Notice
    from orchestrator.limits.cluster_ledger import ClusterBudgetLedger

    Store(postgres_url).close()
    budgets = Budgets(hour_usd=1.0, alert_at=0.8)
    events: list[object] = []
    here = RunBudget(tmp_path / "a", budgets, "r1", events.append, database_url=postgres_url)
    there = RunBudget(tmp_path / "b", budgets, "r2", events.append, database_url=postgres_url)
    assert isinstance(here.ledger, ClusterBudgetLedger)
    here.after("s1", 0.85, None)
    assert [e.text for e in events if isinstance(e, Notice)] == [
        "hour budget: $0.85 of $1.00 spent (85%, alert at 80%)"
    ]
    with pytest.raises(BudgetExceeded, match="\\$0.85 spent"):
        there.before("s2", members=2, per_step_usd=0.1)  # another machine, the same dollar
    local = RunBudget(tmp_path / "b", budgets, "r3", events.append)  # an SQLite store: this machine's
    assert type(local.ledger) is BudgetLedger and local.before("s", members=2, per_step_usd=0.1)
