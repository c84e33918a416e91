"""The HTML pages: thin shells that the page's script fills from the JSON API and the Socket.IO bridge,
so the page and the API cannot drift (what the page shows, /api serves). The token exchange lives here."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request

from orchestrator.ui.context import Context
from orchestrator.ui.security import COOKIE_NAME, session_value, token_matches

pages = Blueprint("pages", __name__)


def _ctx() -> Context:
    context: Context = current_app.extensions["orchestrator"]
    return context


@pages.before_app_request
def exchange_token() -> Response | None:
    """`?token=` from the printed URL becomes an HttpOnly, SameSite=Strict cookie, and leaves the URL."""
    given = request.args.get("token")
    if given is None:
        return None
    if not token_matches(given, _ctx().token):
        return Response(
            "wrong token: open the URL that `orchestrator serve` printed\n", 401, mimetype="text/plain"
        )
    query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
    response = redirect(request.path + (f"?{query}" if query else ""), code=303)
    response.set_cookie(
        COOKIE_NAME,
        session_value(_ctx().token),
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
        path="/",
    )
    return response  # type: ignore[return-value]


@pages.get("/")
def runs_page() -> str:
    return render_template("runs.html", page="runs")


@pages.get("/runs/<run_id>")
def run_page(run_id: str) -> str:
    _ctx().store.get_run(run_id)
    return render_template("run.html", page="run", run_id=run_id)


@pages.get("/new")
def new_run_page() -> str:
    return render_template("new.html", page="new")


@pages.get("/agents")
def agents_page() -> str:
    return render_template("agents.html", page="agents")


@pages.get("/workflows")
def workflows_page() -> str:
    return render_template("workflows.html", page="workflows")


@pages.get("/healthz")
def healthz() -> Response:
    return Response('{"status": "ok"}\n', mimetype="application/json")
