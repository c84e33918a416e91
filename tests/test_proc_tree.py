"""Finding and ending what a dead orchestrator left (real processes, real /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.proc_shim import start_time
from orchestrator.proc_tree import end_orphaned_processes, is_alive, owner_id, signal_name


def _sleeper() -> subprocess.Popen[bytes]:
    # Started here (not through proc) on purpose: it plays a process some dead orchestrator left.
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _dead_owner() -> str:
    """The "pid-start" of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    name = owner_id(proc.pid)
    proc.wait()
    return name


def test_what_a_dead_owner_recorded_is_ended_and_its_folder_removed(tmp_path):
    left, mine = _sleeper(), _sleeper()
    try:
        dead = tmp_path / _dead_owner()
        dead.mkdir()
        (dead / "spawn.pids").write_text(f"{left.pid} {start_time(left.pid)}\n")
        alive = tmp_path / owner_id()  # this process: alive, so its records are left alone
        alive.mkdir()
        (alive / "spawn.pids").write_text(f"{mine.pid} {start_time(mine.pid)}\n")
        ended = end_orphaned_processes(tmp_path)
        assert [e.pids for e in ended] == [[left.pid]]
        assert left.wait(timeout=5) == -signal.SIGKILL
        assert not dead.exists() and alive.exists() and is_alive(mine.pid)
    finally:
        for proc in (left, mine):
            proc.kill()
            proc.wait()


def test_a_reused_pid_is_not_killed(tmp_path):
    other = _sleeper()
    try:
        dead = tmp_path / _dead_owner()
        dead.mkdir()
        (dead / "spawn.pids").write_text(f"{other.pid} 1\n")  # same pid, another start time
        assert end_orphaned_processes(tmp_path) == []
        time.sleep(0.2)
        assert is_alive(other.pid) and not dead.exists()
    finally:
        other.kill()
        other.wait()


def test_no_records_folder_is_nothing_to_do(tmp_path):
    assert end_orphaned_processes(tmp_path / "none") == []


def test_signal_names():
    assert signal_name(9) == "SIGKILL (signal 9)"
    assert signal_name(15) == "SIGTERM (signal 15)"
    assert signal_name(200) == "signal 200"


def test_owner_id_names_this_process():
    pid, _, started = owner_id().partition("-")
    assert int(pid) == os.getpid() and started == start_time(os.getpid())
    assert Path(f"/proc/{pid}").exists()
