"""Codex CLI (`codex`, @openai/codex), headless: `codex exec --json`, the prompt on stdin.

What it does (recorded with 0.169.0; the pinned 0.171.0 passes the same real-CLI suite), in tests/fixtures/transcripts/codex/:
- JSONL on stdout: `thread.started{thread_id}`, `turn.started`, `item.started|item.completed` with
  `item.type` in agent_message, command_execution, file_change, mcp_tool_call, web_search, reasoning,
  todo_list, error (a warning, e.g. unknown model metadata: the run goes on); `turn.completed{usage}`;
  failures: `error{message}` then `turn.failed{error}`. `error` lines saying "Reconnecting... n/m" are
  retries, not failures.
- No model name and no cost anywhere in the stream: we price tokens with the model we asked for.
- `turn.completed.usage` is the thread's running total: a resumed session counts its earlier turns too.
- Refusals do not fail the run (exit 0). A refused edit (read-only sandbox) prints no JSON at all, only
  a stderr log line, "patch rejected: writing is blocked by read-only sandbox". A writing shell command
  shows as a failed command_execution ("Read-only file system") only sometimes (a fast failure often
  gets no item); with RUST_LOG including codex_sandboxing=warn, stderr always says "recorded sandbox
  violation".
- No credentials with the built-in provider: it retries, then waits for the network for ever (our
  limits end it). A custom provider whose key variable is unset fails at once ("Missing environment
  variable").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.auth.codex import codex_home, provider_vars
from orchestrator.adapters.auth.codex import find_credentials as find_codex_credentials
from orchestrator.adapters.base import (
    AgentRequest,
    Availability,
    Command,
    PermissionMode,
    ProcessOutcome,
    limit_error,
    load_json_line,
    price_usd,
    probe_availability,
)
from orchestrator.adapters.pins import PINNED
from orchestrator.adapters.versions import VersionCache
from orchestrator.errors import AgentErrorKind
from orchestrator.events import (
    AgentErrorEvent,
    AgentEvent,
    AssistantMessage,
    Result,
    SessionStarted,
    ToolStatus,
    ToolUse,
    Usage,
)

PIN = PINNED["codex"]

# Our permission modes on Codex's sandbox. `exec` never asks for approval: what the sandbox forbids
# fails. workspace-write: edits and commands may write inside the working directory (and TMPDIR);
# read-only: nothing may be written, reads and read-only commands still work. /tmp is left out of the
# writable places: TMPDIR is the run's own, and inside our OS sandbox (workspace/sandbox.py) /tmp is
# read-only, where Codex's own bubblewrap would fail setting up a mount point in it.
PERMISSION_FLAGS: dict[PermissionMode, tuple[str, ...]] = {
    PermissionMode.EDIT: (
        "--sandbox",
        "workspace-write",
        "-c",
        "sandbox_workspace_write.exclude_slash_tmp=true",
    ),
    PermissionMode.READ_ONLY: ("--sandbox", "read-only"),
    PermissionMode.BYPASS: ("--dangerously-bypass-approvals-and-sandbox",),
}

# What we asked for, kept beside the run for `finish`: the stream never names the model.
STEP_FILE = "codex-step.json"

# Credentials Codex reads itself (CODEX_API_KEY is sent by the built-in provider; CODEX_ACCESS_TOKEN is
# an agent-identity token). OPENAI_API_KEY only matters to a provider whose `env_key` names it.

_RETRY = re.compile(r"^Reconnecting\.\.\.")
_SANDBOX_WRITE = re.compile(r"Read-only file system")
_REFUSAL = re.compile(r"(patch rejected: .*|writing is blocked by read-only sandbox.*|sandbox violation: .*)")

# Set for every run. The sandbox's refusals of shell commands reach the JSON stream only by chance (a
# fast-failing command often gets no item at all); its violation log line always comes, at WARN.
HEADLESS_ENV: dict[str, str] = {"RUST_LOG": "error,codex_sandboxing=warn"}

# Failures that reach us only as text: `error` / `turn.failed` messages, or the stderr tail.
TEXT_ERRORS: tuple[tuple[str, AgentErrorKind, str], ...] = (
    ("Missing environment variable", "auth", "set the provider's key variable in agents.codex.env"),
    ("401 Unauthorized", "auth", "check the key in agents.codex.env (CODEX_API_KEY), or `codex login`"),
    ("invalid_api_key", "auth", "check the key in agents.codex.env (CODEX_API_KEY)"),
    ("Incorrect API key", "auth", "check the key in agents.codex.env (CODEX_API_KEY)"),
    ("no Codex credentials were found", "auth", "run `codex login`, or set CODEX_API_KEY"),
    ("Not logged in", "auth", "run `codex login`, or set CODEX_API_KEY in agents.codex.env"),
    ("sign in again", "auth", "run `codex login` again"),
    ("re-run codex login", "auth", "run `codex login` again"),
    ("429 Too Many Requests", "rate_limit", "wait, or lower the concurrency"),
    ("rate limit", "rate_limit", "wait, or lower the concurrency"),
    ("usage limit", "rate_limit", "wait for the usage limit to reset"),
    ("quota", "rate_limit", "check the account's quota"),
)


class CodexAdapter:
    name = "codex"
    # CODEX_HOME holds no secret, but it is where the stored login lives: without it the CLI would
    # look in ~/.codex and find none.
    credential_vars: tuple[str, ...] = ("CODEX_API_KEY", "CODEX_ACCESS_TOKEN", "OPENAI_API_KEY", "CODEX_HOME")
    # `codex exec resume` reports the thread's running totals (openai/codex#17539).
    usage_accumulates_over_session = True

    # --- the command ------------------------------------------------------------------------------

    def build_command(self, request: AgentRequest) -> Command:
        """`codex exec` reads stdin even with a prompt argument (and hangs on an open pipe), so the
        prompt goes on stdin (`-`): that also carries whole diffs past argv's 128 KiB per string.
        Options sit before `resume`, where `exec` takes them for its subcommand too (`resume` has no
        --sandbox of its own)."""
        argv = [request.command or PIN.binary, "exec", "--json", "--skip-git-repo-check"]
        argv += PERMISSION_FLAGS[request.permission]
        if request.model:
            argv += ["--model", request.model]
        argv += request.extra_args
        if request.resume_session:
            argv += ["resume", request.resume_session]  # keeps the thread id and its history
        argv.append("-")
        step_file = request.run_dir / STEP_FILE
        return Command(
            argv=tuple(argv),
            cwd=request.cwd,
            env={**HEADLESS_ENV, **request.env},
            stdin=request.prompt,
            setup_files={step_file: json.dumps({"model": request.model})},
            collect_files=(step_file,),
        )

    # --- the output -------------------------------------------------------------------------------

    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_line(line)
        if data is None:
            return []
        kind = data.get("type")
        if kind == "thread.started":
            return [SessionStarted(session_id=_str(data.get("thread_id")))]
        if kind in ("item.started", "item.updated", "item.completed"):
            return _item_events(kind, _dict(data.get("item")))
        if kind == "turn.completed":
            # The line carries no text and no thread id; `finish` completes the result from the events.
            return [_usage(_dict(data.get("usage"))), Result(success=True)]
        if kind == "turn.failed":
            message = _str(_dict(data.get("error")).get("message")) or "the turn failed"
            return [Result(success=False, final_text=message)]
        if kind == "error":
            message = _str(data.get("message")) or "codex reported an error"
            if _RETRY.match(message):
                return []  # a retry; the failure, if it comes, follows as a plain error
            return [_classified(message)]
        return []  # turn.started, anything new: nothing to report

    def finish(
        self, outcome: ProcessOutcome, events: Sequence[AgentEvent], collected: Mapping[Path, str]
    ) -> list[AgentEvent]:
        extra: list[AgentEvent] = []
        errors = [e for e in events if isinstance(e, AgentErrorEvent)]
        result = next((e for e in reversed(events) if isinstance(e, Result)), None)
        limit = limit_error(outcome)
        if limit is not None:
            if "waiting for network" in outcome.output_tail:
                limit = AgentErrorEvent(
                    kind=limit.kind,
                    message=f"{limit.message}; codex was waiting for the network (no credentials or no "
                    "route to the model endpoint?)",
                )
            extra.append(limit)
        elif result is None and not errors:
            extra.append(
                _error_from_text(outcome.output_tail)
                or AgentErrorEvent(
                    kind="crashed",
                    message=f"codex {outcome.ended} and gave no result: "
                    f"{_last_line(outcome.output_tail) or '(no output)'}",
                )
            )
        elif result is not None and not result.success and not errors:
            extra.append(_classified(result.final_text))
        refusals = _refusals_in(outcome.output_tail)
        refusals += [_describe(e) for e in events if isinstance(e, ToolUse) and e.status == "refused"]
        if refusals and not any(e.kind == "refused" for e in errors):
            extra.append(
                AgentErrorEvent(kind="refused", message=f"codex's sandbox refused: {_join(refusals)}")
            )
        priced = _priced_usage(events, _asked_model(collected))
        if priced is not None:
            extra.append(priced)
        if result is not None:
            completed = _completed_result(result, events)
            if completed is not None:
                extra.append(completed)
        return extra

    # --- can it run here? ---------------------------------------------------------------------------

    def availability(
        self,
        env: Mapping[str, str],
        command: str | None = None,
        *,
        args: Sequence[str] = (),
        model: str | None = None,
        versions: VersionCache | None = None,
    ) -> Availability:
        found = find_codex_credentials(env, args)
        return probe_availability(
            self.name,
            env,
            command,
            auth_source=found.source if found.found else None,
            auth_problem=(found.problem, found.fix or "") if found.problem else None,
            missing_auth=(
                "no credentials: no CODEX_API_KEY / CODEX_ACCESS_TOKEN, no login in "
                f"{codex_home(env) or '~/.codex'} and no model_provider of your own "
                "(OPENAI_API_KEY alone is not used by the built-in provider)",
                "run `codex login` once, or set CODEX_API_KEY in agents.codex.env, or configure a "
                "model_provider in ~/.codex/config.toml",
            ),
            versions=versions,
        )

    def configured_credential_vars(self, parent: Mapping[str, str], args: Sequence[str]) -> tuple[str, ...]:
        """The key variable of the model provider Codex is configured with (its `env_key`)."""
        return provider_vars(parent, args)


def auth_source_in(env: Mapping[str, str], args: Sequence[str] = ()) -> str | None:
    """Which credential the CLI will use with this environment, or None."""
    found = find_codex_credentials(env, args)
    return found.source if found.found else None


# --- parsing, one item type at a time ------------------------------------------------------------------


def _item_events(kind: str, item: dict[str, Any]) -> list[AgentEvent]:
    item_type = item.get("type")
    call_id = _str(item.get("id"))
    status = _status(kind, item)
    if item_type == "agent_message":
        text = _str(item.get("text"))
        return [AssistantMessage(text=text)] if kind == "item.completed" and text else []
    if item_type == "command_execution":
        output = _str(item.get("aggregated_output"))
        if status == "failed" and output and _SANDBOX_WRITE.search(output):
            status = "refused"  # the sandbox's read-only mounts, not the command, said no
        return [
            ToolUse(
                call_id=call_id,
                tool="shell",
                action="command_run",
                status=status,
                command=_str(item.get("command")),
                detail=_clip(output) if status in ("failed", "refused") else None,
            )
        ]
    if item_type == "file_change":
        changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
        return [
            ToolUse(
                call_id=call_id,
                tool="apply_patch",
                action="file_edit",
                status=status,
                path=_str(change.get("path")),
                detail=_str(change.get("kind")),
            )
            for change in changes
        ]
    if item_type == "mcp_tool_call":
        error = _str(_dict(item.get("error")).get("message"))
        tool = f"mcp:{item.get('server') or '?'}.{item.get('tool') or '?'}"
        return [ToolUse(call_id=call_id, tool=tool, action="other", status=status, detail=_clip(error))]
    if item_type == "web_search":
        return [
            ToolUse(
                call_id=call_id,
                tool="web_search",
                action="search",
                status=status,
                detail=_str(item.get("query")),
            )
        ]
    # reasoning, todo_list, and `error` items (warnings: the run goes on) are not events of ours.
    return []


def _status(kind: str, item: Mapping[str, Any]) -> ToolStatus:
    if kind != "item.completed":
        return "started"
    status = item.get("status")
    if status == "declined":
        return "refused"
    exit_code = item.get("exit_code")
    if status == "failed" or (isinstance(exit_code, int) and exit_code != 0):
        return "failed"
    return "succeeded"


def _usage(usage: Mapping[str, Any]) -> Usage:
    # OpenAI counts: cached input is part of input, reasoning is part of output.
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=_int(usage.get("cached_input_tokens")),
        scope="total",
    )


# --- finishing ------------------------------------------------------------------------------------------


def _asked_model(collected: Mapping[Path, str]) -> str | None:
    for path, text in collected.items():
        if path.name == STEP_FILE:
            try:
                data = json.loads(text)
            except ValueError:
                return None
            return _str(data.get("model")) if isinstance(data, dict) else None
    return None


def _priced_usage(events: Sequence[AgentEvent], model: str | None) -> Usage | None:
    """The last total again, with the model and its price, when we know both."""
    usage = next((e for e in reversed(events) if isinstance(e, Usage) and e.scope == "total"), None)
    if usage is None or model is None or usage.cost_usd is not None:
        return None
    cost = price_usd(model, usage.input_tokens, usage.output_tokens, usage.cached_tokens)
    if cost is None:
        return None
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cost_usd=cost,
        model=model,
        scope="total",
    )


def _completed_result(result: Result, events: Sequence[AgentEvent]) -> Result | None:
    """turn.completed names neither the final text nor the thread: both come from earlier lines."""
    session_id = result.session_id or next(
        (e.session_id for e in events if isinstance(e, SessionStarted) and e.session_id), None
    )
    final_text = result.final_text
    if result.success and not final_text:
        final_text = next((e.text for e in reversed(events) if isinstance(e, AssistantMessage)), "")
    if session_id == result.session_id and final_text == result.final_text:
        return None
    return Result(final_text=final_text, session_id=session_id, success=result.success)


def _classified(message: str) -> AgentErrorEvent:
    return _error_from_text(message) or AgentErrorEvent(kind="other", message=_clip(message) or message)


def _error_from_text(text: str) -> AgentErrorEvent | None:
    for needle, kind, hint in TEXT_ERRORS:
        for line in text.splitlines():
            if needle.lower() in line.lower():
                return AgentErrorEvent(kind=kind, message=f"{line.strip()[:300]} (hint: {hint})")
    return None


def _refusals_in(tail: str) -> list[str]:
    """The sandbox's refusals, from the log lines (never from the JSON, which may quote anything)."""
    found: list[str] = []
    for line in tail.splitlines():
        match = None if line.lstrip().startswith("{") else _REFUSAL.search(line)
        if match:
            found.append(match.group(1))
    return found


def _describe(event: ToolUse) -> str:
    target = event.path or event.command
    return f"{event.tool} {target}" if target else event.tool


def _join(what: list[str]) -> str:
    unique = list(dict.fromkeys(w.strip() for w in what))
    return "; ".join(unique[:5]) + (f"; and {len(unique) - 5} more" if len(unique) > 5 else "")


# --- small helpers ---------------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _clip(text: str | None, limit: int = 500) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
