"""Control requests: cancel and follow-up asked for by any process, picked up by the run's owner.

The dashboard (or another shell) cannot reach a run's threading.Event in another process, so it writes a
request here; the process that owns the run polls for it (engine/service.py) and acts. A request is
taken by exactly one process (`take_control` is a compare-and-set on its status), so a follow-up is never
run twice even when the owner and the dashboard both look at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from orchestrator.store.backend import Connection
from orchestrator.store.db import StoreBase

ControlKind = Literal["cancel", "follow_up"]
CONTROL_KINDS: tuple[str, ...] = get_args(ControlKind)
ControlStatus = Literal["pending", "taken", "done", "refused"]


class ControlRequest(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)
    id: int
    run_id: str
    kind: ControlKind
    payload: dict[str, Any]
    status: ControlStatus
    created_at: float
    taken_by: int | None  # the pid of the process that took it
    message: str | None  # what happened to it (done) or why not (refused)


_COLUMNS = "id, run_id, kind, payload_json, status, created_at, taken_by, message"


class ControlMixin(StoreBase):
    def request_control(self, run_id: str, kind: ControlKind, payload: dict[str, Any] | None = None) -> int:
        """Records a request for the run's owner; returns its id."""
        if kind not in CONTROL_KINDS:
            raise ValueError(f"unknown control request {kind!r}")
        with self._write() as tx:
            self._touch_run(tx, run_id)  # refuses an unknown run; followers see the change
            return tx.insert_id(
                "INSERT INTO control_requests (run_id, kind, payload_json, status, created_at)"
                " VALUES (?, ?, ?, 'pending', ?)",
                (run_id, kind, json.dumps(self._masker.mask_value(payload or {})), time.time()),
            )

    def pending_controls(
        self, run_id: str | None = None, kinds: Collection[str] | None = None
    ) -> list[ControlRequest]:
        """Requests nobody has taken yet, oldest first (of one run, or of every run)."""
        sql = f"SELECT {_COLUMNS} FROM control_requests WHERE status = 'pending'"
        params: list[Any] = []
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        if kinds is not None:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += list(kinds)
        rows = self._conn().execute(sql + " ORDER BY id", params)
        return [_request_from_row(row) for row in rows]

    def take_control(self, request_id: int, pid: int) -> bool:
        """Claims a pending request for process `pid`; False when another process took it first."""
        with self._write() as tx:
            self._fence_request(tx, request_id)
            cursor = tx.execute(
                "UPDATE control_requests SET status = 'taken', taken_by = ? WHERE id = ? AND status = 'pending'",
                (pid, request_id),
            )
        return cursor.rowcount == 1

    def finish_control(
        self, request_id: int, status: Literal["done", "refused"], message: str | None = None
    ) -> None:
        with self._write() as tx:
            self._fence_request(tx, request_id)
            tx.execute(
                "UPDATE control_requests SET status = ?, message = ? WHERE id = ?",
                (status, self._masker.mask(message) if message else None, request_id),
            )

    def _fence_request(self, tx: Connection, request_id: int) -> None:
        """A request of a run this Store holds a fencing token for is taken (or answered) only while
        the token is the run's newest: a stale attempt must not take a follow-up the new one needs."""
        if not self._fences:
            return
        row = tx.execute("SELECT run_id FROM control_requests WHERE id = ?", (request_id,)).fetchone()
        if row is None or row["run_id"] not in self._fences:
            return
        # The run's row first, the lock order of every write (and what a new token waits for).
        tx.execute(f"SELECT id FROM runs WHERE id = ?{self._backend.for_update}", (row["run_id"],))
        self._check_fence(tx, row["run_id"])

    def control(self, request_id: int) -> ControlRequest | None:
        row = (
            self._conn()
            .execute(f"SELECT {_COLUMNS} FROM control_requests WHERE id = ?", (request_id,))
            .fetchone()
        )
        return _request_from_row(row) if row is not None else None


def _request_from_row(row: Any) -> ControlRequest:
    return ControlRequest(
        id=row["id"],
        run_id=row["run_id"],
        kind=row["kind"],
        payload=json.loads(row["payload_json"]),
        status=row["status"],
        created_at=row["created_at"],
        taken_by=row["taken_by"],
        message=row["message"],
    )
