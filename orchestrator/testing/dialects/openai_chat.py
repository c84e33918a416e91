"""OpenAI Chat Completions, as GitHub Copilot CLI speaks it in bring-your-own-key mode
(COPILOT_PROVIDER_TYPE=openai, COPILOT_PROVIDER_WIRE_API=completions).

Routes: POST .../chat/completions (SSE when `stream` is true, else one JSON object) and GET .../models.
Answers in the calling CLI's own tool vocabulary: the write, edit and shell tools are found among the
`tools` of the request by their argument names, and paths are made absolute against the working
directory the system prompt states (Copilot's `create`/`edit` insist on absolute paths).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.testing.dialects.base import ModelRequest, ResponseWriter, TurnContext
from orchestrator.testing.scenario import EditFile, Shell, Text, ToolTurn

API = "openai_chat"
MODEL = "scripted-model"
# Copilot masks every occurrence of the key's value in its output, so the key must be long and unique
# (a short one would turn ordinary letters into "*").
FAKE_API_KEY = "scripted-openai-chat-key-4f8c2d9e7a1b6053c8e4f2a9d7b1e635"

# Argument names each kind of tool is recognised by, most likely first.
_PATH_KEYS = ("path", "file_path", "filePath", "absolute_path", "filename")
_CONTENT_KEYS = ("file_text", "content", "contents", "text")
_OLD_KEYS = ("old_str", "old_string", "oldText", "old")
_NEW_KEYS = ("new_str", "new_string", "newText", "new")
_COMMAND_KEYS = ("command", "cmd")
_SHELL_NAMES = ("bash", "shell", "run_shell_command", "powershell", "exec")

# Copilot's own names, used when the request offers no matching tool: the call goes to the named tool
# anyway, so that the CLI's own refusal ("tool not available") shows rather than a silent substitute.
_DEFAULT_TOOLS = {
    "write": ("create", "path", "file_text"),
    "edit": ("edit", "path", "old_str", "new_str"),
    "shell": ("bash", "command"),
}

_CWD = re.compile(r"Current working directory:\s*(\S[^\n]*)")


@dataclass(frozen=True)
class OfferedTool:
    name: str
    properties: tuple[str, ...]
    description: str

    def key(self, candidates: tuple[str, ...]) -> str | None:
        return next((c for c in candidates if c in self.properties), None)


def offered_tools(body: Any) -> list[OfferedTool]:
    tools: list[OfferedTool] = []
    for tool in (body or {}).get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        params = function.get("parameters") or {}
        props = params.get("properties") if isinstance(params, dict) else None
        tools.append(
            OfferedTool(
                name=function["name"],
                properties=tuple(props) if isinstance(props, dict) else (),
                description=str(function.get("description") or ""),
            )
        )
    return tools


def working_directory(body: Any) -> str | None:
    """The CLI's working directory, as its system prompt (environment context) states it."""
    for message in (body or {}).get("messages") or []:
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
            continue
        match = _CWD.search(_text_of(message.get("content")))
        if match:
            return match.group(1).strip()
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _absolute(path: str, cwd: str | None) -> str:
    if cwd is None or Path(path).is_absolute():
        return path
    return str(Path(cwd) / path)


def _find_write(tools: list[OfferedTool]) -> OfferedTool | None:
    return next(
        (t for t in tools if t.key(_PATH_KEYS) and t.key(_CONTENT_KEYS) and not t.key(_OLD_KEYS)), None
    )


def _find_edit(tools: list[OfferedTool]) -> OfferedTool | None:
    return next((t for t in tools if t.key(_PATH_KEYS) and t.key(_OLD_KEYS) and t.key(_NEW_KEYS)), None)


def _find_shell(tools: list[OfferedTool]) -> OfferedTool | None:
    with_command = [t for t in tools if t.key(_COMMAND_KEYS)]
    named = [t for t in with_command if t.name.lower() in _SHELL_NAMES]
    candidates = named or with_command
    return candidates[0] if candidates else None


def _must_not_exist(tool: OfferedTool) -> bool:
    """Copilot's `create` refuses an existing file ("MUST not exist")."""
    text = tool.description.lower()
    return "must not exist" in text or "cannot be used if the specified path already exists" in text


def tool_call(turn: ToolTurn, body: Any) -> tuple[str, dict[str, Any]]:
    """The (tool name, arguments) that carry out a scenario turn with the tools this request offers."""
    tools = offered_tools(body)
    cwd = working_directory(body)
    if isinstance(turn, Shell):
        shell = _find_shell(tools)
        if shell is None:
            name, command_key = _DEFAULT_TOOLS["shell"]
            return name, {command_key: turn.command}
        args: dict[str, Any] = {shell.key(_COMMAND_KEYS) or "command": turn.command}
        if "description" in shell.properties:
            args["description"] = "Run the scripted command"
        return shell.name, args
    path = _absolute(turn.path, cwd)
    if isinstance(turn, EditFile):
        return _edit_call(_find_edit(tools), path, turn.old, turn.new)
    write = _find_write(tools)
    if write is None:
        name, path_key, content_key = _DEFAULT_TOOLS["write"]
        return name, {path_key: path, content_key: turn.content}
    existing = _read_existing(path)
    edit = _find_edit(tools)
    if existing and edit is not None and _must_not_exist(write):
        # The model would overwrite an existing file by replacing its whole text.
        return _edit_call(edit, path, existing, turn.content)
    return write.name, {
        write.key(_PATH_KEYS) or "path": path,
        write.key(_CONTENT_KEYS) or "content": turn.content,
    }


def _edit_call(edit: OfferedTool | None, path: str, old: str, new: str) -> tuple[str, dict[str, Any]]:
    if edit is None:
        name, path_key, old_key, new_key = _DEFAULT_TOOLS["edit"]
        return name, {path_key: path, old_key: old, new_key: new}
    return edit.name, {
        edit.key(_PATH_KEYS) or "path": path,
        edit.key(_OLD_KEYS) or "old_str": old,
        edit.key(_NEW_KEYS) or "new_str": new,
    }


def _read_existing(path: str) -> str | None:
    candidate = Path(path)
    if not candidate.is_absolute() or not candidate.is_file():
        return None
    try:
        return candidate.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _usage(ctx: TurnContext) -> dict[str, Any]:
    prompt, completion = ctx.scenario.input_tokens, ctx.scenario.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _halves(text: str) -> list[str]:
    """Split a string in two, so clients see real incremental deltas."""
    if len(text) < 2:
        return [text]
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


class OpenAIChatDialect:
    api = API

    def route(self, method: str, path: str) -> bool:
        path = path.rstrip("/")
        if method == "POST":
            return path.endswith("/chat/completions")
        return method == "GET" and path.endswith("/models")

    def consumes_turn(self, request: ModelRequest) -> bool:
        """The agent's conversation carries its tools, or says so in its interaction header; a
        tool-less request (a title or summary) is a side call."""
        if request.method != "POST":
            return False
        body = request.body if isinstance(request.body, dict) else {}
        interaction = request.headers.get("x-interaction-type", "")
        return bool(body.get("tools")) or interaction.startswith("conversation")

    def respond_side(self, request: ModelRequest, ctx: TurnContext, out: ResponseWriter) -> None:
        model = self._model(request, ctx)
        if request.method == "GET":
            out.json(
                200,
                {
                    "object": "list",
                    "data": [{"id": model, "object": "model", "created": 0, "owned_by": "scripted"}],
                },
            )
            return
        self._answer(request, ctx, out, content="Scripted answer", calls=[])

    def respond(
        self, request: ModelRequest, turn: ToolTurn | Text, ctx: TurnContext, out: ResponseWriter
    ) -> None:
        if isinstance(turn, Text):
            self._answer(request, ctx, out, content=turn.text, calls=[])
            return
        name, arguments = tool_call(turn, request.body)
        self._answer(
            request, ctx, out, content=None, calls=[(f"call_scripted_{ctx.serial}_0", name, arguments)]
        )

    def error_body(self, status: int, message: str) -> Any:
        kinds = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            403: ("insufficient_quota", None),
            404: ("invalid_request_error", "model_not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }
        error_type, code = kinds.get(status, ("server_error", None))
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    # --- the two answer forms ------------------------------------------------------------------
    def _model(self, request: ModelRequest, ctx: TurnContext) -> str:
        body = request.body if isinstance(request.body, dict) else {}
        model = body.get("model")
        return model if isinstance(model, str) and model else ctx.scenario.model

    def _answer(
        self,
        request: ModelRequest,
        ctx: TurnContext,
        out: ResponseWriter,
        *,
        content: str | None,
        calls: list[tuple[str, str, dict[str, Any]]],
    ) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        head = {
            "id": f"chatcmpl-scripted-{ctx.serial}",
            "created": int(time.time()),
            "model": self._model(request, ctx),
            "system_fingerprint": "fp_scripted",
        }
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
            if calls:
                message["tool_calls"] = [
                    {"id": cid, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                    for cid, n, a in calls
                ]
            out.json(
                200,
                {
                    **head,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                    "usage": _usage(ctx),
                },
            )
            return
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        out.sse(
            [(None, chunk) for chunk in _stream_chunks(head, content, calls, finish, with_usage, ctx)]
            + [(None, "[DONE]")]
        )


def _stream_chunks(
    head: dict[str, Any],
    content: str | None,
    calls: list[tuple[str, str, dict[str, Any]]],
    finish: str,
    with_usage: bool,
    ctx: TurnContext,
) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of one streamed answer, as the OpenAI API sends them."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if with_usage:
            data["usage"] = None  # the API sends null on every chunk but the last when usage is asked for
        return data

    chunks = [chunk({"role": "assistant", "content": "" if content is not None else None, "refusal": None})]
    for piece in _halves(content or ""):
        if piece:
            chunks.append(chunk({"content": piece}))
    for index, (call_id, name, arguments) in enumerate(calls):
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        for piece in _halves(json.dumps(arguments)):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, finish))
    if with_usage:
        chunks.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(ctx)})
    return chunks


DIALECT = OpenAIChatDialect()


def agent_config(server_url: str) -> dict[str, Any]:
    """The `agents.copilot` config block that points the real Copilot CLI at a scripted server."""
    return {
        "model": MODEL,
        "env": {
            # Bring-your-own-key mode: no GitHub login, requests go to the scripted server.
            "COPILOT_PROVIDER_BASE_URL": f"{server_url.rstrip('/')}/v1",
            "COPILOT_PROVIDER_TYPE": "openai",
            "COPILOT_PROVIDER_WIRE_API": "completions",
            "COPILOT_PROVIDER_API_KEY": FAKE_API_KEY,
            "COPILOT_MODEL": MODEL,
            # No GitHub auth, telemetry, web tools, GitHub MCP server or update checks.
            "COPILOT_OFFLINE": "true",
            "COPILOT_AUTO_UPDATE": "false",
        },
    }
