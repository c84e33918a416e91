"""The app factory: `create_dashboard(...)` builds a Flask app, its Socket.IO server, the bridge and the
security layer from what it is given (store, settings, environment, clock, the repositories it may start
runs in). Nothing is created at import time, so tests build as many dashboards as they like.

Flask-SocketIO runs in its "threading" mode with simple-websocket for the WebSocket transport: the run
engine, the store and proc.py are plain threads and blocking calls, which eventlet or gevent would have
to monkey-patch (and their patched subprocess and threading are what proc.py's kill ladder relies on
not to be); threading needs no patching and simple-websocket gives it real WebSockets.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from orchestrator.cli.runs_cmd import run_summary_json
from orchestrator.config import Settings
from orchestrator.engine.service import RunService
from orchestrator.errors import InternalError, OrchestratorError, RunNotFound, UsageError
from orchestrator.logs import get_logger
from orchestrator.secrets import process_masker
from orchestrator.store import Store
from orchestrator.store.listen import ChangeListener
from orchestrator.ui.actions import Actions
from orchestrator.ui.api import api
from orchestrator.ui.bridge import Bridge
from orchestrator.ui.context import Audit, Context
from orchestrator.ui.follower import StoreWatcher
from orchestrator.ui.pages import pages
from orchestrator.ui.security import (
    SECURITY_HEADERS,
    SecurityMiddleware,
    allowed_host_names,
    cookie_matches,
    host_allowed,
    origin_allowed,
    token_matches,
)
from orchestrator.ui.sockets import register_socket_handlers

UI_DIR = Path(__file__).parent
log = get_logger("orchestrator.ui")


def _audit_to(env: Mapping[str, str]) -> Audit:
    """Dashboard actions go to the audit trail (orchestrator/audit.py), with the caller's address."""
    from orchestrator.audit import record_action

    def audit(action: str, run_id: str | None, detail: dict[str, Any]) -> None:
        record_action(action, run_id or "-", request.remote_addr, env=env, **detail)
        log.info("dashboard action", action=action, run_id=run_id)

    return audit


class Dashboard:
    """The app and what runs beside it (bridge, store watcher, the runs it executes)."""

    def __init__(
        self,
        flask_app: Flask,
        socketio: SocketIO,
        context: Context,
        watcher: StoreWatcher | ChangeListener | None,
    ):
        self.flask_app = flask_app
        self.socketio = socketio
        self.context = context
        self.watcher = watcher
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start_background(self) -> None:
        self.context.bridge.start()
        if self.watcher is not None:
            self.watcher.start()

    def serve(self, host: str, port: int) -> BaseWSGIServer:
        """Binds (port 0: any free port) and returns the server; `serve_forever()` it, or `start()`."""
        self._server = make_server(host, port, self.flask_app, threaded=True)
        return self._server

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serves in a background thread; returns the base URL."""
        self.start_background()
        server = self.serve(host, port)
        self._thread = threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True)
        self._thread.start()
        return f"http://{host}:{server.server_port}"

    def stop(self, *, runs_timeout_s: float = 30.0) -> None:
        if self._server is not None:
            self._server.shutdown()
        self.context.actions.shutdown(runs_timeout_s)
        self.context.bridge.stop()
        if self.watcher is not None:
            self.watcher.stop()


def create_dashboard(
    *,
    store: Store,
    settings: Settings,
    env: Mapping[str, str],
    allowed_repos: Sequence[Path],
    token: str | None = None,
    allowed_hosts: Sequence[str] = (),
    clock: Callable[[], float] = time.time,
    audit: Audit | None = None,
    poll_s: float = 1.0,
    watch_files: bool = True,
) -> Dashboard:
    token = token or secrets.token_urlsafe(32)
    process_masker().add([token])  # never in a log line, a fresh token neither
    hosts = allowed_host_names(allowed_hosts)
    app = Flask("orchestrator.ui", root_path=str(UI_DIR), static_folder="static", template_folder="templates")
    app.config.update(
        DEBUG=False,  # never the Werkzeug debugger: it runs code sent by whoever can reach the page
        PROPAGATE_EXCEPTIONS=False,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1_000_000,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    service = RunService(settings=settings, env=env, store=store)
    socketio = SocketIO(
        app,
        async_mode="threading",
        # The Origin is checked by SecurityMiddleware too; this keeps engine.io's own check ours.
        cors_allowed_origins=lambda origin, environ: origin_allowed(origin, environ.get("HTTP_HOST"), hosts),
        ping_interval=20,  # proxies cut idle connections after ~100 s (claudecodeui #769)
        ping_timeout=20,
        max_http_buffer_size=1_000_000,
        manage_session=False,
        logger=False,
        engineio_logger=False,
    )

    def send(event: str, data: Any, sid: str, callback: Callable[..., None] | None) -> None:
        socketio.server.emit(event, data, to=sid, callback=callback)

    bridge = Bridge(store, send, run_summary_json, poll_s=poll_s)
    context = Context(
        store=store,
        settings=settings,
        env=env,
        service=service,
        actions=Actions(service, allowed_repos),
        bridge=bridge,
        allowed_repos=tuple(Path(r) for r in allowed_repos),
        token=token,
        clock=clock,
        audit=audit or _audit_to(env),
    )
    app.extensions["orchestrator"] = context
    app.register_blueprint(pages)
    app.register_blueprint(api)
    _register_errors(app)
    _register_headers(app)
    _version_static_urls(app)

    def authorized(environ: Mapping[str, Any], auth: Any) -> bool:
        given = auth.get("token") if isinstance(auth, dict) else None
        if not host_allowed(environ.get("HTTP_HOST"), hosts):
            return False
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not origin_allowed(origin, environ.get("HTTP_HOST"), hosts):
            return False
        return token_matches(given, token) or cookie_matches(environ.get("HTTP_COOKIE"), token)

    register_socket_handlers(socketio, bridge, authorized)
    # Outermost: every request, /socket.io included, passes the Host, Origin and token checks.
    app.wsgi_app = SecurityMiddleware(app.wsgi_app, token=token, allowed_hosts=hosts)  # type: ignore[method-assign]
    _mount_metrics(app, store)
    # An SQLite store's file is watched; a PostgreSQL store has none, and LISTENs for its changes.
    watcher: StoreWatcher | ChangeListener | None = None
    if watch_files:
        if store.path is not None:
            watcher = StoreWatcher(store.path, bridge.wake)
        else:
            watcher = store.change_listener(lambda run_id: bridge.wake())
    return Dashboard(app, socketio, context, watcher)


def _register_errors(app: Flask) -> None:
    @app.errorhandler(OrchestratorError)
    def refused(exc: OrchestratorError) -> tuple[Response, int]:
        # The same words as the CLI's `error: ...` line; the status says which kind of refusal.
        code = 409 if isinstance(exc, UsageError) else 500 if isinstance(exc, InternalError) else 422
        code = 404 if isinstance(exc, RunNotFound) else code
        return jsonify(
            {"error": exc.message, "hint": exc.hint, "text": str(exc), "exit_code": exc.exit_code}
        ), code

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description or exc.name, "hint": None}), exc.code or 500

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> tuple[Response, int]:
        log.exception("dashboard request failed", path=request.path)
        return jsonify(
            {"error": f"internal error: {type(exc).__name__}", "hint": "see the server's log"}
        ), 500


def _register_headers(app: Flask) -> None:
    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response


def _version_static_urls(app: Flask) -> None:
    """Static URLs carry a version of the file (`?v=`), so a browser that cached a script for an hour
    (SEND_FILE_MAX_AGE_DEFAULT) never runs an old one against a newer server."""
    static = Path(app.static_folder or UI_DIR / "static")
    versions: dict[str, str] = {}

    @app.url_defaults
    def versioned(endpoint: str, values: dict[str, Any]) -> None:
        filename = values.get("filename")
        if endpoint != "static" or not isinstance(filename, str) or "v" in values:
            return
        if filename not in versions:
            try:
                stat = (static / filename).stat()
                versions[filename] = f"{stat.st_mtime_ns:x}{stat.st_size:x}"[-12:]
            except OSError:
                versions[filename] = "0"
        values["v"] = versions[filename]


def _mount_metrics(app: Flask, store: Store) -> None:
    """GET /metrics: Prometheus metrics of every run in the store, whichever process made it (read
    from the event log when scraped), the bridge's event-delivery lag, and the daily budget
    ($ORCHESTRATOR_DAILY_BUDGET_USD). Behind the token like the rest (Prometheus sends it as Bearer)."""
    from prometheus_client import CollectorRegistry

    from orchestrator.metrics import daily_budget_from_env, render_metrics, run_metrics
    from orchestrator.metrics_follow import StoreMetricsFollower

    registry = CollectorRegistry()
    context: Context = app.extensions["orchestrator"]
    tracked = run_metrics(registry, daily_budget_usd=daily_budget_from_env(context.env))
    context.bridge.on_delivered = tracked.observe_delivery  # before the bridge starts
    follower = StoreMetricsFollower(store, registry)
    lock = threading.Lock()

    @app.get("/metrics")
    def metrics() -> Response:
        with lock:
            follower.poll()
            body, content_type = render_metrics(registry, request.headers.get("Accept"))
        return Response(body, content_type=content_type)
