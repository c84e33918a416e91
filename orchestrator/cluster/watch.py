"""What Temporal says about a cluster run, for the submitting side: is its workflow still open, and does
any worker poll the task queues it needs.

A run whose workflow closed without ending it (`temporal workflow terminate`, a failure or timeout of
the workflow itself, a server whose history was wiped) would otherwise stay "running" in the store with
nothing driving it. `WorkflowWatch` asks every few seconds while `run --cluster` follows the run;
`settle_vanished` does once for `runs show` and `runs resume`. Either ends such a run in the store as
`end_run` does (a fencing token first, so a late write of the worker that ran its step is refused; a
Notice saying why; RunFinished), and `runs resume` can submit it again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from orchestrator.cluster.frontend import NOT_FOUND, Frontend, connect_frontend
from orchestrator.cluster.queues import agents_queue, workflow_queue
from orchestrator.config import Settings
from orchestrator.events import RunFinished
from orchestrator.store import Store

log = structlog.get_logger(__name__)

CHECK_EVERY_S = 3.0
# `runs show` and `runs resume` judge a run only once it has not been written for this long: between
# the submitter's hand-over (or claim, for a resume) and its workflow's start, the server knows no
# workflow (or only the previous, closed one) for a run that is about to be driven.
SETTLE_AFTER_S = 15.0
VANISHED_REASON = "cluster_error"
STEP_MESSAGE = "the run's workflow on the cluster ended during this step"


@dataclass(frozen=True)
class Vanished:
    """How a run whose workflow is gone ends in the store, and why (the Notice's text)."""

    status: Literal["failed", "cancelled"]
    text: str


def vanished(run_id: str, workflow_status: str) -> Vanished | None:
    """None while the workflow is open (RUNNING); otherwise how the run ends. Pure."""
    again = f"`orchestrator runs resume {run_id}` submits it again"
    if workflow_status == "RUNNING":
        return None
    if workflow_status == "CANCELED":
        return Vanished("cancelled", f"run cancelled: its workflow on the cluster was cancelled; {again}")
    if workflow_status == NOT_FOUND:
        why = "its workflow is not on the Temporal server any more (its history was lost or deleted)"
    elif workflow_status == "TERMINATED":
        why = "its workflow on the cluster was terminated"
    elif workflow_status == "TIMED_OUT":
        why = "its workflow on the cluster timed out"
    else:
        why = f"its workflow on the cluster ended ({workflow_status.lower()}) without ending the run"
    return Vanished("failed", f"run failed: {why}; {again}")


async def workflow_status(frontend: Frontend, run_id: str) -> str:
    """The status of the run's newest workflow (RUNNING, TERMINATED, ...), or NOT_FOUND."""
    return await frontend.status(run_id)


def end_vanished(store: Store, run_id: str, gone: Vanished) -> bool:
    """Ends the run (and its running steps) as `gone` says unless it is finished already; True when
    this call ended it. A run finished in the store without its RunFinished (the worker's last write
    was fenced off) gets one, so that its followers stop."""
    store.hold_fence(run_id, store.acquire_fence(run_id))
    try:
        if store.end_if_running(run_id, gone.status, VANISHED_REASON, gone.text, step_message=STEP_MESSAGE):
            return True
        if not store.events(run_id, types=("run_finished",)):
            run = store.get_run(run_id)
            finished = RunFinished(
                run_id=run_id, status=run.status, stop_reason=run.stop_reason, branch=run.branch
            )
            store.add_event(run_id, finished)
        return False
    finally:
        store.release_fence(run_id)  # this process may resume the run later (the shell)


def settle_vanished(settings: Settings, store: Store, run_id: str, *, now: float | None = None) -> bool:
    """For a cluster run the store says is running, with no submitter following it: ends it when its
    workflow is gone (and it has not been written for SETTLE_AFTER_S). True when it ended it. An
    unreachable server settles nothing (the run is shown as stored)."""
    run = store.get_run(run_id)
    if run.status != "running" or not store.is_cluster_run(run_id) or not settings.cluster.enabled:
        return False
    if (now if now is not None else time.time()) - run.updated_at < SETTLE_AFTER_S:
        return False
    try:
        status = asyncio.run(_status_once(settings, run_id))
    except Exception as exc:  # noqa: BLE001 - unreachable or refused: nothing to decide
        log.info("workflow not checked", run_id=run_id, error=str(exc))
        return False
    gone = vanished(run_id, status)
    return gone is not None and end_vanished(store, run_id, gone)


async def _status_once(settings: Settings, run_id: str) -> str:
    return await (await connect_frontend(settings)).status(run_id)


class WorkflowWatch:
    """Asks Temporal every `every_s` for the run's workflow's status, in a thread of its own (with its
    own event loop and client), and calls `on_closed` once it is no longer RUNNING. A server that
    cannot be reached meanwhile decides nothing: it is asked again."""

    def __init__(
        self,
        settings: Settings,
        run_id: str,
        *,
        on_closed: Callable[[], None],
        every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.on_closed = on_closed
        self.every_s = every_s
        self.status: str | None = None  # once the workflow is closed (or NOT_FOUND)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"watch-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gone(self) -> Vanished | None:
        return vanished(self.run_id, self.status) if self.status is not None else None

    def _main(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        frontend: Frontend | None = None
        while not self._stop.is_set():
            try:
                frontend = frontend or await connect_frontend(self.settings)
                status = await frontend.status(self.run_id)
            except Exception as exc:  # noqa: BLE001 - the server is away for now: ask again later
                log.info("workflow not checked", run_id=self.run_id, error=str(exc))
            else:
                if status != "RUNNING":
                    self.status = status
                    self.on_closed()
                    return
            await self._sleep()

    async def _sleep(self) -> None:
        deadline = time.monotonic() + self.every_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, self.every_s))


# --- the task queues a run needs ------------------------------------------------------------------


def worker_command(agents: Sequence[str]) -> str:
    return f"orchestrator worker --agents {','.join(sorted(set(agents)))}"


def missing_workers(agents: Sequence[str], *, step_pollers: int, workflow_pollers: int) -> str | None:
    """What to tell the submitter when no worker polls a queue the run needs; None when both are
    polled. Pure."""
    names = ", ".join(sorted(set(agents)))
    start = f"start one where {'these CLIs are' if len(set(agents)) > 1 else 'it is'} ready: `{worker_command(agents)}`"
    if workflow_pollers == 0:
        return (
            f"no worker is connected to the cluster, so the run waits until one is; it needs {names}; {start}"
        )
    if step_pollers == 0:
        which = "all of " if len(set(agents)) > 1 else ""
        return f"no worker serves {which}{names}, so the run's steps wait until one does; {start}"
    return None


def check_queues(settings: Settings, agents: Sequence[str]) -> str | None:
    """Asks Temporal whether workers poll the run's step queue and the workflow queue (see
    `missing_workers`). A warning, not an error: the run is queued, and a worker started later takes it.
    A server that does not answer the question says nothing (the submit itself then says what failed)."""
    try:
        return asyncio.run(_check_queues(settings, agents))
    except Exception as exc:  # noqa: BLE001 - only a warning depends on it
        log.info("task queues not checked", error=str(exc))
        return None


async def _check_queues(settings: Settings, agents: Sequence[str]) -> str | None:
    frontend = await connect_frontend(settings)
    prefix = settings.cluster.task_queue_prefix
    step_pollers, workflow_pollers = await asyncio.gather(
        frontend.pollers(agents_queue(prefix, agents), activities=True),
        frontend.pollers(workflow_queue(prefix), activities=False),
    )
    return missing_workers(agents, step_pollers=step_pollers, workflow_pollers=workflow_pollers)


def reachable_and_served(settings: Settings) -> tuple[str, ...]:
    """One connection for both questions a submit asks first: the Temporal server answers (else the
    UsageError `connect` raises: exit 2), and which CLIs some worker serves now (its one-agent queue
    is polled), in AGENT_NAMES' order; what `agent: auto` chooses from for a cluster run. Empty when
    the server does not say."""
    return asyncio.run(_reachable_and_served(settings))


async def _reachable_and_served(settings: Settings) -> tuple[str, ...]:
    from orchestrator.adapters import AGENT_NAMES

    frontend = await connect_frontend(settings)
    prefix = settings.cluster.task_queue_prefix
    try:
        pollers = await asyncio.gather(
            *(frontend.pollers(agents_queue(prefix, [agent]), activities=True) for agent in AGENT_NAMES)
        )
    except Exception as exc:  # noqa: BLE001 - routing then falls back to fallback_order's first
        log.info("served agents not asked", error=str(exc))
        return ()
    return tuple(agent for agent, count in zip(AGENT_NAMES, pollers, strict=True) if count)
