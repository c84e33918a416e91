"""The JSON API against a live server: the same shapes as the CLI's --json, the same refusals, and
control (cancel, follow-up) reaching a run owned by another process through the store."""

from __future__ import annotations

import json
import time

from .conftest import APPROVE, World


def finished_run_from_a_terminal(world: World) -> dict:
    process = world.run_in_terminal()
    process.join(120)
    assert process.result is not None and process.result.exit_code == 0, "\n".join(process.lines)
    return json.loads(world.cli("runs", "show", "last", "--json", check=True).stdout)


def test_api_shapes_are_the_clis(world):
    report = finished_run_from_a_terminal(world)
    run_id = report["run_id"]
    server = world.serve()
    assert server.get(f"/api/runs/{run_id}") == report
    assert server.get("/api/runs") == json.loads(
        world.cli("runs", "list", "--all", "--json", check=True).stdout
    )
    diff = server.get(f"/api/runs/{run_id}/diff")
    cli_diff = json.loads(world.cli("runs", "diff", run_id, "--json", check=True).stdout)
    assert {k: diff[k] for k in cli_diff} == cli_diff and "+    return 'Hello'" in diff["diff"]
    assert diff["stats"] == [
        {"path": "app.py", "added": 1, "removed": 1, "binary": False, "generated": False, "collapsed": False}
    ]
    step = server.get(f"/api/runs/{run_id}/diff?step=i1-s1-implement&file=app.py")
    assert step["files"] == ["app.py"] and step["diff"].startswith("diff --git a/app.py b/app.py")
    assert server.get(f"/api/runs/{run_id}/log") == json.loads(
        world.cli("runs", "log", run_id, "--json").stdout
    )
    assert server.get("/api/agents") == json.loads(world.cli("agents", "--json", check=True).stdout)
    listed = json.loads(
        world.cli("workflows", "list", "--json", "--repo", str(world.repo), check=True, config=False).stdout
    )
    assert server.get("/api/workflows") == listed
    events = server.get(f"/api/runs/{run_id}/events?after=0")
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(1, events["latest"] + 1))
    assert events["events"][0]["event"]["type"] == "run_started"
    later = server.get(f"/api/runs/{run_id}/events?after=3")
    assert [e["seq"] for e in later["events"]] == seqs[3:]
    summary = server.get(f"/api/runs/{run_id}/summary")
    assert summary["commands"]["resume"] == f"orchestrator runs resume {run_id}"


def test_refusals_carry_the_clis_message(world):
    report = finished_run_from_a_terminal(world)
    run_id = report["run_id"]
    server = world.serve()
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/rollback", {"to": "no-such-step"})
    cli = world.cli("runs", "rollback", run_id, "--to", "no-such-step")
    assert status == 422 and cli.returncode == body["exit_code"] == 1
    assert f"error: {body['text']}" in cli.stderr
    # A merge that would overwrite the user's uncommitted work.
    (world.repo / "app.py").write_text("my own edit\n")
    preview = server.get(f"/api/runs/{run_id}/merge-preview")
    assert preview["overwrites_uncommitted"] == ["app.py"] and preview["can_merge"] is False
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/merge", {})
    cli = world.cli("runs", "merge", run_id)
    assert status == 409 and f"error: {body['text']}" in cli.stderr
    assert "overwrite your uncommitted changes to: app.py" in body["error"]
    status, body, _ = server.request("POST", "/api/runs", {"task": "x", "repo": str(world.tmp)})
    assert status == 409 and "not one of the repositories" in body["error"] and "--repo" in body["hint"]


def test_merge_after_the_preview(world):
    report = finished_run_from_a_terminal(world)
    server = world.serve()
    preview = server.get(f"/api/runs/{report['run_id']}/merge-preview")
    assert (
        preview["ahead"] == 1 and preview["behind"] == 0 and preview["fast_forward"] and preview["can_merge"]
    )
    merged = server.get(f"/api/runs/{report['run_id']}/merge-preview")
    status, result, _ = server.request("POST", f"/api/runs/{report['run_id']}/merge", {})
    assert status == 200 and result["fast_forward"] and result["target_branch"] == "main"
    assert (world.repo / "app.py").read_text() == "def greet():\n    return 'Hello'\n"
    assert merged == preview


def test_a_run_started_from_the_api(world):
    server = world.serve()
    status, started, _ = server.request(
        "POST", "/api/runs", {"task": "make greet() return Hello", "repo": str(world.repo)}
    )
    assert status == 202, started
    assert started["command"] == f"orchestrator run 'make greet() return Hello' --repo {world.repo}"
    report = server.wait_run(started["run_id"])
    assert report["status"] == "approved"
    assert json.loads(world.cli("runs", "show", started["run_id"], "--json").stdout)["status"] == "approved"


def test_cancel_reaches_a_run_in_another_process(world):
    world.set_turns([{"hang": 600}])
    terminal = world.run_in_terminal()
    server = world.serve()
    run_id = server.wait_for_runs(1)[0]["id"]
    deadline = time.monotonic() + 60
    while not any(
        e["event"]["type"] == "step_started" for e in server.get(f"/api/runs/{run_id}/events")["events"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/cancel", {})
    assert status == 202, body
    result = terminal.join(60)
    assert result is not None and result.exit_code == 130
    assert time.monotonic() - started < 30
    report = server.get(f"/api/runs/{run_id}")
    assert report["status"] == "cancelled"
    texts = [e["event"].get("text") for e in server.get(f"/api/runs/{run_id}/events")["events"]]
    assert "cancel requested from the dashboard" in texts
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/cancel", {})
    assert status == 409 and body["error"] == f"run {run_id} is not running (it is cancelled)"


def test_a_follow_up_reaches_a_run_in_another_process(world):
    world.set_turns(
        [
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
            {"text": "done"},
            {"hang": 4},  # the review takes a while: time to send the follow-up
            {"text": APPROVE},
            {"write_file": {"path": "bye.py", "content": "def bye():\n    return 'Bye'\n"}},
            {"text": "added bye()"},
            {"text": APPROVE},
        ]
    )
    terminal = world.run_in_terminal()
    server = world.serve()
    run_id = server.wait_for_runs(1)[0]["id"]
    status, body, _ = server.request("POST", f"/api/runs/{run_id}/follow-up", {"text": "also add bye()"})
    assert status == 202 and body["queued"] is True
    result = terminal.join(120)
    assert result is not None and result.exit_code == 0, "\n".join(terminal.lines)
    report = server.get(f"/api/runs/{run_id}")
    assert report["status"] == "approved" and report["iterations"] == 2
    assert [s["id"] for s in report["steps"] if s["commit"]] == ["i1-s1-implement", "i2-s1-implement"]
    texts = [e["event"].get("text") for e in server.get(f"/api/runs/{run_id}/events")["events"]]
    assert "follow-up received: also add bye()" in texts


def test_a_follow_up_on_a_finished_run_is_run_by_the_dashboard(world):
    world.set_turns(
        [
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
            {"text": "done"},
            {"text": APPROVE},
            {"write_file": {"path": "bye.py", "content": "def bye():\n    return 'Bye'\n"}},
            {"text": "added bye()"},
            {"text": APPROVE},
        ]
    )
    report = finished_run_from_a_terminal(world)
    server = world.serve()
    status, body, _ = server.request(
        "POST", f"/api/runs/{report['run_id']}/follow-up", {"text": "also add bye()"}
    )
    assert status == 202 and body["queued"] is False
    time.sleep(0.5)
    done = server.wait_run(report["run_id"])
    assert done["status"] == "approved" and done["iterations"] == 2
    status, body, _ = server.request("POST", f"/api/runs/{report['run_id']}/follow-up", {"text": ""})
    assert status == 409 and body["error"] == "a follow-up needs some text"


def test_metrics_of_runs_from_any_process_and_an_audit_trail_of_actions(world):
    server = world.serve()
    report = finished_run_from_a_terminal(world)
    status, body, headers = server.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'orchestrator_runs_total{status="approved"' in body
    assert server.request("GET", "/metrics", token=None)[0] == 401
    status, _, _ = server.request("POST", f"/api/runs/{report['run_id']}/discard", {})
    assert status == 200
    from orchestrator.audit import AuditLog

    entries = list(AuditLog.for_state_home(world.tmp / "state").entries())
    actions = [e for e in entries if e.get("kind") == "dashboard_action"]
    assert [(a["action"], a["target"], a["remote_addr"]) for a in actions] == [
        ("discard", report["run_id"], "127.0.0.1")
    ]
