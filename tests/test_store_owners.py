"""Who owns a run, on both backends: a run whose process died (SIGKILLed, or a reused pid) shows as
interrupted, a live owner keeps it, a run owned on another machine sharing the store is left alone."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.proc import ProcSpec, SubprocessCommunicator, child_env
from orchestrator.store import Store, owner_alive, process_token

RUN = "20261121-061502-a1b2c3"


def new_run(store: Store, run_id: str = RUN, repo: Path | str = "/tmp/repo") -> None:
    store.create_run(
        run_id=run_id,
        repo=repo,
        task="t",
        workflow_name="default",
        workflow={},
        base="main",
        branch=f"b/{run_id}",
    )


def raw_update(store: Store, sql: str, params=()) -> None:
    """A change no method makes (what another version, or a recycled pid, would leave)."""
    with store._write() as tx:
        tx.execute(sql, params)


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from orchestrator.store import Store

    store = Store(sys.argv[1])
    store.create_run(run_id="killed", repo=sys.argv[2], task="t", workflow_name="default",
                     workflow={}, base="main", branch="orchestrator/killed")
    store.start_step("killed", "i1-s1-implement", iteration=1, index=1, agent="claude", task="implement")
    print("ready", os.getpid(), flush=True)
    time.sleep(60)
    """
)


def test_a_run_whose_process_was_sigkilled_shows_as_interrupted(store, store_location, tmp_path):
    new_run(store, "alive")  # owned by this (live) process: must stay running
    seen: list[str] = []

    def on_line(stream: str, line: str) -> None:
        seen.append(f"{stream}: {line}")
        if stream == "stdout" and line.startswith("ready "):
            os.kill(int(line.split()[1]), signal.SIGKILL)

    result = SubprocessCommunicator().run(
        ProcSpec(
            argv=[sys.executable, "-c", _CHILD, store_location, str(tmp_path)],
            cwd=tmp_path,
            env=child_env(os.environ),
            wall_timeout_s=30,
        ),
        on_line,
    )
    assert result.signal == signal.SIGKILL, seen
    killed = store.get_run("killed")
    assert killed.status == "running" and killed.owner_pid == result.pid
    assert not owner_alive(killed.owner_pid, killed.owner_token)

    assert store.mark_interrupted_if_owner_dead() == ["killed"]
    killed = store.get_run("killed")
    assert (killed.status, killed.stop_reason) == ("interrupted", "interrupted")
    assert killed.finished_at is not None
    step = store.step("killed", "i1-s1-implement")
    assert step.status == "interrupted" and "process ended" in step.error_message
    kinds = [s.event.type for s in store.events("killed")]
    assert kinds == ["notice", "run_finished"]
    assert store.get_run("alive").status == "running"
    assert store.mark_interrupted_if_owner_dead() == []  # marking is done once

    # Resume: this process takes the run over.
    resumed = store.claim_run("killed")
    assert (resumed.status, resumed.owner_pid, resumed.finished_at) == ("running", os.getpid(), None)


def test_a_reused_pid_does_not_pass_for_the_owner(store, tmp_path):
    new_run(store, "reused")
    new_run(store, "mine")
    # The same pid, started at another time: what a recycled pid looks like.
    raw_update(store, "UPDATE runs SET owner_token = ? WHERE id = 'reused'", (f"{_boot()}:1:1",))
    assert store.mark_interrupted_if_owner_dead() == ["reused"]
    assert store.get_run("mine").status == "running"


def test_process_tokens():
    mine = process_token(os.getpid())
    assert mine is not None and mine == process_token(os.getpid())
    assert process_token(os.getppid()) not in (None, mine)
    assert process_token(2**22 + 7) is None  # above Linux's largest pid
    assert owner_alive(os.getpid(), mine) and owner_alive(os.getpid(), None)
    assert not owner_alive(os.getpid(), "other-boot:1")
    assert not owner_alive(None, mine)


def test_claiming_a_run_a_live_process_owns_is_refused(store):
    new_run(store)
    parent = os.getppid()
    raw_update(
        store,
        "UPDATE runs SET owner_pid = ?, owner_token = ? WHERE id = ?",
        (parent, process_token(parent), RUN),
    )
    with pytest.raises(UsageError, match=f"still running in process {parent}"):
        store.claim_run(RUN)
    store.update_run_status(RUN, "failed", stop_reason="step_failed")
    assert store.claim_run(RUN).owner_pid == os.getpid()  # a finished run may be taken over


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_run_owned_on_another_machine_is_left_running_on_a_shared_store(store, store_backend):
    """PostgreSQL is shared between machines: a run whose owner has another boot id may be alive on
    its own machine, so it is not marked interrupted from here (nor taken over). SQLite is one
    machine's: another boot id means the machine restarted since, and the run is marked."""
    new_run(store, "elsewhere")
    raw_update(
        store,
        "UPDATE runs SET owner_pid = 4242, owner_token = 'another-boot-id:4242:99' WHERE id = 'elsewhere'",
    )
    marked = store.mark_interrupted_if_owner_dead()
    if store_backend == "postgresql":
        assert marked == [] and store.get_run("elsewhere").status == "running"
        with pytest.raises(UsageError, match="still running in process 4242"):
            store.claim_run("elsewhere")
    else:
        assert marked == ["elsewhere"] and store.get_run("elsewhere").status == "interrupted"
