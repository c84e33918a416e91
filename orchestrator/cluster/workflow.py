"""The workflow `OrchestratorRun`: one run, its workflow id the run id. Deterministic: it only loops
over `run_step` activities (each runs one node of the run's graph on some worker, see activities.py)
until one says the run finished, and returns that outcome.

- Heartbeats: a step's worker heartbeats every few seconds; after `heartbeat_timeout_s` without one
  (the worker died or lost the network), Temporal gives the step to another worker, which resumes the
  run from the store and the last pushed commit.
- Retries: on worker loss and transient faults (the store or git briefly unreachable), with backoff;
  never on the run's own errors (a missing repository, a bad workflow: USER_ERROR), which fail at once.
- Cancel: the workflow's cancellation is delivered to the running step, and the workflow waits for
  that step's clean cancel (its process tree ended, the run recorded as cancelled). A cancel that
  lands between steps, and a step that failed for good, end the run through `end_run`, so the store
  never keeps a run "running" that no workflow drives.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from orchestrator.cluster.messages import (
        END_RUN,
        RUN_STEP,
        USER_ERROR,
        WORKFLOW_NAME,
        EndRequest,
        RunRequest,
        StepOutcome,
        StepRequest,
    )

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=10,
    non_retryable_error_types=[USER_ERROR],
)
END_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))


@workflow.defn(name=WORKFLOW_NAME)
class OrchestratorRun:
    @workflow.run
    async def run(self, request: RunRequest) -> StepOutcome:
        number = 0
        while True:
            number += 1
            try:
                outcome: StepOutcome = await workflow.execute_activity(
                    RUN_STEP,
                    StepRequest(request.run_id, number),
                    result_type=StepOutcome,
                    task_queue=request.step_queue,
                    start_to_close_timeout=timedelta(seconds=request.step_timeout_s),
                    heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
                    retry_policy=STEP_RETRY,
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
            except asyncio.CancelledError:
                await self._end(request, "cancelled", "cancelled", "run cancelled")
                raise
            except ActivityError as exc:
                if isinstance(exc.cause, CancelledError):  # the step was cancelled and said so
                    await self._end(request, "cancelled", "cancelled", "run cancelled")
                    raise
                cause = (
                    exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause or exc)
                )
                await self._end(request, "failed", "cluster_error", f"run failed on the cluster: {cause}")
                raise ApplicationError(f"run {request.run_id} failed: {cause}", non_retryable=True) from exc
            if outcome.finished:
                return outcome

    async def _end(self, request: RunRequest, status: str, reason: str, text: str) -> None:
        """Ends the run in the store unless a step already did (idempotent: END_RUN checks)."""
        await workflow.execute_activity(
            END_RUN,
            EndRequest(request.run_id, status, reason, text),
            task_queue=request.end_queue,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=END_RETRY,
        )
