"""What the two backends must agree on beyond single calls: writers in several processes, migrations
from an older schema, first opens at once, owners on other machines; and the backend layer's own pure
parts (the SQL and URL rewriting) and faults."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orchestrator.errors import ConfigError, StoreError, UsageError
from orchestrator.events import Notice
from orchestrator.proc import child_env, run_command
from orchestrator.store import DATABASE_URL_VAR, SCHEMA_VERSION, Store, store_location
from orchestrator.store.backend import backend_for
from orchestrator.store.postgres_backend import ddl_for_postgres, redact_url, to_pyformat
from orchestrator.store.schema import MIGRATIONS
from orchestrator.testing.postgres import PostgresServer, process_running
from tests.store_helpers import make_run


def env_for_children() -> dict[str, str]:
    extra = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    return child_env(os.environ, extra)


# --- several processes ------------------------------------------------------------------------------

APPENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.events import Notice
    from orchestrator.store import Store
    location, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    with Store(location) as store:
        store.last_seq("r1")  # connected before the start, so every writer starts at once
        while not go.exists():
            time.sleep(0.005)
        for n in range(count):
            store.add_event("r1", Notice(run_id="r1", text=f"{name} {n}"))
    """
)


def test_processes_appending_to_one_run_get_gap_free_ordered_sequence_numbers(store_location, tmp_path):
    writers, per_writer = 4, 120
    with Store(store_location) as store:
        make_run(store)
        go = tmp_path / "go"
        with ThreadPoolExecutor(max_workers=writers) as pool:
            futures = [
                pool.submit(
                    run_command,
                    [sys.executable, "-c", APPENDER, store_location, f"w{i}", str(per_writer), str(go)],
                    tmp_path,
                    env=env_for_children(),
                    timeout_s=120,
                )
                for i in range(writers)
            ]
            time.sleep(0.5)  # the writers are importing and connecting; the file lets them go at once
            go.write_text("")
            results = [f.result() for f in futures]
        assert [r.stderr[-600:] for r in results if not r.ok] == []
        stored = store.events("r1")
        assert [s.seq for s in stored] == list(range(1, writers * per_writer + 1))
        texts = [s.event.text for s in stored if isinstance(s.event, Notice)]
        for i in range(writers):
            # Each writer's events in the order it wrote them: a sequence number is given at commit.
            assert [t for t in texts if t.startswith(f"w{i} ")] == [f"w{i} {n}" for n in range(per_writer)]


OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.store import Store
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.002)
    with Store(sys.argv[1]) as store:
        print(store.schema_version())
    """
)


def test_first_opens_at_once_migrate_once(new_store_location, tmp_path):
    for round_ in range(3):
        location = new_store_location()
        go = tmp_path / f"go-{round_}"
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(
                    run_command,
                    [sys.executable, "-c", OPENER, location, str(go)],
                    tmp_path,
                    env=env_for_children(),
                    timeout_s=60,
                )
                for _ in range(8)
            ]
            time.sleep(0.4)
            go.write_text("")
            results = [f.result() for f in futures]
        assert [r.stderr[-600:] for r in results if not r.ok] == []
        assert {r.stdout.strip() for r in results} == {str(SCHEMA_VERSION)}
        with Store(location) as store:
            make_run(store)
            assert store.request_control("r1", "cancel") == 1  # one control_requests table, made once


# --- migrations -------------------------------------------------------------------------------------


def test_a_store_at_schema_1_is_migrated_forward_keeping_its_runs(store_location):
    """A store written by the first released schema (before control requests) opens, is migrated to
    the current version by the same mechanism on both backends, and keeps what it held."""
    backend = backend_for(store_location)
    backend.prepare()
    conn = backend.connect(5.0)
    try:
        backend.begin_write(conn)
        for statement in MIGRATIONS[0]:
            conn.execute(backend.ddl(statement))
        conn.execute(
            "INSERT INTO runs (id, repo, task, workflow_name, workflow_json, base, branch, status,"
            " created_at, updated_at) VALUES ('old', '/tmp', 'from before', 'w', '{}', 'HEAD', 'b', 'approved', 1, 1)"
        )
        backend.set_schema_version(conn, 1)
        conn.execute("COMMIT")
        assert backend.schema_version(conn) == 1
    finally:
        conn.close()
    with Store(store_location) as store:
        assert store.schema_version() == SCHEMA_VERSION
        old = store.get_run("old")
        assert (old.task, old.status, old.options.budget_usd) == ("from before", "approved", None)
        assert store.pending_controls("old") == []  # the table migration 2 added
        store.request_control("old", "follow_up", {"text": "again"})
        assert [r.kind for r in store.pending_controls("old")] == ["follow_up"]
        assert store.fence("old") == 0  # the column migration 3 added
        assert store.acquire_fence("old") == 1
        assert store._conn().execute(INDEX_NAMED[store_location.startswith("postgresql")]).fetchall()


# Migration 5's index, as each backend lists its indexes.
INDEX_NAMED = {
    False: "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'events_by_type'",
    True: "SELECT indexname FROM pg_indexes WHERE indexname = 'events_by_type'",
}


def test_a_runs_follow_ups_are_found_through_the_index_not_its_whole_log(tmp_path):
    """SQLite only (its planner answers the same on any size of table): the lookup every engine start
    makes (engine/follow_ups.py) reads the run's FollowUp events by index."""
    with Store(tmp_path / "state.db") as store:
        make_run(store)
        plan = store._conn().execute(
            "EXPLAIN QUERY PLAN SELECT run_id, seq, step_id, data FROM events"
            " WHERE run_id = ? AND seq > ? AND type IN (?) ORDER BY seq",
            ("r1", 0, "follow_up"),
        )
        assert "events_by_type" in " ".join(str(tuple(row)) for row in plan.fetchall())


def test_creating_a_run_twice_is_refused(store):
    make_run(store)
    with pytest.raises(UsageError, match="already exists"):
        make_run(store)


# --- where the store is -----------------------------------------------------------------------------


def test_the_store_location_comes_from_the_environment_then_the_configuration(tmp_path):
    url = "postgresql://u@db.example/orch"
    assert store_location(None, {}, tmp_path) == tmp_path / "state.db"
    assert store_location(url, {}, tmp_path) == url
    assert store_location(url, {DATABASE_URL_VAR: "postgresql://other/x"}, tmp_path) == "postgresql://other/x"
    with pytest.raises(ConfigError, match="ORCHESTRATOR_DATABASE_URL must be a postgresql:// URL"):
        store_location(None, {DATABASE_URL_VAR: "mysql://x/y"}, tmp_path)


# --- PostgreSQL's own -------------------------------------------------------------------------------


def test_placeholders_become_psycopg_s_outside_string_literals():
    assert to_pyformat("SELECT a FROM t WHERE b = ? AND c = '?' AND d LIKE 'x%'") == (
        "SELECT a FROM t WHERE b = %s AND c = '?' AND d LIKE 'x%'"
    )
    assert to_pyformat("SELECT 5 % ?, 'it''s ?'") == "SELECT 5 %% %s, 'it''s ?'"


def test_the_schema_is_rewritten_for_postgresql():
    control = ddl_for_postgres(MIGRATIONS[1][0])
    assert "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in control
    assert "created_at DOUBLE PRECISION NOT NULL" in control  # not float4: timestamps keep their digits
    assert "payload_json TEXT COLLATE \"C\" NOT NULL DEFAULT '{}'" in control
    events = ddl_for_postgres(MIGRATIONS[0][-1])
    assert "WITHOUT ROWID" not in events and events.rstrip().endswith(")")


def test_a_password_in_the_url_is_in_no_message():
    assert redact_url("postgresql://orch:hunter2pw@db:5432/runs") == "postgresql://orch@db:5432/runs"
    assert redact_url("postgresql:///runs?host=/tmp/s&password=hunter2pw") == "postgresql:///runs?host=/tmp/s"


def test_an_unreachable_server_is_a_clear_store_error(tmp_path):
    url = f"postgresql://orch:hunter2pw@/runs?host={tmp_path}&port=1"
    with pytest.raises(StoreError) as caught:
        Store(url)
    error = caught.value
    assert error.problem == "unreadable" and error.exit_code == 2
    assert "cannot be reached" in str(error) and f"postgresql://orch@/runs?host={tmp_path}&port=1" in str(
        error
    )
    assert "hunter2pw" not in str(error) and "hunter2pw" not in (error.hint or "")
    assert "ORCHESTRATOR_DATABASE_URL" in (error.hint or "")


def test_a_missing_database_is_a_clear_store_error(postgres_server):
    url = postgres_server.url("no_such_database")
    with pytest.raises(StoreError, match="cannot be reached.*no_such_database") as caught:
        Store(url)
    assert caught.value.problem == "unreadable"


def test_a_row_lock_held_past_busy_timeout_is_busy_not_a_crash(postgres_url):
    with Store(postgres_url) as owner, Store(postgres_url, busy_timeout_s=0.3) as other:
        make_run(owner)
        with owner._write() as tx:
            tx.execute("SELECT id FROM runs WHERE id = 'r1' FOR UPDATE")
            with pytest.raises(StoreError) as caught:
                other.add_event("r1", Notice(run_id="r1", text="waits for the lock"))
        assert caught.value.problem == "busy" and "locked" in str(caught.value)
        # Nothing half-written: the other store's next write works and takes seq 1.
        assert other.add_event("r1", Notice(run_id="r1", text="now")) == 1


def test_sqlite_stays_embedded_with_no_driver_loaded(tmp_path):
    """The default store imports no PostgreSQL driver: the `[cluster]` extra stays optional."""
    code = "import sys; from orchestrator.store import Store; Store(sys.argv[1]).close(); print('psycopg' in sys.modules)"
    result = run_command(
        [sys.executable, "-c", code, str(tmp_path / "state.db")], tmp_path, env=env_for_children(), check=True
    )
    assert result.stdout.strip() == "False"
    assert Path(tmp_path / "state.db").is_file()


def test_the_test_server_starts_in_a_temporary_folder_and_stops_leaving_nothing():
    server = PostgresServer().start()
    pid, root = server.postmaster_pid, server.root
    try:
        assert pid is not None and process_running(pid)
        assert os.stat(server.data).st_uid != 0  # PostgreSQL refuses to run as root: it does not
        url = server.create_database()
        name = urlsplit(url).path.lstrip("/")
        with Store(url) as store:
            make_run(store)
        assert name in server.databases()
        server.drop_database(url)
        assert name not in server.databases()
    finally:
        server.stop()
    # Gone (a zombie until the machine's init reaps it: the server is init's child, not ours).
    assert not process_running(pid) and not root.exists()


WRITER = textwrap.dedent(
    """
    import sys
    from orchestrator.events import Notice
    from orchestrator.store import Store
    with Store(sys.argv[1]) as store:
        store.add_event("r1", Notice(run_id="r1", text="from another process"))
    """
)


def test_a_change_from_another_process_wakes_a_listener(store, store_backend, tmp_path):
    """PostgreSQL: NOTIFY at commit, LISTEN in the follower, so the dashboard learns of a worker's
    event without waiting for its next poll. SQLite: none (its file is watched instead)."""
    make_run(store)
    woken: list[str] = []
    arrived = threading.Event()

    def wake(run_id: str) -> None:
        woken.append(run_id)
        arrived.set()

    listener = store.change_listener(wake)
    if store_backend == "sqlite":
        assert listener is None
        return
    listener.start()
    try:
        run_command(
            [sys.executable, "-c", WRITER, store_location_of(store)],
            tmp_path,
            env=env_for_children(),
            check=True,
        )
        assert arrived.wait(30), "no wake-up"
        assert woken[0] == "r1" and store.last_seq("r1") == 1
    finally:
        listener.stop()
    assert not listener._thread.is_alive()


def test_a_listener_stopped_without_waiting_wakes_no_more_and_ends_on_its_own(postgres_url, tmp_path):
    """What a follower does at a run's end (it does not wait out the listener's poll): no wake-up
    after stop, and the thread ends and closes its connection by itself."""
    with Store(postgres_url) as store:
        make_run(store)
        woken: list[str] = []
        listener = store.change_listener(woken.append)
        assert listener is not None
        listener.start()
        listener.stop(wait=False)
        run_command(
            [sys.executable, "-c", WRITER, postgres_url], tmp_path, env=env_for_children(), check=True
        )
        listener._thread.join(30)
        assert not listener._thread.is_alive() and listener._conn.closed
        assert woken == [] and store.last_seq("r1") == 1


def store_location_of(store: Store) -> str:
    return store._backend.url if store.path is None else str(store.path)


def test_a_lost_connection_fails_one_call_then_is_replaced(postgres_server, postgres_url):
    """A worker's store outlives a server restart or a cut connection: the call that finds the
    connection gone is a StoreError (exit 2, never a crash), the next one connects again."""
    with Store(postgres_url) as store:
        make_run(store)
        pid = store._conn().raw.info.backend_pid
        postgres_server._admin_conn().execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError) as caught:
            store.add_event("r1", Notice(run_id="r1", text="lost"))
        assert caught.value.problem == "unreadable"
        assert store.add_event("r1", Notice(run_id="r1", text="again")) == 1
        assert [s.event.text for s in store.events("r1")] == ["again"]
