"""The dashboard is safe by default, tested against a live `orchestrator serve`: no token, a wrong token,
a forged Host and a forged Origin are each refused, over HTTP and over Socket.IO."""

from __future__ import annotations

import http.client
import sys

import pytest
import socketio

from orchestrator.proc import run_command

from .conftest import TOKEN


@pytest.fixture
def server(world):
    return world.serve()


def raw(server, method, path, headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    conn.close()
    return response.status, body, dict(response.getheaders())


def test_http_needs_the_token(server):
    status, body, _ = server.request("GET", "/api/runs", token=None)
    assert status == 401 and "orchestrator serve" in body
    assert server.request("GET", "/api/runs", token="wrong")[0] == 401
    assert server.request("GET", "/", token=None)[0] == 401
    status, _, headers = raw(server, "GET", "/?token=wrong", {"Host": f"127.0.0.1:{server.port}"})
    assert status == 401 and "Set-Cookie" not in headers
    assert server.request("GET", "/api/runs")[0] == 200
    assert server.request("GET", "/healthz", token=None)[0] == 200  # the container's HEALTHCHECK


def test_the_token_becomes_an_httponly_samesite_strict_cookie(server):
    status, _, headers = raw(server, "GET", f"/?token={TOKEN}", {"Host": f"127.0.0.1:{server.port}"})
    assert status == 303 and headers["Location"] == "/"  # the token leaves the address bar
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    status, body, headers = raw(server, "GET", "/", {"Host": f"127.0.0.1:{server.port}", "Cookie": session})
    assert status == 200 and "<script src=" in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in body  # no inline script anywhere
    forged = session[:-4] + "0000"
    assert raw(server, "GET", "/api/runs", {"Host": f"127.0.0.1:{server.port}", "Cookie": forged})[0] == 401


@pytest.mark.parametrize("host", ["evil.example", "attacker.test:80", "127.0.0.2"])
def test_a_forged_host_is_refused(server, host):
    status, body, _ = raw(server, "GET", "/api/runs", {"Host": host, "Authorization": f"Bearer {TOKEN}"})
    assert status == 421 and "answers only to" in body
    # The Socket.IO handshake too (it never reaches Flask's before_request).
    status, _, _ = raw(server, "GET", "/socket.io/?EIO=4&transport=polling", {"Host": host})
    assert status == 421
    assert raw(server, "GET", "/healthz", {"Host": host})[0] == 421


def test_a_forged_origin_is_refused_for_state_changes_and_sockets(server, world):
    headers = {"Origin": "http://evil.example"}
    status, body, _ = server.request(
        "POST", "/api/runs", {"task": "x", "repo": str(world.repo)}, headers=headers
    )
    assert status == 403 and "not allowed" in body
    status, _, _ = raw(
        server,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        {"Host": f"127.0.0.1:{server.port}", "Origin": "http://evil.example"},
    )
    assert status == 403
    # A rebound page shares the port but not the name: refused as well.
    status, _, _ = raw(
        server,
        "GET",
        "/socket.io/?EIO=4&transport=websocket",
        {
            "Host": f"127.0.0.1:{server.port}",
            "Origin": f"http://evil.example:{server.port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
        },
    )
    assert status == 403
    # A POST with a cookie and no Origin at all is refused too (only Bearer clients may omit it).
    status, _, headers = raw(server, "GET", f"/?token={TOKEN}", {"Host": f"127.0.0.1:{server.port}"})
    session = headers["Set-Cookie"].split(";", 1)[0]
    status, _, _ = raw(server, "POST", "/api/runs", {"Host": f"127.0.0.1:{server.port}", "Cookie": session})
    assert status == 403
    assert server.get("/api/runs") == []  # nothing was started


def connect(server, *, auth=None, headers=None, transports=("websocket",)):
    client = socketio.Client(reconnection=False)
    try:
        client.connect(
            server.base, auth=auth, headers=headers or {}, transports=list(transports), wait_timeout=10
        )
    except socketio.exceptions.ConnectionError as exc:
        client.disconnect()
        return None, str(exc)
    return client, None


@pytest.mark.parametrize("transports", [("websocket",), ("polling",)])
def test_socketio_refuses_no_token_a_wrong_token_a_forged_host_and_origin(server, transports):
    assert connect(server, transports=transports)[0] is None
    assert connect(server, auth={"token": "wrong"}, transports=transports)[0] is None
    good = {"token": TOKEN}
    assert connect(server, auth=good, headers={"Host": "evil.example"}, transports=transports)[0] is None
    assert (
        connect(server, auth=good, headers={"Origin": "http://evil.example"}, transports=transports)[0]
        is None
    )
    client, error = connect(server, auth=good, transports=transports)
    assert error is None and client.connected
    answer = client.call("subscribe", {"run_id": "no-such-run", "after": 0}, timeout=10)
    assert answer["ok"] is False and "no run" in answer["error"]
    client.disconnect()


def test_a_non_loopback_host_needs_a_token_set_explicitly(world):
    env = {k: v for k, v in world.env.items() if k != "ORCHESTRATOR_UI_TOKEN"}
    result = run_command(
        [sys.executable, "-m", "orchestrator", "serve", "--host", "0.0.0.0", "--port", "0", "--no-open"],
        world.repo,
        env=env,
        timeout_s=60,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr and "ORCHESTRATOR_UI_TOKEN" in result.stderr
