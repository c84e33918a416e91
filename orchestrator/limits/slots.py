"""Per-CLI concurrency across every process on the machine, with file locks.

Layout under <state home>/limits/slots/<agent>/:
    mutex        flock'ed while one process decides whether it may take a slot (a few file opens)
    0, 1, ...    slot files: a slot is held while an open file description holds an flock on it
A lock belongs to the open file, so a slot is released when its holder closes it, exits or is killed
(SIGKILL included): nothing to clean up, nothing stale. Lock files are opened close-on-exec, so a CLI
the holder starts does not inherit the slot and cannot keep it after the holder dies.

Taking a slot: under the mutex, count the held slot files (every one present, even above the cap in
force: holders from before a 429 lowered it still count), and take a free one below the cap only when
fewer than the cap are held. Since every taker decides under the mutex and holders only ever leave,
the number held never exceeds the cap in force at the moment of taking. A lowered cap does not stop
what already runs; it holds back new starts until enough have finished.

Within one run, RunSlots adds the run's own limits (`limits.concurrency`, `limits.per_agent`) with
threading semaphores; hold_slots takes both, always in the same order (run, then machine), so two
threads can never wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.limits.throttle import DEFAULT_COOLDOWN_S, Throttle

DEFAULT_AGENT_CAP = 4  # a CLI without a configured cap: providers throttle 5-6 concurrent sessions (PEERS.md)
MAX_AGENT_CAP = 64
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SlotUnavailable(OrchestratorError):
    """No slot became free in time, or the wait was cancelled."""


@dataclass
class Slot:
    agent: str
    index: int
    _fd: int | None = field(repr=False)
    cap: int = 0  # the cap in force when it was taken
    others_held: int = 0  # slots of this agent held by others when it was taken

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the file releases its flock

    def __del__(self) -> None:
        # A slot dropped without release() must not keep the CLI's cap lowered until the process ends.
        self.release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MachineSlots:
    def __init__(
        self,
        state_home: Path,
        caps: Mapping[str, int] | None = None,
        *,
        default_cap: int = DEFAULT_AGENT_CAP,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for agent, cap in (caps or {}).items():
            _check_cap(agent, cap)
        _check_cap("default", default_cap)
        self.directory = state_home / "limits"
        self.caps = dict(caps or {})
        self.default_cap = default_cap
        self.cooldown_s = cooldown_s
        self.throttle = Throttle(self.directory, clock=clock)

    def configured_cap(self, agent: str) -> int:
        return self.caps.get(agent, self.default_cap)

    def cap(self, agent: str) -> int:
        """The cap in force: the configured one, or lower while a 429 cool-down runs."""
        lowered = self.throttle.cap(agent)
        configured = self.configured_cap(agent)
        return configured if lowered is None else min(configured, lowered)

    def rate_limited(self, agent: str) -> int:
        """Record a 429 from `agent` (see throttle.py); returns its new cap in force."""
        return self.throttle.rate_limited(
            agent, configured_cap=self.configured_cap(agent), cooldown_s=self.cooldown_s
        )

    def try_acquire(self, agent: str) -> Slot | None:
        """A slot for `agent` now, or None when its cap in force is reached."""
        folder = self._folder(agent)
        with _flocked(folder / "mutex"):
            cap = self.cap(agent)
            held = 0
            candidate: tuple[int, int] | None = None
            for index in self._slot_indexes(folder, cap):
                fd = _open(folder / str(index))
                if not _try_flock(fd):
                    os.close(fd)
                    held += 1
                elif candidate is None and index < cap:
                    candidate = (index, fd)
                else:
                    os.close(fd)
            if candidate is None or held >= cap:
                if candidate is not None:
                    os.close(candidate[1])
                return None
            return Slot(agent, candidate[0], candidate[1], cap=cap, others_held=held)

    def acquire(
        self, agent: str, *, timeout_s: float | None = None, cancel: threading.Event | None = None
    ) -> Slot:
        """Wait for a slot. SlotUnavailable after `timeout_s` or when `cancel` is set."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pause = 0.02
        while True:
            slot = self.try_acquire(agent)
            if slot is not None:
                return slot
            if deadline is not None and time.monotonic() >= deadline:
                raise SlotUnavailable(
                    f"no {agent} slot became free within {timeout_s:g} s ({self.cap(agent)} at once on this machine)",
                    hint=f"other runs are using {agent}; raise limits.per_agent.{agent} in the config or wait",
                )
            wait = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            if cancel is not None:
                if cancel.wait(wait):
                    raise SlotUnavailable(f"stopped waiting for a {agent} slot: the run was cancelled")
            else:
                time.sleep(wait)
            pause = min(pause * 1.5, 0.25)

    def held(self, agent: str) -> int:
        """How many slots of `agent` are held on the machine right now."""
        folder = self._folder(agent)
        with _flocked(folder / "mutex"):
            count = 0
            for index in self._slot_indexes(folder, 0):
                fd = _open(folder / str(index))
                if not _try_flock(fd):
                    count += 1
                os.close(fd)
            return count

    def _folder(self, agent: str) -> Path:
        if not _AGENT.fullmatch(agent):
            raise ValueError(f"not an agent name: {agent!r}")
        folder = self.directory / "slots" / agent
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @staticmethod
    def _slot_indexes(folder: Path, cap: int) -> list[int]:
        """Every slot file present (a process with a larger configured cap may have made more), plus
        those below `cap`."""
        present = {int(p.name) for p in folder.iterdir() if p.name.isdigit()}
        return sorted(present | set(range(cap)))


def _check_cap(agent: str, cap: int) -> None:
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_AGENT_CAP:
        raise ValueError(f"the cap for {agent} must be a whole number from 1 to {MAX_AGENT_CAP}, not {cap!r}")


def _open(path: Path) -> int:
    # os.open makes the descriptor non-inheritable (PEP 446): children never hold our locks.
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a few file opens only
        yield
    finally:
        os.close(fd)


class RunSlots:
    """One run's own limits: at most `concurrency` agent steps at once, and `per_agent[cli]` of a CLI."""

    def __init__(self, concurrency: int, per_agent: Mapping[str, int] | None = None) -> None:
        _check_cap("concurrency", concurrency)
        for agent, cap in (per_agent or {}).items():
            _check_cap(agent, cap)
        self.concurrency = concurrency
        self.per_agent = dict(per_agent or {})
        self._total = threading.BoundedSemaphore(concurrency)
        self._agents = {agent: threading.BoundedSemaphore(cap) for agent, cap in self.per_agent.items()}

    @contextlib.contextmanager
    def hold(self, agent: str, *, cancel: threading.Event | None = None) -> Iterator[None]:
        taken: list[threading.BoundedSemaphore] = []
        try:
            for semaphore in (self._total, self._agents.get(agent)):
                if semaphore is None:
                    continue
                while not semaphore.acquire(timeout=0.1):
                    if cancel is not None and cancel.is_set():
                        raise SlotUnavailable(f"stopped waiting for a {agent} slot: the run was cancelled")
                taken.append(semaphore)
            yield
        finally:
            for semaphore in reversed(taken):
                semaphore.release()


@contextlib.contextmanager
def hold_slots(
    run: RunSlots | None,
    machine: MachineSlots | None,
    agent: str,
    *,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[Slot | None]:
    """The run's slot, then the machine's, for one agent step; both released when the block ends."""
    with contextlib.ExitStack() as stack:
        if run is not None:
            stack.enter_context(run.hold(agent, cancel=cancel))
        slot = None
        if machine is not None:
            slot = stack.enter_context(machine.acquire(agent, timeout_s=timeout_s, cancel=cancel))
        yield slot
