"""The Anthropic Messages API, as Claude Code uses it: `POST /v1/messages` (`?beta=true`), streamed as SSE.

Main requests (the agent's conversation) consume scenario turns and are answered in Claude Code's own
tool vocabulary (Write / Edit / Bash, absolute paths, found by input schema among the offered tools).
Side calls (token counts, and the small tool-less requests Claude Code makes for titles, topics and
quota checks) get a minimal answer and never see the scenario.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from orchestrator.testing.dialects.base import ModelRequest, ResponseWriter, TurnContext
from orchestrator.testing.scenario import EditFile, Shell, Text, ToolTurn, WriteFile

# The API's own error types (https://docs.anthropic.com/en/api/errors), by HTTP status.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Where Claude Code states its working directory ("Primary working directory: /x" in the environment
# section; older builds said "Working directory: /x").
_CWD_PATTERN = re.compile(r"(?:Primary working directory|Working directory):\s*(/[^\n]*)")

# Claude Code's own names, used when the request offers no tool with the right schema (a read-only
# run that removed them): the call is still made, so the CLI's own refusal shows.
CANONICAL_TOOLS: dict[str, str] = {"write": "Write", "edit": "Edit", "shell": "Bash", "read": "Read"}

# A fake key only the scripted server accepts: long and unique, so masking or leaks are visible.
FAKE_API_KEY = "sk-ant-scripted-5f0c1e7a9b2d4c86a3e1f7d90b6c2e48-orchestrator-test-key"


class AnthropicDialect:
    api = "anthropic"

    def route(self, method: str, path: str) -> bool:
        # A path prefix in ANTHROPIC_BASE_URL is kept by the CLI, so match the end of the path.
        return method == "POST" and path.endswith(("/v1/messages", "/v1/messages/count_tokens"))

    def consumes_turn(self, request: ModelRequest) -> bool:
        if request.path.endswith("/count_tokens"):
            return False
        return not is_side_call(request.body)

    def respond_side(self, request: ModelRequest, ctx: TurnContext, out: ResponseWriter) -> None:
        if request.path.endswith("/count_tokens"):
            out.json(200, {"input_tokens": ctx.scenario.input_tokens})
            return
        body = request.body if isinstance(request.body, dict) else {}
        # A title / topic / quota call: a short, harmless text the CLI can take as any of those.
        message = _message(body, ctx, [{"type": "text", "text": "Scripted session"}], "end_turn")
        _send(body, message, out)

    def respond(
        self, request: ModelRequest, turn: ToolTurn | Text, ctx: TurnContext, out: ResponseWriter
    ) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        if isinstance(turn, Text):
            content: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
            stop_reason = "end_turn"
        else:
            content = tool_calls(turn, body, ctx.serial)
            stop_reason = "tool_use"
        _send(body, _message(body, ctx, content, stop_reason), out)

    def error_body(self, status: int, message: str) -> Any:
        error_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": f"req_scripted_{uuid.uuid4().hex[:20]}",
        }


DIALECT = AnthropicDialect()


def agent_config(server_url: str) -> dict[str, Any]:
    """The `agents.claude` block that points Claude Code at a scripted server, with no account."""
    return {
        "env": {
            "ANTHROPIC_BASE_URL": server_url,
            "ANTHROPIC_API_KEY": FAKE_API_KEY,
            # No other outbound traffic (updates, telemetry, error reports, feedback surveys).
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            # By default it retries 401/429/500 for minutes; one quick retry keeps failures fast.
            "CLAUDE_CODE_MAX_RETRIES": "1",
            # Long enough for any scripted answer, short enough that a hung request cannot wait for
            # ever if our own idle limit is off.
            "API_TIMEOUT_MS": "60000",
        },
        "model": "claude-sonnet-4-5",
    }


# --- what counts as a side call ----------------------------------------------------------------------


def is_side_call(body: Any) -> bool:
    """Claude Code's helper calls (session title, topic, quota probe) send no tools; the agent's own
    conversation always offers its tools (Write, Edit, Bash, Read, ...)."""
    if not isinstance(body, dict):
        return True
    tools = body.get("tools")
    return not (isinstance(tools, list) and tools)


# --- tools ------------------------------------------------------------------------------------------


def working_directory(body: Mapping[str, Any]) -> str | None:
    """The CLI's working directory, as its environment context states it (system prompt or messages)."""
    for text in _texts(body):
        match = _CWD_PATTERN.search(text)
        if match:
            return match.group(1).strip()
    return None


def _texts(body: Mapping[str, Any]) -> Iterator[str]:
    system = body.get("system")
    if isinstance(system, str):
        yield system
    elif isinstance(system, list):
        yield from (b.get("text", "") for b in system if isinstance(b, dict))
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))


def _properties(tool: Mapping[str, Any]) -> set[str]:
    schema = tool.get("input_schema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    return set(props) if isinstance(props, dict) else set()


_ROLE_SCHEMAS: dict[str, tuple[str, ...]] = {
    "write": ("file_path", "content"),
    "edit": ("file_path", "old_string", "new_string"),
    "shell": ("command",),
    "read": ("file_path",),
}


def find_tool(body: Mapping[str, Any], role: str) -> str:
    """The offered tool for a role (write, edit, shell, read): Claude Code's own name when offered with
    the expected arguments, else any offered tool with those arguments, else the canonical name."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    wanted = set(_ROLE_SCHEMAS[role])
    fitting = [t["name"] for t in tools if wanted <= _properties(t)]
    canonical = CANONICAL_TOOLS[role]
    if canonical in fitting:
        return canonical
    if role == "read":  # every write/edit tool also has file_path: only a tool without content will do
        fitting = [n for n in fitting if n not in {find_tool(body, "write"), find_tool(body, "edit")}]
    return fitting[0] if fitting else canonical


def absolute(path: str, cwd: str | None) -> str:
    if PurePosixPath(path).is_absolute() or cwd is None:
        return path
    return str(PurePosixPath(cwd) / path)


def tool_calls(turn: ToolTurn, body: Mapping[str, Any], serial: int) -> list[dict[str, Any]]:
    """The tool_use blocks for a scenario turn. Claude Code refuses to edit or overwrite a file this
    conversation has not read, so an edit (and a write over an existing file) reads it first, in the
    same message: the CLI runs the read-only call before the write."""
    cwd = working_directory(body)

    def call(name: str, arguments: dict[str, Any], n: int) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": f"toolu_{serial:06d}{n}{uuid.uuid4().hex[:17]}",
            "name": name,
            "input": arguments,
        }

    if isinstance(turn, Shell):
        return [call(find_tool(body, "shell"), {"command": turn.command, "description": "Run a command"}, 0)]
    path = absolute(turn.path, cwd)
    read = call(find_tool(body, "read"), {"file_path": path}, 0)
    if isinstance(turn, WriteFile):
        write = call(find_tool(body, "write"), {"file_path": path, "content": turn.content}, 1)
        # The server runs beside the CLI, so it can see whether the write would overwrite.
        return [read, write] if os.path.exists(path) else [write]
    assert isinstance(turn, EditFile)
    arguments = {"file_path": path, "old_string": turn.old, "new_string": turn.new}
    return [read, call(find_tool(body, "edit"), arguments, 1)]


# --- messages, streamed or not ------------------------------------------------------------------------


def _message(
    body: Mapping[str, Any], ctx: TurnContext, content: list[dict[str, Any]], stop_reason: str
) -> dict[str, Any]:
    model = body.get("model") if isinstance(body.get("model"), str) else ctx.scenario.model
    return {
        "id": f"msg_scripted{ctx.serial:06d}{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": ctx.scenario.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": ctx.scenario.output_tokens,
            "service_tier": "standard",
        },
    }


def _send(body: Mapping[str, Any], message: dict[str, Any], out: ResponseWriter) -> None:
    headers = {"request-id": f"req_scripted_{uuid.uuid4().hex[:20]}"}
    if body.get("stream"):
        out.sse(sse_events(message), headers)
    else:
        out.json(200, message, headers)


def sse_events(message: Mapping[str, Any]) -> Iterator[tuple[str | None, Any]]:
    """A message as the API streams it: message_start, a start/delta/stop per block, message_delta
    (stop reason, final output tokens), message_stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                },
            )
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {
                "input_tokens": usage["input_tokens"],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": usage["output_tokens"],
            },
        },
    )
    yield "message_stop", {"type": "message_stop"}
