"""The ONLY module that spawns processes.

Two communicators run a child and stream its output line by line as it arrives: `SubprocessCommunicator`
(pipes) and `PtyCommunicator` (a pseudo-terminal, via pexpect). Both enforce:

- a wall-clock limit and an idle limit (no output for N s);
- killing the whole process group on limit, cancel or exit (SIGINT, SIGTERM, SIGKILL with short waits),
  and then every process that still carries this spawn's marker, in case one left the group;
- stdin from /dev/null unless a prompt is fed on stdin;
- an explicit child environment (`child_env`): an allowlist of the parent's variables plus the agent's
  own. A token the user did not give to that agent never reaches it;
- a bounded tail of output kept in memory.

Children also get PR_SET_PDEATHSIG, so they are signalled if the orchestrator itself dies.
`run_command` is the small synchronous helper for git, gates and npm.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.errors import AgentNotInstalled, OrchestratorError

Stream = Literal["stdout", "stderr"]
LineCallback = Callable[[Stream, str], None]

# Every child carries these, so that tests and resume can find what we started (even grandchildren
# that left the process group): the pid of the outermost orchestrator (a test run, or the orchestrator
# that started this one: it is inherited), and one id per spawn.
MARKER_PARENT = "ORCHESTRATOR_PARENT_PID"
MARKER_SPAWN = "ORCHESTRATOR_SPAWN_ID"

# What a child may inherit from our environment. Credentials are never on this list: an agent gets a
# key only when its configuration names it (`agents.<name>.env`).
ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "TZ",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ORCHESTRATOR_CLI_DIR",
)

_LINE_CAP = 1_000_000  # bytes; a longer line is cut (and marked) so one runaway line cannot eat memory
_TAIL_LINES = 200


def child_env(
    parent: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
    *,
    tmpdir: Path | None = None,
    allowlist: Sequence[str] = ENV_ALLOWLIST,
) -> dict[str, str]:
    """The complete environment for a child: allowlisted variables of `parent`, then `extra`.

    `parent` is read, never written (pass `os.environ`). TMPDIR points at the run's own folder."""
    env = {key: parent[key] for key in allowlist if key in parent}
    env.update(extra or {})
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return env


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
    pid: int | None = None

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


try:
    # Loaded once here: loading it in the child, between fork and exec, cost ~8 ms per spawn.
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _pdeathsig() -> None:
    """In the child, before exec: ask the kernel to SIGTERM us if the orchestrator dies."""
    if _LIBC is not None:
        with contextlib.suppress(OSError, AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _marked_env(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    spawn_id = uuid.uuid4().hex
    marked = dict(env)
    marked[MARKER_PARENT] = os.environ.get(MARKER_PARENT) or str(os.getpid())
    marked[MARKER_SPAWN] = spawn_id
    return marked, spawn_id


# --- finding and ending what we started -----------------------------------------------------------


def processes_with_marker(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment holds NAME=VALUE (read from /proc)."""
    needle = f"{name}={value}".encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[-1].split()[0]
        except OSError:
            continue
        if state == b"Z":  # a zombie is already dead; its parent reaps it
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def leftover_processes(parent_pid: int | None = None) -> list[int]:
    """Live processes started (directly or not) by the orchestrator with that pid (default: this one)."""
    return processes_with_marker(MARKER_PARENT, str(parent_pid or os.getpid()))


def _group_alive(pgid: int) -> bool:
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
            if not _group_alive(pgid):
                return
            time.sleep(0.05)


def kill_marked(spawn_id: str) -> None:
    """SIGKILL whatever still carries this spawn's marker (processes that left the group)."""
    for pid in processes_with_marker(MARKER_SPAWN, spawn_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_leftovers(parent_pid: int | None = None) -> list[int]:
    """SIGKILL every live process carrying the orchestrator's marker; returns their pids."""
    pids = leftover_processes(parent_pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


# --- the communicators ----------------------------------------------------------------------------


class _Tail:
    def __init__(self, max_bytes: int) -> None:
        self._lines: deque[str] = deque(maxlen=_TAIL_LINES)
        self._max = max_bytes

    def add(self, line: str) -> None:
        self._lines.append(line[-self._max :])

    def text(self) -> str:
        joined = "\n".join(self._lines)
        return joined[-self._max :]


class _Watch:
    """The limits, checked from the loop that hands out lines."""

    def __init__(self, spec: ProcSpec, cancel: threading.Event | None) -> None:
        self.spec = spec
        self.cancel = cancel
        self.started = time.monotonic()
        self.last_output = self.started
        self.first_output: float | None = None

    def saw_output(self) -> None:
        now = time.monotonic()
        self.last_output = now
        if self.first_output is None:
            self.first_output = now - self.started

    def verdict(self) -> str | None:
        now = time.monotonic()
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.spec.wall_timeout_s is not None and now - self.started >= self.spec.wall_timeout_s:
            return "timed_out"
        if self.spec.idle_timeout_s is not None and now - self.last_output >= self.spec.idle_timeout_s:
            return "idle"
        return None


def _apply_verdict(result: ProcResult, verdict: str | None) -> None:
    if verdict == "cancelled":
        result.cancelled = True
    elif verdict == "timed_out":
        result.timed_out = True
    elif verdict == "idle":
        result.idle = True


def _decode(raw: bytes) -> str:
    if len(raw) > _LINE_CAP:
        raw = raw[:_LINE_CAP] + b" [line cut by orchestrator]"
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class SubprocessCommunicator:
    """Pipes: stdout and stderr as separate streams."""

    name = "subprocess"

    def run(self, spec: ProcSpec, on_line: LineCallback, cancel: threading.Event | None = None) -> ProcResult:
        exe = resolve_argv0(spec.argv, spec.env, spec.install_hint)
        env, spawn_id = _marked_env(spec.env)
        lines: queue.Queue[tuple[Stream, str] | tuple[Stream, None]] = queue.Queue()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
                [exe, *spec.argv[1:]],
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_pdeathsig,  # noqa: PLW1509 - needed for PR_SET_PDEATHSIG
            )
        except FileNotFoundError as exc:
            raise AgentNotInstalled(
                f"`{spec.argv[0]}` could not be started: {exc.strerror}", hint=spec.install_hint
            ) from exc
        watch = _Watch(spec, cancel)
        result = ProcResult(exit_code=None, pid=proc.pid)
        tail = _Tail(spec.tail_bytes)

        def pump(stream: Stream, pipe: object) -> None:
            assert hasattr(pipe, "readline")
            for raw in iter(pipe.readline, b""):
                lines.put((stream, _decode(raw)))
            lines.put((stream, None))

        readers = [
            threading.Thread(target=pump, args=("stdout", proc.stdout), daemon=True),
            threading.Thread(target=pump, args=("stderr", proc.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        if spec.stdin is not None:
            threading.Thread(target=_feed_stdin, args=(proc, spec.stdin), daemon=True).start()
        open_streams = 2
        exited_at: float | None = None
        verdict: str | None = None
        try:
            while open_streams:
                try:
                    stream, line = lines.get(timeout=0.1)
                except queue.Empty:
                    stream, line = "stdout", None
                    if proc.poll() is not None:
                        # The child is gone but something it started still holds the pipes open;
                        # give it a moment, then stop waiting (the group kill below ends it).
                        exited_at = exited_at or time.monotonic()
                        if time.monotonic() - exited_at > 2.0:
                            break
                    verdict = watch.verdict()
                    if verdict:
                        break
                    continue
                if line is None:
                    open_streams -= 1
                    continue
                watch.saw_output()
                tail.add(line)
                on_line(stream, line)
                verdict = watch.verdict()
                if verdict:
                    break
        finally:
            _apply_verdict(result, verdict)
            if not verdict and open_streams == 0:
                # Both pipes closed: the child is exiting. Let it, rather than start the kill ladder
                # (SIGINT and waits) on a process that is already on its way out.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
            if proc.poll() is None or verdict:
                kill_group(proc.pid)
            else:
                # The leader exited; end whatever it left in its group, at once.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            kill_marked(spawn_id)
            returncode = proc.wait()
            for stream_pipe in (proc.stdout, proc.stderr, proc.stdin):
                if stream_pipe is not None:
                    with contextlib.suppress(OSError):
                        stream_pipe.close()
        # Deliver what it said while ending (a summary, a last error), once the pipes have closed.
        for reader in readers:
            reader.join(timeout=1.0)
        while True:
            try:
                stream, line = lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                tail.add(line)
                on_line(stream, line)
        result.exit_code = returncode if returncode >= 0 else None
        result.signal = -returncode if returncode < 0 else None
        result.duration_s = time.monotonic() - watch.started
        result.first_output_s = watch.first_output
        result.tail = tail.text()
        return result


def _feed_stdin(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(text.encode())
        proc.stdin.close()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>()][0-9A-Za-z]?")


class PtyCommunicator:
    """A pseudo-terminal (pexpect), for CLIs that behave differently on a TTY. One merged stream
    ("stdout"), ANSI sequences removed. Detects dialogs we cannot answer via `spec.fail_patterns`."""

    name = "pty"

    def run(self, spec: ProcSpec, on_line: LineCallback, cancel: threading.Event | None = None) -> ProcResult:
        import pexpect  # imported here: only pty runs need it

        exe = resolve_argv0(spec.argv, spec.env, spec.install_hint)
        env, spawn_id = _marked_env(spec.env)
        child = pexpect.spawn(
            exe,
            list(spec.argv[1:]),
            cwd=str(spec.cwd),
            env=env,
            echo=False,
            encoding=None,
            dimensions=(50, 200),
            preexec_fn=_pdeathsig,
        )
        watch = _Watch(spec, cancel)
        result = ProcResult(exit_code=None, pid=child.pid)
        tail = _Tail(spec.tail_bytes)
        patterns = [(re.compile(p), message) for p, message in spec.fail_patterns]
        if spec.stdin is not None:
            child.send(spec.stdin.encode())
            child.sendeof()
        pending = b""
        verdict: str | None = None

        def emit(raw: bytes) -> str | None:
            line = _ANSI.sub("", _decode(raw)).replace("\r", "")
            watch.saw_output()
            tail.add(line)
            on_line("stdout", line)
            for pattern, message in patterns:
                if pattern.search(line):
                    return message
            return None

        try:
            while True:
                try:
                    chunk = child.read_nonblocking(65536, timeout=0.1)
                except pexpect.TIMEOUT:
                    chunk = b""
                except pexpect.EOF:
                    break
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        blocked = emit(raw)
                        if blocked:
                            result.blocked_by = blocked
                            break
                    if result.blocked_by:
                        break
                    # A dialog waits on a line with no newline: check the partial line too.
                    partial = _ANSI.sub("", _decode(pending))
                    matched = next((m for p, m in patterns if p.search(partial)), None)
                    if matched:
                        result.blocked_by = matched
                        break
                verdict = watch.verdict()
                if verdict:
                    break
            if pending and not result.blocked_by and not verdict:
                emit(pending)
        finally:
            _apply_verdict(result, verdict)
            if child.isalive():
                kill_group(child.pid)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            kill_marked(spawn_id)
            with contextlib.suppress(Exception):
                child.close(force=True)
        result.exit_code = child.exitstatus
        result.signal = child.signalstatus
        result.duration_s = time.monotonic() - watch.started
        result.first_output_s = watch.first_output
        result.tail = tail.text()
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
) -> CommandResult:
    """Run a short command to completion in its own process group; kill the group on timeout.

    `env=None` means an allowlisted copy of our environment (never the whole of it)."""
    child_environment = dict(env) if env is not None else child_env(os.environ)
    exe = resolve_argv0(argv, child_environment, None)
    marked, spawn_id = _marked_env(child_environment)
    start = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
        [exe, *argv[1:]],
        cwd=cwd,
        env=marked,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # No preexec_fn here: it forces a full fork (~5 ms per call); short commands like git have
        # their own timeout, and the group kill below ends anything they leave.
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(input.encode() if input is not None else None, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid, grace_s=0.5)
        out, err = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        kill_marked(spawn_id)
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
