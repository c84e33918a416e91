"""What the dashboard does: start, cancel, follow up, resume, merge, discard, roll back.

Each goes through the same functions as the CLI (run service, runs_cmd), so it refuses what the CLI
refuses with the same message. Cancel and follow-up go through the store as control requests, so they
reach a run whichever process owns it; runs the dashboard starts or continues execute in its own threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestrator.cli.runs_cmd import discard_run, merge_run_into, rollback_run
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.errors import UsageError
from orchestrator.events import Notice, RunEvent
from orchestrator.logs import get_logger
from orchestrator.store.records import repo_key
from orchestrator.ui.commands import run_command_line
from orchestrator.ui.merge_preview import merge_preview

log = get_logger("orchestrator.ui")


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    return value.strip() if isinstance(value, str) else ""


def _number(body: Mapping[str, Any], key: str, kind: type[float] | type[int]) -> Any:
    value = body.get(key)
    if value in (None, ""):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{key} must be a number, not {value!r}") from None


class Actions:
    def __init__(self, service: RunService, allowed_repos: Sequence[Path]) -> None:
        self.service = service
        self.store = service.store
        self.allowed_repos = [Path(repo_key(r)) for r in allowed_repos]
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._cancels: dict[str, threading.Event] = {}

    # --- starting and continuing runs -----------------------------------------------------------------

    def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        task = _text(body, "task")
        if not task:
            raise UsageError("a run needs a task", hint="say what the agents should do")
        repo = Path(repo_key(_text(body, "repo") or (self.allowed_repos[0] if self.allowed_repos else ".")))
        if repo not in self.allowed_repos:
            raise UsageError(
                f"{repo} is not one of the repositories this dashboard may start runs in",
                hint=f"start the dashboard with --repo {repo} to allow it",
            )
        overrides = [o for o in body.get("agents", []) if isinstance(o, str) and o.strip()]
        spec = RunSpec(
            task=task,
            cwd=repo,
            repo=repo,
            workflow=_text(body, "workflow") or None,
            include_uncommitted=bool(body.get("include_uncommitted")),
            budget_usd=_number(body, "budget_usd", float),
            max_iterations=_number(body, "max_iterations", int),
            agent_overrides=overrides,
            cluster=self.service.settings.cluster.enabled,
        )
        if spec.cluster:
            self._check_cluster()
        record = self.service.create(spec)
        if spec.cluster:
            self._submit(record.id)
        else:
            self._execute(record.id)
        command = run_command_line(
            task,
            repo=str(repo),
            workflow=spec.workflow,
            agent_overrides=overrides,
            budget_usd=spec.budget_usd,
            max_iterations=spec.max_iterations,
            include_uncommitted=spec.include_uncommitted,
        )
        return {"run_id": record.id, "branch": record.branch, "command": command}

    def resume(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        if run.status == "running":  # what `orchestrator runs resume` says
            raise UsageError(f"run {run.id} is still running", hint="wait for it, or stop its process first")
        if self.store.is_cluster_run(run.id):
            self._resubmit(run.id)
        else:
            self._execute(run.id, resume=True)
        return {"run_id": run.id, "resumed": True}

    # --- on the cluster (cluster.temporal is configured): the workers run it, the page follows it from
    # the shared store like any run; nothing of it runs in this process, so stopping the dashboard
    # leaves it going.

    def _check_cluster(self, run_id: str | None = None) -> None:
        settings = self.service.settings
        if run_id is not None and not settings.cluster.enabled:
            raise UsageError(
                f"run {run_id} runs on the cluster, and this dashboard has no cluster configured",
                hint="start the dashboard with the cluster's configuration (`cluster: {temporal: ...}`)",
            )
        from orchestrator.cli.cluster_cmd import check_cluster_run

        check_cluster_run(settings)

    def _submit(self, run_id: str) -> None:
        """A new run to the cluster, as `run --cluster` hands it over."""
        from orchestrator.cluster.submit import submit

        # The run's repository is the workers' (cli/cluster_cmd.py says why this copy goes).
        self.service.workspace(run_id).remove_worktree()
        submit(self.service.settings, self.store, self.store.get_run(run_id), self.service.env)
        self._fetch_back_when_closed(run_id)

    def _resubmit(self, run_id: str, *, checked: bool = False) -> None:
        """A cluster run goes on on the cluster's workers, as `runs resume` resubmits it."""
        from orchestrator.cluster.submit import submit

        if not checked:
            self._check_cluster(run_id)
        submit(self.service.settings, self.store, self.store.get_run(run_id), self.service.env, resume=True)
        self._fetch_back_when_closed(run_id)

    def _fetch_back_when_closed(self, run_id: str) -> None:
        """As `run --cluster` does at the end: once the run's workflow has closed, its branch into the
        user's repository (a remote's; nothing to do for a shared path). A failed fetch is logged;
        a dashboard stopped before the run ends leaves it on the remote."""
        from orchestrator.cli.cluster_cmd import fetch_back_or_say
        from orchestrator.cluster.submit import wait_closed

        def work() -> None:
            wait_closed(self.service.settings, run_id, timeout_s=None)
            fetch_back_or_say(self.store.get_run(run_id), self.service.env, [log_notice])

        def log_notice(event: RunEvent) -> None:
            if isinstance(event, Notice):
                log.warning(event.text, run_id=run_id)

        threading.Thread(target=work, name=f"dashboard-fetch-{run_id}", daemon=True).start()

    def _follow_up_on_cluster(self, run_id: str, text: str) -> dict[str, Any]:
        """The follow-up goes into the run's event log and the run to the cluster's workers again, as
        the shell's does (cli/cluster_cmd.py); the page follows it from the store."""
        from orchestrator.cli.cluster_cmd import cluster_follow_up

        self._check_cluster(run_id)
        cluster_follow_up(self.store, run_id, text, source="the dashboard")
        self._resubmit(run_id, checked=True)
        return {"run_id": run_id, "request_id": None, "queued": False}

    def follow_up(self, run_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        text = _text(body, "text")
        if not text:
            raise UsageError("a follow-up needs some text", hint="say what the agents should do next")
        run = self.store.get_run(run_id)
        if self.store.is_cluster_run(run.id):
            return self._follow_up_on_cluster(run.id, text)
        request_id = self.store.request_control(
            run.id, "follow_up", {"text": text, "source": "the dashboard"}
        )
        if run.status == "running" and self.store.owner_alive(run.owner_pid, run.owner_token):
            # The owner takes it when the run's current work ends (engine/control_watch.py).
            return {"run_id": run.id, "request_id": request_id, "queued": True}
        if not self.store.take_control(request_id, os.getpid()):
            return {"run_id": run.id, "request_id": request_id, "queued": True}  # its owner took it
        self.store.finish_control(request_id, "done", "continued by the dashboard")
        self._execute(run.id, follow_up=text)
        return {"run_id": run.id, "request_id": request_id, "queued": False}

    def execute(self, run_id: str) -> None:
        """Executes a created run in this process (`orchestrator demo --serve`)."""
        self._execute(run_id)

    def _execute(self, run_id: str, *, resume: bool = False, follow_up: str | None = None) -> None:
        with self._lock:
            running = self._threads.get(run_id)
            if running is not None and running.is_alive():
                raise UsageError(f"run {run_id} is still running", hint="wait for it, or cancel it first")
            cancel = threading.Event()

            def work() -> None:
                try:
                    self.service.execute(run_id, cancel=cancel, resume=resume, follow_up=follow_up)
                except Exception as exc:  # noqa: BLE001 - shown in the run's log, the dashboard goes on
                    log.exception("dashboard run failed", run_id=run_id)
                    self.store.add_event(run_id, Notice(run_id=run_id, level="error", text=f"error: {exc}"))

            thread = threading.Thread(target=work, name=f"dashboard-run-{run_id}", daemon=True)
            self._threads[run_id] = thread
            self._cancels[run_id] = cancel
        thread.start()

    # --- steering -------------------------------------------------------------------------------------

    def cancel(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        if run.status != "running":
            raise UsageError(f"run {run.id} is not running (it is {run.status})", hint="nothing to cancel")
        if not self.store.owner_alive(run.owner_pid, run.owner_token):
            raise UsageError(
                f"run {run.id} is not running: its orchestrator process ({run.owner_pid}) is gone",
                hint=f"resume it: orchestrator runs resume {run.id}",
            )
        request_id = self.store.request_control(run.id, "cancel", {"source": "the dashboard"})
        if self.store.is_cluster_run(run.id) and self.service.settings.cluster.enabled:
            # The worker's ControlWatch obeys the request once the run's step runs; the workflow's
            # cancel also reaches a step still waiting for a worker or a slot (cluster/workflow.py).
            from orchestrator.cluster.submit import cancel_workflow

            cancel_workflow(self.service.settings, run.id)
        return {"run_id": run.id, "request_id": request_id}

    def merge_preview(self, run_id: str, into: str | None) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        return merge_preview(Path(run.repo), run.branch, into, environ=self.service.env)

    def merge(self, run_id: str, into: str | None) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        return asdict(merge_run_into(self.service, run, into))

    def discard(self, run_id: str) -> dict[str, Any]:
        run = self.store.get_run(run_id)
        return {"run_id": run.id, "backup_ref": discard_run(self.service, run)}

    def rollback(self, run_id: str, to: str) -> dict[str, Any]:
        if not to:
            raise UsageError("rollback needs --to: a step id, `base`, or a commit")
        run = self.store.get_run(run_id)
        target, kept = rollback_run(self.service, run, to)
        return {"run_id": run.id, "branch": run.branch, "head": target, "backup_ref": kept}

    # --- shutting down --------------------------------------------------------------------------------

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Cancel the runs this process executes and wait for them to wind down (each stays resumable)."""
        with self._lock:
            threads = list(self._threads.items())
            cancels = dict(self._cancels)
        for run_id, thread in threads:
            if thread.is_alive():
                cancels[run_id].set()
        for _, thread in threads:
            thread.join(timeout_s)
