"""`orchestrator run` with a PostgreSQL store configured, as a user runs it: the fake agent's run, its
steps and its events go to PostgreSQL (no state.db is made), and `runs list` / `runs show` read them
back from there. $ORCHESTRATOR_DATABASE_URL wins over the configuration's `cluster.database`."""

from __future__ import annotations

import json

import yaml

from orchestrator.store import SCHEMA_VERSION, Store
from orchestrator.testing.fault_project import FaultProject

APPROVE = 'Fine.\n```json\n{"verdict": "approve", "findings": []}\n```'
TURNS = [
    {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
    {"text": "done"},
    {"text": APPROVE},
]


def test_a_run_on_a_postgresql_store_is_stored_there_and_read_back(tmp_path, postgres_server):
    url = postgres_server.create_database()
    other = postgres_server.create_database()
    try:
        project = FaultProject(tmp_path, turns=TURNS)
        config = yaml.safe_load(project.config.read_text())
        project.config.write_text(yaml.safe_dump({**config, "cluster": {"database": url}}))

        ran = project.run("--json", limit_s=90)
        assert ran.code == 0, ran.output
        report = json.loads(ran.result.stdout)
        run_id = report["run_id"]
        assert report["status"] == "approved"
        assert not (project.state / "state.db").exists()  # nothing went to the embedded store

        with Store(url) as store:
            run = store.get_run(run_id)
            assert (run.status, run.task) == ("approved", "make greet() return Hello")
            steps = store.steps(run_id)
            assert [(s.task, s.status) for s in steps] == [
                ("implement", "succeeded"),
                ("review", "succeeded"),
            ]
            assert steps[0].commit and steps[0].files_changed == ["app.py"]
            events = store.events(run_id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert events[0].event.type == "run_started" and events[-1].event.type == "run_finished"
            assert {"step_started", "step_finished", "agent"} <= {e.event.type for e in events}

        listed = project.orchestrator("runs", "list", "--all", "--config", str(project.config), limit_s=30)
        assert listed.code == 0, listed.output
        assert run_id in listed.result.stdout and "approved" in listed.result.stdout
        shown = project.orchestrator("runs", "show", run_id, "--config", str(project.config), limit_s=30)
        assert shown.code == 0, shown.output
        assert run_id in shown.result.stdout and "implement" in shown.result.stdout

        doctor = project.orchestrator("doctor", "--json", "--config", str(project.config), limit_s=60)
        checks = {c["name"]: c for c in json.loads(doctor.result.stdout)["checks"]}
        assert checks["store"]["level"] == "ok", doctor.output
        assert checks["store"]["detail"].endswith(f"(PostgreSQL, schema {SCHEMA_VERSION}, 1 runs)")

        # The environment's URL wins: another (empty) database has no such run.
        elsewhere = project.orchestrator(
            "runs",
            "show",
            run_id,
            "--config",
            str(project.config),
            limit_s=30,
            ORCHESTRATOR_DATABASE_URL=other,
        )
        assert elsewhere.code == 2 and f"no run {run_id!r}" in elsewhere.result.stderr, elsewhere.output
        project.assert_untouched()
        project.assert_no_leak(ran.output, listed.output, shown.output)
    finally:
        postgres_server.drop_database(url)
        postgres_server.drop_database(other)


def test_an_unreachable_postgresql_store_exits_2_naming_it_without_its_password(tmp_path):
    project = FaultProject(tmp_path)
    url = f"postgresql://orch:pw-7c1e9b44@/runs?host={tmp_path}&port=1"
    listed = project.orchestrator("runs", "list", "--all", limit_s=30, ORCHESTRATOR_DATABASE_URL=url)
    assert listed.code == 2, listed.output
    err = listed.result.stderr
    assert "Traceback" not in err and "internal error" not in err
    assert f"postgresql://orch@/runs?host={tmp_path}&port=1" in err and "cannot be reached" in err
    assert "pw-7c1e9b44" not in listed.output
    ran = project.run(limit_s=30, ORCHESTRATOR_DATABASE_URL=url)
    assert ran.code == 2 and "pw-7c1e9b44" not in ran.output, ran.output
    assert project.run_branches() == []
    project.assert_untouched()
    project.assert_no_leak(listed.output, ran.output, secrets=["pw-7c1e9b44"])
