"""Running a run in a worker thread while the main thread takes Ctrl-C.

Every Ctrl-C asks for cancellation; the wait is bounded because the step's process group is ended by the
runner's kill ladder. The shell then returns to its prompt; one-shot commands (`run_cancellable`) quit at
once on a second Ctrl-C.

The wait is on an Event, never on `Thread.join(timeout)`: in CPython 3.11 a KeyboardInterrupt that lands
inside `join` leaves the thread reporting `is_alive() == False` while it still runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")


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
