"""The ONLY module that spawns processes (with its helper proc_supervise.py, which starts the guardian).

Two communicators run a child and stream its output line by line as it arrives: `SubprocessCommunicator`
(pipes) and `PtyCommunicator` (a pseudo-terminal, via pexpect). Both enforce:

- a wall-clock limit and an idle limit (no output for N s), which hold even when a grandchild keeps the
  pipes open: output is read with non-blocking reads in one loop, never by threads that could be stuck;
- lines cut WHILE they are read (at 1 MB, marked), so a runaway line costs 1 MB, not its length;
- ending the whole tree on limit, cancel or exit, at any depth, however the orchestrator itself ends:
  every agent runs under a supervisor (proc_shim.py: a child subreaper that dies with us and takes the
  tree with it; proc_tree.py says why this and not a cgroup). The kill ladder is SIGINT, SIGTERM to the
  agent's process group with short waits, then the supervisor SIGKILLs everything below it;
- stdin from /dev/null unless a prompt is fed on stdin;
- an explicit child environment (`child_env`): an allowlist of the parent's variables plus the agent's
  own. A token the user did not give to that agent never reaches it;
- a bounded tail of output kept in memory.

`run_command` is the small synchronous helper for git, gates and npm. Its children are registered with
a guardian process (proc_shim.py `guard`) that kills their process groups if the orchestrator dies;
`contain=True` runs the command under a supervisor too (for commands that may leave daemons: gates).
`use_process_records(folder)` makes supervisors record their trees there, so that the next command can
end what a killed orchestrator left (`proc_tree.end_orphaned_processes`).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.errors import AgentNotInstalled, OrchestratorError
from orchestrator.proc_env import ENV_ALLOWLIST, child_env  # re-exported: callers import them from here
from orchestrator.proc_output import READ_SIZE, LineSplitter, Tail, Watch, apply_verdict, decode
from orchestrator.proc_supervise import (
    Service,
    end_supervised,
    guardian,
    start_service,
    supervised,
    use_process_records,
)
from orchestrator.proc_tree import (  # re-exported: what callers used to import from here
    MARKER_OWNER,
    MARKER_PARENT,
    MARKER_SPAWN,
    kill_group,
    kill_leftovers,
    kill_marked,
    leftover_processes,
    owner_id,
    process_ids,
    processes_with_marker,
    signal_name,
)

__all__ = [
    "ENV_ALLOWLIST",
    "child_env",
    "Service",
    "start_service",
    "use_process_records",
    "MARKER_OWNER",
    "MARKER_PARENT",
    "MARKER_SPAWN",
    "kill_group",
    "kill_leftovers",
    "kill_marked",
    "leftover_processes",
    "processes_with_marker",
    "signal_name",
]

Stream = Literal["stdout", "stderr"]
LineCallback = Callable[[Stream, str], None]


@dataclass(frozen=True)
class ProcSpec:
    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]  # complete: build it with child_env
    stdin: str | None = None  # text to feed; None means /dev/null (pty: nothing is typed)
    wall_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    tail_bytes: int = 64_000  # output kept in memory for error messages
    install_hint: str | None = None  # said when the executable is missing
    # pty only: output that means the CLI is waiting on a dialog we cannot answer (trust, sign-in).
    fail_patterns: Sequence[tuple[str, str]] = ()
    # Called once the process exists (its supervisor is running), before any output is read.
    on_started: Callable[[], None] | None = None


@dataclass
class ProcResult:
    exit_code: int | None  # None when a signal ended it
    signal: int | None = None
    timed_out: bool = False
    idle: bool = False
    cancelled: bool = False
    blocked_by: str | None = None  # the fail pattern's message, when one matched
    duration_s: float = 0.0
    first_output_s: float | None = None
    tail: str = ""
    pid: int | None = None  # the CLI's own pid (its supervisor's, if the CLI ended before we saw it)

    @property
    def ended_by_us(self) -> bool:
        return self.timed_out or self.idle or self.cancelled or self.blocked_by is not None


def resolve_argv0(argv: Sequence[str], env: Mapping[str, str], install_hint: str | None) -> str:
    exe = argv[0]
    if os.sep in exe:
        if os.access(exe, os.X_OK):
            return exe
        found = None
    else:
        found = shutil.which(exe, path=env.get("PATH", os.defpath))
    if found is None:
        raise AgentNotInstalled(
            f"`{exe}` was not found" + ("" if os.sep in exe else " on PATH"),
            hint=install_hint or f"install `{exe}` or put it on PATH",
        )
    return found


def _marked_env(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    spawn_id = uuid.uuid4().hex
    marked = dict(env)
    marked[MARKER_PARENT] = os.environ.get(MARKER_PARENT) or str(os.getpid())
    marked[MARKER_OWNER] = owner_id()
    marked[MARKER_SPAWN] = spawn_id
    return marked, spawn_id


def _cli_pid(supervisor: int) -> int | None:
    """The CLI under a supervisor: its first child (read while it runs; None once it has ended)."""
    try:
        with open(f"/proc/{supervisor}/task/{supervisor}/children", "rb") as fh:
            children = fh.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _not_installed(spec: ProcSpec, result: ProcResult) -> AgentNotInstalled | None:
    """The supervisor could not exec the command (it said so and exited 126 or 127)."""
    if result.exit_code in (126, 127) and "orchestrator: cannot start " in result.tail:
        reason = result.tail.split("orchestrator: cannot start ", 1)[1].splitlines()[0]
        return AgentNotInstalled(f"`{spec.argv[0]}` could not be started: {reason}", hint=spec.install_hint)
    return None


# --- the communicators ----------------------------------------------------------------------------


class SubprocessCommunicator:
    """Pipes: stdout and stderr as separate streams."""

    name = "subprocess"

    def run(self, spec: ProcSpec, on_line: LineCallback, cancel: threading.Event | None = None) -> ProcResult:
        exe = resolve_argv0(spec.argv, spec.env, spec.install_hint)
        env, spawn_id = _marked_env(spec.env)
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            supervised([exe, *spec.argv[1:]], spawn_id),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            bufsize=0,
        )
        if spec.on_started is not None:
            spec.on_started()
        watch = Watch(spec, cancel)
        result = ProcResult(exit_code=None, pid=proc.pid)
        tail = Tail(spec.tail_bytes)
        selector = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        streams: dict[int, tuple[Stream, LineSplitter]] = {
            proc.stdout.fileno(): ("stdout", LineSplitter()),
            proc.stderr.fileno(): ("stderr", LineSplitter()),
        }
        for fd in streams:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        pending_input = memoryview(spec.stdin.encode()) if spec.stdin is not None else None
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)

        def deliver(stream: Stream, raw: bytes) -> None:
            line = decode(raw)
            tail.add(line)
            on_line(stream, line)

        def read(fd: int) -> None:
            stream, splitter = streams[fd]
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(fd)
                del streams[fd]
                last = splitter.flush()
                if last is not None:
                    deliver(stream, last)
                return
            watch.saw_output()
            for raw in splitter.feed(chunk):
                deliver(stream, raw)

        def write(fd: int) -> None:
            nonlocal pending_input
            assert pending_input is not None and proc.stdin is not None
            try:
                written = os.write(fd, pending_input[:READ_SIZE])
            except BlockingIOError:
                return
            except OSError:
                written = len(pending_input)
            pending_input = pending_input[written:]
            if not pending_input:
                selector.unregister(fd)
                with contextlib.suppress(OSError):
                    proc.stdin.close()

        verdict: str | None = None
        exited_at: float | None = None
        try:
            while streams:
                verdict = watch.verdict()
                if verdict:
                    break
                if result.pid == proc.pid:
                    result.pid = _cli_pid(proc.pid) or proc.pid
                if proc.poll() is not None:
                    # The supervisor ended its tree when the agent exited; what still holds a pipe is
                    # not ours to wait for.
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 2.0:
                        break
                for key, _ in selector.select(timeout=0.1):
                    if key.fd in streams:
                        read(key.fd)
                    else:
                        write(key.fd)
        finally:
            apply_verdict(result, verdict)
            if not verdict and not streams:
                # Both pipes closed: the agent is exiting; let the supervisor finish, not the ladder.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
            end_supervised(proc.pid, lambda: proc.poll() is None)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            # Deliver what it said while ending (a summary, a last error): what is already in the pipes.
            deadline = time.monotonic() + 1.0
            while streams and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.05):
                    if key.fd in streams:
                        read(key.fd)
                    elif proc.stdin is not None:
                        selector.unregister(key.fd)
            selector.close()
            for pipe in (proc.stdout, proc.stderr, proc.stdin):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        for stream, splitter in streams.values():
            last = splitter.flush()
            if last is not None:
                deliver(stream, last)
        result.exit_code = returncode if returncode >= 0 else None
        result.signal = -returncode if returncode < 0 else None
        result.duration_s = time.monotonic() - watch.started
        result.first_output_s = watch.first_output
        result.tail = tail.text()
        missing = _not_installed(spec, result)
        if missing is not None:
            raise missing
        return result


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>()][0-9A-Za-z]?")


class PtyCommunicator:
    """A pseudo-terminal (pexpect), for CLIs that behave differently on a TTY. One merged stream
    ("stdout"), ANSI sequences removed. Detects dialogs we cannot answer via `spec.fail_patterns`."""

    name = "pty"

    def run(self, spec: ProcSpec, on_line: LineCallback, cancel: threading.Event | None = None) -> ProcResult:
        import pexpect  # imported here: only pty runs need it

        exe = resolve_argv0(spec.argv, spec.env, spec.install_hint)
        env, spawn_id = _marked_env(spec.env)
        argv = supervised([exe, *spec.argv[1:]], spawn_id)
        child = pexpect.spawn(
            argv[0], argv[1:], cwd=str(spec.cwd), env=env, echo=False, encoding=None, dimensions=(50, 200)
        )
        if spec.on_started is not None:
            spec.on_started()
        watch = Watch(spec, cancel)
        result = ProcResult(exit_code=None, pid=child.pid)
        tail = Tail(spec.tail_bytes)
        patterns = [(re.compile(p), message) for p, message in spec.fail_patterns]
        if spec.stdin is not None:
            child.send(spec.stdin.encode())
            child.sendeof()
        splitter = LineSplitter()
        verdict: str | None = None

        def emit(raw: bytes) -> str | None:
            line = _ANSI.sub("", decode(raw)).replace("\r", "")
            tail.add(line)
            on_line("stdout", line)
            for pattern, message in patterns:
                if pattern.search(line):
                    return message
            return None

        try:
            while True:
                try:
                    chunk = child.read_nonblocking(READ_SIZE, timeout=0.1)
                except pexpect.TIMEOUT:
                    chunk = b""
                except pexpect.EOF:
                    break
                if result.pid == child.pid:
                    result.pid = _cli_pid(child.pid) or child.pid
                if chunk:
                    watch.saw_output()
                    for raw in splitter.feed(chunk):
                        blocked = emit(raw)
                        if blocked:
                            result.blocked_by = blocked
                            break
                    if result.blocked_by:
                        break
                    # A dialog waits on a line with no newline: check the end of the partial line too.
                    partial = _ANSI.sub("", decode(splitter.partial()))
                    matched = next((m for p, m in patterns if p.search(partial)), None)
                    if matched:
                        result.blocked_by = matched
                        break
                verdict = watch.verdict()
                if verdict:
                    break
            last = splitter.flush()
            if last is not None and not result.blocked_by and not verdict:
                emit(last)
        finally:
            apply_verdict(result, verdict)
            end_supervised(child.pid, child.isalive)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                child.close(force=True)
        result.exit_code = child.exitstatus
        result.signal = child.signalstatus
        result.duration_s = time.monotonic() - watch.started
        result.first_output_s = watch.first_output
        result.tail = tail.text()
        missing = _not_installed(spec, result)
        if missing is not None:
            raise missing
        return result


Communicator = SubprocessCommunicator | PtyCommunicator


# --- plain commands: git, gates, npm --------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class CommandFailed(OrchestratorError):
    def __init__(self, result: CommandResult, what: str) -> None:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        super().__init__(f"{what} failed (exit {result.returncode}): {detail}")
        self.result = result


def run_command(
    argv: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - mirrors subprocess
    timeout_s: float | None = 120.0,
    check: bool = False,
    what: str | None = None,
    contain: bool = False,
) -> CommandResult:
    """Run a short command to completion in its own process group; kill the group on timeout.

    `env=None` means an allowlisted copy of our environment (never the whole of it). The group is
    registered with the guardian, which kills it if we die meanwhile. `contain=True` runs the command
    under a supervisor (~20 ms more), so nothing it starts outlives it, even in another session: for
    commands that may leave daemons behind (gates)."""
    child_environment = dict(env) if env is not None else child_env(os.environ)
    exe = resolve_argv0(argv, child_environment, None)
    marked, spawn_id = _marked_env(child_environment)
    start = time.monotonic()
    older = process_ids()  # what lives now cannot carry the marker: kill_marked skips it
    proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
        supervised([exe, *argv[1:]], spawn_id) if contain else [exe, *argv[1:]],
        cwd=cwd,
        env=marked,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # No preexec_fn here: it forces a full fork (~5 ms per call); the guardian or the supervisor
        # ends what is left if we die, and the group kill below ends anything left when it returns.
        start_new_session=True,
    )
    if not contain:
        guardian.register(proc.pid)
    timed_out = False
    try:
        out, err = proc.communicate(input.encode() if input is not None else None, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        if contain:
            end_supervised(proc.pid, lambda: proc.poll() is None, grace_s=0.5)
        else:
            kill_group(proc.pid, grace_s=0.5)
        out, err = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if not contain:
            guardian.unregister(proc.pid)
        kill_marked(spawn_id, older=older)
    result = CommandResult(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout=out.decode("utf-8", errors="replace"),
        stderr=err.decode("utf-8", errors="replace"),
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
    )
    if check and not result.ok:
        raise CommandFailed(result, what or " ".join(argv[:2]))
    return result
