"""The submitting side's Temporal client: the five calls a submitter makes (start a run's workflow, ask
its status, wait for it to close, cancel it, count a task queue's pollers), straight on the frontend's
gRPC service.

Why not temporalio.client: `run --cluster` is a short process, and importing the SDK's client (its
converters, interceptors, schedules, the workflow and activity modules) costs about 0.13 s of CPU on
top of the service layer's 0.19 s, before the run can start. When many runs are submitted at once from
one machine, that is paid by each. The worker, which imports the SDK once and lives for days, keeps
temporalio.client (worker.py).

The workflow's input is encoded as the SDK's default converter encodes a dataclass (`json/plain`, keys
sorted, no spaces), so the worker's workflow reads it as the SDK would have written it
(tests/cluster/test_frontend.py decodes it with the SDK's own converter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from orchestrator.cluster.client import unreachable
from orchestrator.config import Settings
from orchestrator.errors import UsageError

if TYPE_CHECKING:
    from temporalio.service import ServiceClient

CONNECT_TIMEOUT_S = 10.0
NOT_FOUND = "NOT_FOUND"  # no workflow with that id on the server
_STATUS_PREFIX = "WORKFLOW_EXECUTION_STATUS_"


def encode_input(value: Any) -> tuple[dict[str, bytes], bytes]:
    """(metadata, data) of a dataclass as the SDK's default JSON payload converter writes it. Pure."""
    data = json.dumps(dataclasses.asdict(value), separators=(",", ":"), sort_keys=True)
    return {"encoding": b"json/plain"}, data.encode()


def status_name(value: int) -> str:
    """RUNNING, COMPLETED, ... (what temporalio.client's WorkflowExecutionStatus names) for the proto
    enum's number; an unset status is RUNNING, as the SDK's describe() takes it. Pure."""
    from temporalio.api.enums.v1 import WorkflowExecutionStatus

    if value == 0:
        return "RUNNING"
    return WorkflowExecutionStatus.Name(value).removeprefix(_STATUS_PREFIX)  # type: ignore[arg-type]


class Frontend:
    """A connection to the Temporal frontend for one namespace."""

    def __init__(self, service: ServiceClient, namespace: str) -> None:
        self.service = service
        self.namespace = namespace
        self.identity = f"{os.getpid()}@{socket.gethostname()}"

    async def start_workflow(self, name: str, arg: Any, *, workflow_id: str, task_queue: str) -> None:
        """Starts workflow `name` with id `workflow_id`: a second start while one with that id is open
        is refused (UsageError, exit 2); once it has closed, the id may start again."""
        from temporalio.api.common.v1 import Payload, Payloads, WorkflowType
        from temporalio.api.enums.v1 import TaskQueueKind, WorkflowIdConflictPolicy, WorkflowIdReusePolicy
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
        from temporalio.service import RPCError, RPCStatusCode

        metadata, data = encode_input(arg)
        request = StartWorkflowExecutionRequest(
            namespace=self.namespace,
            workflow_id=workflow_id,
            workflow_type=WorkflowType(name=name),
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            input=Payloads(payloads=[Payload(metadata=metadata, data=data)]),
            identity=self.identity,
            request_id=str(uuid.uuid4()),
            workflow_id_reuse_policy=WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
            workflow_id_conflict_policy=WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
        )
        try:
            await self.service.workflow_service.start_workflow_execution(request, retry=True)
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:
                raise UsageError(
                    f"run {workflow_id} is already running on the cluster (a run is submitted once)",
                    hint=f"follow it with `orchestrator runs show {workflow_id}`, or cancel it first",
                ) from exc
            raise

    async def status(self, workflow_id: str) -> str:
        """The status of the newest workflow with this id (RUNNING, TERMINATED, ...), or NOT_FOUND."""
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
        from temporalio.service import RPCError, RPCStatusCode

        request = DescribeWorkflowExecutionRequest(
            namespace=self.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
        try:
            response = await self.service.workflow_service.describe_workflow_execution(request, retry=True)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return NOT_FOUND
            raise
        return status_name(response.workflow_execution_info.status)

    async def wait_closed(self, workflow_id: str) -> None:
        """Until the newest workflow with this id has closed, however it ended (a long poll on its
        history for the close event; the server answers empty every ~20 s while it runs)."""
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.enums.v1 import HistoryEventFilterType
        from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest

        token = b""
        while True:
            request = GetWorkflowExecutionHistoryRequest(
                namespace=self.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id),
                wait_new_event=True,
                history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
                skip_archival=True,
                next_page_token=token,
            )
            response = await self.service.workflow_service.get_workflow_execution_history(request, retry=True)
            if response.history.events:
                return
            token = response.next_page_token

    async def cancel(self, workflow_id: str) -> None:
        """Asks the open workflow with this id to cancel (RPCError when there is none)."""
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import RequestCancelWorkflowExecutionRequest

        request = RequestCancelWorkflowExecutionRequest(
            namespace=self.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            identity=self.identity,
            request_id=str(uuid.uuid4()),
        )
        await self.service.workflow_service.request_cancel_workflow_execution(request, retry=True)

    async def pollers(self, queue: str, *, activities: bool) -> int:
        """How many pollers (worker processes) the server saw on `queue` lately."""
        from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        kind = (
            TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY if activities else TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        )
        request = DescribeTaskQueueRequest(
            namespace=self.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=kind,
        )
        response = await self.service.workflow_service.describe_task_queue(request, retry=True)
        return len(response.pollers)


async def connect_frontend(settings: Settings) -> Frontend:
    """The frontend of the configured server, or a clear UsageError when it cannot be reached."""
    from temporalio.service import ConnectConfig, ServiceClient

    cluster = settings.cluster
    assert cluster.temporal is not None
    try:
        service = await asyncio.wait_for(
            ServiceClient.connect(ConnectConfig(target_host=cluster.temporal)), CONNECT_TIMEOUT_S
        )
    except Exception as exc:  # noqa: BLE001 - refused, unresolvable, timed out: all "unreachable"
        raise unreachable(cluster.temporal, exc) from exc
    return Frontend(service, cluster.namespace)
