"""Fencing tokens: which attempt at a run's step may still write for the run.

On a cluster, a step may run twice at once: a worker that lost its heartbeat (paused, cut off) goes on
while Temporal retries the step on another worker. Each attempt first takes a new token for the run
(`acquire_fence`, strictly increasing per run, atomic across processes and machines) and holds it
(`hold_fence`); from then on every write of that Store for the run (events, steps, the run's status,
control requests it takes) checks, in the writing transaction with the run's row locked, that its
token is still the run's newest, and is refused with StaleFence otherwise. So a zombie's late writes
never land, and since a refused write rolls back whole, event sequence numbers stay contiguous.

The token is a column of the run's row (`runs.fence`, schema 3): taking one is an UPDATE of that row,
which is also the lock every write transaction takes first.
"""

from __future__ import annotations

from orchestrator.errors import RunNotFound, StaleFence
from orchestrator.store.db import StoreBase


class FencesMixin(StoreBase):
    def acquire_fence(self, run_id: str) -> int:
        """A new token for the run, larger than every one taken before (1, 2, 3, ...). It does not
        make this Store hold it: `hold_fence` does."""
        with self._write() as tx:
            cursor = tx.execute("UPDATE runs SET fence = fence + 1 WHERE id = ?", (run_id,))
            if cursor.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.location}")
            token = int(tx.execute("SELECT fence FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            self._backend.notify_change(tx, run_id)
        return token

    def hold_fence(self, run_id: str, token: int) -> None:
        """This Store's writes for the run are checked against `token` from now on. Refused at once
        (StaleFence) when a newer token was taken already."""
        current = self.fence(run_id)
        if token > current or token < 1:
            raise ValueError(f"run {run_id} never had fencing token {token} (its newest is {current})")
        if token < current:
            raise StaleFence(run_id, token, current)
        with self._lock:
            self._fences[run_id] = token

    def release_fence(self, run_id: str) -> None:
        """This Store's writes for the run are no longer checked (the attempt is over)."""
        with self._lock:
            self._fences.pop(run_id, None)

    def fence(self, run_id: str) -> int:
        """The run's newest token (0 when none was taken)."""
        row = self._conn().execute("SELECT fence FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in {self.location}")
        return int(row[0])

    def held_fence(self, run_id: str) -> int | None:
        """The token this Store holds for the run, if any."""
        return self._fences.get(run_id)
