"""Running a run in a worker thread while the shell's main thread takes Ctrl-C.

Unlike `cli.common.run_cancellable` (one-shot commands: a second Ctrl-C quits at once), the shell never
abandons a running step: every Ctrl-C asks for cancellation, and the wait is bounded because the step's
process group is ended by the runner's kill ladder. The shell then returns to its prompt.

The wait is on an Event, never on `Thread.join(timeout)`: in CPython 3.11 a KeyboardInterrupt that lands
inside `join` leaves the thread reporting `is_alive() == False` while it still runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

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
