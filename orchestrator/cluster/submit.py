"""The submitting side of a cluster run (`run --cluster`, `runs resume` of a cluster run): hand the run
to the cluster, start its workflow, follow its events from the shared store, cancel it on request.

Workflow ids are run ids, started with reuse policy ALLOW_DUPLICATE and conflict policy FAIL: while a
run's workflow is open, a second start of the same id is refused (a duplicate submit: exit 2); once it
has closed, `runs resume` may start it again under the same id, so the run keeps one id everywhere
(store, branch, Temporal), and the store's own checks (the run is not running) decide whether a resume
makes sense, exactly as for a local resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from orchestrator.cluster.frontend import connect_frontend
from orchestrator.cluster.messages import WORKFLOW_NAME, RunRequest
from orchestrator.cluster.mirror import fetch_run_branch, publish_run_start
from orchestrator.cluster.queues import agents_queue, workflow_queue
from orchestrator.cluster.watch import CHECK_EVERY_S, WorkflowWatch, end_vanished
from orchestrator.config import Settings
from orchestrator.engine.workflow import Workflow
from orchestrator.errors import UsageError
from orchestrator.events import Notice, RunEvent, RunFinished
from orchestrator.store import RunRecord, Store

# A node (a step, a gate, a group) may run for hours; a dead worker is noticed by its heartbeats.
STEP_TIMEOUT_S = 6 * 3600.0
# Once the run has finished in the store, its workflow closes as soon as the last step's push is done.
CLOSE_WAIT_S = 120.0


def run_request(settings: Settings, record: RunRecord) -> RunRequest:
    cluster = settings.cluster
    workflow = Workflow.model_validate(record.workflow)
    return RunRequest(
        run_id=record.id,
        step_queue=agents_queue(cluster.task_queue_prefix, workflow.agents or ("fake",)),
        end_queue=workflow_queue(cluster.task_queue_prefix),
        heartbeat_timeout_s=cluster.heartbeat_timeout_s,
        step_timeout_s=max(STEP_TIMEOUT_S, record.options.timeout_s or 0.0),
    )


def start_workflow(settings: Settings, request: RunRequest) -> None:
    asyncio.run(_start(settings, request))


async def _start(settings: Settings, request: RunRequest) -> None:
    frontend = await connect_frontend(settings)
    await frontend.start_workflow(  # a second start while it is open: UsageError (exit 2)
        WORKFLOW_NAME,
        request,
        workflow_id=request.run_id,
        task_queue=workflow_queue(settings.cluster.task_queue_prefix),
    )


def cancel_workflow(settings: Settings, run_id: str) -> None:
    asyncio.run(_cancel(settings, run_id))


async def _cancel(settings: Settings, run_id: str) -> None:
    from temporalio.service import RPCError

    frontend = await connect_frontend(settings)
    try:
        await frontend.cancel(run_id)
    except RPCError:
        pass  # it closed meanwhile: nothing left to cancel


def submit(
    settings: Settings, store: Store, record: RunRecord, env: Mapping[str, str], *, resume: bool = False
) -> RunRequest:
    """Hands a created (or, to resume, a finished) run to the cluster and starts its workflow. If the
    start fails, a new run is recorded as failed, so that no run stays "running" with no workflow."""
    request = run_request(settings, record)
    if resume:
        store.claim_run(record.id)  # running again; a cluster run stays the cluster's
    else:
        store.hand_to_cluster(record.id)
    try:
        if not resume:  # a failed push fails the run too (it is the cluster's already)
            publish_run_start(Path(record.repo), repo_url_of(record), record.id, env)
        start_workflow(settings, request)
    except BaseException as exc:
        if not resume or not isinstance(exc, UsageError):
            _fail(store, record, f"run failed: it could not be started on the cluster ({exc})")
        raise
    return request


def repo_url_of(record: RunRecord) -> str:
    """The URL the run goes through (a remote's, or the repository's path)."""
    url = getattr(record.options, "repo_url", None)
    return url if isinstance(url, str) and url else record.repo


def _fail(store: Store, record: RunRecord, text: str) -> None:
    if store.get_run(record.id).finished:
        return
    store.update_run_status(record.id, "failed", stop_reason="cluster_error")
    store.add_event(record.id, Notice(run_id=record.id, level="error", text=text))
    store.add_event(
        record.id,
        RunFinished(run_id=record.id, status="failed", stop_reason="cluster_error", branch=record.branch),
    )


def follow(
    store: Store,
    run_id: str,
    subscribers: Sequence[Callable[[RunEvent], None]],
    *,
    after_seq: int = 0,
    cancel: threading.Event | None = None,
    on_cancel: Callable[[], None] = lambda: None,
    poll_s: float = 0.5,
    settings: Settings | None = None,
    check_every_s: float = CHECK_EVERY_S,
) -> None:
    """Hands the run's stored events to `subscribers` in order until its RunFinished. A change in
    the store (LISTEN/NOTIFY on PostgreSQL) wakes it at once; `poll_s` is the fallback. When `cancel`
    is set, `on_cancel` is called once and following goes on until the run has wound down. With
    `settings`, Temporal is asked every `check_every_s` whether the run's workflow is still open: one
    that closed without ending the run (terminated, lost) ends it here (watch.py), so this returns."""
    wake = threading.Event()
    listener = store.change_listener(lambda changed: wake.set() if changed == run_id else None)
    if listener is not None:
        listener.start()
    watch = None
    if settings is not None:
        watch = WorkflowWatch(settings, run_id, on_closed=wake.set, every_s=check_every_s)
        watch.start()
    cancelled = settled = False
    try:
        while True:
            if cancel is not None and cancel.is_set() and not cancelled:
                cancelled = True
                on_cancel()
            wake.clear()
            for stored in store.events(run_id, after_seq):
                after_seq = stored.seq
                for subscriber in subscribers:
                    subscriber(stored.event)
                if isinstance(stored.event, RunFinished):
                    return
            gone = watch.gone if watch is not None else None
            if gone is not None and not settled:
                settled = True  # its Notice and RunFinished are read on the next round
                end_vanished(store, run_id, gone)
                continue
            wake.wait(poll_s)
    finally:
        if listener is not None:  # its thread ends on its own within its poll (up to 0.5 s)
            listener.stop(wait=False)
        if watch is not None:
            watch.stop()


def request_cancel(settings: Settings, store: Store, run_id: str, source: str) -> None:
    """The store's cancel request (the worker's ControlWatch obeys it) and the workflow's cancel."""
    store.request_control(run_id, "cancel", {"source": source})
    cancel_workflow(settings, run_id)


async def _closed(settings: Settings, run_id: str, timeout_s: float | None) -> None:
    from temporalio.service import RPCError

    frontend = await connect_frontend(settings)
    with contextlib.suppress(RPCError, TimeoutError):  # NOT_FOUND (gone): nothing to wait for
        await asyncio.wait_for(frontend.wait_closed(run_id), timeout_s)


def wait_closed(settings: Settings, run_id: str, timeout_s: float | None = CLOSE_WAIT_S) -> None:
    """Until the run's workflow has closed, however it ended (at most `timeout_s`; None: for as long as it runs). A step records
    RunFinished before it pushes its commits; its workflow closes only once that push has landed, so a
    fetch after this sees the run's last commit."""
    with contextlib.suppress(UsageError):  # Temporal gone meanwhile: fetch what is there
        asyncio.run(_closed(settings, run_id, timeout_s))


def fetch_back(record: RunRecord, env: Mapping[str, str]) -> str | None:
    """The run branch into the user's repository (nothing to do when the URL is that repository)."""
    return fetch_run_branch(Path(record.repo), repo_url_of(record), record.id, env)
