"""What keeps the dashboard local and authenticated (pure checks, and the WSGI layer that applies them).

Every request, `/socket.io` included (Flask-SocketIO answers those before Flask's `before_request` ever
runs), passes through `SecurityMiddleware`: the Host must be in the allowlist (against DNS rebinding),
the Origin must be ours for anything that changes state and for every Socket.IO request (against CSRF
and cross-site WebSockets), and, except for `/healthz` and the token exchange, the request must carry
the session cookie or `Authorization: Bearer TOKEN`. Socket.IO connections are authenticated again in
the connect handler (the token may come in the handshake's `auth`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

COOKIE_NAME = "orchestrator_session"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# No inline script anywhere: every script is a file under /static; styles too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),  # the printed URL holds the token
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
PUBLIC_PATHS = frozenset({"/healthz"})


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a Host header, without the port: `[::1]:8765` -> `[::1]`, `a.b:80` -> `a.b`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_host_names(extra: Iterable[str] = ()) -> frozenset[str]:
    names = {*LOOPBACK_HOSTS, *(name.strip().lower() for name in extra if name.strip())}
    # An IPv6 name may be configured with or without brackets; Host headers always carry them.
    names |= {f"[{name}]" for name in names if ":" in name and not name.startswith("[")}
    return frozenset(names)


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    return bool(host_header) and host_name(host_header or "") in allowed


def origin_allowed(origin: str | None, host_header: str | None, allowed: frozenset[str]) -> bool:
    """The Origin must be this very server: http(s) on an allowed name and the Host's port."""
    if not origin or not host_header or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        return False
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if name.lower() not in allowed:
        return False
    expected = f"{name}:{parts.port}" if parts.port is not None else name
    return expected.lower() == host_header.strip().lower()


def session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie alone never shows the token."""
    return hmac.new(token.encode(), b"orchestrator-dashboard-session", hashlib.sha256).hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def cookie_matches(cookie_header: str | None, token: str) -> bool:
    if not cookie_header:
        return False
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(cookie_header)
    except Exception:  # noqa: BLE001 - a malformed cookie header is simply not authenticated
        return False
    morsel = cookie.get(COOKIE_NAME)
    return morsel is not None and hmac.compare_digest(morsel.value.encode(), session_value(token).encode())


def bearer_of(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def authenticated(environ: dict[str, Any], token: str) -> bool:
    return token_matches(bearer_of(environ.get("HTTP_AUTHORIZATION")), token) or cookie_matches(
        environ.get("HTTP_COOKIE"), token
    )


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _refuse(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    body = (message + "\n").encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, [*headers, *SECURITY_HEADERS])
    return [body]


class SecurityMiddleware:
    """The checks every request passes, around the whole WSGI app (Socket.IO included)."""

    def __init__(self, app: WsgiApp, *, token: str, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if not host_allowed(host, self.allowed_hosts):
            return _refuse(
                start_response,
                "421 Misdirected Request",
                f"this dashboard answers only to {', '.join(sorted(self.allowed_hosts))} "
                "(start it with --allow-host NAME to add a name)",
            )
        origin = environ.get("HTTP_ORIGIN")
        socket_io = path.startswith("/socket.io")
        upgrade = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        # Browsers send Origin on every cross-origin request, every POST and every WebSocket; a
        # client without one (curl, a script) is no CSRF vector, but must then authenticate by Bearer.
        needs_origin = method not in SAFE_METHODS or socket_io or upgrade
        if needs_origin and origin is not None and not origin_allowed(origin, host, self.allowed_hosts):
            return _refuse(start_response, "403 Forbidden", f"requests from {origin} are not allowed")
        if (
            needs_origin
            and origin is None
            and not socket_io
            and bearer_of(environ.get("HTTP_AUTHORIZATION")) is None
        ):
            return _refuse(
                start_response, "403 Forbidden", "a request that changes state needs an Origin header"
            )
        if path in PUBLIC_PATHS or path.startswith("/static/") or socket_io:
            # Static files are the page's own code and libraries; Socket.IO authenticates on connect.
            return self.app(environ, start_response)
        if authenticated(environ, self.token):
            return self.app(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if method == "GET" and "token" in query:
            return self.app(environ, start_response)  # the exchange: the app checks it and sets the cookie
        return _refuse(
            start_response,
            "401 Unauthorized",
            "not signed in: open the URL that `orchestrator serve` printed (it holds the token), "
            "or send Authorization: Bearer TOKEN",
        )
