"""Runs on the cluster, for real: a Temporal dev server, PostgreSQL, `orchestrator worker` processes,
`orchestrator run --cluster`, the fake agent."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.store import Store
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.slow


def report_of(process_output: str) -> dict:
    start = process_output.index("{")
    return json.loads(process_output[start:])


def test_one_run_on_one_worker(cluster: Cluster) -> None:
    cluster.worker("w1")
    started = time.monotonic()
    run = cluster.submit()
    result = run.join(180)
    assert result.exit_code == 0, run.output
    print(f"one run on the cluster: {time.monotonic() - started:.2f} s")
    with Store(cluster.database) as store:
        runs = store.list_runs()
        assert len(runs) == 1 and runs[0].status == "approved"
        steps = store.steps(runs[0].id)
        assert [s.status for s in steps] == ["succeeded", "succeeded"]
