"""The groups of a run through the JSON API (what the run page draws) while the run goes and after it,
and `runs show` of the same run: the same report, its group lines within 80 columns."""

from __future__ import annotations

import json
import sys
import time

from .conftest import World

CHECK = f"{sys.executable} -c \"import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\""


def member(world: World, name: str, turns: list) -> None:
    world.scenario.with_name(f"scenario.{name}.yaml").write_text(json.dumps({"turns": turns}))


def write_app(body: str) -> dict:
    return {"write_file": {"path": "app.py", "content": f"def greet():\n    return {body}\n"}}


def test_a_best_of_3_through_the_api_as_it_runs_and_after(world):
    world.set_workflow(
        [
            {"task": "implement", "attempts": ["fake", "fake", "fake"], "select": ["gates", "smallest_diff"]},
            {"run": CHECK, "name": "check"},
        ],
        max_iterations=1,
    )
    member(world, "fake", [write_app("'hi there'"), {"text": "done"}])  # fails the gate
    member(world, "fake-2", [write_app("'Hello'"), {"text": "done"}])
    member(world, "fake-3", [{"hang": 8}, write_app("'Hello'"), {"text": "done"}])
    server = world.serve()
    terminal = world.run_in_terminal()
    run_id = server.wait_for_runs(1)[0]["id"]
    deadline = time.monotonic() + 60
    while True:  # until fake and fake-2 are done while fake-3 still works
        groups = server.get(f"/api/runs/{run_id}")["attempts"]
        states = {a["name"]: a["state"] for a in groups[0]["attempts"]} if groups else {}
        if states.get("fake") == "done" and states.get("fake-2") == "done":
            break
        assert time.monotonic() < deadline, groups
        time.sleep(0.2)
    [group] = groups
    assert group["running"] is True and group["winner"] is None
    assert states["fake-3"] == "running"
    by_name = {a["name"]: a for a in group["attempts"]}
    assert by_name["fake"]["gates_passed"] == 0 and by_name["fake-2"]["gates_passed"] == 1
    assert by_name["fake-3"]["branch"] == f"orchestrator/{run_id}-fake-3"
    assert terminal.join(120).exit_code == 0
    report = server.get(f"/api/runs/{run_id}")
    [group] = report["attempts"]
    assert group["running"] is False and group["winner"] == "fake-2"  # a tie on the diff: listed first
    assert [a["state"] for a in group["attempts"]] == ["not chosen", "chosen", "not chosen"]
    assert all(isinstance(a["cost_usd"], float) for a in group["attempts"])
    assert report == json.loads(world.cli("runs", "show", run_id, "--json", check=True).stdout)
    text = world.cli("runs", "show", run_id, check=True).stdout
    start = text.index("attempts (")
    lines = text[start : text.index("\ngate ", start)].splitlines()
    assert lines[0] == "attempts (i1-s1-implement): chosen fake-2, by gates, smallest_diff"
    assert any(line.startswith("  * fake-2     chosen     1/1   -") for line in lines)
    assert f"  branch fake-3: orchestrator/{run_id}-fake-3" in lines
    assert all(len(line) <= 80 for line in lines)
