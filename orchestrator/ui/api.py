"""The JSON API under /api: the same shapes as the CLI's --json (built by the same functions)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from orchestrator.cli.agents_cmd import check_agents
from orchestrator.cli.runs_cmd import run_summary_json
from orchestrator.cli.workflows_cmd import _listing_json, _loaded_json
from orchestrator.config import LoadedSettings
from orchestrator.engine.report import build_report
from orchestrator.engine.workflow import list_workflows, load_workflow, read_workflow_file
from orchestrator.errors import ConfigError, UsageError
from orchestrator.store.records import repo_key
from orchestrator.ui.bridge import event_json
from orchestrator.ui.commands import run_commands
from orchestrator.ui.context import Context
from orchestrator.ui.diffs import run_diff

api = Blueprint("api", __name__, url_prefix="/api")
EVENTS_LIMIT = 5000


def ctx() -> Context:
    context: Context = current_app.extensions["orchestrator"]
    return context


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"?{name}= must be a whole number, not {value!r}") from None


def _repo_arg() -> Path | None:
    repo = request.args.get("repo")
    if repo:
        return Path(repo)
    return ctx().allowed_repos[0] if ctx().allowed_repos else None


def _audit(action: str, run_id: str | None, **detail: Any) -> None:
    ctx().audit(action, run_id, detail)


# --- reading -------------------------------------------------------------------------------------------


@api.get("/runs")
def runs() -> Response:
    store = ctx().store
    repo = request.args.get("repo") or None
    status = request.args.get("status") or None
    found = store.list_runs(repo=repo, limit=_int_arg("limit", 200), status=status)
    now = ctx().clock()
    return jsonify([run_summary_json(store, run, now=now) for run in found])


@api.get("/runs/<run_id>")
def run_report(run_id: str) -> Response:
    return jsonify(build_report(ctx().store, run_id, now=ctx().clock()).model_dump(mode="json"))


@api.get("/runs/<run_id>/summary")
def run_summary(run_id: str) -> Response:
    store = ctx().store
    run = store.get_run(run_id)
    data = run_summary_json(store, run, now=ctx().clock())
    data["commands"] = run_commands(run.id, run.branch, run.repo)
    data["budget_usd"] = run.options.budget_usd
    return jsonify(data)


@api.get("/runs/<run_id>/steps")
def run_steps(run_id: str) -> Response:
    """Every step as the store holds it (findings, gate output, notes in `detail`)."""
    ctx().store.get_run(run_id)
    return jsonify([step.model_dump(mode="json") for step in ctx().store.steps(run_id)])


@api.get("/runs/<run_id>/events")
def run_events(run_id: str) -> Response:
    store = ctx().store
    store.get_run(run_id)
    after = _int_arg("after", 0)
    limit = min(max(_int_arg("limit", EVENTS_LIMIT), 1), EVENTS_LIMIT)
    tail = _int_arg("tail", 0)
    if tail > 0:  # the last `tail` events: what a page opening a long run shows first
        after = max(store.last_seq(run_id) - min(tail, EVENTS_LIMIT), 0)
    events = [event_json(e) for e in store.events(run_id, after, limit=limit)]
    return jsonify({"run_id": run_id, "after": after, "events": events, "latest": store.last_seq(run_id)})


@api.get("/runs/<run_id>/diff")
def diff(run_id: str) -> Response:
    context = ctx()
    run = context.store.get_run(run_id)
    ws = context.service.workspace(run.id)
    step_id = request.args.get("step") or None
    commit = None
    if step_id is not None:
        step = context.store.step(run.id, step_id)
        if step is None or step.commit is None:
            raise UsageError(f"step {step_id} of run {run.id} made no commit", hint="pick an editing step")
        commit = step.commit
    data = run_diff(
        ws, Path(run.repo), step_commit=commit, file=request.args.get("file") or None, environ=context.env
    )
    if request.args.get("stat"):
        data["diff"] = ""  # the page loads each file on its own
    return jsonify(data)


@api.get("/runs/<run_id>/log")
def commit_log(run_id: str) -> Response:
    run = ctx().store.get_run(run_id)
    return jsonify([asdict(c) for c in ctx().service.workspace(run.id).log()])


@api.get("/agents")
def agents() -> Response:
    rows = check_agents(LoadedSettings(ctx().settings, None))
    return jsonify([row.to_json() for row in rows])


@api.get("/workflows")
def workflows() -> Response:
    return jsonify([_listing_json(item) for item in list_workflows(_repo_arg())])


@api.get("/workflows/<name>")
def workflow(name: str) -> Response:
    return jsonify(_loaded_json(load_workflow(name, repo=_repo_arg())))


@api.post("/workflows/validate")
def validate_workflow() -> Response:
    """Checks YAML text as `orchestrator workflows validate FILE` checks a file."""
    text = _body().get("text")
    if not isinstance(text, str):
        raise UsageError('send the workflow\'s YAML as {"text": ...}')
    with tempfile.TemporaryDirectory(prefix="orchestrator-validate-") as folder:
        path = Path(folder) / "workflow.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            found = read_workflow_file(path)
        except ConfigError as exc:
            return jsonify({"ok": False, "error": str(exc).replace(str(path), "workflow.yaml")})
    notes = list(dict.fromkeys(note for fw in found for note in fw.notes))
    return jsonify({"ok": True, "names": [fw.workflow.name for fw in found], "notes": notes})


@api.get("/repos")
def repos() -> Response:
    return jsonify([repo_key(r) for r in ctx().allowed_repos])


# --- acting --------------------------------------------------------------------------------------------


@api.post("/runs")
def start() -> tuple[Response, int]:
    body = _body()
    result = ctx().actions.start(body)
    _audit("start", result["run_id"], task=body.get("task"), repo=body.get("repo"))
    return jsonify(result), 202


@api.post("/runs/<run_id>/cancel")
def cancel(run_id: str) -> tuple[Response, int]:
    result = ctx().actions.cancel(run_id)
    _audit("cancel", run_id)
    return jsonify(result), 202


@api.post("/runs/<run_id>/follow-up")
def follow_up(run_id: str) -> tuple[Response, int]:
    result = ctx().actions.follow_up(run_id, _body())
    _audit("follow_up", run_id, queued=result["queued"])
    return jsonify(result), 202


@api.post("/runs/<run_id>/resume")
def resume(run_id: str) -> tuple[Response, int]:
    result = ctx().actions.resume(run_id)
    _audit("resume", run_id)
    return jsonify(result), 202


@api.get("/runs/<run_id>/merge-preview")
def merge_preview(run_id: str) -> Response:
    return jsonify(ctx().actions.merge_preview(run_id, request.args.get("into") or None))


@api.post("/runs/<run_id>/merge")
def merge(run_id: str) -> Response:
    into = _body().get("into") or None
    result = ctx().actions.merge(run_id, into)
    _audit("merge", run_id, into=result["target_branch"], after=result["after"])
    return jsonify(result)


@api.post("/runs/<run_id>/discard")
def discard(run_id: str) -> Response:
    result = ctx().actions.discard(run_id)
    _audit("discard", run_id, backup_ref=result["backup_ref"])
    return jsonify(result)


@api.post("/runs/<run_id>/rollback")
def rollback(run_id: str) -> Response:
    result = ctx().actions.rollback(run_id, str(_body().get("to") or ""))
    _audit("rollback", run_id, to=result["head"])
    return jsonify(result)
