"""Socket.IO events: connect (authenticated; the token may come in `auth`, with the client's cursors so a
reconnect resumes where it was), subscribe / unsubscribe to a run from a cursor, disconnect."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import request
from flask_socketio import SocketIO

from orchestrator.errors import OrchestratorError
from orchestrator.ui.bridge import Bridge


def _cursors(auth: Any) -> dict[str, int]:
    raw = auth.get("cursors") if isinstance(auth, dict) else None
    if not isinstance(raw, dict):
        return {}
    cursors: dict[str, int] = {}
    for run_id, seq in list(raw.items())[:50]:
        if isinstance(run_id, str) and isinstance(seq, int) and seq >= 0:
            cursors[run_id] = seq
    return cursors


def register_socket_handlers(
    socketio: SocketIO, bridge: Bridge, authorized: Callable[[Mapping[str, Any], Any], bool]
) -> None:
    def connect(auth: Any = None) -> bool:
        if not authorized(request.environ, auth):
            return False  # the client gets connect_error; nothing else is sent
        bridge.connect(request.sid, _cursors(auth))  # type: ignore[attr-defined]
        return True

    def disconnect(*_: Any) -> None:
        bridge.disconnect(request.sid)  # type: ignore[attr-defined]

    def subscribe(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
            return {"ok": False, "error": "subscribe needs {run_id, after}"}
        after = data.get("after", 0)
        try:
            latest = bridge.subscribe(request.sid, data["run_id"], after if isinstance(after, int) else 0)  # type: ignore[attr-defined]
        except OrchestratorError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "latest": latest}

    def unsubscribe(data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("run_id"), str):
            bridge.unsubscribe(request.sid, data["run_id"])  # type: ignore[attr-defined]

    for handler in (connect, disconnect, subscribe, unsubscribe):
        socketio.on_event(handler.__name__, handler)
