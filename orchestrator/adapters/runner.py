"""Run one agent step: build the command, spawn it through proc, parse each line into events, judge it.

This is the one path every entry point (run-agent, the engine, the shell) uses to run an adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.adapters.base import (
    Adapter,
    AgentRequest,
    ProcessOutcome,
    StepSummary,
    install_hint,
    resolve_executable,
    summarize,
)
from orchestrator.adapters.transcript import Transcript
from orchestrator.config import AgentConfig
from orchestrator.errors import AgentNotInstalled
from orchestrator.events import AgentErrorEvent, AgentEvent, Result
from orchestrator.proc import (
    ProcResult,
    ProcSpec,
    PtyCommunicator,
    Stream,
    SubprocessCommunicator,
    child_env,
    run_command,
)
from orchestrator.secrets import SecretMasker
from orchestrator.workspace.sandbox import Sandbox

log = structlog.get_logger(__name__)

# After the CLI's final result event, how long it may take to exit before we end it (some CLIs hang
# after answering; the result, not the exit, marks the step done).
RESULT_GRACE_S = 10.0

EventCallback = Callable[[AgentEvent], None]


@dataclass
class AgentStepResult:
    agent: str
    summary: StepSummary
    events: list[AgentEvent]
    files_changed: list[str]
    exit_code: int | None
    duration_s: float
    first_output_s: float | None
    ended_after_result: bool = False
    process: ProcResult | None = field(default=None, repr=False)
    spec: ProcSpec | None = field(default=None, repr=False)  # what was run (for the audit trail)

    @property
    def success(self) -> bool:
        return self.summary.success

    def to_json(self) -> dict[str, Any]:
        """The object `orchestrator run-agent --json` prints."""
        s = self.summary
        return {
            "agent": self.agent,
            "status": "succeeded" if s.success else "failed",
            "exit_code": self.exit_code,
            "final_text": s.final_text,
            "session_id": s.session_id,
            "files_changed": self.files_changed,
            "usage": {
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cached_tokens": s.cached_tokens,
                "cost_usd": s.cost_usd,
            },
            "error": None if s.success else {"kind": s.error_kind, "message": s.error_message},
            "duration_s": round(self.duration_s, 3),
            "first_output_s": None if self.first_output_s is None else round(self.first_output_s, 3),
        }


def _git_dirty(cwd: Path) -> dict[str, str] | None:
    """path -> a token of its current content, for every file git sees as changed; None outside git."""
    status = run_command(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"], cwd, timeout_s=60
    )
    if not status.ok:
        return None
    entries = [e for e in status.stdout.split("\0") if e]
    paths: list[str] = []
    skip_next = False
    for entry in entries:
        if skip_next:  # the source path of a rename
            skip_next = False
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            skip_next = True
        paths.append(path)
    if not paths:
        return {}
    existing = [p for p in paths if (cwd / p).is_file()]
    hashes = run_command(["git", "hash-object", "--", *existing], cwd, timeout_s=60) if existing else None
    tokens = dict(zip(existing, hashes.stdout.split(), strict=False)) if hashes and hashes.ok else {}
    return {p: tokens.get(p, "deleted") for p in paths}


def _changed_between(before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> list[str] | None:
    if before is None or after is None:
        return None
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


_SESSION_USAGE = "session-usage.json"


def _step_share_of_session(summary: StepSummary, request: AgentRequest) -> StepSummary:
    """For a CLI that reports the whole session's usage on resume: this step's share is the session's
    total now minus what it had reported before (kept per session in the agent's run folder)."""
    ledger_path = request.run_dir / _SESSION_USAGE
    try:
        ledger: dict[str, list[float]] = json.loads(ledger_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ledger = {}
    before = (
        ledger.get(request.resume_session or "", [0, 0, 0, 0.0]) if request.resume_session else [0, 0, 0, 0.0]
    )
    now = [summary.input_tokens, summary.output_tokens, summary.cached_tokens, summary.cost_usd or 0.0]
    if summary.session_id:
        ledger[summary.session_id] = now
        ledger_path.parent.mkdir(parents=True, exist_ok=True)
        ledger_path.write_text(json.dumps(ledger), encoding="utf-8")
    if not request.resume_session or summary.input_tokens < before[0]:
        return summary  # a new session, or numbers that are not cumulative after all
    return dataclasses.replace(
        summary,
        input_tokens=int(now[0] - before[0]),
        output_tokens=max(int(now[1] - before[1]), 0),
        cached_tokens=max(int(now[2] - before[2]), 0),
        cost_usd=None if summary.cost_usd is None else max(now[3] - float(before[3]), 0.0),
    )


def _masked_tail(tail: str, masker: SecretMasker | None, limit: int) -> str:
    if masker is None:
        return tail
    if len(tail.encode("utf-8", "replace")) >= limit and "\n" in tail:
        # The tail was cut: its first line may begin in the middle of a secret, which masking by value
        # would no longer recognise. That line goes.
        tail = tail.split("\n", 1)[1]
    return masker.mask(tail)


def run_agent_step(
    adapter: Adapter,
    request: AgentRequest,
    config: AgentConfig,
    *,
    parent_env: Mapping[str, str],
    on_event: EventCallback | None = None,
    cancel: threading.Event | None = None,
    transcript: Path | None = None,
    result_grace_s: float = RESULT_GRACE_S,
    track_changes: bool = True,
    sandbox: Sandbox | None = None,
    masker: SecretMasker | None = None,
    on_started: Callable[[], None] | None = None,
) -> AgentStepResult:
    """Run one step. `track_changes` compares git status before and after to list changed files; the
    engine turns it off because it commits each step and takes the files from the commit.

    With a `masker`, every output line is masked as it is read, before it is written to the transcript
    or parsed, so no event, transcript or error message made from it holds a secret. With a `sandbox`
    that is on, the CLI may write only its working folder, its run folder and its own state."""
    command = adapter.build_command(request)
    for path, text in command.setup_files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env = child_env(parent_env, command.env, tmpdir=request.run_dir / "tmp")
    # The pinned CLIs may live in our cache folder rather than on PATH (orchestrator install-clis).
    argv0 = command.argv[0]
    if os.sep not in argv0:
        argv0 = resolve_executable(argv0, env) or argv0
    argv: tuple[str, ...] = (argv0, *command.argv[1:])
    if sandbox is not None:
        writable = (command.cwd, request.run_dir)
        argv = tuple(sandbox.wrap(argv, cwd=command.cwd, writable=writable, env=env, agent=adapter.name))
    spec = ProcSpec(
        argv=argv,
        cwd=command.cwd,
        env=env,
        stdin=command.stdin,
        wall_timeout_s=config.timeout_s,
        idle_timeout_s=config.idle_timeout_s,
        install_hint=install_hint(adapter.name),
        on_started=on_started,
    )
    communicator = PtyCommunicator() if config.communicator == "pty" else SubprocessCommunicator()
    events: list[AgentEvent] = []
    before = _git_dirty(command.cwd) if track_changes else None

    # Our own stop signal: the caller's cancel, or the result grace period running out.
    stop = threading.Event()
    result_seen = threading.Event()
    watcher_done = threading.Event()

    def watch() -> None:
        grace_deadline: float | None = None
        while not watcher_done.wait(0.1):
            if cancel is not None and cancel.is_set():
                stop.set()
                return
            if result_seen.is_set():
                grace_deadline = grace_deadline or time.monotonic() + result_grace_s
                if time.monotonic() >= grace_deadline:
                    stop.set()
                    return

    def publish(new: list[AgentEvent]) -> None:
        for event in new:
            events.append(event)
            if isinstance(event, Result):
                result_seen.set()
            if on_event is not None:
                on_event(event)

    transcript_files = Transcript(transcript, config.transcript_max_bytes) if transcript is not None else None

    def on_line(stream: Stream, line: str) -> None:
        if masker is not None:
            line = masker.mask(line)
        if transcript_files is not None:
            transcript_files.write(stream, line)
        if stream == "stderr":
            return
        try:
            parsed = adapter.parse_line(line)
        except Exception as exc:  # an unknown shape must never end the run (PEERS #2)
            log.warning("unparsed line", agent=adapter.name, error=repr(exc))
            parsed = []
        publish(parsed)

    watcher = threading.Thread(target=watch, name=f"{adapter.name}-watch", daemon=True)
    watcher.start()
    started = time.monotonic()
    proc_result: ProcResult | None = None
    log.info("agent spawned", agent=adapter.name, executable=spec.argv[0], cwd=str(spec.cwd))
    try:
        proc_result = communicator.run(spec, on_line, cancel=stop)
    except AgentNotInstalled as exc:
        log.info("agent not installed", agent=adapter.name, error=str(exc))
        publish([AgentErrorEvent(kind="not_installed", message=str(exc))])
    finally:
        watcher_done.set()
        watcher.join()
        if transcript_files is not None:
            transcript_files.close()

    cancelled_by_user = cancel is not None and cancel.is_set()
    ended_after_result = bool(
        proc_result and proc_result.cancelled and result_seen.is_set() and not cancelled_by_user
    )
    if proc_result is None:
        outcome = ProcessOutcome(exit_code=None, duration_s=time.monotonic() - started)
    else:
        outcome = ProcessOutcome(
            # A CLI we ended after its final result is judged by that result, as if it had exited.
            exit_code=0 if ended_after_result else proc_result.exit_code,
            timed_out=proc_result.timed_out,
            idle=proc_result.idle,
            cancelled=proc_result.cancelled and not ended_after_result,
            duration_s=proc_result.duration_s,
            output_tail=_masked_tail(proc_result.tail, masker, spec.tail_bytes),
            wall_limit_s=config.timeout_s,
            idle_limit_s=config.idle_timeout_s,
            signal=proc_result.signal,
        )
        collected: dict[Path, str] = {}
        for path in command.collect_files:
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8")
                collected[path] = text if masker is None else masker.mask(text)
        publish(adapter.finish(outcome, events, collected))

    if proc_result is not None:
        log.info(
            "agent exited",
            agent=adapter.name,
            exit_code=proc_result.exit_code,
            signal=proc_result.signal,
            duration_s=round(proc_result.duration_s, 3),
            timed_out=proc_result.timed_out,
            idle=proc_result.idle,
            cancelled=proc_result.cancelled,
        )
    summary = summarize(events, outcome)
    if adapter.usage_accumulates_over_session:
        summary = _step_share_of_session(summary, request)
    changed = _changed_between(before, _git_dirty(command.cwd)) if track_changes else None
    if changed is None:
        changed = list(summary.files_touched)
    return AgentStepResult(
        agent=adapter.name,
        summary=summary,
        events=events,
        files_changed=changed,
        exit_code=None if proc_result is None else proc_result.exit_code,
        duration_s=time.monotonic() - started,
        first_output_s=None if proc_result is None else proc_result.first_output_s,
        ended_after_result=ended_after_result,
        process=proc_result,
        spec=spec,
    )
