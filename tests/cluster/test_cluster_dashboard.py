"""The dashboard on cluster runs, for real: a Temporal dev server, PostgreSQL, an `orchestrator worker`,
`orchestrator run --cluster`, and `orchestrator serve` (a process of its own, on another "machine":
a state home of its own) pointed at the same PostgreSQL store; the JSON API and Debian's Chromium."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from orchestrator.store import Store
from orchestrator.testing.cluster import (
    OrchestratorProcess,
    cluster_env,
    newest_run_id,
    wait_for_processes,
    wait_for_run,
    wait_for_step,
)
from tests.cluster.conftest import APPROVE, Cluster
from tests.cluster.test_cluster_runs import step_attempts
from tests.doc_pictures import doc_picture
from tests.ui.browser import Console, chromium
from tests.ui.conftest import TOKEN, Server

pytestmark = pytest.mark.slow

FIXED = {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}}


def serve(cluster: Cluster) -> Server:
    """`orchestrator serve` on a free port, its store the cluster's PostgreSQL database."""
    env = cluster_env(cluster.tmp, "dashboard", {"ORCHESTRATOR_UI_TOKEN": TOKEN})
    args = ["serve", "--port", "0", "--repo", str(cluster.repo), "--no-open", "--config", str(cluster.config)]
    process = OrchestratorProcess(args, cwd=cluster.repo, env=env)
    cluster.processes.append(process)
    line = process.wait_for("Dashboard: http://", 60)
    return Server(process, line.split("Dashboard: ", 1)[1].strip())  # type: ignore[arg-type]


FAKE_AGENT = "orchestrator.adapters.fake_agent"


def wait_for_fake_agents(running: bool, timeout_s: float = 30) -> list[int]:
    """Our fake agents (below this test process) once some run (`running`) or once none is left."""
    return wait_for_processes(FAKE_AGENT, running=running, timeout_s=timeout_s)


def workflow_status(address: str, run_id: str) -> str:
    """The Temporal workflow's status (RUNNING, COMPLETED, CANCELED, ...)."""

    async def describe() -> str:
        from temporalio.client import Client

        client = await Client.connect(address)
        description = await client.get_workflow_handle(run_id).describe()
        return str(description.status.name if description.status is not None else "UNKNOWN")

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, describe()).result()


def wait_for_workflow(address: str, run_id: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = workflow_status(address, run_id)
        if status != "RUNNING" or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with chromium(tmp_path / "chromium-profile") as context:
        yield context


def test_the_dashboard_lists_a_cluster_run_live(cluster: Cluster, browser: BrowserContext) -> None:
    # The implement step hangs a while after its edit: the run is seen running, then approved.
    cluster.use_scenario([FIXED, {"hang": 8}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    server = serve(cluster)
    page = browser.new_page()
    console = Console(page)
    page.goto(server.login_url)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#runs-empty")).to_be_visible()
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    # The runs list shows the cluster run as it runs, without a reload.
    row = page.locator(f"#runs tbody tr:has-text('{run_id}')")
    expect(row.locator(".status")).to_have_text("running", timeout=60_000)
    # The JSON API: running, with its running step; not stale (no process of this machine owns it).
    wait_for_step(cluster.database, run_id, {"running"})
    [listed] = server.get("/api/runs")
    assert (listed["id"], listed["status"], listed["stale"]) == (run_id, "running", False)
    report = server.get(f"/api/runs/{run_id}")
    assert report["status"] == "running"
    assert [(s["id"], s["status"]) for s in report["steps"]][:1] == [("i1-s1-implement", "running")]
    # The run's page follows its events live to the end.
    page.goto(f"{server.base}/runs/{run_id}")
    page.evaluate("window.__same_page = true")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#run-status .status")).to_have_text("running")
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=120_000)
    assert page.evaluate("window.__same_page") is True  # no reload
    expect(page.locator("#timeline li.run_finished")).to_contain_text("approved")
    shown = [
        int(s)
        for s in page.eval_on_selector_all("#timeline li.ev[data-seq]", "els => els.map(e => e.dataset.seq)")
    ]
    assert shown == list(range(1, len(shown) + 1))
    expect(page.locator("#steps tr[data-step=i1-s2-review]")).to_contain_text("succeeded")
    page.wait_for_timeout(300)
    picture = doc_picture("dashboard-cluster.png", cluster.tmp)
    page.screenshot(path=str(picture), full_page=True)
    assert picture.stat().st_size > 20_000
    assert run.join(120).exit_code == 0, run.output
    assert server.get(f"/api/runs/{run_id}")["status"] == "approved"
    # Back on the runs list: approved there too.
    page.goto(server.base + "/")
    expect(row.locator(".status")).to_have_text("approved")
    assert [e for e in console.errors if "Content Security Policy" in e or "Refused" in e] == []


def test_cancel_from_the_dashboard_ends_the_cluster_run_on_its_worker(
    cluster: Cluster, browser: BrowserContext
) -> None:
    cluster.use_scenario([{"hang": 600}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    run = cluster.submit()
    run_id = newest_run_id(cluster.database)
    wait_for_step(cluster.database, run_id, {"running"})
    assert wait_for_fake_agents(running=True)
    server = serve(cluster)
    page = browser.new_page()
    page.goto(server.login_url)
    page.goto(f"{server.base}/runs/{run_id}")
    expect(page.locator("#timeline li.step_started")).to_have_count(1, timeout=30_000)
    page.click("#act-cancel")
    expect(page.locator("#action-message")).to_contain_text("cancel requested")
    expect(page.locator("#run-status .status")).to_have_text("cancelled", timeout=90_000)
    assert wait_for_run(cluster.database, run_id, timeout_s=30).status == "cancelled"
    # The step's whole process tree on the worker ended; the workflow ended too (cancelled).
    assert wait_for_fake_agents(running=False) == []
    # The workflow is closed: cancelled, or completed when the worker's ControlWatch (the store's
    # request) ended the step before the workflow's cancel reached it.
    assert wait_for_workflow(cluster.temporal.address, run_id) in ("CANCELED", "COMPLETED")
    # The submitter saw the run end as cancelled (exit 130, as for Ctrl-C).
    assert run.join(120).exit_code == 130, run.output
    [step] = server.get(f"/api/runs/{run_id}")["steps"]
    assert step["status"] == "cancelled"


def test_cancel_from_the_dashboard_reaches_a_step_still_waiting_for_a_slot(cluster: Cluster) -> None:
    # One slot on the only worker: the first run holds it (its step hangs), the second run's step
    # waits for it. No step of the second run is executing, so nothing on the worker reads the store's
    # cancel request: only the workflow's cancel ends it.
    cluster.heartbeat_timeout_s = 3.0
    cluster.use_scenario([{"hang": 600}, {"hang": 600}])
    cluster.worker("w1", concurrency=1)
    holding = cluster.submit("the first run")
    first = newest_run_id(cluster.database)
    wait_for_step(cluster.database, first, {"running"})
    waiting = cluster.submit("the second run")
    deadline = time.monotonic() + 60
    while newest_run_id(cluster.database) == first and time.monotonic() < deadline:
        time.sleep(0.05)
    second = newest_run_id(cluster.database)
    assert second != first
    server = serve(cluster)
    assert server.get(f"/api/runs/{second}")["status"] == "running"
    status, body, _ = server.request("POST", f"/api/runs/{second}/cancel", {})
    assert status == 202, body
    assert wait_for_run(cluster.database, second, timeout_s=60).status == "cancelled"
    assert wait_for_workflow(cluster.temporal.address, second) == "CANCELED"
    assert waiting.join(120).exit_code == 130, waiting.output
    # The first run still holds its slot, untouched; then it is cancelled the same way.
    assert server.get(f"/api/runs/{first}")["status"] == "running"
    status, body, _ = server.request("POST", f"/api/runs/{first}/cancel", {})
    assert status == 202, body
    assert holding.join(120).exit_code == 130, holding.output
    assert wait_for_run(cluster.database, first, timeout_s=30).status == "cancelled"


def test_a_run_started_from_the_dashboard_runs_on_the_cluster(cluster: Cluster) -> None:
    # The implement step hangs a while: the dashboard is stopped meanwhile, and the run goes on.
    cluster.use_scenario([FIXED, {"hang": 3}, {"text": "done"}, {"text": APPROVE}])
    cluster.worker("w1")
    server = serve(cluster)
    status, body, _ = server.request("POST", "/api/runs", {"task": "make greet() return Hello"})
    assert status == 202, body
    run_id = body["run_id"]
    wait_for_step(cluster.database, run_id, {"running"})
    stopped = server.process.stop()  # type: ignore[attr-defined]
    assert stopped is not None and stopped.exit_code == 130
    record = wait_for_run(cluster.database, run_id, timeout_s=120)
    assert record.status == "approved"
    with Store(cluster.database) as store:
        assert store.is_cluster_run(run_id)
        assert [(s.step_id, s.status) for s in store.steps(run_id)] == [
            ("i1-s1-implement", "succeeded"),
            ("i1-s2-review", "succeeded"),
        ]
    # Both steps ran on the worker, none in the dashboard's process; the branch is in the repository.
    assert [w for w, _ in step_attempts(cluster.temporal.address, run_id)] == ["w1", "w1"]
    assert cluster.cli_git("show", f"orchestrator/{run_id}:app.py") == FIXED["write_file"]["content"]
