"""The dashboard on a PostgreSQL store: `orchestrator serve` and `orchestrator run` in processes of
their own share the database only (no state.db anywhere), and a run started while the dashboard is up
appears in its JSON API and reaches its end there. (The server's pushes are woken by LISTEN/NOTIFY,
orchestrator/store/listen.py, tested in tests/test_store_backends.py.)"""

from __future__ import annotations

import json

import yaml

from .conftest import World


def on_postgres(world: World, url: str) -> None:
    config = yaml.safe_load(world.config.read_text())
    world.config.write_text(yaml.safe_dump({**config, "cluster": {"database": url}}))


def test_the_dashboard_lists_runs_of_a_postgresql_store_live(world, postgres_url):
    on_postgres(world, postgres_url)
    server = world.serve()
    assert server.get("/api/runs") == []
    process = world.run_in_terminal()
    runs = server.wait_for_runs(1)
    run_id = runs[0]["id"]
    report = server.wait_run(run_id)
    process.join(120)
    assert process.result is not None and process.result.exit_code == 0, "\n".join(process.lines)
    assert report["status"] == "approved"
    assert report == json.loads(world.cli("runs", "show", run_id, "--json", check=True).stdout)
    events = server.get(f"/api/runs/{run_id}/events?after=0")
    assert [e["seq"] for e in events["events"]] == list(range(1, events["latest"] + 1))
    assert events["events"][-1]["event"]["type"] == "run_finished"
    assert not list(world.tmp.rglob("state.db"))
