"""The cluster's activities: `run_step` (one node of a run's graph, on this worker) and `end_run`.

`run_step`, in order:
1. takes a new fencing token for the run (Store.acquire_fence / hold_fence): from then on every write
   of an older attempt at this run (a zombie worker's) is refused, and this one's are refused as soon
   as a newer attempt starts;
2. updates this worker's mirror of the run's repository and opens the run's workspace from it;
3. runs exactly one node through the engine's resume path (RunService.execute_node) in a thread,
   while this activity heartbeats every few seconds on the worker's event loop;
4. pushes the run branch with a lease on the commit it started from, and returns the outcome:
   "more" (finished=False), or the run's status, stop reason and exit code.

Cancellation: when Temporal says the step is cancelled because the user asked (`run --cluster`'s
Ctrl-C, a workflow cancel), the engine's cancel Event is set: the same clean cancel as Ctrl-C locally
(the step's whole process tree ends within the kill grace, the run is recorded as cancelled), and the
activity reports itself cancelled once the engine is done. Any other cancellation (this worker shuts
down, or its heartbeats timed out) abandons the step instead: a newer fencing token is taken first, so
nothing this attempt still writes lands, then the engine is cancelled, and the step is retried on
another worker, which starts it again from the last pushed commit.

`--concurrency N` is an asyncio counter shared by every queue's Temporal worker in this process: a step
waits (heartbeating) for one of the N slots. (Temporal's slot suppliers reserve slots for idle pollers,
so one supplier shared by 31 queues would starve the queues whose pollers hold no slot.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.cluster.cleanup import RunsInUse
from orchestrator.cluster.messages import END_RUN, RUN_STEP, USER_ERROR, EndRequest, StepOutcome, StepRequest
from orchestrator.cluster.mirror import RepoMirror, open_run_workspace
from orchestrator.config import Settings
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.engine.service import RunService
from orchestrator.errors import StaleFence, UsageError
from orchestrator.events import Notice, RunFinished
from orchestrator.store import Store
from orchestrator.workspace.run_workspace import RunWorkspace

log = structlog.get_logger(__name__)

HEARTBEAT_EVERY_S = 5.0  # at most; a third of the heartbeat timeout when that is shorter


def repo_url(options: object, repo: str) -> str:
    """The URL workers fetch the run's repository from (RunOptions' extra field `repo_url`)."""
    url = getattr(options, "repo_url", None)
    return url if isinstance(url, str) and url else repo


class StepActivities:
    """The activities of one worker process, sharing its settings and its `--concurrency` slots."""

    def __init__(self, *, settings: Settings, env: Mapping[str, str], name: str, concurrency: int) -> None:
        self.settings = settings
        self.env = env
        self.name = name
        self.concurrency = concurrency
        self.busy = 0
        self.in_use = RunsInUse()  # the runs its steps execute: the worker's sweep leaves them be
        self._freed: asyncio.Event | None = None  # set when a slot frees (made on the event loop)
        self.pool = ThreadPoolExecutor(max_workers=concurrency + 2, thread_name_prefix="step")
        # One RunService per pool thread, kept from step to step (its settings, masker and store
        # connection are the worker's; making them anew cost every step a connection and a masker).
        # Per thread, not shared: a Store holds one fencing token per run, and a step retried on this
        # worker while its first attempt still winds down must not share the first attempt's Store.
        self._services = threading.local()
        self._all_services: list[RunService] = []
        self._services_lock = threading.Lock()
        # Run id -> the fencing token of this worker's last push of the run's refs that landed, and
        # the workspace that step ran in (the next step of the run here needs no fetch and no open).
        self._pushed: dict[str, tuple[int, RunWorkspace]] = {}
        # URL -> this machine's mirror of it: one per worker, so its git (and the identity look-up
        # that git makes once) is the same from step to step.
        self._mirrors: dict[str, RepoMirror] = {}
        self._mirrors_lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._services_lock:
            services, self._all_services = self._all_services, []
        for service in services:
            service.close()

    def _service(self) -> RunService:
        """This thread's RunService, with a fresh AgentReadiness (a CLI's readiness is asked per step,
        as a fresh service would: it may have changed since the last step)."""
        service: RunService | None = getattr(self._services, "service", None)
        if service is None:
            service = RunService(settings=self.settings, env=self.env)
            self._services.service = service
            with self._services_lock:
                self._all_services.append(service)
        else:
            service.readiness = AgentReadiness(self.settings, self.env, state_home=service.state_home)
        return service

    # --- run_step -----------------------------------------------------------------------------------

    @activity.defn(name=RUN_STEP)
    async def run_step(self, request: StepRequest) -> StepOutcome:
        info = activity.info()
        timeout = info.heartbeat_timeout.total_seconds() if info.heartbeat_timeout else 30.0
        every = min(HEARTBEAT_EVERY_S, timeout / 3)
        loop = asyncio.get_running_loop()
        await self._take_slot(every)
        cancel = threading.Event()
        try:
            future = loop.run_in_executor(self.pool, self._step_in_use, request, cancel, info.attempt)
            try:
                while True:
                    done, _ = await asyncio.wait({future}, timeout=every)
                    if future in done:
                        return future.result()
                    activity.heartbeat(request.number)
            except asyncio.CancelledError:
                details = activity.cancellation_details()
                asked = details is not None and details.cancel_requested
                if not asked:
                    # Not the user's cancel: hand the step over rather than cancel the run.
                    await loop.run_in_executor(self.pool, self._fence_off, request.run_id)
                cancel.set()
                await _wait_through_cancels(future)
                log.info("step cancelled", run_id=request.run_id, by_user=asked)
                if not asked:
                    raise ApplicationError(
                        f"worker {self.name} gave up run {request.run_id}'s step ({_given_up_why(details)})"
                    ) from None
                raise
        finally:
            self.busy -= 1
            if self._freed is not None:
                self._freed.set()

    async def _take_slot(self, every: float) -> None:
        """One of the worker's N slots (one event loop: the check and the increment are atomic). A
        waiting step wakes as soon as one frees, and heartbeats meanwhile."""
        while self.busy >= self.concurrency:
            activity.heartbeat("waiting for a slot")
            if self._freed is None:
                self._freed = asyncio.Event()
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), every)
        self.busy += 1

    def _step_in_use(self, request: StepRequest, cancel: threading.Event, attempt: int) -> StepOutcome:
        with self.in_use.step(request.run_id):  # waits while the sweep removes the run's repository
            return self._step(request, cancel, attempt)

    def _step(self, request: StepRequest, cancel: threading.Event, attempt: int) -> StepOutcome:
        started = time.monotonic()
        service = self._service()
        store = service.store
        run_id = request.run_id
        try:
            token = store.acquire_fence(run_id)
            store.hold_fence(run_id, token)
            run = store.get_run(run_id)
            if run.finished:  # a retry of a step whose run finished already (its answer was lost)
                return self._outcome(store, run_id)
            mirror = self._mirror(repo_url(run.options, run.repo), service.state_home)
            kept = self._pushed_last(run_id, token)
            if kept is None:
                mirror.update()
            workspace = open_run_workspace(
                mirror, run_id, state_home=service.state_home, env=self.env, kept=kept
            )
            expected = workspace.head()
            first = store.last_seq(run_id) == 0
            log.info("step", run_id=run_id, number=request.number, attempt=attempt, worker=self.name)
            report = service.execute_node(run_id, workspace=workspace, cancel=cancel, first=first)
            mirror.push_run(run_id, expected=expected)
            self._pushed[run_id] = (token, workspace)
            if report is None:
                return StepOutcome(finished=False, worker=self.name)
            self._pushed.pop(run_id, None)
            return self._outcome(store, run_id)
        except StaleFence:
            raise  # a newer attempt took the step over: this one only stops
        except UsageError as exc:
            # The run's own fault (its repository is gone, its workflow is invalid): retrying elsewhere
            # would fail the same way.
            raise ApplicationError(exc.message, type=USER_ERROR, non_retryable=True) from exc
        finally:
            store.release_fence(run_id)
            log.info("step done", run_id=request.run_id, seconds=round(time.monotonic() - started, 3))

    def _pushed_last(self, run_id: str, token: int) -> RunWorkspace | None:
        """The workspace of the run's previous attempt when the URL's run refs are the ones this
        worker's mirror holds: this worker pushed them in that attempt (its token just below `token`,
        so no attempt came between and every later push needed a lease on that tip). Then the mirror
        needs no fetch for the step, and the workspace no opening again (its refs are read anew)."""
        pushed = self._pushed.pop(run_id, None)
        return pushed[1] if pushed is not None and pushed[0] == token - 1 else None

    def _mirror(self, url: str, state_home: Path) -> RepoMirror:
        with self._mirrors_lock:
            mirror = self._mirrors.get(url)
            if mirror is None or not mirror.exists():
                mirror = self._mirrors[url] = RepoMirror.for_url(url, state_home=state_home, env=self.env)
            return mirror

    def _outcome(self, store: Store, run_id: str) -> StepOutcome:
        from orchestrator.engine.report import build_report

        report = build_report(store, run_id)
        return StepOutcome(
            finished=True,
            status=report.status,
            reason=report.stop_reason,
            exit_code=report.exit_code,
            worker=self.name,
        )

    def _store(self) -> Store:
        from orchestrator.store import store_location
        from orchestrator.workspace.paths import state_home

        return Store(store_location(self.settings.cluster.database, self.env, state_home(self.env)))

    def _fence_off(self, run_id: str) -> None:
        """A newer fencing token for the run, held by nobody: this attempt's later writes are refused."""
        with self._store() as store:
            store.acquire_fence(run_id)

    # --- end_run ------------------------------------------------------------------------------------

    @activity.defn(name=END_RUN)
    async def end_run(self, request: EndRequest) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self._end, request)

    def _end(self, request: EndRequest) -> None:
        """Ends the run as the workflow says, unless a step ended it already."""
        with self._store() as store:
            run_id = request.run_id
            store.hold_fence(run_id, store.acquire_fence(run_id))
            run = store.get_run(run_id)
            if run.finished:
                return
            store.update_run_status(run_id, request.status, stop_reason=request.reason)  # type: ignore[arg-type]
            store.add_event(run_id, Notice(run_id=run_id, level="warning", text=request.text))
            store.add_event(
                run_id,
                RunFinished(
                    run_id=run_id, status=request.status, stop_reason=request.reason, branch=run.branch
                ),
            )


def _given_up_why(details: activity.ActivityCancellationDetails | None) -> str:
    if details is not None and details.worker_shutdown:
        return "shutting down"
    if details is not None and details.not_found:
        return "its workflow is gone: terminated or deleted"  # the submitter ends the run (watch.py)
    return "heartbeats timed out"


async def _wait_through_cancels(future: asyncio.Future[StepOutcome]) -> None:
    """Waits for the engine's thread to end, whatever further cancels arrive meanwhile."""
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            continue
    if not future.cancelled() and future.exception() is not None:
        log.info("step ended with an error after its cancel", error=str(future.exception()), pid=os.getpid())
