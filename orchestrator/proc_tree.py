"""Finding and ending the processes we started (proc.py spawns them; this module only looks and kills).

How a process is known to be ours, from the strongest way to the weakest:
1. It descends (by /proc parent links) from a spawn's supervisor (proc_shim.py), which is a child
   subreaper, so orphans come back to it: this holds whatever the process does to its environment,
   session or process group. The supervisor ends its tree itself; see its docstring.
2. It is in a spawn's process group (killpg).
3. Its environment carries our markers (MARKER_PARENT: the outermost orchestrator, for tests;
   MARKER_OWNER: the orchestrator process that started it). A process can clear these (`env -i`).
4. It is listed in a supervisor's record file under the state home's `procs/<owner>/` folder (pid plus
   start time, rewritten every half second). This is what is left when the orchestrator AND its
   supervisors were killed at once; `end_orphaned_processes` (called when a command opens the store)
   ends whatever a dead owner's records and markers still name.

Why not a cgroup: cgroup v2's `cgroup.kill` ends a tree atomically, but a writable cgroup needs root or a
systemd-delegated slice, which most users' shells and CI runners do not give (the development container
has one, as root, in a hybrid layout under /sys/fs/cgroup/unified; a user's laptop or a CI runner as a
normal user does not), so it could only ever be a second path, tested on some machines only. The
subreaper works for any user on any Linux since 3.4, inside containers and inside bubblewrap (whose pid
namespace is still below the supervisor). Pidfds would only replace the start-time check that already
tells a reused pid apart, and a pipe or PR_SET_PDEATHSIG already tells the supervisor its parent died.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.proc_shim import descendants, start_time

# Every child carries these, so that tests and resume can find what we started (even grandchildren
# that left the process group): the pid of the outermost orchestrator (a test run, or the orchestrator
# that started this one: it is inherited), the orchestrator process that started it ("pid-start"), and
# one id per spawn.
MARKER_PARENT = "ORCHESTRATOR_PARENT_PID"
MARKER_OWNER = "ORCHESTRATOR_OWNER"
MARKER_SPAWN = "ORCHESTRATOR_SPAWN_ID"


def owner_id(pid: int | None = None) -> str:
    """This process (or `pid`) as "pid-starttime": unique for as long as the machine is up."""
    pid = pid or os.getpid()
    return f"{pid}-{start_time(pid) or 0}"


def is_alive(pid: int, started: str | None = None) -> bool:
    """Alive and not a zombie; with `started`, also the same process (not a reused pid)."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def signal_name(sig: int) -> str:
    """e.g. "SIGKILL (signal 9)"."""
    try:
        name = signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
    return f"{name} (signal {sig})"


def process_ids() -> frozenset[str]:
    """The pids in /proc now (as its entry names): one listing, no file read."""
    return frozenset(entry for entry in os.listdir("/proc") if entry.isdigit())


def processes_with_marker(name: str, value: str, *, older: frozenset[str] = frozenset()) -> list[int]:
    """Pids of live processes whose environment holds NAME=VALUE (read from /proc). `older`: pids
    that existed before the marked process was started, skipped (none of them can carry its marker:
    Linux hands out pids in order up to pid_max before reusing one). Reading every process's
    environment is what this costs (about 2 ms on a machine with 100 processes), so after a short
    command only the processes born meanwhile are read."""
    needle = f"{name}={value}".encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry in older or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if needle in environ.split(b"\0") and is_alive(int(entry)):
            found.append(int(entry))
    return found


def leftover_processes(parent_pid: int | None = None) -> list[int]:
    """Live processes started (directly or not) by the orchestrator with that pid (default: this one)."""
    return processes_with_marker(MARKER_PARENT, str(parent_pid or os.getpid()))


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is in the group. (killpg(pgid, 0) also counts an unreaped
    zombie leader, which would make every kill wait out its full grace period.)"""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def kill_group(pgid: int, *, grace_s: float = 1.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to a process group, with short waits between."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s * 2), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)


def kill_marked(spawn_id: str, *, older: frozenset[str] = frozenset()) -> None:
    """SIGKILL whatever still carries this spawn's marker (processes that left the group); `older`:
    the pids that existed before the spawn (processes_with_marker)."""
    for pid in processes_with_marker(MARKER_SPAWN, spawn_id, older=older):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_leftovers(parent_pid: int | None = None) -> list[int]:
    """SIGKILL every live process carrying the orchestrator's marker; returns their pids."""
    pids = leftover_processes(parent_pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def kill_trees(roots: dict[int, str | None]) -> list[int]:
    """SIGKILL each root that is still the same process (pid -> start time) and all its descendants,
    until none is left. Returns the pids killed."""
    killed: list[int] = []
    pending = [pid for pid, started in roots.items() if is_alive(pid, started)]
    deadline = time.monotonic() + 5.0
    while pending and time.monotonic() < deadline:
        # Children first in the list, so each parent's descendants are known before it dies.
        wave = [*pending, *(d for pid in pending for d in descendants(pid))]
        for pid in dict.fromkeys(wave):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
        pending = [pid for pid in dict.fromkeys(wave) if is_alive(pid)]
    return sorted(set(killed))


# --- records: what a dead orchestrator left -------------------------------------------------------


@dataclass(frozen=True)
class Leftovers:
    owner_pid: int  # the orchestrator process that had started them (gone now)
    pids: list[int]  # what was still alive and is ended now


def _records_of(folder: Path) -> dict[int, str | None]:
    roots: dict[int, str | None] = {}
    for record in folder.glob("*.pids"):
        with contextlib.suppress(OSError, ValueError):
            for line in record.read_text(encoding="ascii").splitlines():
                pid, started = line.split()
                roots[int(pid)] = started
    return roots


def end_orphaned_processes(records: Path) -> list[Leftovers]:
    """End what orchestrator processes that are gone left behind: every live process their supervisors
    recorded, or that carries their owner marker, with its descendants. Each dead owner's folder is then
    removed. Returns one entry per dead owner that had something still alive."""
    ended: list[Leftovers] = []
    try:
        folders = [f for f in records.iterdir() if f.is_dir()]
    except OSError:
        return ended
    for folder in folders:
        pid_text, _, started = folder.name.partition("-")
        if not pid_text.isdigit() or is_alive(int(pid_text), started):
            continue
        roots = _records_of(folder)
        roots.update(dict.fromkeys(processes_with_marker(MARKER_OWNER, folder.name)))
        pids = kill_trees(roots)
        shutil.rmtree(folder, ignore_errors=True)
        if pids:
            ended.append(Leftovers(owner_pid=int(pid_text), pids=pids))
    return ended
