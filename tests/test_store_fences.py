"""Fencing tokens on both backends: a newer attempt's token refuses every write of an older holder for
the run, in the writing transaction; a Store holding no token writes as before; tokens taken by
several processes at once are distinct and increasing."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.errors import RunNotFound
from orchestrator.events import Notice, RunEvent
from orchestrator.proc import child_env, run_command
from orchestrator.store import StaleFence, Store
from tests.store_helpers import make_run


def note(text: str, run_id: str = "r1") -> RunEvent:
    return Notice(run_id=run_id, text=text)


def texts(store: Store, run_id: str = "r1") -> list[str]:
    return [e.event.text for e in store.events(run_id) if isinstance(e.event, Notice)]


def test_tokens_increase_per_run_and_an_unknown_run_has_none(store_location):
    with Store(store_location) as store:
        make_run(store, "r1")
        make_run(store, "r2")
        assert store.fence("r1") == 0
        assert [store.acquire_fence("r1") for _ in range(3)] == [1, 2, 3]
        assert store.acquire_fence("r2") == 1  # per run
        assert store.fence("r1") == 3
        with pytest.raises(RunNotFound):
            store.acquire_fence("nope")


def test_an_old_holder_is_refused_every_write_once_a_newer_token_was_taken(store_location):
    with Store(store_location) as old, Store(store_location) as new:
        make_run(old)
        old.hold_fence("r1", old.acquire_fence("r1"))
        old.add_event("r1", note("old 1"))
        old.start_step("r1", "s1", iteration=1, index=0, agent="claude", task="t")

        new.hold_fence("r1", new.acquire_fence("r1"))  # the step retried elsewhere

        refused = {
            "add_event": lambda: old.add_event("r1", note("old late")),
            "start_step": lambda: old.start_step("r1", "s2", iteration=1, index=1, agent="claude", task="t"),
            "finish_step": lambda: old.finish_step("r1", "s1", status="succeeded", commit="abc"),
            "update_run_status": lambda: old.update_run_status("r1", "approved", stop_reason="approved"),
            "set_iterations": lambda: old.set_iterations("r1", 9),
            "set_workspace": lambda: old.set_workspace("r1", base_sha="f00"),
            "claim_run": lambda: old.claim_run("r1"),
            "request_control": lambda: old.request_control("r1", "cancel"),
        }
        for name, write in refused.items():
            with pytest.raises(StaleFence, match="stale") as caught:
                write()
            assert (caught.value.held, caught.value.current) == (1, 2), name

        # The new holder writes, and nothing of the old one's late writes landed.
        new.add_event("r1", note("new 1"))
        new.finish_step("r1", "s1", status="succeeded", commit="def")
        run = new.update_run_status("r1", "approved", stop_reason="approved")
        assert (run.status, run.iterations, run.base_sha) == ("approved", 1, None)
        assert [(s.step_id, s.status, s.commit) for s in new.steps("r1")] == [("s1", "succeeded", "def")]
        assert texts(new) == ["old 1", "new 1"]
        assert [e.seq for e in new.events("r1")] == [1, 2]  # contiguous: a refused write left no gap
        assert new.pending_controls("r1") == []


def test_a_stale_holder_cannot_take_a_control_request_the_new_one_needs(store_location):
    with Store(store_location) as old, Store(store_location) as new, Store(store_location) as asking:
        make_run(asking)
        old.hold_fence("r1", old.acquire_fence("r1"))
        request = asking.request_control("r1", "follow_up", {"text": "more"})  # holds no token: accepted
        new.hold_fence("r1", new.acquire_fence("r1"))
        with pytest.raises(StaleFence):
            old.take_control(request, os.getpid())
        with pytest.raises(StaleFence):
            old.finish_control(request, "done")
        assert new.take_control(request, os.getpid())
        new.finish_control(request, "done", "ran it")
        assert asking.control(request).status == "done"


def test_holding_a_token_that_is_stale_or_was_never_taken_is_refused(store_location):
    with Store(store_location) as store:
        make_run(store)
        first = store.acquire_fence("r1")
        store.acquire_fence("r1")
        with pytest.raises(StaleFence):
            store.hold_fence("r1", first)
        with pytest.raises(ValueError, match="never had"):
            store.hold_fence("r1", 7)
        assert store.held_fence("r1") is None


def test_a_store_holding_no_token_writes_as_before(store_location):
    with Store(store_location) as holder, Store(store_location) as plain:
        make_run(plain)
        make_run(plain, "r2")
        holder.hold_fence("r1", holder.acquire_fence("r1"))
        plain.acquire_fence("r1")  # taken, not held: `plain` still checks nothing
        plain.add_event("r1", note("plain"))
        holder.add_event(
            "r2",
            note("other run"),
        )  # the holder's other runs are not fenced
        with pytest.raises(StaleFence):
            holder.add_event("r1", note("stale"))
        holder.release_fence("r1")
        holder.add_event("r1", note("released"))  # no token held: single-machine behaviour again
        assert texts(plain) == ["plain", "released"]


def test_writes_racing_a_new_token_land_only_before_it(store_location):
    """An old holder appends as fast as it can while a new token is taken: each of its events is
    either before the new holder's first event or refused; sequence numbers stay 1..N."""
    with Store(store_location) as old, Store(store_location) as new:
        make_run(old)
        old.hold_fence("r1", old.acquire_fence("r1"))
        stopped: list[BaseException] = []
        started = threading.Event()

        def append() -> None:
            n = 0
            try:
                while n < 5000:
                    old.add_event("r1", note(f"old {n}"))
                    n += 1
                    started.set()
            except StaleFence as exc:
                stopped.append(exc)

        writer = threading.Thread(target=append)
        writer.start()
        started.wait(30)
        time.sleep(0.05)
        new.hold_fence("r1", new.acquire_fence("r1"))
        first_new = new.add_event("r1", note("new"))
        writer.join(60)
        assert len(stopped) == 1  # the old writer was stopped by the fence, not by running out
        events = new.events("r1")
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        olds = [e.seq for e in events if e.event.text.startswith("old ")]  # type: ignore[union-attr]
        assert olds and max(olds) < first_new
        assert len(events) == len(olds) + 1


ACQUIRER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.store import Store
    location, count, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    with Store(location) as store:
        store.fence("r1")  # connected before the start, so both begin at once
        while not go.exists():
            time.sleep(0.002)
        print(" ".join(str(store.acquire_fence("r1")) for _ in range(count)))
    """
)


def test_processes_racing_for_tokens_get_distinct_increasing_ones(store_location, tmp_path):
    processes, per_process = 2, 150
    with Store(store_location) as store:
        make_run(store)
        go = tmp_path / "go"
        env = child_env(
            os.environ, {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
        )
        with ThreadPoolExecutor(max_workers=processes) as pool:
            futures = [
                pool.submit(
                    run_command,
                    [sys.executable, "-c", ACQUIRER, store_location, str(per_process), str(go)],
                    tmp_path,
                    env=env,
                    timeout_s=120,
                )
                for _ in range(processes)
            ]
            time.sleep(0.5)
            go.write_text("")
            results = [f.result() for f in futures]
        assert [r.stderr[-600:] for r in results if not r.ok] == []
        tokens = [[int(t) for t in r.stdout.split()] for r in results]
        for mine in tokens:
            assert mine == sorted(mine) and len(set(mine)) == len(mine)  # strictly increasing
        everything = sorted(t for mine in tokens for t in mine)
        assert everything == list(range(1, processes * per_process + 1))  # distinct, none skipped
        assert store.fence("r1") == processes * per_process
