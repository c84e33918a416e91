"""Transient failures are retried on purpose, each retry reported; nothing else is retried.

- git's lock files: a real `index.lock` held by another process for a moment, then released;
- the store locked by another process past busy_timeout while it is first set up (on both backends:
  SQLite's file held by a writer, PostgreSQL's set-up advisory lock held by another session);
- an agent's 429 with a retry-after (the fake agent plays the scripted model server's `error` turn)
  when no other agent can take the step: waited for, tried again, recorded as a "retry" notice.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import GitError, StoreError
from orchestrator.proc import run_command
from orchestrator.retries import RetryNote, retries_reported_to
from orchestrator.store import Store
from orchestrator.testing.fault_project import PLANTED_SECRET, FaultProject
from orchestrator.workspace.git import Git

HOLD_LOCK = """
import sys, time
from pathlib import Path
lock = Path(sys.argv[1])
lock.write_text("")          # what a running git leaves while it works
Path(sys.argv[2]).write_text("")
time.sleep(float(sys.argv[3]))
lock.unlink()
"""


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    (repo / "a.txt").write_text("a\n")
    return repo


def hold(lock: Path, seconds: float, tmp_path: Path) -> threading.Thread:
    """Another process holds `lock` for `seconds` (started and waited for through proc)."""
    ready = tmp_path / "holding"
    thread = threading.Thread(
        target=run_command,
        args=([sys.executable, "-c", HOLD_LOCK, str(lock), str(ready), str(seconds)], tmp_path),
        kwargs={"timeout_s": seconds + 10},
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    return thread


def test_git_waits_for_a_lock_held_by_another_process_and_says_so(tmp_path):
    repo = make_repo(tmp_path)
    holder = hold(repo / ".git" / "index.lock", 0.6, tmp_path)
    notes: list[RetryNote] = []
    started = time.monotonic()
    with retries_reported_to(notes.append):
        result = Git(repo).run("add", "a.txt")
    took = time.monotonic() - started
    holder.join()
    assert result.ok
    assert notes and all(n.what == "git_lock" for n in notes)
    assert "index.lock" in notes[0].reason and notes[0].attempt == 1 and notes[0].wait_s > 0
    assert took < 0.6 + 5
    staged = run_command(["git", "diff", "--cached", "--name-only"], repo, check=True).stdout.split()
    assert staged == ["a.txt"]


def test_a_lock_never_released_fails_after_the_retries_with_gits_words(tmp_path):
    repo = make_repo(tmp_path)
    (repo / ".git" / "index.lock").write_text("")  # a git that died holding it
    notes: list[RetryNote] = []
    git = Git(repo)
    started = time.monotonic()
    with retries_reported_to(notes.append), pytest.raises(GitError, match=r"index\.lock"):
        git.run("add", "a.txt")
    assert time.monotonic() - started < sum(git.retry_delays_s) + 5
    assert len(notes) == len(git.retry_delays_s)  # every retry reported, then given up


def test_other_git_failures_are_not_retried(tmp_path):
    repo = make_repo(tmp_path)
    notes: list[RetryNote] = []
    with retries_reported_to(notes.append):
        result = Git(repo).run("checkout", "no-such-branch", check=False)
    assert not result.ok and notes == []


HOLD_DB = """
import sqlite3, sys, time
from pathlib import Path
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")   # a rollback-journal database, locked for writing and reading
Path(sys.argv[2]).write_text("")
time.sleep(float(sys.argv[3]))
db.execute("COMMIT")
"""


def hold_db(path: Path, seconds: float, tmp_path: Path) -> threading.Thread:
    sqlite3.connect(path).close()  # an empty database file, as a first use starts with
    ready = tmp_path / "db-held"
    thread = threading.Thread(
        target=run_command,
        args=([sys.executable, "-c", HOLD_DB, str(path), str(ready), str(seconds)], tmp_path),
        kwargs={"timeout_s": seconds + 10},
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    return thread


HOLD_PG = """
import sys, time
from pathlib import Path
import psycopg
from orchestrator.store.postgres_backend import SCHEMA_LOCK_KEY
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))  # what a process setting up holds
    Path(sys.argv[2]).write_text("")
    time.sleep(float(sys.argv[3]))
"""


def hold_store(location: str, seconds: float, tmp_path: Path) -> threading.Thread:
    """Another process holding the store's set-up lock for `seconds`."""
    if not location.startswith("postgresql://"):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return hold_db(Path(location), seconds, tmp_path)
    ready = tmp_path / "pg-held"
    thread = threading.Thread(
        target=run_command,
        args=([sys.executable, "-c", HOLD_PG, location, str(ready), str(seconds)], tmp_path),
        kwargs={"timeout_s": seconds + 20},
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    return thread


def test_a_store_locked_past_busy_timeout_at_open_is_retried_and_reported(store_location, tmp_path):
    holder = hold_store(store_location, 1.0, tmp_path)
    notes: list[RetryNote] = []
    started = time.monotonic()
    with retries_reported_to(notes.append):
        store = Store(store_location, busy_timeout_s=0.3)
    took = time.monotonic() - started
    holder.join()
    try:
        assert store.schema_version() >= 1
        assert store.journal_mode() == ("wal" if store.backend == "sqlite" else "postgresql")
    finally:
        store.close()
    assert notes and all(n.what == "store_busy" for n in notes)
    assert "locked" in notes[0].reason
    assert took < 1.0 + 5


def test_a_store_locked_for_longer_is_a_clear_error(store_location, tmp_path):
    holder = hold_store(store_location, 6.0, tmp_path)
    notes: list[RetryNote] = []
    started = time.monotonic()
    with retries_reported_to(notes.append), pytest.raises(StoreError) as caught:
        Store(store_location, busy_timeout_s=0.2)
    took = time.monotonic() - started
    holder.join()
    assert caught.value.problem == "busy" and store_location in str(caught.value)
    assert caught.value.exit_code == 2
    assert len(notes) == 3  # OPEN_ATTEMPTS - 1 retries, then given up
    assert took < 6.0 + 5


def rate_limited_project(tmp_path: Path, retry: dict[str, float] | None, retry_after: float) -> FaultProject:
    turns = [
        {"error": {"status": 429, "message": "slow down", "retry_after": retry_after}},
        {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}},
        {"text": "done"},
        {"text": 'Fine.\n```json\n{"verdict": "approve", "findings": []}\n```'},
    ]
    config = {"retry": retry} if retry is not None else None
    return FaultProject(tmp_path, turns=turns, agent_config=config)


def stored_events(project: FaultProject) -> list[dict]:
    import json

    with sqlite3.connect(project.state / "state.db") as db:
        return [json.loads(row[0]) for row in db.execute("SELECT data FROM events ORDER BY seq")]


def retry_notices(project: FaultProject) -> list[dict]:
    return [e for e in stored_events(project) if e["type"] == "notice" and e.get("kind") == "retry"]


def test_a_429_with_retry_after_and_no_fallback_is_waited_for_and_tried_again(tmp_path):
    project = rate_limited_project(tmp_path, {"attempts": 2, "max_wait_s": 5}, retry_after=1)
    ran = project.run(limit_s=30)
    assert ran.code == 0, ran.output  # approved after the retry
    retries = retry_notices(project)
    assert len(retries) == 1
    assert retries[0]["reason"] == "rate_limit" and retries[0]["level"] == "warning"
    assert retries[0]["text"].startswith("rate limited, try 2 of 2 in 1.0 s: i1-s1-implement (fake)")
    assert "429" in retries[0]["text"]
    assert "rate limited, try 2 of 2 in 1.0 s" in ran.result.stderr  # the console says so too
    assert "retrying" in ran.result.stderr  # and the log line
    assert ran.seconds >= 1.0
    project.assert_untouched()
    project.assert_no_leak(ran.output)
    assert PLANTED_SECRET not in str(stored_events(project))


def test_a_retry_after_beyond_max_wait_is_not_waited_for(tmp_path):
    project = rate_limited_project(tmp_path, {"attempts": 3, "max_wait_s": 2}, retry_after=30)
    ran = project.run(limit_s=20)
    assert ran.code == 1, ran.output
    assert "rate_limit" in ran.output
    assert retry_notices(project) == []
    assert ran.seconds < 20
    project.assert_untouched()
    project.assert_no_leak(ran.output)


def test_one_attempt_means_no_retry(tmp_path):
    project = rate_limited_project(tmp_path, {"attempts": 1, "max_wait_s": 60}, retry_after=1)
    ran = project.run(limit_s=20)
    assert ran.code == 1, ran.output
    assert retry_notices(project) == []
    project.assert_untouched()
