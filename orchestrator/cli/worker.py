"""Running a run in a worker thread while the main thread takes Ctrl-C, SIGTERM and SIGHUP.

Every Ctrl-C asks for cancellation; the wait is bounded because the step's process tree is ended by the
runner's kill ladder. The shell then returns to its prompt; one-shot commands (`run_cancellable`) quit at
once on a second Ctrl-C (the supervisors of the agents still end their trees as this process exits).
SIGTERM and SIGHUP (`timeout`, CI cancellation, `docker stop`, a closed terminal) cancel exactly like a
first Ctrl-C, and then the command ends with 130, the shell included (`install_termination_handlers`).

The wait is on an Event, never on `Thread.join(timeout)`: in CPython 3.11 a KeyboardInterrupt that lands
inside `join` leaves the thread reporting `is_alive() == False` while it still runs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import click

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled like Ctrl-C (it is one, for every `except KeyboardInterrupt`), but it
    also ends the shell once the step has wound down."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_terminated: list[int] = []


def _on_termination(signum: int, _frame: FrameType | None) -> None:
    _terminated.append(signum)
    raise Terminated(signum)


def install_termination_handlers() -> None:
    """In the main thread of a command: SIGTERM and SIGHUP raise Terminated there."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _on_termination)


def termination_requested() -> int | None:
    """The signal that asked this process to end, if one did."""
    return _terminated[0] if _terminated else None


def run_interruptible(
    work: Callable[[threading.Event], T], on_interrupt: Callable[[bool], None]
) -> tuple[T, bool]:
    """Run `work(cancel)` in a worker thread. Each Ctrl-C sets `cancel` and calls `on_interrupt(first)`.
    Returns (result, cancelled); the work's exception, if any, is raised here."""
    cancel = threading.Event()
    done = threading.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work(cancel)
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name="orchestrator-shell-run", daemon=True)
    worker.start()
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            first = not cancel.is_set()
            cancel.set()
            on_interrupt(first)
    if "error" in box:
        raise box["error"]
    return box["result"], cancel.is_set()


def run_cancellable(work: Callable[[threading.Event], T]) -> tuple[T, bool]:
    """For one-shot commands: the first Ctrl-C cancels the current step and waits for the run to wind
    down; a second one quits at once. Returns (result, interrupted)."""

    def on_interrupt(first: bool) -> None:
        if not first:
            raise KeyboardInterrupt
        click.echo("\ncancelling the current step (Ctrl-C again to quit at once)...", err=True)

    return run_interruptible(work, on_interrupt)
