"""Claude Code (`claude`, @anthropic-ai/claude-code), headless: `claude -p --output-format stream-json`.

What it does (recorded with 2.1.329; the pinned 2.1.332 passes the same real-CLI suite), in tests/fixtures/transcripts/claude/:
- One JSON object a line: `system/init` (session id, model), `assistant` (one line per content block:
  text or tool_use), `user` (tool results, with `tool_use_result` and `tool_result_meta`),
  `system/permission_denied`, `system/api_retry`, and a final `result`.
- A failed API call still ends with a `result` whose subtype is "success": `is_error` is what counts.
  Before it comes a synthetic assistant message (`is_api_error_message`, `error`: authentication_failed,
  rate_limit, server_error, ...) holding the text the user would see.
- Permission denials do not fail the run: rc 0, `permission_denials` in the result.
- `total_cost_usd` and `modelUsage` add up the whole session, earlier resumed runs included;
  `model_usage_since_last_result` and `usage` are this run's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.auth.claude import CLOUD_VARS
from orchestrator.adapters.auth.claude import find_credentials as find_claude_credentials
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

PIN = PINNED["claude"]

# The CLI's own permission modes for ours. EDIT: acceptEdits lets file edits (and file-creating shell
# commands such as `touch`, `mkdir`, redirections) through inside the working directory; any other
# command that would need approval is denied, since nobody can answer a prompt. READ_ONLY: dontAsk denies
# everything that would need approval (every edit, every writing command) and still allows reads and
# read-only commands (`git diff`), so a reviewer can look but not touch. Denials show in the output.
PERMISSION_FLAGS: dict[PermissionMode, tuple[str, ...]] = {
    # Implementers may also run commands (tests, builds), as with Codex's workspace-write sandbox, Gemini's
    # policy and Copilot's --allow-all-tools: acceptEdits alone denies `pytest` and fails the step.
    PermissionMode.EDIT: ("--permission-mode", "acceptEdits", "--allowedTools", "Bash"),
    PermissionMode.READ_ONLY: ("--permission-mode", "dontAsk"),
    PermissionMode.BYPASS: ("--permission-mode", "bypassPermissions"),
}

# Set for every run: the CLI must not update itself while we drive the pinned version.
HEADLESS_ENV: dict[str, str] = {"DISABLE_AUTOUPDATER": "1"}

# Credentials in the order Claude Code prefers them (cloud providers first, then tokens, then keys).
TOOL_ACTIONS: dict[str, ToolAction] = {
    "Write": "file_edit",
    "Edit": "file_edit",
    "MultiEdit": "file_edit",
    "NotebookEdit": "file_edit",
    "Read": "file_read",
    "NotebookRead": "file_read",
    "Bash": "command_run",
    "BashOutput": "command_run",
    "PowerShell": "command_run",
    "Grep": "search",
    "Glob": "search",
    "LS": "search",
    "WebSearch": "search",
    "ToolSearch": "search",
}

# What a tool result says when the tool was disabled for the session ("No such tool available: Bash.
# Bash is disabled for this session, ...").
DISABLED_TOOL = "is disabled for this session"
_NO_SUCH_TOOL = re.compile(r"No such tool available: ([A-Za-z0-9_-]+)")

# The synthetic assistant message's `error` codes, for failures the API reported.
ERROR_CODES: dict[str, AgentErrorKind] = {
    "authentication_failed": "auth",
    "oauth_org_not_allowed": "auth",
    "rate_limit": "rate_limit",
}

# Failures that reach us only as text (stdout before any JSON, stderr, or the result's text).
TEXT_ERRORS: tuple[tuple[str, AgentErrorKind, str], ...] = (
    ("Not logged in", "auth", "log in with `claude /login`, or set ANTHROPIC_API_KEY in agents.claude.env"),
    ("Invalid API key", "auth", "check the key in agents.claude.env (ANTHROPIC_API_KEY)"),
    ("OAuth token has expired", "auth", "log in again with `claude /login`"),
    ("authentication_error", "auth", "check the credentials in agents.claude.env"),
    ("Request rejected (429)", "rate_limit", "wait, or lower the concurrency"),
    ("rate_limit_error", "rate_limit", "wait, or lower the concurrency"),
    ("usage limit", "rate_limit", "wait for the usage limit to reset"),
    (
        "cannot be used with root/sudo privileges",
        "refused",
        "as root, bypass needs IS_SANDBOX=1 in agents.claude.env (only inside a sandbox)",
    ),
)


class ClaudeAdapter:
    name = "claude"
    credential_vars: tuple[str, ...] = (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        *CLOUD_VARS,  # Bedrock, Vertex AI, Foundry: the switch, the region, the cloud's credentials
    )
    usage_accumulates_over_session = False

    # --- the command ------------------------------------------------------------------------------

    def build_command(self, request: AgentRequest) -> Command:
        """The prompt goes on stdin: review prompts carry whole diffs (argv strings stop at 128 KiB),
        and a prompt starting with `-` must never be read as a flag."""
        argv = [request.command or PIN.binary, "-p", "--output-format", "stream-json", "--verbose"]
        argv += PERMISSION_FLAGS[request.permission]
        if request.model:
            argv += ["--model", request.model]
        if request.resume_session:
            # Keeps the session id and its history (Claude >= 2.1.119 needs -p with --resume).
            argv += ["--resume", request.resume_session]
        argv += request.extra_args
        env = {**HEADLESS_ENV, **request.env}
        return Command(argv=tuple(argv), cwd=request.cwd, env=env, stdin=request.prompt)

    # --- the output -------------------------------------------------------------------------------

    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_line(line)
        if data is None:
            return []
        kind = data.get("type")
        if kind == "system":
            return _system_events(data)
        if kind == "assistant":
            return _assistant_events(data)
        if kind == "user":
            return _tool_results(data)
        if kind == "result":
            return _result_events(data)
        return []  # stream_event, rate_limit_event, anything new: not ours to judge

    def finish(
        self, outcome: ProcessOutcome, events: Sequence[AgentEvent], collected: Mapping[Path, str]
    ) -> list[AgentEvent]:
        extra: list[AgentEvent] = []
        errors = [e for e in events if isinstance(e, AgentErrorEvent)]
        result = next((e for e in reversed(events) if isinstance(e, Result)), None)
        limit = limit_error(outcome)
        if limit is not None:
            extra.append(limit)
        elif result is None and not errors:
            extra.append(
                _error_from_text(outcome.output_tail)
                or AgentErrorEvent(
                    kind="crashed",
                    message=f"claude {outcome.ended} and gave no result: "
                    f"{_last_line(outcome.output_tail) or '(no output)'}",
                )
            )
        elif result is not None and not result.success and not errors:
            extra.append(
                _error_from_text(result.final_text)
                or AgentErrorEvent(kind="other", message=result.final_text or "claude reported failure")
            )
        refused = [e for e in events if isinstance(e, ToolUse) and e.status == "refused"]
        if refused and not any(e.kind == "refused" for e in errors):
            extra.append(_refused_error([_describe(e.tool, e.path, e.command) for e in refused]))
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
        found = find_claude_credentials(env, args)
        return probe_availability(
            self.name,
            env,
            command,
            auth_source=found.source if found.found else None,
            auth_problem=(found.problem, found.fix or "") if found.problem else None,
            missing_auth=(
                "no credentials: no ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN, no apiKeyHelper in its "
                "settings, no Bedrock or Vertex set-up and no login under HOME",
                "run `claude /login` once, or set ANTHROPIC_API_KEY in agents.claude.env",
            ),
            versions=versions,
        )


def auth_source_in(env: Mapping[str, str], args: Sequence[str] = ()) -> str | None:
    """Which credential the CLI will use with this environment, or None."""
    found = find_claude_credentials(env, args)
    return found.source if found.found else None


# --- parsing, one line type at a time ------------------------------------------------------------------


def _system_events(data: dict[str, Any]) -> list[AgentEvent]:
    subtype = data.get("subtype")
    if subtype == "init":
        return [SessionStarted(session_id=_str(data.get("session_id")), model=_str(data.get("model")))]
    if subtype == "permission_denied":
        tool = str(data.get("tool_name") or "tool")
        return [
            ToolUse(
                call_id=_str(data.get("tool_use_id")),
                tool=tool,
                action=TOOL_ACTIONS.get(tool, "other"),
                status="refused",
                detail=_clip(_str(data.get("message")) or _str(data.get("decision_reason"))),
            )
        ]
    return []  # api_retry, status, compact_boundary, hooks: progress we do not model


def _assistant_events(data: dict[str, Any]) -> list[AgentEvent]:
    message = _dict(data.get("message"))
    blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
    if data.get("is_api_error_message") or data.get("error"):
        text = " ".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text").strip()
        return [_api_error(data, text)]
    events: list[AgentEvent] = []
    for block in blocks:
        if block.get("type") == "text" and str(block.get("text", "")).strip():
            events.append(AssistantMessage(text=str(block["text"])))
        elif block.get("type") == "tool_use":
            events.append(_tool_start(block))
    return events


def _tool_start(block: Mapping[str, Any]) -> ToolUse:
    tool = str(block.get("name") or "tool")
    arguments = _dict(block.get("input"))
    path = (
        _str(arguments.get("file_path"))
        or _str(arguments.get("notebook_path"))
        or _str(arguments.get("path"))
    )
    pattern = _str(arguments.get("pattern")) or _str(arguments.get("query")) or _str(arguments.get("url"))
    return ToolUse(
        call_id=_str(block.get("id")),
        tool=tool,
        action=TOOL_ACTIONS.get(tool, "other"),
        status="started",
        path=path,
        command=_str(arguments.get("command")),
        detail=_clip(pattern or _str(arguments.get("description"))),
    )


def _tool_results(data: dict[str, Any]) -> list[AgentEvent]:
    message = _dict(data.get("message"))
    content = message.get("content")
    if not isinstance(content, list):
        return []  # the prompt itself, echoed back
    rejected = {
        m.get("id")
        for m in data.get("tool_result_meta") or []
        if isinstance(m, dict) and (m.get("permission_decision") or {}).get("decision") == "reject"
    }
    outcome = data.get("tool_use_result")
    events: list[AgentEvent] = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "tool_result":
            continue
        call_id = _str(block.get("tool_use_id"))
        if call_id in rejected:
            continue  # already reported, with the tool's name, by system/permission_denied
        tool, action, path = _result_shape(outcome if len(content) == 1 else None)
        failed = bool(block.get("is_error"))
        text = _result_text(block.get("content")) if failed else None
        # A tool the configuration took away (`--disallowedTools`) is refused, not a failed attempt.
        refused = text is not None and DISABLED_TOOL in text
        named = _NO_SUCH_TOOL.search(text or "") if refused else None
        if named:
            tool, action = named.group(1), TOOL_ACTIONS.get(named.group(1), "other")
        events.append(
            ToolUse(
                call_id=call_id,
                tool=tool,
                action=action,
                status="refused" if refused else "failed" if failed else "succeeded",
                path=path,
                detail=_clip(text),
            )
        )
    return events


def _result_shape(outcome: Any) -> tuple[str, ToolAction, str | None]:
    """The tool behind a result, from the shape of `tool_use_result` (the line names only the call id)."""
    if not isinstance(outcome, dict):
        return "tool", "other", None
    if isinstance(outcome.get("file"), dict):
        return "Read", "file_read", _str(outcome["file"].get("filePath"))
    if "oldString" in outcome:
        return "Edit", "file_edit", _str(outcome.get("filePath"))
    if outcome.get("type") in {"create", "update"}:
        return "Write", "file_edit", _str(outcome.get("filePath"))
    if "stdout" in outcome or "interrupted" in outcome:
        return "Bash", "command_run", None
    if "filenames" in outcome or "numFiles" in outcome:
        return "search", "search", None
    return "tool", "other", _str(outcome.get("filePath"))


def _result_events(data: dict[str, Any]) -> list[AgentEvent]:
    session_id = _str(data.get("session_id"))
    is_error = bool(data.get("is_error")) or data.get("subtype") != "success"
    events: list[AgentEvent] = [_usage(data)]
    denials = [d for d in data.get("permission_denials") or [] if isinstance(d, dict)]
    if denials:
        events.append(_refused_error([_denial_text(d) for d in denials]))
    if is_error and data.get("subtype") != "success":
        # error_max_turns, error_max_budget_usd, error_during_execution: no API error came before.
        reason = str(data.get("subtype"))
        text = " ".join(str(e) for e in data.get("errors") or []) or _str(data.get("result")) or reason
        events.append(AgentErrorEvent(kind="other", message=f"claude stopped ({reason}): {_clip(text)}"))
    events.append(
        Result(final_text=str(data.get("result") or ""), session_id=session_id, success=not is_error)
    )
    return events


def _usage(data: Mapping[str, Any]) -> Usage:
    usage = _dict(data.get("usage"))
    fresh = _int(usage.get("input_tokens"))
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    # This run's cost: `total_cost_usd` also counts the earlier runs of a resumed session.
    this_run = data.get("model_usage_since_last_result")
    per_model = this_run if isinstance(this_run, dict) else data.get("modelUsage")
    models = {k: v for k, v in (per_model or {}).items() if isinstance(v, dict)}
    model = max(models, key=lambda m: float(models[m].get("costUSD") or 0), default=None)
    cost: float | None
    if isinstance(this_run, dict):
        cost = sum(float(v.get("costUSD") or 0) for v in models.values())
    elif isinstance(data.get("total_cost_usd"), int | float):
        cost = float(data["total_cost_usd"])
    else:
        cost = price_usd(model, fresh + cache_read + cache_write, output, cache_read)
    return Usage(
        input_tokens=fresh + cache_read + cache_write,
        output_tokens=output,
        cached_tokens=cache_read,
        cost_usd=cost,
        model=model,
        scope="total",
    )


# --- errors ----------------------------------------------------------------------------------------------


def _api_error(data: Mapping[str, Any], text: str) -> AgentErrorEvent:
    status = data.get("api_error_status")
    kind: AgentErrorKind = ERROR_CODES.get(str(data.get("error") or ""), "other")
    if status in (401, 403):
        kind = "auth"
    elif status == 429:
        kind = "rate_limit"
    found = _error_from_text(text)
    if found is not None and kind in ("other", found.kind):
        return found  # the same kind, with a hint on what to do
    return AgentErrorEvent(kind=kind, message=text or f"API error {status or data.get('error')}")


def _error_from_text(text: str) -> AgentErrorEvent | None:
    for needle, kind, hint in TEXT_ERRORS:
        for line in text.splitlines():
            if needle.lower() in line.lower():
                return AgentErrorEvent(kind=kind, message=f"{line.strip()[:300]} (hint: {hint})")
    return None


def _refused_error(what: list[str]) -> AgentErrorEvent:
    shown = "; ".join(what[:5]) + (f"; and {len(what) - 5} more" if len(what) > 5 else "")
    return AgentErrorEvent(kind="refused", message=f"claude was not allowed to run: {shown}")


def _denial_text(denial: Mapping[str, Any]) -> str:
    arguments = _dict(denial.get("tool_input"))
    path = _str(arguments.get("file_path")) or _str(arguments.get("notebook_path"))
    return _describe(str(denial.get("tool_name") or "tool"), path, _str(arguments.get("command")))


def _describe(tool: str, path: str | None, command: str | None) -> str:
    target = path or command
    return f"{tool} {target}" if target else tool


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


def _result_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict)) or None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
