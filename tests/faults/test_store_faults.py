"""Store faults are clear errors, never crashes: a damaged, unreadable or read-only store, or a full disk,
exits 2 (1 for a run it had to stop) naming the file and what to do; `orchestrator doctor --repair`
moves a damaged store aside; a run cut short by a full disk ends failed; opening a fresh store is safe
under 32 first uses at once; crash logs go under the state home.

Full and read-only disks are real: a small tmpfs (read-only: remounted ro), mounted for the test and
unmounted after it. Every case runs `python -m orchestrator` as a user would and checks the exit code,
the time bound, the user's repository untouched and the planted secret nowhere.

Which run on both backends: the 32 first uses at once (on PostgreSQL the set-up's advisory lock is what
is tested). The others stay SQLite-only because the fault is the file's: a damaged file and `doctor
--repair` moving it aside, a folder where the file should be, a read-only or full disk under the state
folder, a hand-written bad row read through the file (PostgreSQL's own faults, an unreachable server, a
lock held past busy_timeout, are in tests/test_store_backends.py and tests/faults/test_retries.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.proc import child_env, run_command
from orchestrator.store import SCHEMA_VERSION, Store
from orchestrator.testing.fault_project import FaultProject


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, read_only=False) -> a fresh tmpfs folder; all are unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str, name: str = "disk") -> Path:
        where = tmp_path / name
        where.mkdir()
        run_command(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            tmp_path,
            check=True,
        )
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        result = run_command(["umount", str(where)], tmp_path)
        if not result.ok:
            run_command(["umount", "-l", str(where)], tmp_path, check=True)


def remount_read_only(where: Path) -> None:
    run_command(["mount", "-o", "remount,ro", str(where)], where.parent, check=True)


def assert_store_error(timed, path: Path, *words: str) -> None:
    assert timed.code == 2, timed.output
    err = timed.result.stderr
    assert "Traceback" not in err and "internal error" not in err and "sqlite3" not in err
    assert str(path) in err
    for word in words:
        assert word in err, err


def no_crash_logs(project: FaultProject) -> None:
    for folder in (project.state, project.home):
        assert not list(folder.rglob("crash-*.log")) if folder.exists() else True


def test_a_damaged_store_is_a_clear_error_and_doctor_repairs_it(tmp_path):
    project = FaultProject(tmp_path)
    project.state.mkdir()
    store = project.state / "state.db"
    store.write_bytes(b"this is not an SQLite database, it was damaged " * 100)

    listed = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert_store_error(listed, store, "damaged", "orchestrator doctor --repair")
    ran = project.run(limit_s=20)
    assert_store_error(ran, store, "damaged")
    assert project.run_branches() == []  # refused before any branch exists

    checked = project.orchestrator("doctor", "--json", limit_s=20)
    assert checked.code == 1, checked.output
    checks = {c["name"]: c for c in json.loads(checked.result.stdout)["checks"]}
    assert checks["store"]["level"] == "error" and "damaged" in checks["store"]["detail"]
    assert "--repair" in checks["store"]["fix"]

    repaired = project.orchestrator("doctor", "--repair", limit_s=20)
    assert repaired.code == 0, repaired.output
    kept = list(project.state.glob("state.db.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not an SQLite")
    assert str(kept[0]) in repaired.result.stdout
    after = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert after.code == 0, after.output
    no_crash_logs(project)
    project.assert_untouched()
    project.assert_no_leak(listed.output, ran.output, checked.output, repaired.output)


def test_a_store_that_cannot_be_opened_names_the_file(tmp_path):
    project = FaultProject(tmp_path)
    store = project.state / "state.db"
    store.mkdir(parents=True)  # a folder where the file should be: open() fails as for an unreadable file
    listed = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert_store_error(listed, store, "cannot be opened", "a folder")
    ran = project.run(limit_s=20)
    assert_store_error(ran, store, "cannot be opened")
    assert project.run_branches() == []
    no_crash_logs(project)
    project.assert_untouched()
    project.assert_no_leak(listed.output, ran.output)


def test_a_read_only_state_folder_is_a_clear_error(tmp_path, tmpfs):
    disk = tmpfs("8m")
    project = FaultProject(tmp_path, state=disk / "state")
    first = project.orchestrator("runs", "list", "--all", limit_s=10)  # makes the store
    assert first.code == 0, first.output
    remount_read_only(disk)
    store = project.state / "state.db"
    ran = project.run(limit_s=20)
    assert_store_error(ran, store, "read-only", "ORCHESTRATOR_HOME")
    assert project.run_branches() == []
    no_crash_logs(project)
    project.assert_untouched()
    project.assert_no_leak(ran.output)


def test_a_fresh_store_on_a_read_only_disk_is_a_clear_error(tmp_path, tmpfs):
    disk = tmpfs("1m")
    remount_read_only(disk)
    project = FaultProject(tmp_path, state=disk)
    listed = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert_store_error(listed, disk / "state.db", "read-only")
    project.assert_untouched()


def test_a_full_disk_stops_the_run_and_it_ends_failed(tmp_path, tmpfs):
    disk = tmpfs("6m")
    # The agent fills the disk that holds the state (its clone lives there too), then finishes.
    fill = "head -c 20000000 /dev/zero > big.bin; true"
    project = FaultProject(tmp_path, turns=[{"shell": fill}, {"text": "done"}], state=disk)
    ran = project.run(limit_s=60)
    assert ran.code == 1, ran.output
    err = ran.result.stderr
    assert "Traceback" not in err and "internal error" not in err
    assert "disk is full" in err and "runs resume" in err
    run_id = re.search(r"error: run (\S+) was stopped", err).group(1)
    # Whatever could be written then, every later command shows the run failed, never running.
    listed = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert listed.code == 0, listed.output
    assert run_id in listed.result.stdout and "running" not in listed.result.stdout
    assert "failed" in listed.result.stdout
    for big in disk.rglob("big.bin"):
        big.unlink()  # the user frees space: the next command records the failure for good
    shown = project.orchestrator("runs", "show", run_id, limit_s=10)
    assert shown.code == 0 and "failed (stop: disk_full)" in shown.result.stdout, shown.output
    assert not list(disk.glob("state.db.stopped-*"))
    with sqlite3.connect(disk / "state.db") as db:
        assert db.execute("SELECT status, stop_reason FROM runs").fetchall() == [("failed", "disk_full")]
        steps = db.execute("SELECT status FROM steps WHERE status = 'running'").fetchall()
        assert steps == []
    no_crash_logs(project)
    project.assert_untouched()
    project.assert_no_leak(ran.output, listed.output, shown.output)


def test_a_full_disk_before_a_run_is_a_clear_error(tmp_path, tmpfs):
    disk = tmpfs("2m")
    project = FaultProject(tmp_path, state=disk)
    assert project.orchestrator("runs", "list", "--all", limit_s=10).code == 0
    _fill(disk)
    # SQLite needs room for its -shm and -wal files even to read: a clear error, not a crash.
    listed = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert_store_error(listed, disk / "state.db", "full", "free some space")
    ran = project.run(limit_s=20)
    assert_store_error(ran, disk / "state.db", "full")
    assert project.run_branches() == []
    project.assert_untouched()


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_crash_logs_go_under_the_state_home(tmp_path):
    project = FaultProject(tmp_path)
    assert project.orchestrator("runs", "list", "--all", limit_s=10).code == 0
    with sqlite3.connect(project.state / "state.db") as db:  # a row no version of ours could read
        db.execute(
            "INSERT INTO runs (id, repo, task, workflow_name, workflow_json, base, branch, status,"
            " created_at, updated_at, options_json) VALUES ('r1', ?, 't', 'w', '{}', 'HEAD', 'b',"
            " 'approved', 1, 1, 'not json')",
            (str(project.repo),),
        )
    crashed = project.orchestrator("runs", "list", "--all", limit_s=10)
    assert crashed.code == 3, crashed.output
    logs = list((project.state / "crashes").glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in crashed.result.stderr
    assert not list(project.home.rglob("crash-*.log")) if project.home.exists() else True
    project.assert_no_leak(crashed.output)


OPENER = """
import fcntl, sys
from pathlib import Path
from orchestrator.store import Store
ready, barrier, store = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ready.write_text("")
with open(barrier) as fh:
    fcntl.flock(fh, fcntl.LOCK_SH)  # blocks until the test lets every process go at once
Store(store).close()
"""


@pytest.mark.slow
def test_32_first_uses_at_the_same_instant_all_open_the_store(tmp_path, new_store_location):
    """On both backends: a fresh SQLite file (set up under its lock file) and a fresh PostgreSQL
    database (set up under an advisory lock)."""
    env = child_env(os.environ, _pythonpath())
    processes = 32
    for round_ in range(10):
        home = tmp_path / f"round-{round_}"
        home.mkdir()
        location = new_store_location()
        barrier = home / "barrier"
        barrier.write_text("")
        with open(barrier) as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            with ThreadPoolExecutor(max_workers=processes) as pool:
                futures = [
                    pool.submit(
                        run_command,
                        [
                            sys.executable,
                            "-c",
                            OPENER,
                            str(home / f"ready-{i}"),
                            str(barrier),
                            location,
                        ],
                        home,
                        env=env,
                        timeout_s=60,
                    )
                    for i in range(processes)
                ]
                deadline = time.monotonic() + 60
                while len(list(home.glob("ready-*"))) < processes and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(0.2)  # every process is now blocked on the barrier
                fcntl.flock(gate, fcntl.LOCK_UN)
                results = [f.result() for f in futures]
        failed = [r.stderr[-800:] for r in results if not r.ok]
        assert failed == [], f"round {round_}: {len(failed)} of {processes} failed:\n{failed[0]}"
        with Store(location) as store:
            assert store.schema_version() == SCHEMA_VERSION
            assert store.journal_mode() == ("wal" if store.backend == "sqlite" else "postgresql")
        if store.backend == "sqlite":  # WAL is a property of the file: a plain connection sees it
            with sqlite3.connect(location) as db:
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
