"""The run owner's side of control requests (store/control.py): a cancel asked for by any process (the
dashboard, another shell) sets the run's cancel Event, the same one Ctrl-C sets, so it reaches the step's
process through the adapter runner and proc.py's kill ladder; follow-ups wait for the run to end and are
taken one at a time by `RunService.execute`."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from orchestrator.events import Notice, RunEvent
from orchestrator.store import ControlRequest, Store

# How often the owner looks for a cancel: the dashboard's "Stop" should act within about a second.
POLL_S = 0.3


class ControlWatch:
    """While a run executes, polls the store for its cancel requests and sets `cancel` on one."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        cancel: threading.Event,
        publish: Callable[[RunEvent], None],
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.cancel = cancel
        self.publish = publish
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"control-{run_id}", daemon=True)

    def __enter__(self) -> ControlWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                pending = self.store.pending_controls(self.run_id, kinds=("cancel",))
            except Exception:  # noqa: BLE001 - a busy or closing store must not end the run; look again
                continue
            for request in pending:
                if self.store.take_control(request.id, os.getpid()):
                    self._cancel(request)

    def _cancel(self, request: ControlRequest) -> None:
        who = request.payload.get("source") or "another process"
        self.cancel.set()
        self.store.finish_control(request.id, "done", "the current step is being stopped")
        self.publish(Notice(run_id=self.run_id, level="warning", text=f"cancel requested from {who}"))


def take_follow_up(store: Store, run_id: str) -> ControlRequest | None:
    """The oldest follow-up waiting for this run, taken by this process (None when there is none)."""
    for request in store.pending_controls(run_id, kinds=("follow_up",)):
        if store.take_control(request.id, os.getpid()):
            return request
    return None
