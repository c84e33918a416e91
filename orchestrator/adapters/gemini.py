"""Gemini CLI (`gemini`, npm @google/gemini-cli), headless with `--output-format stream-json`.

    gemini --output-format stream-json --approval-mode auto_edit --skip-trust [-m M] [--resume ID]
    (the prompt on stdin)

Its stream: `init{session_id,model}`, `message{role,content,delta}`, `tool_use{tool_name,tool_id,
parameters}`, `tool_result{tool_id,status,output?,error?{type,message}}`, `error{severity,message}`, and a
final `result{status,error?,stats{input_tokens,output_tokens,cached,models{...}}}`. It reports tokens but
no cost, and its result carries no text: the answer is the assistant messages after the last tool call.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.auth.gemini import CLOUD_VARS
from orchestrator.adapters.auth.gemini import find_credentials as find_gemini_credentials
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
    ToolStatus,
    ToolUse,
    Usage,
)

BINARY = PINNED["gemini"].binary

# How many attempts the CLI makes at a model request (its own default: 10, with 5-30 s back-off). Ours,
# read from the agent's env and written into the settings file the adapter gives the CLI.
MAX_ATTEMPTS_VAR = "ORCHESTRATOR_GEMINI_MAX_ATTEMPTS"

# Our own home for the CLI (settings, sessions) when an API key is configured, inside the run's folder.
HOME_DIR_NAME = "gemini-home"

# Approval modes (`--approval-mode`). Headless, the CLI leaves out every tool its policy would ask
# about, so:
# - EDIT: auto_edit lets write_file/replace through (inside the workspace: its allowed-path check),
#   plus our policy file below that lets the shell through too, as acceptEdits does for Claude Code and
#   workspace-write for Codex: an implementer runs its tests.
# - READ_ONLY: default offers only read and search tools; an edit or command is "not found" (refused).
#   (plan is read-only too, but its system prompt turns the agent to writing plans, not reviewing.)
# - BYPASS: yolo, everything.
APPROVAL_MODES: dict[PermissionMode, str] = {
    PermissionMode.EDIT: "auto_edit",
    PermissionMode.READ_ONLY: "default",
    PermissionMode.BYPASS: "yolo",
}
EDIT_POLICY_FILE = "gemini-edit-policy.toml"
EDIT_POLICY = """\
# Written by ai-agents-orchestrator for an editing step (--approval-mode auto_edit): let the agent run
# shell commands (tests, builds) as well as edit files. User tier, so it outranks the built-in
# non-interactive rule that denies run_shell_command.
[[rule]]
toolName = "run_shell_command"
decision = "allow"
priority = 100
modes = ["autoEdit"]
allowRedirection = true
"""

_ACTIONS: dict[str, ToolAction] = {
    "write_file": "file_edit",
    "replace": "file_edit",
    "edit": "file_edit",
    "read_file": "file_read",
    "read_many_files": "file_read",
    "list_directory": "file_read",
    "run_shell_command": "command_run",
    "grep_search": "search",
    "search_file_content": "search",
    "glob": "search",
    "google_web_search": "search",
    "web_fetch": "other",
}

# tool_result error types that mean "the CLI would not let the agent do this" rather than "it tried and
# failed". A policy denial always is. A missing tool or a path outside the workspace is a refusal when
# the call would have changed something (an edit or a command the approval mode withholds); for a read
# it is an ordinary failed call the agent recovers from.
_POLICY_REFUSALS = {"policy_violation"}
_WRITE_REFUSALS = {"tool_not_registered", "path_not_in_workspace"}
_WRITING_ACTIONS = {"file_edit", "command_run"}

# Texts of failures that come without a result event (stderr, or the result's error message).
_AUTH = re.compile(
    r"Invalid auth method|Please set an Auth method|must specify the GEMINI_API_KEY|API key not valid|"
    r"API_KEY_INVALID|UNAUTHENTICATED|\b401\b|Unauthorized|invalid authentication|login required|"
    r"PERMISSION_DENIED|\b403\b",
    re.IGNORECASE,
)
_RATE = re.compile(
    r"\b429\b|RESOURCE_EXHAUSTED|Quota exceeded|rate limit|Too Many Requests|TerminalQuotaError|"
    # The CLI's own words for a 429 (packages/core errorParsing: getRateLimitMessage).
    r"RetryableQuotaError|Please wait and try again later|quota increase|quota limitations",
    re.IGNORECASE,
)

_MEMO_SIZE = 256  # tool calls awaiting their result; the CLI runs a handful at a time

# The CLI's own exit codes (packages/cli: ExitCodes).
EXIT_AUTH = 41
EXIT_INPUT = 42
EXIT_SANDBOX = 44
EXIT_CONFIG = 52
EXIT_TURN_LIMIT = 53
EXIT_UNTRUSTED = 55


class GeminiAdapter:
    name = "gemini"
    credential_vars: tuple[str, ...] = (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_VERTEX_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_USE_GCA",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_APPLICATION_CREDENTIALS",
        *CLOUD_VARS,  # compute ADC, gcloud's folder
    )
    usage_accumulates_over_session = False

    def __init__(self) -> None:
        # The CLI's `tool_result` names only the call id; the path and command were on its `tool_use`.
        # A bounded memo of those, so a completed edit names its file (summarize counts completed edits
        # only). parse_line still does no I/O: its events follow from the lines seen so far.
        self._calls: OrderedDict[str, ToolUse] = OrderedDict()

    # --- the command ---------------------------------------------------------------------------
    def build_command(self, request: AgentRequest) -> Command:
        argv = [request.command or BINARY, "--output-format", "stream-json"]
        argv += ["--approval-mode", APPROVAL_MODES[request.permission]]
        # Headless runs in a folder the CLI has not been told to trust exit 55 at once.
        argv.append("--skip-trust")
        setup: dict[Path, str] = {}
        if request.permission is PermissionMode.EDIT:
            policy = request.run_dir / EDIT_POLICY_FILE
            setup[policy] = EDIT_POLICY
            argv += ["--policy", str(policy)]
        if request.model:
            argv += ["--model", request.model]
        if request.resume_session:
            argv += ["--resume", request.resume_session]
        argv += request.extra_args
        env = {"GEMINI_CLI_NO_RELAUNCH": "true", **request.env}
        if request.env.get("GEMINI_API_KEY"):
            # With a key configured, the CLI runs from a home of its own: our settings select API-key
            # auth (with GOOGLE_GEMINI_BASE_URL set, headless runs otherwise fail "Invalid auth method
            # selected.", rc 41) and keep it quiet; sessions stay there, so a resume finds them.
            home = request.run_dir / HOME_DIR_NAME
            setup[home / ".gemini" / "settings.json"] = json.dumps(
                settings_for(request.env), indent=2, sort_keys=True
            )
            env["GEMINI_CLI_HOME"] = str(home)
        # The prompt goes on stdin: a long review prompt (a diff) would not fit in one argv string
        # (Linux caps each at 128 KiB). Without -p and with stdin not a TTY, the CLI runs headless.
        return Command(argv=tuple(argv), cwd=request.cwd, env=env, stdin=request.prompt, setup_files=setup)

    # --- the stream ----------------------------------------------------------------------------
    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_line(line)
        if data is None:
            return []
        kind = data.get("type")
        if kind == "init":
            return [SessionStarted(session_id=_str(data.get("session_id")), model=_str(data.get("model")))]
        if kind == "message":
            text = data.get("content")
            if data.get("role") == "assistant" and isinstance(text, str) and text:
                return [AssistantMessage(text=text)]
            return []
        if kind == "tool_use":
            started = _tool_started(data)
            if started.call_id:
                self._calls[started.call_id] = started
                while len(self._calls) > _MEMO_SIZE:
                    self._calls.popitem(last=False)
            return [started]
        if kind == "tool_result":
            finished = _tool_finished(data)
            call = self._calls.pop(finished.call_id, None) if finished.call_id else None
            if call is not None:
                finished = finished.model_copy(
                    update={
                        "tool": call.tool,
                        "action": call.action,
                        "path": call.path,
                        "command": call.command,
                    }
                )
            return [finished]
        if kind == "error":
            # Warnings (a loop detected, a hook that blocked a step) are followed by a result; only an
            # error-severity event is a failure of its own.
            if data.get("severity") == "error":
                message = _str(data.get("message")) or "the CLI reported an error"
                return [AgentErrorEvent(kind=classify_text(message) or "other", message=message)]
            return []
        if kind == "result":
            return _result(data)
        return []

    # --- the end -------------------------------------------------------------------------------
    def finish(
        self,
        outcome: ProcessOutcome,
        events: Sequence[AgentEvent],
        collected: Mapping[Path, str],
    ) -> list[AgentEvent]:
        added: list[AgentEvent] = []
        limit = limit_error(outcome)
        if limit is not None:
            added.append(limit)
        results = [e for e in events if isinstance(e, Result)]
        has_error = any(isinstance(e, AgentErrorEvent) for e in events)
        if not results:
            if limit is None and not has_error:
                added.append(_failure_from_text(outcome))
            return added
        last = results[-1]
        refused = [e for e in events if isinstance(e, ToolUse) and e.status == "refused"]
        if refused and not any(isinstance(e, AgentErrorEvent) and e.kind == "refused" for e in events):
            what = ", ".join(sorted({_refusal_label(e) for e in refused}))
            added.append(
                AgentErrorEvent(
                    kind="refused", message=f"the CLI refused {len(refused)} tool call(s): {what}"
                )
            )
        final_text = final_answer(events)
        if last.success and not last.final_text and final_text:
            # The stream's result has no text: carry the answer in a completed copy of it.
            added.append(Result(final_text=final_text, session_id=last.session_id, success=True))
        return added

    # --- can it run here? ----------------------------------------------------------------------
    def availability(
        self,
        env: Mapping[str, str],
        command: str | None = None,
        *,
        args: Sequence[str] = (),
        model: str | None = None,
        versions: VersionCache | None = None,
    ) -> Availability:
        found = find_gemini_credentials(env)
        return probe_availability(
            self.name,
            env,
            command,
            auth_source=found.source if found.found else None,
            auth_problem=(found.problem, found.fix or "") if found.problem else None,
            missing_auth=(
                "no Gemini credentials: no GEMINI_API_KEY, Vertex AI settings or stored Google login",
                "set GEMINI_API_KEY (agents.gemini.env or your environment), "
                "or run `gemini` once and sign in with Google",
            ),
            version_env={"GEMINI_CLI_NO_RELAUNCH": "true"},  # one node process: about 2x faster
            versions=versions,
        )


# --- settings -----------------------------------------------------------------------------------------


def settings_for(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings.json of the CLI's own home: API-key auth, no usage statistics, no update checks
    (the version is pinned), and the number of model attempts when the agent's env sets one."""
    general: dict[str, Any] = {"enableAutoUpdate": False, "enableAutoUpdateNotification": False}
    attempts = env.get(MAX_ATTEMPTS_VAR, "").strip()
    if attempts.isdigit() and int(attempts) > 0:
        general["maxAttempts"] = min(int(attempts), 10)  # the CLI caps it at 10
    return {
        "general": general,
        "privacy": {"usageStatisticsEnabled": False},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }


def auth_source_in(env: Mapping[str, str]) -> str | None:
    """Which credential the CLI will use with this environment, or None."""
    found = find_gemini_credentials(env)
    return found.source if found.found else None


# --- events -------------------------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tool_name_from_id(tool_id: str | None) -> str:
    """`write_file__write_file_1795239183290_0` / `write_file_1795239183290_0` -> `write_file`."""
    if not tool_id:
        return "unknown"
    head = tool_id.split("__", 1)[0]
    return re.sub(r"(_\d+)+$", "", head) or "unknown"


def _tool_started(data: Mapping[str, Any]) -> ToolUse:
    name = _str(data.get("tool_name")) or _tool_name_from_id(_str(data.get("tool_id")))
    params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    assert isinstance(params, dict)
    path = params.get("file_path") or params.get("path") or params.get("dir_path")
    command = params.get("command")
    detail = params.get("pattern") or params.get("query") or params.get("description")
    return ToolUse(
        call_id=_str(data.get("tool_id")),
        tool=name,
        action=_ACTIONS.get(name, "other"),
        status="started",
        path=path if isinstance(path, str) else None,
        command=command if isinstance(command, str) else None,
        detail=detail if isinstance(detail, str) else None,
    )


def _tool_finished(data: Mapping[str, Any]) -> ToolUse:
    tool_id = _str(data.get("tool_id"))
    name = _tool_name_from_id(tool_id)
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    status: ToolStatus
    if data.get("status") == "success":
        status = "succeeded"
        detail = _str(data.get("output"))
    else:
        error_type = str((error or {}).get("type", "")).lower()
        writing = _ACTIONS.get(name) in _WRITING_ACTIONS
        refused = error_type in _POLICY_REFUSALS or (writing and error_type in _WRITE_REFUSALS)
        status = "refused" if refused else "failed"
        detail = _str((error or {}).get("message")) or _str(data.get("output"))
    return ToolUse(
        call_id=tool_id,
        tool=name,
        action=_ACTIONS.get(name, "other"),
        status=status,
        detail=detail[:2000] if detail else None,
    )


def _result(data: Mapping[str, Any]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    stats = data.get("stats")
    if isinstance(stats, dict):
        usage = usage_from_stats(stats)
        if usage is not None:
            events.append(usage)
    success = data.get("status") == "success"
    message = ""
    if not success:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        assert isinstance(error, dict)
        message = _str(error.get("message")) or "the CLI reported an error"
        error_type = _str(error.get("type")) or ""
        kind: AgentErrorKind = classify_text(message) or classify_text(error_type) or "other"
        events.append(AgentErrorEvent(kind=kind, message=message))
    events.append(Result(final_text=message, success=success))
    return events


def usage_from_stats(stats: Mapping[str, Any]) -> Usage | None:
    """The step's total tokens, priced per model (None when any model that used tokens has no price)."""
    tokens_in, tokens_out, cached = (_int(stats.get(k)) for k in ("input_tokens", "output_tokens", "cached"))
    models = stats.get("models") if isinstance(stats.get("models"), dict) else {}
    assert isinstance(models, dict)
    cost: float | None = 0.0
    busiest: tuple[int, str | None] = (-1, None)
    for model, per in models.items():
        if not isinstance(per, dict):
            continue
        m_in, m_out, m_cached = (_int(per.get(k)) for k in ("input_tokens", "output_tokens", "cached"))
        busiest = max(busiest, (m_in + m_out, model))
        price = price_usd(model, m_in, m_out, m_cached)
        if price is None:
            if m_in or m_out:
                cost = None
        elif cost is not None:
            cost += price
    if not models:
        cost = None
    if not (tokens_in or tokens_out or models):
        return None
    return Usage(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_tokens=cached,
        cost_usd=cost,
        model=busiest[1],
        scope="total",
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def classify_text(text: str) -> AgentErrorKind | None:
    if _AUTH.search(text):
        return "auth"
    if _RATE.search(text):
        return "rate_limit"
    return None


def _refusal_label(event: ToolUse) -> str:
    return event.tool if not event.detail else f"{event.tool} ({event.detail[:120]})"


def final_answer(events: Sequence[AgentEvent]) -> str:
    """The assistant's text after its last tool call (the stream sends it as deltas)."""
    pieces: list[str] = []
    for event in events:
        if isinstance(event, ToolUse):
            pieces = []
        elif isinstance(event, AssistantMessage):
            pieces.append(event.text)
    return "".join(pieces).strip()


def _failure_from_text(outcome: ProcessOutcome) -> AgentErrorEvent:
    """A process that ended with no result event: name the failure from its exit code and words."""
    # The JSON events were parsed already; the CLI's own words are on the other lines (stderr).
    words = [ln for ln in outcome.output_tail.splitlines() if ln.strip() and not ln.lstrip().startswith("{")]
    tail = "\n".join(words)
    last_lines = "\n".join(words[-5:])
    if outcome.exit_code == EXIT_AUTH:
        return AgentErrorEvent(kind="auth", message=last_lines or "Gemini CLI found no usable credentials")
    kind = classify_text(tail)
    if kind is not None:
        return AgentErrorEvent(kind=kind, message=last_lines)
    if outcome.exit_code == EXIT_UNTRUSTED:
        return AgentErrorEvent(
            kind="other", message=last_lines or "Gemini CLI does not trust this folder (exit 55)"
        )
    return AgentErrorEvent(
        kind="crashed",
        message=f"gemini {outcome.ended} and gave no result" + (f": {last_lines}" if last_lines else ""),
    )
