"""The store's contract, run on both backends: each test asking for `store` or `store_location` runs
once on an SQLite file and once on a fresh PostgreSQL database (orchestrator/testing/postgres.py).
Tests of what only one backend has say so in their name and why."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from orchestrator.errors import OrchestratorError, RunNotFound
from orchestrator.events import (
    AgentActivity,
    AssistantMessage,
    EventBus,
    GateFinished,
    Notice,
    Result,
    RunFinished,
    RunStarted,
    SessionStarted,
    StepFinished,
    StepStarted,
    Usage,
)
from orchestrator.logs import SecretMasker
from orchestrator.store import (
    SCHEMA_VERSION,
    RunOptions,
    Store,
    TokenUsage,
    process_token,
)

RUN = "20261121-061502-a1b2c3"


def raw_update(store: Store, sql: str, params=()) -> None:
    """A change no method makes (what another version, or a recycled pid, would leave)."""
    with store._write() as tx:
        tx.execute(sql, params)


def new_run(store: Store, run_id: str = RUN, repo: Path | str = "/tmp/repo", **kw) -> None:
    store.create_run(
        run_id=run_id,
        repo=repo,
        task=kw.pop("task", "add a greeting"),
        workflow_name="default",
        workflow={"name": "default", "steps": [{"agent": "claude", "task": "implement"}]},
        base="main",
        branch=f"orchestrator/{run_id}",
        **kw,
    )


def activity(step_id: str, event, run_id: str = RUN, agent: str = "claude") -> AgentActivity:
    return AgentActivity(run_id=run_id, step_id=step_id, agent=agent, event=event)


# --- the file ---------------------------------------------------------------------------------------


def test_sqlite_wal_mode_and_schema_version(tmp_path):
    """SQLite only: WAL and `PRAGMA user_version` are properties of the file."""
    path = tmp_path / "state" / "orchestrator.db"
    with Store(path) as store:
        assert store.journal_mode() == "wal"
        assert store.schema_version() == SCHEMA_VERSION >= 1
        new_run(store)
        assert path.with_name("orchestrator.db-wal").exists()
    # WAL is a property of the file: a plain connection sees it too, and reopening migrates nothing.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
    with Store(path) as again:
        assert again.get_run(RUN).task == "add a greeting"


def test_the_schema_is_versioned_and_reopening_migrates_nothing(store_location):
    with Store(store_location) as store:
        assert store.schema_version() == SCHEMA_VERSION >= 2
        new_run(store)
    with Store(store_location) as again:
        assert again.schema_version() == SCHEMA_VERSION
        assert again.get_run(RUN).task == "add a greeting"


def test_a_store_from_a_newer_version_is_refused(store_location):
    with Store(store_location) as store, store._write() as tx:
        store._backend.set_schema_version(tx, SCHEMA_VERSION + 1)
    with pytest.raises(OrchestratorError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(store_location)


def test_a_closed_store_refuses_work(store_location):
    store = Store(store_location)
    store.close()
    # A new thread needs a new connection, which a closed store no longer hands out.
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(errors, lambda: store.list_runs()))
    thread.start()
    thread.join()
    assert len(errors) == 1 and "closed" in str(errors[0])


def _capture(errors, fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


# --- runs -------------------------------------------------------------------------------------------


def test_runs_are_created_listed_and_read_back(store, tmp_path):
    repo_a, repo_b = tmp_path / "a", tmp_path / "b"
    options = RunOptions(budget_usd=2.5, timeout_s=600, max_iterations=3, agent_overrides=["review=codex"])
    new_run(store, "r1", repo_a, options=options)
    new_run(store, "r2", repo_b)
    new_run(store, "r3", repo_a)

    run = store.get_run("r1")
    assert run.status == "running" and not run.finished
    assert run.repo == str(repo_a.resolve())
    assert run.workflow == {"name": "default", "steps": [{"agent": "claude", "task": "implement"}]}
    assert run.options == options
    assert run.owner_pid == os.getpid() and run.owner_token == process_token(os.getpid())

    assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.id for r in store.list_runs(repo=repo_a)] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(repo=str(repo_a) + "/")] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(limit=1)] == ["r3"]
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        store.get_run("nope")


def test_options_from_a_newer_version_survive(store):
    new_run(store, options=RunOptions.model_validate({"budget_usd": 1.0, "max_steps": 12}))
    assert store.get_run(RUN).options.model_dump()["max_steps"] == 12


def test_status_updates_stamp_and_clear_finished_at(store):
    new_run(store)
    store.set_workspace(RUN, base_sha="abc123", worktree="/state/worktrees/x")
    done = store.update_run_status(RUN, "not_approved", stop_reason="max_iterations", iterations=3)
    assert (done.status, done.stop_reason, done.iterations) == ("not_approved", "max_iterations", 3)
    assert done.finished and done.finished_at is not None
    assert (done.base_sha, done.worktree) == ("abc123", "/state/worktrees/x")
    again = store.update_run_status(RUN, "running")
    assert again.finished_at is None and again.iterations == 3
    with pytest.raises(ValueError, match="unknown run status"):
        store.update_run_status(RUN, "done")  # type: ignore[arg-type]
    with pytest.raises(RunNotFound):
        store.update_run_status("nope", "failed")


# --- steps and usage --------------------------------------------------------------------------------


def test_usage_follows_the_events_then_the_final_summary(store):
    new_run(store)
    step = "i1-s1-implement"
    started = store.start_step(RUN, step, iteration=1, index=1, agent="claude", task="implement")
    assert (started.status, started.attempts, started.usage) == ("running", 1, TokenUsage())
    assert store.get_run(RUN).iterations == 1

    store.add_event(RUN, activity(step, SessionStarted(session_id="sess-1", model="claude-sonnet-4-5")))
    store.add_event(RUN, activity(step, Usage(input_tokens=100, output_tokens=10, cost_usd=0.01)))
    store.add_event(
        RUN, activity(step, Usage(input_tokens=5, cached_tokens=2, scope="delta", cost_usd=0.001))
    )
    live = store.step(RUN, step)
    assert live is not None and live.session_id == "sess-1"
    assert live.usage == TokenUsage(input_tokens=105, output_tokens=10, cached_tokens=2, cost_usd=0.011)
    # A later "total" replaces what came before.
    store.add_event(RUN, activity(step, Usage(input_tokens=200, output_tokens=20, cost_usd=0.02)))
    assert store.step(RUN, step).usage == TokenUsage(input_tokens=200, output_tokens=20, cost_usd=0.02)

    done = store.finish_step(
        RUN,
        step,
        status="succeeded",
        commit="c0ffee" * 6 + "abcd",
        files_changed=["hello.py", "README.md"],
        usage=TokenUsage(input_tokens=210, output_tokens=21, cost_usd=0.025),
        detail={"notes": ["codex was not installed; claude took the step"]},
    )
    assert done.status == "succeeded" and done.finished_at is not None
    assert done.files_changed == ["hello.py", "README.md"]
    assert done.usage == TokenUsage(input_tokens=210, output_tokens=21, cost_usd=0.025)
    assert done.session_id == "sess-1"  # kept: the summary had none to give

    review = "i1-s2-review"
    store.start_step(RUN, review, iteration=1, index=2, agent="codex", task="review")
    store.finish_step(
        RUN, review, status="succeeded", usage=TokenUsage(input_tokens=50, output_tokens=5), session_id="th-9"
    )
    assert store.usage_by_step(RUN)[review].cost_usd is None
    assert store.usage_by_agent(RUN) == {
        "claude": TokenUsage(input_tokens=210, output_tokens=21, cost_usd=0.025),
        "codex": TokenUsage(input_tokens=50, output_tokens=5),
    }
    # Unpriced steps add tokens, not cost: the total's cost is what is known.
    assert store.usage_total(RUN) == TokenUsage(input_tokens=260, output_tokens=26, cost_usd=0.025)


def test_finish_step_merges_detail_and_rejects_unknown_steps(store):
    new_run(store)
    store.start_step(RUN, "i1-s2-review", iteration=1, index=2, agent="codex", task="review")
    store.finish_step(RUN, "i1-s2-review", status="failed", detail={"a": 1})
    merged = store.finish_step(RUN, "i1-s2-review", status="failed", detail={"b": [1, 2]})
    assert merged.detail == {"a": 1, "b": [1, 2]}
    with pytest.raises(RunNotFound):
        store.finish_step(RUN, "i9-s9-review", status="failed")
    with pytest.raises(ValueError, match="unknown step status"):
        store.finish_step(RUN, "i1-s2-review", status="exploded")  # type: ignore[arg-type]
    with pytest.raises(RunNotFound):
        store.start_step("nope", "i1-s1-implement", iteration=1, index=1, agent="claude", task="implement")


def test_a_restarted_step_keeps_what_earlier_attempts_spent(store):
    new_run(store)
    step = "i2-s1-refine"
    store.start_step(RUN, step, iteration=2, index=1, agent="gemini", task="refine")
    store.add_event(
        RUN, activity(step, Usage(input_tokens=1000, output_tokens=100, cost_usd=0.5), agent="gemini")
    )
    store.finish_step(RUN, step, status="interrupted", error_kind="other", error_message="killed")

    again = store.start_step(RUN, step, iteration=2, index=1, agent="gemini", task="refine")
    assert again.attempts == 2 and again.status == "running"
    assert again.error_message is None and again.finished_at is None
    assert again.usage == TokenUsage(input_tokens=1000, output_tokens=100, cost_usd=0.5)
    done = store.finish_step(
        RUN, step, status="succeeded", usage=TokenUsage(input_tokens=10, output_tokens=1, cost_usd=0.01)
    )
    assert done.usage == TokenUsage(input_tokens=1010, output_tokens=101, cost_usd=0.51)


def test_pending_steps_count_no_attempt(store):
    new_run(store)
    pending = store.start_step(
        RUN, "i1-s3-gate", iteration=1, index=3, agent="gate", task="gate", status="pending"
    )
    assert (pending.status, pending.attempts, pending.started_at) == ("pending", 0, None)
    assert store.get_run(RUN).iterations == 0
    running = store.start_step(RUN, "i1-s3-gate", iteration=1, index=3, agent="gate", task="gate")
    assert (running.status, running.attempts) == ("running", 1) and running.started_at is not None


def test_resume_points_last_completed_step_commit_and_sessions(store):
    new_run(store)
    assert store.last_completed_step(RUN) is None and store.last_commit(RUN) is None
    plan = [
        ("i1-s1-implement", 1, 1, "claude", "implement", "succeeded", "sha-1", "s-claude-1"),
        ("i1-s2-review", 1, 2, "codex", "review", "succeeded", None, "s-codex-1"),
        ("i1-s3-refine", 1, 3, "gemini", "refine", "skipped", None, None),
        ("i2-s1-review", 2, 1, "codex", "review", "succeeded", None, "s-codex-2"),
        ("i2-s2-refine", 2, 2, "claude", "refine", "succeeded", "sha-2", "s-claude-2"),
        ("i3-s1-review", 3, 1, "codex", "review", "failed", None, None),
    ]
    for step_id, iteration, index, agent, task, status, commit, session in plan:
        store.start_step(RUN, step_id, iteration=iteration, index=index, agent=agent, task=task)
        store.finish_step(RUN, step_id, status=status, commit=commit, session_id=session)
    store.start_step(RUN, "i3-s2-refine", iteration=3, index=2, agent="gemini", task="refine")

    assert [s.step_id for s in store.steps(RUN)] == [p[0] for p in plan] + ["i3-s2-refine"]
    last = store.last_completed_step(RUN)
    assert last is not None and last.step_id == "i2-s2-refine"
    assert store.last_commit(RUN) == "sha-2"
    assert store.last_session_id(RUN, "codex") == "s-codex-2"
    assert store.last_session_id(RUN, "claude") == "s-claude-2"
    assert store.last_session_id(RUN, "gemini") is None


# --- events -----------------------------------------------------------------------------------------


def _sample_events(run_id: str = RUN) -> list:
    step = "i1-s1-implement"
    return [
        RunStarted(run_id=run_id, task="t", workflow="default", branch=f"orchestrator/{run_id}", base="main"),
        StepStarted(run_id=run_id, step_id=step, agent="claude", task="implement", iteration=1),
        activity(step, AssistantMessage(text="I will add hello.py"), run_id=run_id),
        activity(step, Result(success=True, final_text="done", session_id="s-1"), run_id=run_id),
        StepFinished(
            run_id=run_id, step_id=step, agent="claude", status="succeeded", files_changed=["hello.py"]
        ),
        GateFinished(run_id=run_id, step_id="i1-s2-gate", command="pytest -q", passed=False, exit_code=1),
        Notice(run_id=run_id, level="warning", text="codex is not installed; copilot reviews instead"),
        GateFinished(run_id=run_id, step_id="i2-s2-gate", command="pytest -q", passed=True, exit_code=0),
        RunFinished(
            run_id=run_id, status="approved", stop_reason="approved", branch=f"orchestrator/{run_id}"
        ),
    ]


def test_events_from_the_bus_replay_in_order_after_a_seq(store):
    new_run(store)
    store.start_step(RUN, "i1-s1-implement", iteration=1, index=1, agent="claude", task="implement")
    bus = EventBus()
    bus.subscribe(store.subscriber(RUN))
    published = _sample_events()
    for event in published:
        bus.publish(event)

    stored = store.events(RUN)
    assert [s.seq for s in stored] == list(range(1, len(published) + 1))
    assert [s.event for s in stored] == published
    assert store.last_seq(RUN) == len(published)

    tail = store.events(RUN, after_seq=4)
    assert [s.seq for s in tail] == list(range(5, len(published) + 1))
    assert [s.event for s in tail] == published[4:]
    assert store.events(RUN, after_seq=len(published)) == []
    assert [s.seq for s in store.events(RUN, after_seq=2, limit=3)] == [3, 4, 5]
    gates = store.events(RUN, types=["gate_finished"])
    assert [(s.seq, s.step_id) for s in gates] == [(6, "i1-s2-gate"), (8, "i2-s2-gate")]
    # The Result's session id reached the step while it ran.
    assert store.step(RUN, "i1-s1-implement").session_id == "s-1"


def test_two_threads_write_at_once(store_location):
    # Two stores on one file stand for two processes; each thread of a store has its own connection.
    first, second = Store(store_location), Store(store_location)
    try:
        new_run(first)
        per_thread = 150
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def writer(store: Store, name: str) -> None:
            try:
                barrier.wait()
                store.start_step(RUN, f"step-{name}", iteration=1, index=0, agent=name, task="implement")
                for n in range(per_thread):
                    store.add_event(RUN, Notice(run_id=RUN, text=f"{name} {n}"))
                    if n % 25 == 0:
                        store.add_event(
                            RUN, activity(f"step-{name}", Usage(output_tokens=1, scope="delta"), agent=name)
                        )
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=writer, args=(store, name))
            for store, name in ((first, "a"), (first, "b"), (second, "c"), (second, "d"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        stored = second.events(RUN)
        assert [s.seq for s in stored] == list(range(1, len(stored) + 1))
        assert len(stored) == 4 * (per_thread + per_thread // 25)
        for name in "abcd":
            mine = [
                s.event.text for s in stored if isinstance(s.event, Notice) and s.event.text.startswith(name)
            ]
            assert mine == [f"{name} {n}" for n in range(per_thread)]
            assert first.step(RUN, f"step-{name}").usage.output_tokens == per_thread // 25
    finally:
        first.close()
        second.close()


def test_secrets_are_masked_before_they_are_stored(store_location, tmp_path):
    secret = "s3cr3t-value-for-store-test-7f9a2c41d8e6"
    openai_key = "sk-proj-Zx8Qw2Lm5Rt7Yu1Io3Pa6Sd9Fg"
    masker = SecretMasker({"ORCH_TEST_API_KEY": secret})
    with Store(store_location, masker=masker) as store:
        new_run(store)
        store.start_step(RUN, "i1-s1-implement", iteration=1, index=1, agent="claude", task="implement")
        store.add_event(
            RUN, activity("i1-s1-implement", AssistantMessage(text=f"key is {secret} and {openai_key}"))
        )
        store.finish_step(
            RUN,
            "i1-s1-implement",
            status="failed",
            error_kind="auth",
            error_message=f"401 for key {secret}",
            detail={"output_tail": [f"Authorization: Bearer {secret}"]},
        )
        message = store.events(RUN)[0].event
        assert message.event.text == "key is *** and sk-***"
        step = store.step(RUN, "i1-s1-implement")
        assert step.error_message == "401 for key ***"
        assert step.detail == {"output_tail": ["Authorization: Bearer ***"]}
        # Nowhere in any row of any table either.
        everything = all_stored_text(store)
        assert "key is ***" in everything
        assert secret not in everything and openai_key not in everything
    # SQLite: nowhere in the file (WAL included: the store was closed, so it was checkpointed).
    for file in (tmp_path / "state").glob("*"):
        raw = file.read_bytes()
        assert secret.encode() not in raw and openai_key.encode() not in raw


def all_stored_text(store: Store) -> str:
    conn = store._conn()
    texts = []
    for table in ("runs", "steps", "events", "control_requests"):
        texts += [
            str(list(row[i] for i in range(len(row)))) for row in conn.execute(f"SELECT * FROM {table}")
        ]
    return "\n".join(texts)


# --- connections -----------------------------------------------------------------------------------


def _open_files(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(path))
    return count


def _connections(store: Store) -> int:
    """Open files of an SQLite store in this process; sessions of a PostgreSQL store's database."""
    if store.path is not None:
        return _open_files(store.path)
    with store._write() as tx:  # counted from this thread's connection, which stays
        return tx.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchone()[0]


def test_threads_that_end_release_their_connections(store):
    new_run(store)
    before = _connections(store)

    def read() -> None:
        assert store.get_run(RUN).id == RUN

    for _ in range(40):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        del thread
    gc.collect()
    # SQLite keeps the descriptor of a closed connection's database file for reuse while other
    # connections of the process hold locks on it (POSIX locks are per process): at most one more.
    assert _connections(store) <= before + 1


def test_text_with_a_nul_is_stored_not_a_crash(store):
    """A CLI's output may hold a NUL. SQLite keeps it; PostgreSQL's text cannot, so it becomes U+FFFD."""
    new_run(store)
    store.start_step(RUN, "i1-s1-implement", iteration=1, index=1, agent="claude", task="implement")
    done = store.finish_step(RUN, "i1-s1-implement", status="failed", error_message="before\x00after")
    assert (
        done.error_message is not None and done.error_message.replace("\ufffd", "\x00") == "before\x00after"
    )
    store.add_event(RUN, activity("i1-s1-implement", AssistantMessage(text="a\x00b")))
    assert store.events(RUN)[-1].event.event.text == "a\x00b"  # JSON escapes it: kept on both
