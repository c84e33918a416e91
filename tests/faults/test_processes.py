"""Faults in processes: signals to the orchestrator, escaped grandchildren, CLIs killed by a signal.

Each case runs the orchestrator as a user would (a subprocess), with a stand-in CLI that records every
pid it causes, and asserts the exit code, the run's status, a time bound (limit + 5 s), that nothing it
started is alive 5 s after the orchestrator ended, and that the user's checkout was not written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.proc import MARKER_PARENT
from orchestrator.testing.standins import FaultProject, is_alive, still_alive_after

# The stand-in: itself, an escaped grandchild and a reparented daemon, then a message and a long wait.
HANG_WITH_ESCAPEES = """
import time
record()
escapee()
daemon()
print('{"type": "message", "text": "working"}', flush=True)
time.sleep(300)
"""
PIDS_OF_HANG = 3

# The same, deaf to SIGINT and SIGTERM, so a cancel has to climb the whole kill ladder.
STUBBORN_HANG = """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
record()
escapee()
daemon()
print('{"type": "message", "text": "working"}', flush=True)
time.sleep(300)
"""


def _popen(project: FaultProject, argv: list[str], stdin: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """Start an orchestrator command as a user's shell would, in a process group of its own so a signal
    reaches only it (`kill`, `timeout` and `docker stop` signal the process; a terminal, the group)."""
    return subprocess.Popen(
        argv,
        cwd=project.repo,
        env={**project.env, MARKER_PARENT: str(os.getpid())},
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _shell_argv(project: FaultProject) -> list[str]:
    return [
        *project.run_argv()[:3],
        "shell",
        "--workflow",
        str(project.workflow),
        "--config",
        str(project.config),
    ]


def _start(project: FaultProject, entry: str) -> subprocess.Popen[str]:
    if entry == "run":
        return _popen(project, project.run_argv())
    if entry == "run-agent":
        return _popen(project, project.run_agent_argv())
    # The shell reads its task from stdin (a pipe here, as in a script), and keeps it open.
    proc = _popen(project, _shell_argv(project), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("make greet() return Hello\n")
    proc.stdin.flush()
    return proc


def _wait(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int | None, float, str]:
    """(exit code or None if still running after timeout_s, seconds waited, stderr)."""
    start = time.monotonic()
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None  # the test closed it (end of input): communicate must not flush it
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _, err = proc.communicate()
        return None, time.monotonic() - start, err
    _, err = proc.communicate()
    return proc.returncode, time.monotonic() - start, err


@pytest.mark.parametrize("entry", ["run", "run-agent", "shell"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_cancels_cleanly_and_ends_every_process(project, reap_recorded, entry, sig):
    project.configure(project.standin(HANG_WITH_ESCAPEES))
    before = project.snapshot()
    proc = _start(project, entry)
    project.wait_for_pids(PIDS_OF_HANG)
    os.kill(proc.pid, sig)
    if entry == "shell" and sig == signal.SIGINT:
        # Ctrl-C in the shell cancels the step and comes back to the prompt; end of input then leaves.
        assert still_alive_after(project.recorded_pids(), 10) == []
        assert proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.close()
        code, took, err = _wait(proc, 15)
        assert code == 0, (code, err[-2000:])
        assert [r["status"] for r in project.runs()] == ["cancelled"]
        return
    code, took, err = _wait(proc, 15)
    assert code == 130, (code, err[-2000:])
    assert took < 10, took
    assert still_alive_after(project.recorded_pids(), 5) == []
    assert project.snapshot() == before
    if entry != "run-agent":
        assert [r["status"] for r in project.runs()] == ["cancelled"]


def test_a_second_ctrl_c_quits_at_once_and_still_ends_every_process(project, reap_recorded):
    project.configure(project.standin(STUBBORN_HANG))
    proc = _popen(project, project.run_argv())
    project.wait_for_pids(PIDS_OF_HANG)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGINT)
    code, took, err = _wait(proc, 10)
    assert code == 130, (code, err[-2000:])
    assert took < 5, took
    assert still_alive_after(project.recorded_pids(), 5) == []


def test_sigkill_of_the_orchestrator_leaves_nothing_running(project, reap_recorded):
    project.configure(project.standin(STUBBORN_HANG))
    before = project.snapshot()
    proc = _popen(project, project.run_argv())
    project.wait_for_pids(PIDS_OF_HANG)
    os.kill(proc.pid, signal.SIGKILL)
    code, _, _ = _wait(proc, 10)
    assert code == -signal.SIGKILL
    assert still_alive_after(project.recorded_pids(), 5) == []
    assert project.snapshot() == before
    assert [r["status"] for r in project.runs()] == ["interrupted"]


def _tree(root: int) -> list[int]:
    """root and its descendants, by /proc parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[-1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def test_after_everything_of_ours_is_killed_the_next_command_ends_what_the_run_left(project, reap_recorded):
    """The worst case: the orchestrator and every helper of its own are SIGKILLed at once (the OOM killer,
    `kill -9` of them all), so nothing of ours is left to clean up. The next command that opens the store
    ends what the dead run left, and says so."""
    project.configure(project.standin(STUBBORN_HANG))
    proc = _popen(project, project.run_argv())
    recorded = project.wait_for_pids(PIDS_OF_HANG)
    time.sleep(1.5)  # supervisors rewrite their records every half second
    ours = [pid for pid in _tree(proc.pid) if pid not in recorded]
    for sig in (signal.SIGSTOP, signal.SIGKILL):  # stopped first, so none of them can react
        for pid in ours:
            os.kill(pid, sig)
    _wait(proc, 10)
    time.sleep(1.0)
    assert [pid for pid in recorded if is_alive(pid)] == recorded  # the fault really left them running
    listed = project.call([*project.run_argv()[:3], "runs", "list", "--all"])
    assert listed.returncode == 0, listed.stderr
    run_id = project.runs()[0]["id"]
    assert f"left by run {run_id}" in listed.stderr, listed.stderr
    assert still_alive_after(recorded, 5) == []
    assert [r["status"] for r in project.runs()] == ["interrupted"]


@pytest.mark.parametrize("communicator", ["subprocess", "pty"])
def test_the_wall_clock_limit_holds_while_a_grandchild_keeps_stdout_open(
    project, reap_recorded, communicator
):
    project.configure(project.standin(HANG_WITH_ESCAPEES), timeout_s=3, communicator=communicator)
    before = project.snapshot()
    proc = _popen(project, project.run_agent_argv("--json"))
    code, took, err = _wait(proc, 30)
    assert code == 1, (code, err[-2000:])
    assert took < 3 + 5 + 3, took  # the limit, the bound, and the interpreter's start
    assert proc.stdout is not None
    assert still_alive_after(project.recorded_pids(), 5) == []
    assert project.snapshot() == before


def test_a_step_ends_when_its_cli_exits_even_if_a_grandchild_keeps_stdout_open(project, reap_recorded):
    body = """
record()
escapee()
daemon()
import time
time.sleep(0.5)
print('{"type": "result", "text": "done", "success": true}', flush=True)
"""
    project.configure(project.standin(body), timeout_s=120)
    proc = _popen(project, project.run_agent_argv("--json"))
    code, took, err = _wait(proc, 60)
    assert code == 0, (code, err[-2000:])
    assert took < 10, took
    assert still_alive_after(project.recorded_pids(), 5) == []


def test_a_cli_killed_by_a_signal_is_reported_by_the_signal_name(project, reap_recorded):
    body = """
import os, signal
record()
print('{"type": "message", "text": "about to die"}', flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    project.configure(project.standin(body))
    result = project.call(project.run_agent_argv("--json"), timeout_s=60)
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "crashed"
    assert "killed by SIGKILL (signal 9)" in error["message"], error
