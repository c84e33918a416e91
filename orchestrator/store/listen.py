"""A wake-up when another process (or machine) changes a PostgreSQL store: every write transaction
that touches a run or appends an event sends NOTIFY on CHANNEL with the run's id (PostgreSQL delivers it
at commit, once per transaction and run), and a ChangeListener LISTENs on a connection of its own and
calls `wake` for each. Followers still read what changed from the store (by their cursors): a wake-up
says only "look now", so one that is missed costs a poll interval, never an event.

SQLite has no such thing: the dashboard watches its file instead (ui/follower.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

CHANNEL = "orchestrator_changes"


class ChangeListener:
    """Calls `wake(run_id)` from a thread of its own for each change committed to the store at `url`.
    Same shape as ui/follower.StoreWatcher: `start()`, `stop()`."""

    # How often the thread looks up from its wait for notifications to see whether it was stopped:
    # psycopg holds the connection's lock while it waits, so stop() cannot interrupt the wait. Each
    # look costs about 0.8 ms of CPU (a follower waits for minutes): stop(wait=False) does not wait.
    def __init__(self, url: str, wake: Callable[[str], None], *, poll_s: float = 0.5) -> None:
        self._url = url
        self._wake = wake
        self._poll_s = poll_s
        self._stopped = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="store-listener", daemon=True)
        self._conn: Any = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Starts listening; returns once LISTEN is in effect (changes from then on wake)."""
        import psycopg

        self._conn = psycopg.connect(self._url, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._thread.start()
        self._listening.wait(timeout_s)

    def _listen(self) -> None:
        self._listening.set()
        try:
            while not self._stopped.is_set():
                for note in self._conn.notifies(timeout=self._poll_s):
                    if self._stopped.is_set():
                        break
                    self._wake(note.payload)
        except Exception:  # noqa: BLE001 - a broken connection ends the wake-ups; polling goes on
            if not self._stopped.is_set():
                raise
        finally:
            with contextlib.suppress(Exception):
                self._conn.close()

    def stop(self, *, wait: bool = True) -> None:
        """No wake-ups from now on. With `wait=False` the thread ends (and closes its connection) on
        its own, within `poll_s`."""
        self._stopped.set()
        if not wait:
            return
        if self._thread.is_alive():
            self._thread.join(self._poll_s + 5)
        elif self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
