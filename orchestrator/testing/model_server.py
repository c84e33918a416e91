"""The scripted model server: an HTTP server on 127.0.0.1 that plays a Scenario to the real CLIs.

It speaks (through orchestrator/testing/dialects/) the Anthropic Messages, OpenAI Responses, OpenAI Chat
Completions and Gemini APIs, with streaming. Every request is logged, so a test can assert what a CLI
sent. Use it as a context manager:

    with ScriptedModelServer(scenario) as server:
        env = {"ANTHROPIC_BASE_URL": server.url, ...}
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from orchestrator.testing.dialects import load_dialects
from orchestrator.testing.dialects.base import Dialect, ModelRequest, TurnContext, encode_sse
from orchestrator.testing.scenario import Hang, HttpError, Pick, Scenario, Text, Turn

_SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}


class ScriptedModelServer:
    def __init__(self, scenario: Scenario, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("the scripted model server listens on loopback only")
        self.scenario = scenario
        self.requests: list[ModelRequest] = []
        self._lock = threading.Lock()
        self._turn_index = 0
        self._uses_of_turn = 0
        self._serial = 0
        self._stopping = threading.Event()
        self._dialects: list[Dialect] = load_dialects()
        self._httpd = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedModelServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hung handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def wait(self) -> None:
        """Serve until interrupted (for `orchestrator testing serve-model`)."""
        while not self._stopping.wait(0.5):
            pass

    # --- what tests look at --------------------------------------------------------------------
    def main_requests(self, api: str | None = None) -> list[ModelRequest]:
        with self._lock:
            return [r for r in self.requests if r.consumed_turn is not None and (api is None or r.api == api)]

    @property
    def turns_used(self) -> int:
        with self._lock:
            return self._turn_index

    def set_scenario(self, scenario: Scenario) -> None:
        with self._lock:
            self.scenario = scenario
            self._turn_index = 0
            self._uses_of_turn = 0

    # --- serving -------------------------------------------------------------------------------
    def _take_turn(self) -> tuple[int | None, Turn | None]:
        with self._lock:
            turns = self.scenario.turns
            if self._turn_index >= len(turns):
                return None, None
            index = self._turn_index
            turn = turns[index]
            self._uses_of_turn += 1
            if turn.times != "always" and self._uses_of_turn >= turn.times:
                self._turn_index += 1
                self._uses_of_turn = 0
            return index, turn

    def _next_serial(self) -> int:
        with self._lock:
            self._serial += 1
            return self._serial

    def handle(self, handler: _Handler, method: str) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {
            k.lower(): ("***" if k.lower() in _SECRET_HEADERS else v) for k, v in handler.headers.items()
        }
        dialect = next((d for d in self._dialects if d.route(method, split.path)), None)
        request = ModelRequest(
            api=dialect.api if dialect else "unknown",
            method=method,
            path=split.path,
            query=dict(parse_qsl(split.query)),
            headers=headers,
            body=body,
        )
        with self._lock:
            self.requests.append(request)
        out = _Writer(handler)
        if dialect is None:
            out.json(
                404, {"error": {"message": f"the scripted model server has no route {method} {split.path}"}}
            )
            return
        ctx = TurnContext(scenario=self.scenario, turn_index=None, serial=self._next_serial())
        if not dialect.consumes_turn(request):
            request.answered_with = "side"
            dialect.respond_side(request, ctx, out)
            return
        index, turn = self._take_turn()
        request.consumed_turn = index
        ctx.turn_index = index
        if turn is None:
            # Out of script: answer with a plain final text, so the CLI ends rather than retries.
            request.answered_with = "exhausted"
            dialect.respond(request, Text(text="(the scenario has no more turns)"), ctx, out)
            return
        if isinstance(turn, Pick):
            turn = turn.choose(raw.decode("utf-8", "replace"))
        request.answered_with = turn.kind
        if isinstance(turn, HttpError):
            headers_out = {"Retry-After": f"{turn.retry_after:g}"} if turn.retry_after is not None else None
            out.json(turn.status, dialect.error_body(turn.status, turn.message), headers_out)
        elif isinstance(turn, Hang):
            deadline = None if turn.seconds is None else time.monotonic() + turn.seconds
            while not self._stopping.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    break
            out.close()
        else:
            dialect.respond(request, turn, ctx, out)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: ScriptedModelServer

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.owner.handle(self, "POST")

    def do_GET(self) -> None:  # noqa: N802
        self.owner.handle(self, "GET")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet; the request log is ours
        return


def _make_handler(owner: ScriptedModelServer) -> type[_Handler]:
    return type("ScriptedHandler", (_Handler,), {"owner": owner})


class _Writer:
    def __init__(self, handler: _Handler) -> None:
        self._h = handler

    def json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._h.send_response(
            status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        )
        self._h.send_header("Content-Type", "application/json")
        self._h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self._h.send_header(key, value)
        self._h.end_headers()
        self._h.wfile.write(data)
        self._h.wfile.flush()

    def sse(self, events: Iterable[tuple[str | None, Any]], headers: Mapping[str, str] | None = None) -> None:
        self._h.send_response(200)
        self._h.send_header("Content-Type", "text/event-stream")
        self._h.send_header("Cache-Control", "no-cache")
        self._h.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self._h.send_header(key, value)
        self._h.end_headers()
        self._h.close_connection = True
        for event, data in events:
            self._h.wfile.write(encode_sse(event, data))
            self._h.wfile.flush()

    def close(self) -> None:
        self._h.close_connection = True
