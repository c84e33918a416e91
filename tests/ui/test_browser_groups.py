"""The run page's groups in a real headless Chromium against a live `orchestrator serve`: a best of 3
by the fake agent (its attempts side by side, live as they run, the winner and the kept branches) and a
plan (the subtask graph with each subtask's state and merge)."""

from __future__ import annotations

import json
import re
import sys

import pytest
from playwright.sync_api import expect

from .browser import chromium
from .test_browser import open_page

CHECK = f"{sys.executable} -c \"import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\""
HOSTILE = '<img src=x onerror="window.__pwned = 1"><b>bold</b>'


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "chromium-profile", width=1280, height=1000) as context:
        yield context


def member(world, name: str, turns: list) -> None:
    """The turns of one member of a group (the fake agent reads scenario.<member>.yaml)."""
    world.scenario.with_name(f"scenario.{name}.yaml").write_text(json.dumps({"turns": turns}))


def write_app(body: str) -> dict:
    return {"write_file": {"path": "app.py", "content": f"def greet():\n    return {body}\n"}}


def test_best_of_3_attempts_side_by_side_live_then_the_winner(world, browser, tmp_path):
    world.set_workflow(
        [
            {
                "task": "implement",
                "attempts": ["fake", "fake", "fake"],
                "select": ["gates", "smallest_diff", "cost"],
            },
            {"run": CHECK, "name": "check"},
        ],
        max_iterations=1,
    )
    member(world, "fake", [{"error": 500, "message": f"model down {HOSTILE}"}])  # fails, its error untrusted
    notes = {"write_file": {"path": "notes.txt", "content": "".join(f"line {i}\n" for i in range(20))}}
    member(world, "fake-2", [write_app("'Hello'"), notes, {"text": "done"}])  # passes, bigger
    member(world, "fake-3", [{"hang": 6}, write_app("'Hello'"), {"text": "done"}])  # passes, small, late
    server = world.serve()
    terminal = world.run_in_terminal()
    run_id = server.wait_for_runs(1)[0]["id"]
    page, console = open_page(browser, server, f"/runs/{run_id}")
    attempts = page.locator("#groups section.attempts")
    # Live: fake-2 has finished while fake-3 still works.
    expect(attempts.locator("h3 .group-state")).to_have_text("running", timeout=60_000)
    expect(attempts.locator("tr[data-attempt=fake-3] .status")).to_have_text("running", timeout=30_000)
    expect(attempts.locator("tr[data-attempt=fake-2] .status")).to_have_text("done", timeout=30_000)
    page.screenshot(path=str(tmp_path / "attempts-running.png"), full_page=True)
    # Decided: the winner, why, and every attempt's branch kept.
    expect(attempts.locator("h3 .group-state")).to_have_text("chosen: fake-3", timeout=60_000)
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=60_000)
    rows = attempts.locator("tbody tr")
    expect(rows).to_have_count(3)
    winner = attempts.locator("tr.winner")
    expect(winner).to_have_attribute("data-attempt", "fake-3")
    expect(winner.locator(".status")).to_have_text("chosen")
    expect(winner.locator("td.gates")).to_have_text("1/1")
    expect(winner.locator("td.agent")).to_have_text("fake")
    expect(attempts.locator("tr[data-attempt=fake-2] .status")).to_have_text("not chosen")
    expect(attempts.locator("tr[data-attempt=fake] .status")).to_have_text("failed")
    for name in ("fake", "fake-2", "fake-3"):
        expect(attempts.locator(f"tr[data-attempt={name}] code.branch")).to_have_text(
            f"orchestrator/{run_id}-{name}"
        )
    expect(attempts.locator(".why")).to_contain_text("fake-3 before fake-2 on smallest_diff")
    report = server.get(f"/api/runs/{run_id}")
    costs = {a["name"]: a["cost_usd"] for a in report["attempts"][0]["attempts"]}
    expect(attempts.locator("tr[data-attempt=fake-2] td.cost")).to_have_text(f"${costs['fake-2']:.4f}")
    # The failed attempt's error is the agent's text, shown as text.
    expect(attempts.locator("tr[data-attempt=fake] .error-text")).to_contain_text(HOSTILE)
    assert page.evaluate("window.__pwned") is None
    assert attempts.locator("img, b").count() == 0
    page.screenshot(path=str(tmp_path / "attempts-done.png"), full_page=True)
    assert terminal.join(60).exit_code == 0
    assert [e for e in console.errors if "Content Security Policy" in e or "Refused" in e] == []


def plan_answer(*subtasks: dict) -> dict:
    return {"text": "The plan.\n```json\n" + json.dumps({"subtasks": list(subtasks)}) + "\n```"}


def subtask(sid: str, depends_on: tuple[str, ...] = ()) -> dict:
    return {"id": sid, "prompt": f"do {sid}", "depends_on": list(depends_on), "files": []}


def test_a_plan_s_subtask_graph_with_each_state_and_merge(world, browser, tmp_path):
    world.set_workflow(
        [
            {"task": "plan", "agent": "fake", "max_subtasks": 4},
            {"task": "implement", "for_each": "subtask", "agents": ["fake"]},
            {"merge": "subtasks"},
        ],
        max_iterations=1,
    )
    world.set_turns([plan_answer(subtask("api"), subtask("docs"), subtask("ui", depends_on=("api", "docs")))])
    member(world, "api", [{"write_file": {"path": "api.txt", "content": "api\n"}}, {"text": "api done"}])
    member(
        world, "docs", [{"hang": 5}, {"write_file": {"path": "docs.txt", "content": "d\n"}}, {"text": "ok"}]
    )
    member(world, "ui", [{"write_file": {"path": "ui.txt", "content": "ui\n"}}, {"text": "ui done"}])
    server = world.serve()
    terminal = world.run_in_terminal()
    run_id = server.wait_for_runs(1)[0]["id"]
    page, _ = open_page(browser, server, f"/runs/{run_id}")
    graph = page.locator("#groups section.subtasks")
    # Live: api merged while docs still works and ui waits for both.
    expect(graph.locator("tr[data-subtask=api] .status")).to_have_text("merged", timeout=60_000)
    expect(graph.locator("tr[data-subtask=docs] .status")).to_have_text("running")
    expect(graph.locator("tr[data-subtask=ui] .status")).to_have_text("pending")
    expect(graph.locator("tr[data-subtask=ui] td").nth(2)).to_have_text("api, docs")
    expect(graph.locator("tr[data-subtask=ui] td").nth(0)).to_have_text("2")  # the second wave
    page.screenshot(path=str(tmp_path / "subtasks-running.png"), full_page=True)
    expect(graph.locator("h3 .group-state")).to_have_text(
        "3 of 3 merged; merged in order api, docs, ui", timeout=60_000
    )
    expect(page.locator("#run-status .status")).to_have_text("approved", timeout=60_000)
    for sid in ("api", "docs", "ui"):
        row = graph.locator(f"tr[data-subtask={sid}]")
        expect(row.locator(".status")).to_have_text("merged")
        expect(row.locator("code.branch")).to_have_text(f"orchestrator/{run_id}-st-{sid}")
        expect(row.locator("td").nth(5).locator("code")).to_have_text(re.compile(r"^[0-9a-f]{10}$"))
    page.screenshot(path=str(tmp_path / "subtasks-done.png"), full_page=True)
    assert terminal.join(60).exit_code == 0
