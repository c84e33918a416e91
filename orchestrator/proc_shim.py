"""The supervisor that stands between the orchestrator and every agent it starts (part of proc.py).

proc.py runs `python -I -S proc_shim.py supervise ...` (by way of `-c`, which runs this file's cached
bytecode: proc_supervise.py); this program starts the real command and keeps its whole tree on a leash.
It runs with only the standard library (no site, no import of the orchestrator), so it starts in about
12 ms.

Why a supervisor per spawn (and not the orchestrator alone):
- It is a child subreaper (PR_SET_CHILD_SUBREAPER): anything the agent starts, at any depth, that is
  orphaned (a double fork, a parent that exits) is reparented to it, never to init. So every process
  the agent caused is always among its descendants by /proc parent links, whatever it does to its
  environment (`env -i`), session (`setsid`) or process group. Finding them is a walk of /proc.
- It outlives the orchestrator just long enough: it asks the kernel for a signal when its parent dies
  (PR_SET_PDEATHSIG) and also watches getppid(), so when the orchestrator is killed (SIGKILL, a crash,
  a second Ctrl-C) it kills the whole tree and exits, in well under a second.
- When the agent exits, it kills whatever the agent left behind at once, so an escaped grandchild
  holding stdout cannot keep the step's pipes open.

Signals it takes: SIGINT, SIGTERM and SIGHUP only wake it (the agent, in its process group, gets them
from the orchestrator's kill ladder); SIGUSR1 means "kill everything now". It exits with the agent's
exit code, or dies by the agent's signal, so the orchestrator sees what the agent did.

While it runs, it writes the pids (and start times) of the tree to a record file every half second, so
that, if the supervisor itself is killed too, the next orchestrator command can still end what it left
(proc_tree.end_orphaned_processes).

`guard` mode is the orchestrator's guardian for short commands (git, npm): it reads "+pid start" and
"-pid" lines on a pipe; when the pipe closes (the orchestrator is gone, however it ended), it kills the
process groups still registered.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RECORD_EVERY_S = 0.5
KILL_FOR_AT_MOST_S = 5.0
# Signals the orchestrator's own Python leaves ignored or handled, and that the agent must get reset.
RESET_FOR_CHILD = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): a pid plus this names one process for ever."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of root, parents before children, by /proc parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[0] not in (b"Z", b"X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop(0)
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


class Supervisor:
    def __init__(self, parent: int, record: str | None) -> None:
        self.parent = parent
        self.record = record
        self.agent: int | None = None
        self.status: int | None = None  # the agent's wait status, once reaped
        self.kill_now = False
        self.recorded: set[tuple[int, str]] = set()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.agent:
                self.status = status

    def kill_tree(self) -> None:
        """SIGKILL every descendant until none is left (orphans come back to us: we are the subreaper)."""
        deadline = time.monotonic() + KILL_FOR_AT_MOST_S
        while time.monotonic() < deadline:
            pids = descendants(os.getpid())
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
            self.reap()
        self.reap()

    def write_record(self) -> None:
        if self.record is None:
            return
        now = {(pid, t) for pid in descendants(os.getpid()) if (t := start_time(pid)) is not None}
        if now == self.recorded:
            return
        self.recorded = now
        with contextlib.suppress(OSError):
            tmp = self.record + ".tmp"
            with open(tmp, "w", encoding="ascii") as fh:
                fh.writelines(f"{pid} {t}\n" for pid, t in sorted(now))
            os.replace(tmp, self.record)

    def orphaned(self) -> bool:
        return self.kill_now or os.getppid() != self.parent

    def run(self, argv: list[str]) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)

        def on_signal(signum: int, _frame: object) -> None:
            if signum == signal.SIGUSR1:
                self.kill_now = True

        for handled in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(handled, on_signal)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, signal.SIGUSR1)
        if self.orphaned():  # the orchestrator died before we asked for the signal
            return 137
        try:
            self.agent = os.posix_spawn(
                argv[0], argv, dict(os.environ), setsigdef=RESET_FOR_CHILD, setsigmask=()
            )
        except OSError as exc:
            sys.stderr.write(f"orchestrator: cannot start {argv[0]}: {exc.strerror}\n")
            return 126 if isinstance(exc, PermissionError) else 127
        next_record = 0.0
        while self.status is None and not self.orphaned():
            with contextlib.suppress(InterruptedError):
                select.select([wake_r], [], [], RECORD_EVERY_S)
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(wake_r, 512)
            self.reap()
            if time.monotonic() >= next_record and self.status is None:
                self.write_record()
                next_record = time.monotonic() + RECORD_EVERY_S
        self.kill_tree()
        if self.record is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.record)
        if self.status is None:  # killed before its agent ended
            return 137
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            signal.set_wakeup_fd(-1)
            with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP cannot be set
                signal.signal(sig, signal.SIG_DFL)
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
            time.sleep(1.0)
            return 128 + sig
        return os.waitstatus_to_exitcode(self.status)


def guard(fd: int) -> int:
    """Hold the registry of short commands' process groups; kill those left when the pipe closes."""
    for ignored in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    live: dict[int, str] = {}
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            parts = line.decode("ascii", "replace").split()
            if len(parts) == 3 and parts[0] == "+":
                live[int(parts[1])] = parts[2]
            elif len(parts) == 2 and parts[0] == "-":
                live.pop(int(parts[1]), None)
    for pid, started in live.items():
        if start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["guard"]:
        return guard(int(args[1]))
    if args[:1] == ["supervise"] and len(args) > 4 and args[3] == "--":
        parent, record = int(args[1]), args[2]
        return Supervisor(parent, None if record == "-" else record).run(args[4:])
    sys.stderr.write("usage: proc_shim.py supervise PARENT_PID RECORD|- -- ARGV... | guard FD\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
