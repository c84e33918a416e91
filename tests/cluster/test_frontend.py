"""The submitting side's Temporal client (cluster/frontend.py) against the SDK it stands in for: the
workflow input it writes is what the SDK's converter reads, its statuses are the SDK's names, and
against a real dev server it starts, refuses a second start, waits for the close, cancels and counts
pollers as temporalio.client would."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.cluster.frontend import NOT_FOUND, Frontend, connect_frontend, encode_input, status_name
from orchestrator.cluster.messages import WORKFLOW_NAME, RunRequest
from orchestrator.config import Settings
from orchestrator.errors import UsageError
from orchestrator.proc import child_env, run_command
from orchestrator.testing.temporal import TemporalDevServer

pytestmark = pytest.mark.slow

REQUEST = RunRequest(
    run_id="r-1",
    step_queue="p.agents.fake",
    end_queue="p.workflows",
    heartbeat_timeout_s=30.0,
    step_timeout_s=60.0,
)


def test_the_input_is_what_the_sdks_converter_writes_and_reads():
    from temporalio.api.common.v1 import Payload
    from temporalio.converter import DataConverter

    converter = DataConverter.default.payload_converter
    (theirs,) = converter.to_payloads([REQUEST])
    metadata, data = encode_input(REQUEST)
    assert dict(theirs.metadata) == metadata and theirs.data == data
    (back,) = converter.from_payloads([Payload(metadata=metadata, data=data)], [RunRequest])
    assert back == REQUEST


def test_statuses_are_named_as_the_sdk_names_them():
    from temporalio.client import WorkflowExecutionStatus

    for status in WorkflowExecutionStatus:
        assert status_name(status.value) == status.name
    assert status_name(0) == "RUNNING"  # unset: as describe() takes it


def test_a_submitting_process_does_not_import_the_sdks_client(tmp_path: Path):
    probe = (
        "import sys\n"
        "import orchestrator.cli.cluster_cmd, orchestrator.cluster.submit, orchestrator.cluster.watch\n"
        "import orchestrator.cluster.frontend\n"
        "from temporalio.service import ServiceClient\n"
        "print(sorted(m for m in ('temporalio.client', 'temporalio.worker', 'temporalio.converter') if m in sys.modules))\n"
    )
    env = child_env(os.environ, {"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    done = run_command([sys.executable, "-c", probe], tmp_path, env=env, timeout_s=60)
    assert done.ok, done.stderr
    assert done.stdout.strip() == "[]"


def frontend_test(server: TemporalDevServer, work) -> None:
    settings = Settings.model_validate({"cluster": {"temporal": server.address}})

    async def main() -> None:
        await work(await connect_frontend(settings))

    asyncio.run(main())


def test_start_refuse_wait_and_start_again(temporal_server: TemporalDevServer):
    from temporalio.client import Client

    workflow_id = f"frontend-{uuid.uuid4().hex[:8]}"
    queue = f"nobody-polls-{uuid.uuid4().hex[:8]}"

    async def work(frontend: Frontend) -> None:
        assert await frontend.status(workflow_id) == NOT_FOUND
        await frontend.start_workflow(WORKFLOW_NAME, REQUEST, workflow_id=workflow_id, task_queue=queue)
        assert await frontend.status(workflow_id) == "RUNNING"
        with pytest.raises(UsageError, match="already running on the cluster"):
            await frontend.start_workflow(WORKFLOW_NAME, REQUEST, workflow_id=workflow_id, task_queue=queue)
        assert await frontend.pollers(queue, activities=False) == 0
        # The SDK sees what we started, with our input.
        client = await Client.connect(temporal_server.address)
        handle = client.get_workflow_handle(workflow_id)
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.workflow_type.name == WORKFLOW_NAME and started.task_queue.name == queue
        assert started.input.payloads[0].data == encode_input(REQUEST)[1]
        waiting = asyncio.create_task(frontend.wait_closed(workflow_id))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # open: the long poll goes on
        await handle.terminate(reason="the test")
        await asyncio.wait_for(waiting, 30)
        assert await frontend.status(workflow_id) == "TERMINATED"
        # Closed: the same id may start again (a resume), and be cancelled.
        await frontend.start_workflow(WORKFLOW_NAME, REQUEST, workflow_id=workflow_id, task_queue=queue)
        await frontend.cancel(workflow_id)
        description = await handle.describe()
        assert description.status is not None and description.status.name == "RUNNING"  # no worker yet
        await handle.terminate(reason="the test")

    frontend_test(temporal_server, work)


def test_an_unreachable_server_is_a_usage_error():
    settings = Settings.model_validate({"cluster": {"temporal": "127.0.0.1:9"}})
    with pytest.raises(UsageError, match="cannot reach the Temporal server at 127.0.0.1:9"):
        asyncio.run(connect_frontend(settings))
