"""How proc.py keeps what it spawns on a leash (part of proc.py: only these modules spawn).

- `supervised(argv)`: the argv that runs a command under a supervisor (proc_shim.py `supervise`).
- `end_supervised(pid)`: the kill ladder for a supervised spawn.
- `guardian`: one process per orchestrator process (proc_shim.py `guard`) that kills the process groups
  of short commands still running when we die.
- `use_process_records(folder)`: where supervisors record their trees for proc_tree's clean-up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.proc_shim import start_time
from orchestrator.proc_tree import owner_id

_SHIM = str(Path(__file__).with_name("proc_shim.py"))
# The supervisor and the guardian: proc_shim.py in an interpreter without site (-S) or the user's
# environment and paths (-I). Not run as a script (`python proc_shim.py`), which Python compiles anew
# at every start (some 5 ms of each agent's way to its start): its compiled form is read from
# __pycache__ by the same loader an import uses, then run as __main__ (argv[0] is proc_shim.py's path,
# as before, so it stays in the process's command line).
_RUN_SHIM = (
    "import sys\n"
    "from importlib.machinery import SourceFileLoader\n"
    "del sys.argv[0]\n"
    "__file__ = sys.argv[0]\n"
    "exec(SourceFileLoader('proc_shim', __file__).get_code('proc_shim'))\n"
)
_SHIM_ARGV = (sys.executable, "-I", "-S", "-c", _RUN_SHIM, _SHIM)
_records_root: Path | None = None
_state_lock = threading.Lock()


def use_process_records(folder: Path | None) -> None:
    """Have supervisors record their trees under `folder/<owner>/` (see proc_tree); None stops it."""
    global _records_root
    _records_root = folder


def _record_file(spawn_id: str) -> str:
    root = _records_root
    if root is None:
        return "-"
    folder = root / owner_id()
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            atexit.register(shutil.rmtree, folder, True)
    except OSError:
        return "-"
    return str(folder / f"{spawn_id}.pids")


def supervised(argv: Sequence[str], spawn_id: str, *, record: bool = True) -> list[str]:
    """argv run under a supervisor (proc_shim.py), which ends the whole tree, whatever happens."""
    return [
        *_SHIM_ARGV,
        "supervise",
        str(os.getpid()),
        _record_file(spawn_id) if record else "-",
        "--",
        *argv,
    ]


class _Guardian:
    """One guardian process per orchestrator process, started on first use: it kills the process groups
    of short commands still registered when we die (its pipe closes however we end)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._pid: int | None = None

    def _start(self) -> int | None:
        read_end, write_end = os.pipe()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
                [*_SHIM_ARGV, "guard", str(read_end)],
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in our group: a signal to our group must not end it
                env={},
            )
        except OSError:
            os.close(write_end)
            return None
        finally:
            os.close(read_end)
        self._pid = proc.pid
        # Reap it whenever it ends, so it never stays a zombie of ours.
        threading.Thread(target=proc.wait, name="orchestrator-guardian-wait", daemon=True).start()
        return write_end

    def _send(self, text: str) -> None:
        with _state_lock:
            if self._fd is None or os.getpid() != self._owner:
                self._owner = os.getpid()
                self._fd = self._start()
            if self._fd is None:
                return
            try:
                os.write(self._fd, text.encode())
            except OSError:
                os.close(self._fd)
                self._fd = None

    _owner = 0

    def register(self, pid: int) -> None:
        started = start_time(pid)
        if started is not None:
            self._send(f"+ {pid} {started}\n")

    def unregister(self, pid: int) -> None:
        self._send(f"- {pid}\n")


guardian = _Guardian()


def end_supervised(pid: int, alive: Callable[[], bool], grace_s: float = 1.0) -> None:
    """The kill ladder for a supervised spawn: SIGINT, then SIGTERM to its process group (the agent
    and what stayed in its group), then SIGUSR1 asks the supervisor to SIGKILL its whole tree; a last
    SIGKILL only if the supervisor itself does not end."""
    steps: tuple[tuple[Callable[[], None], float], ...] = (
        (lambda: os.killpg(pid, signal.SIGINT), grace_s),
        (lambda: os.killpg(pid, signal.SIGTERM), grace_s * 2),
        (lambda: os.kill(pid, signal.SIGUSR1), 6.0),
        (lambda: os.killpg(pid, signal.SIGKILL), 2.0),
    )
    for send, wait in steps:
        if not alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive():
            time.sleep(0.02)


class Service:
    """A long-lived server started by `start_service` (the Temporal dev server of the tests): under a
    supervisor of its own, so that `stop()` ends its whole tree, and so that it ends with us however we
    end (the supervisor's parent-death signal)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.pid = proc.pid  # the supervisor's (its group's leader)
        self.log = log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 2.0) -> int:
        """The kill ladder (SIGINT first: a server shuts down cleanly), then reaps it; its exit code."""
        end_supervised(self.pid, self.alive, grace_s=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.proc.wait()


def start_service(argv: Sequence[str], cwd: Path, env: dict[str, str], *, log: Path) -> Service:
    """Starts `argv` (argv[0] an absolute path) in a session of its own, its output appended to `log`.

    `env` is the whole environment and carries none of our process markers, on purpose: a service
    outlives each test that uses it (like the tests' PostgreSQL server), so the per-test check that
    nothing was left behind must not count it; its supervisor still ends it when we end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            supervised(argv, "service", record=False),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(proc, log)
