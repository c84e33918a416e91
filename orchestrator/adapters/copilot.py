"""GitHub Copilot CLI (`copilot`, pinned in pins.py), headless.

    copilot --output-format json --usage-output-file RUN_DIR/copilot-usage.json --no-auto-update
            --no-ask-user --log-dir RUN_DIR/copilot-logs [--model M] [--resume=ID] PERMISSION... ARGS...
    (the prompt on stdin)

The prompt goes on stdin, which Copilot reads as a prompt-mode run exactly like `-p PROMPT`: no argv
length limit (a review prompt carries a whole diff) and no prompt in the process list.

Facts this module rests on (observed with 1.0.102; see ../shared/cli-facts/CLI_FACTS.md):
- stdout is JSONL. Tokens never appear in it: `--usage-output-file` writes them at exit, but for the
  whole session: a resumed session reports every earlier invocation's tokens again. The tokens of this
  invocation alone come from the OpenTelemetry file exporter (one `chat` span per model call), which
  `finish` prefers; the report is the fallback when there are no spans.
- The session id appears only in the final `result` line, and that line carries no text: the final
  text is the last `assistant.message`, so `finish` re-issues the Result with it.
- A denied tool ends as `tool.execution_complete{success:false, error:{code:"denied"}}` and the CLI
  still exits 0; `finish` turns denials into a "refused" error.
- API failures end as `session.error{errorType, statusCode}` and rc 1; a missing login is only text on
  stderr ("No authentication information found"), rc 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.auth.copilot import PROVIDER_VARS
from orchestrator.adapters.auth.copilot import find_credentials as find_copilot_credentials
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
    ToolAction,
    ToolUse,
    Usage,
)

NAME = "copilot"
USAGE_FILE = "copilot-usage.json"
OTEL_FILE = "copilot-otel.jsonl"
LOG_DIR = "copilot-logs"

# Shell commands a reviewer may run without asking (read-only mode). Anything else, and any
# redirection to a file, is denied by the CLI itself because no one can approve it headless.
# Known gap: `git diff|log|show --output=FILE` writes a file and Copilot's rules cannot tell it apart
# (`--deny-tool=shell(git diff --output:*)` catches `--output FILE` but not `--output=FILE`); the engine
# undoes a reviewer's edits in the worktree, and denying `git diff` would make every review "refused".
READ_ONLY_SHELL: tuple[str, ...] = (
    "shell(git status:*)",
    "shell(git diff:*)",
    "shell(git log:*)",
    "shell(git show:*)",
    "shell(git blame:*)",
    "shell(git ls-files:*)",
    "shell(git rev-parse:*)",
    "shell(cat)",
    "shell(head)",
    "shell(tail)",
    "shell(ls)",
    "shell(wc)",
    "shell(grep)",
    "shell(rg)",
    "shell(pwd)",
)

_FILE_EDIT_TOOLS = {"create", "edit", "write", "str_replace_editor", "apply_patch", "multi_edit"}
_FILE_READ_TOOLS = {"view", "read", "read_file"}
_SHELL_TOOLS = {"bash", "shell", "powershell"}
_SEARCH_TOOLS = {"grep", "glob", "rg", "search", "web_search", "web_fetch"}

_AUTH_TEXT = re.compile(
    r"No authentication information found|Authentication failed|not authenticated|Bad credentials"
    r"|invalid api key|HTTP 401|401 Unauthorized|Offline mode requires a local model provider",
    re.IGNORECASE,
)
_RATE_TEXT = re.compile(r"\b429\b|rate.?limit", re.IGNORECASE)

_ERROR_TYPES: dict[str, AgentErrorKind] = {
    "authentication": "auth",
    "authorization": "auth",
    "rate_limit": "rate_limit",
    "quota": "rate_limit",
}


class CopilotAdapter:
    name = NAME
    # GitHub's own tokens (in Copilot's order of precedence) and the bring-your-own-key provider
    # settings, which only work together (base URL, type, key, model).
    credential_vars: tuple[str, ...] = (
        "COPILOT_GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "COPILOT_GH_HOST",
        "GH_HOST",
        "COPILOT_PROVIDER_BASE_URL",
        "COPILOT_PROVIDER_TYPE",
        "COPILOT_PROVIDER_WIRE_API",
        "COPILOT_PROVIDER_API_KEY",
        "COPILOT_PROVIDER_API_KEY_COMMAND",
        "COPILOT_PROVIDER_BEARER_TOKEN",
        "COPILOT_PROVIDER_HEADERS",
        "COPILOT_PROVIDER_AZURE_API_VERSION",
        "COPILOT_MODEL",
        *PROVIDER_VARS,
    )
    usage_accumulates_over_session = False

    # --- command ---------------------------------------------------------------------------------
    def build_command(self, request: AgentRequest) -> Command:
        usage_file = request.run_dir / USAGE_FILE
        argv: list[str] = [
            request.command or PINNED[NAME].binary,
            "--output-format",
            "json",
            "--usage-output-file",
            str(usage_file),
            # Stay on the version we launched (the pinned one), and never stop to ask the user.
            "--no-auto-update",
            "--no-ask-user",
            "--log-dir",
            str(request.run_dir / LOG_DIR),
        ]
        if request.model:
            argv += ["--model", request.model]
        if request.resume_session:
            argv.append(f"--resume={request.resume_session}")
        argv += permission_flags(request.permission)
        argv += request.extra_args
        otel_file = request.run_dir / OTEL_FILE
        env = {
            "COPILOT_AUTO_UPDATE": "false",
            "NO_COLOR": "1",
            # Spans to a local file only (no prompt or response text unless the user asks for it).
            "COPILOT_OTEL_EXPORTER_TYPE": "file",
            "COPILOT_OTEL_FILE_EXPORTER_PATH": str(otel_file),
            **request.env,
        }
        return Command(
            argv=tuple(argv),
            cwd=request.cwd,
            env=env,
            stdin=request.prompt,
            # Emptied before each spawn, so a report left by an earlier step is never read as this one's.
            setup_files={usage_file: "", otel_file: ""},
            collect_files=(usage_file, otel_file),
        )

    # --- output ----------------------------------------------------------------------------------
    def parse_line(self, line: str) -> list[AgentEvent]:
        event = load_json_line(line)
        if event is None:
            return []
        kind = event.get("type")
        data = _dict(event.get("data"))
        if kind == "session.tools_updated" and data.get("model"):
            return [SessionStarted(model=str(data["model"]))]
        if kind == "assistant.message":
            text = data.get("content")
            return [AssistantMessage(text=text)] if isinstance(text, str) and text.strip() else []
        if kind == "tool.execution_start":
            return [_tool_started(data)]
        if kind == "tool.execution_complete":
            return [_tool_completed(data)]
        if kind == "session.error":
            return [_session_error(data)]
        if kind == "result":
            session_id = event.get("sessionId")
            return [
                Result(
                    session_id=session_id if isinstance(session_id, str) else None,
                    success=event.get("exitCode") == 0,
                )
            ]
        return []

    def finish(
        self,
        outcome: ProcessOutcome,
        events: Sequence[AgentEvent],
        collected: Mapping[Path, str],
    ) -> list[AgentEvent]:
        added: list[AgentEvent] = []
        usage = _usage_from_spans(_collected(collected, OTEL_FILE)) or _usage_from_report(
            _collected(collected, USAGE_FILE)
        )
        if usage is not None:
            added.append(usage)
        limit = limit_error(outcome)
        if limit is not None:
            return [*added, limit]
        results = [e for e in events if isinstance(e, Result)]
        has_error = any(isinstance(e, AgentErrorEvent) for e in events)
        if not has_error:
            text_error = _error_from_text(outcome, has_result=bool(results))
            if text_error is not None:
                added.append(text_error)
        refused = [e for e in events if isinstance(e, ToolUse) and e.status == "refused"]
        if refused:
            added.append(_refusal(refused, events))
        if results and not results[-1].final_text:
            final = _last_message(events)
            if final:
                added.append(results[-1].model_copy(update={"final_text": final}))
        return added

    # --- environment -----------------------------------------------------------------------------
    def availability(
        self,
        env: Mapping[str, str],
        command: str | None = None,
        *,
        args: Sequence[str] = (),
        model: str | None = None,
        versions: VersionCache | None = None,
    ) -> Availability:
        found = find_copilot_credentials(env, args, model)
        return probe_availability(
            NAME,
            env,
            command,
            auth_source=found.source if found.found else None,
            auth_problem=(found.problem, found.fix or "") if found.problem else None,
            missing_auth=("no GitHub login and no model provider configured", AUTH_FIX),
            versions=versions,
        )


AUTH_FIX = (
    "run `copilot` once and use /login, or set COPILOT_GITHUB_TOKEN (or GH_TOKEN) in agents.copilot.env, "
    "or point it at your own model provider with COPILOT_PROVIDER_BASE_URL and COPILOT_MODEL"
)


def permission_flags(mode: PermissionMode) -> list[str]:
    """Our permission modes in Copilot's own flags. Denied tools stay offered to the model, so an
    attempt shows up as a denial (and so as "refused") rather than going unnoticed."""
    if mode is PermissionMode.BYPASS:
        return ["--allow-all"]
    if mode is PermissionMode.READ_ONLY:
        # Reads are approved by default; no --allow-all-tools, so anything not allowed here is denied.
        return [*(f"--allow-tool={rule}" for rule in READ_ONLY_SHELL), "--deny-tool=write"]
    # File tools stay inside the working directory (and TMPDIR): Copilot checks paths by default.
    return ["--allow-all-tools"]


# --- parsing helpers ----------------------------------------------------------------------------


def _action(tool: str) -> ToolAction:
    name = tool.lower()
    if name in _FILE_EDIT_TOOLS:
        return "file_edit"
    if name in _FILE_READ_TOOLS:
        return "file_read"
    if name in _SHELL_TOOLS:
        return "command_run"
    if name in _SEARCH_TOOLS:
        return "search"
    return "other"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tool_started(data: dict[str, Any]) -> ToolUse:
    tool = _str(data.get("toolName")) or "tool"
    args = _dict(data.get("arguments"))
    action = _action(tool)
    detail = _str(args.get("pattern")) or _str(data.get("toolTitle"))
    return ToolUse(
        call_id=_str(data.get("toolCallId")),
        tool=tool,
        action=action,
        status="started",
        path=_str(args.get("path")) if action in ("file_edit", "file_read") else None,
        command=_str(args.get("command")) if action == "command_run" else None,
        detail=detail,
    )


def _completed_tool_name(data: dict[str, Any]) -> str:
    """The completion line does not name its tool; its telemetry and result fields tell."""
    props = _dict(_dict(data.get("toolTelemetry")).get("properties"))
    named = _str(props.get("command"))
    if named and named.isidentifier():
        return named
    if "shellExecution" in data or "executionMode" in props or "shell_error_category" in props:
        return "bash"
    if data.get("fileEdits"):
        return "edit"
    return "tool"


def _tool_completed(data: dict[str, Any]) -> ToolUse:
    tool = _completed_tool_name(data)
    edits = [e for e in data.get("fileEdits") or [] if isinstance(e, dict)]
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    shell = data.get("shellExecution") if isinstance(data.get("shellExecution"), dict) else None
    if error is not None and error.get("code") == "denied":
        status = "refused"
    elif data.get("success") is not True or (shell is not None and shell.get("exitCode") not in (0, None)):
        status = "failed"
    else:
        status = "succeeded"
    detail = _str(error.get("message")) if error else None
    if detail is None and shell is not None and shell.get("exitCode") not in (0, None):
        detail = f"exit code {shell.get('exitCode')}"
    return ToolUse(
        call_id=_str(data.get("toolCallId")),
        tool=tool,
        action="file_edit" if edits else _action(tool),
        status=status,
        path=_str(edits[0].get("path")) if edits else None,
        detail=detail,
    )


def _session_error(data: dict[str, Any]) -> AgentErrorEvent:
    error_type = str(data.get("errorType") or "")
    status = data.get("statusCode")
    kind: AgentErrorKind = _ERROR_TYPES.get(error_type, "other")
    if kind == "other" and status in (401, 403):
        kind = "auth"
    elif kind == "other" and status == 429:
        kind = "rate_limit"
    message = _str(data.get("message")) or f"copilot reported an error ({error_type or status})"
    return AgentErrorEvent(kind=kind, message=message)


# --- finishing helpers --------------------------------------------------------------------------


def _collected(collected: Mapping[Path, str], name: str) -> str:
    return next((text for path, text in collected.items() if Path(path).name == name), "")


def _usage_from_report(text: str) -> Usage | None:
    """Tokens from the --usage-output-file report (`modelMetrics.<model>.usage`), for the session."""
    try:
        report = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    metrics = report.get("modelMetrics") if isinstance(report, dict) else None
    if not isinstance(report, dict) or not isinstance(metrics, dict):
        return None
    per_model: dict[str, list[int]] = {}
    for model, entry in metrics.items():
        usage = entry.get("usage") if isinstance(entry, dict) else None
        if isinstance(usage, dict):
            keys = ("inputTokens", "outputTokens", "cacheReadTokens")
            per_model[model] = [int(usage.get(key) or 0) for key in keys]
    current = report.get("currentModel")
    return _priced(per_model, current if isinstance(current, str) else None)


def _usage_from_spans(text: str) -> Usage | None:
    """Tokens of this invocation: the sum over its OpenTelemetry `chat` spans, priced per model."""
    per_model: dict[str, list[int]] = {}
    for line in text.splitlines():
        span = load_json_line(line)
        attrs = span.get("attributes") if span and span.get("type") == "span" else None
        if not isinstance(attrs, dict) or attrs.get("gen_ai.operation.name") != "chat":
            continue
        if "gen_ai.usage.input_tokens" not in attrs:  # a call that failed or was cut short
            continue
        model = str(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or "")
        counts = [
            int(attrs.get(key) or 0)
            for key in (
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
                "gen_ai.usage.cache_read.input_tokens",
            )
        ]
        per_model[model] = [a + b for a, b in zip(per_model.get(model, [0, 0, 0]), counts, strict=True)]
    return _priced(per_model, current=None)


def _priced(per_model: Mapping[str, Sequence[int]], current: str | None) -> Usage | None:
    """One total Usage from (input, output, cached) per model; cost only if every model has a price."""
    if not per_model:
        return None
    totals = [sum(counts[i] for counts in per_model.values()) for i in range(3)]
    cost: float | None = 0.0
    for model, counts in per_model.items():
        priced = price_usd(model or None, counts[0], counts[1], counts[2])
        cost = None if priced is None or cost is None else cost + priced
    return Usage(
        input_tokens=totals[0],
        output_tokens=totals[1],
        cached_tokens=totals[2],
        cost_usd=cost,
        model=current or next(iter(per_model)) or None,
        scope="total",
    )


def _error_from_text(outcome: ProcessOutcome, *, has_result: bool) -> AgentErrorEvent | None:
    """The typed error a failure stands for when the CLI said it only in text (stderr)."""
    # Only the plain-text lines: JSON lines carry tool output and model text, which may say anything.
    tail = "\n".join(line for line in outcome.output_tail.splitlines() if not line.lstrip().startswith("{"))
    failed = outcome.exit_code != 0
    if failed and _AUTH_TEXT.search(tail):
        return AgentErrorEvent(kind="auth", message=_last_lines(tail) + f"\n  fix: {AUTH_FIX}")
    if failed and _RATE_TEXT.search(tail):
        return AgentErrorEvent(kind="rate_limit", message=_last_lines(tail))
    if not has_result:
        return AgentErrorEvent(
            kind="crashed",
            message=f"copilot {outcome.ended} and gave no result: {_last_lines(tail)}",
        )
    return None


def _last_lines(text: str, count: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("{")]
    return "\n".join(lines[-count:]) or "(no output)"


def _refusal(refused: list[ToolUse], events: Sequence[AgentEvent]) -> AgentErrorEvent:
    """One "refused" error naming what was denied (path or command from the matching start)."""
    started: dict[str, ToolUse] = {
        e.call_id: e for e in events if isinstance(e, ToolUse) and e.status == "started" and e.call_id
    }
    names: list[str] = []
    for denial in refused:
        start = started.get(denial.call_id) if denial.call_id else None
        target = (start.path or start.command) if start else denial.path
        names.append(f"{start.tool if start else denial.tool} {target}" if target else denial.tool)
    reason = refused[0].detail or "permission denied"
    return AgentErrorEvent(
        kind="refused",
        message=f"copilot was denied {len(refused)} tool call(s): {'; '.join(names)} ({reason})",
    )


def _last_message(events: Sequence[AgentEvent]) -> str:
    return next((e.text for e in reversed(events) if isinstance(e, AssistantMessage)), "")


def auth_source(env: Mapping[str, str]) -> str | None:
    """Which credential Copilot will use with this environment, in its own order; None if none."""
    found = find_copilot_credentials(env)
    return found.source if found.found else None
