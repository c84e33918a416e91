"""`orchestrator worker`: serves a machine's ready CLIs to the cluster until SIGTERM or Ctrl-C.

At start it asks which CLIs are ready here (AgentReadiness, like `orchestrator agents`), and serves the
step queue of every non-empty subset of them plus the workflow queue (queues.py). A clear error (exit
2, with what to do) when no CLI is ready, when the cluster is not configured, or when Temporal cannot
be reached. SIGTERM and SIGINT shut it down: running steps are handed over cleanly (activities.py),
then the process exits 0. It sweeps finished runs' repositories off its disk at start and then every
few minutes (cleanup.py). A SIGKILLed worker leaves no process behind: every agent runs under a
supervisor that ends its tree when the worker dies, and the next orchestrator process on the machine
ends what the process records still name (proc.py, proc_tree.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from orchestrator.adapters import AGENT_NAMES, REAL_AGENTS
from orchestrator.cluster.activities import StepActivities
from orchestrator.cluster.cleanup import SWEEP_EVERY_S, RunsInUse, sweep_worker
from orchestrator.cluster.client import check_cluster as check_cluster
from orchestrator.cluster.client import connect
from orchestrator.cluster.queues import served_queues, workflow_queue
from orchestrator.config import Settings
from orchestrator.engine.readiness import AgentReadiness
from orchestrator.errors import UsageError
from orchestrator.workspace.paths import state_home

if TYPE_CHECKING:
    pass

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    agents: tuple[str, ...]  # ready here and asked for
    queues: tuple[str, ...]  # step queues
    workflow_queue: str
    concurrency: int


def plan_worker(
    settings: Settings, env: Mapping[str, str], *, agents: Sequence[str], concurrency: int, name: str | None
) -> WorkerPlan:
    """What this worker will serve: the asked-for (default: every real) CLI that is ready here."""
    unknown = [a for a in agents if a not in AGENT_NAMES]
    if unknown:
        raise UsageError(f"unknown agent(s): {', '.join(unknown)}", hint=f"known: {', '.join(AGENT_NAMES)}")
    wanted = list(dict.fromkeys(agents)) or list(REAL_AGENTS)
    readiness = AgentReadiness(settings, env, state_home=state_home(env))
    readiness.probe(wanted)
    ready = tuple(a for a in wanted if readiness.of(a).ready)
    if not ready:
        reasons = "\n  - ".join(f"{a}: {readiness.of(a).reason}" for a in wanted)
        raise UsageError(
            f"no coding CLI is ready on this machine, so this worker could serve nothing:\n  - {reasons}",
            hint="`orchestrator agents` shows what each CLI needs (install it, sign in or set its key), "
            "or name ready ones with --agents",
        )
    prefix = settings.cluster.task_queue_prefix
    return WorkerPlan(
        name=name or f"{socket.gethostname()}-{os.getpid()}",
        agents=ready,
        queues=tuple(served_queues(prefix, ready)),
        workflow_queue=workflow_queue(prefix),
        concurrency=concurrency,
    )


async def serve(
    plan: WorkerPlan,
    settings: Settings,
    env: Mapping[str, str],
    *,
    ready: Callable[[WorkerPlan], None] = lambda _plan: None,
    sweep_every_s: float = SWEEP_EVERY_S,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts every queue's worker down. Sweeps finished runs'
    repositories at start, then every `sweep_every_s`."""
    from temporalio.worker import Worker

    from orchestrator.cluster.workflow import OrchestratorRun

    client = await connect(settings, identity=plan.name)
    activities = StepActivities(settings=settings, env=env, name=plan.name, concurrency=plan.concurrency)
    workers = [
        Worker(
            client,
            task_queue=plan.workflow_queue,
            workflows=[OrchestratorRun],
            activities=[activities.end_run],
            identity=plan.name,
            graceful_shutdown_timeout=timedelta(0),
        )
    ]
    workers += [
        Worker(
            client,
            task_queue=queue,
            activities=[activities.run_step],
            max_concurrent_activities=plan.concurrency,
            identity=plan.name,
            # Shutting down cancels running steps at once: they are handed over (activities.py).
            graceful_shutdown_timeout=timedelta(0),
        )
        for queue in plan.queues
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runs = [asyncio.create_task(worker.run()) for worker in workers]
    sweep_stop = threading.Event()
    sweeps = asyncio.create_task(sweep_forever(settings, env, activities.in_use, sweep_stop, sweep_every_s))
    try:
        ready(plan)
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopped, *runs}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()  # a worker that failed: its error ends the command
    finally:
        sweep_stop.set()
        sweeps.cancel()
        await asyncio.gather(sweeps, return_exceptions=True)
        await asyncio.gather(*(worker.shutdown() for worker in workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        activities.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def sweep_forever(
    settings: Settings, env: Mapping[str, str], in_use: RunsInUse, stop: threading.Event, every_s: float
) -> None:
    """Sweeps now, then every `every_s`, the store calls and removals in a thread (as the activities
    do theirs). A failed sweep is logged and tried again next time: the worker serves on."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(sweep_worker, settings, env, in_use, stop)
        except Exception as exc:  # noqa: BLE001 - the store unreachable for a while, a disk error: next time
            log.warning("sweep of run repositories failed; trying again later", error=str(exc))
        await asyncio.sleep(every_s)
