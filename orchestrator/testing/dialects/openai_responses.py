"""The OpenAI Responses API (`POST /v1/responses`, SSE), as Codex CLI speaks it.

Codex offers its tools in one of three vocabularies, depending on the model it believes it talks to:

- code mode (its default models): one free-form `exec` tool, inside an `additional_tools` input item,
  that runs JavaScript calling nested tools: `await tools.apply_patch("*** Begin Patch ...")`,
  `await tools.exec_command({cmd})`;
- classic tools (known models without code mode): a free-form (custom) `apply_patch` tool and an
  `exec_command` function;
- fallback (models Codex has no metadata for): only `exec_command`. Codex itself intercepts
  `apply_patch <<'EOF' ... EOF` run through it and applies the patch as a file change.

A turn is answered with the closest tool the request offers. When none fits, the call names the tool
anyway, so that the CLI's own refusal is what the test sees (we never pretend a tool exists by
answering with text).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from orchestrator.testing.dialects.base import ModelRequest, ResponseWriter, TurnContext
from orchestrator.testing.scenario import EditFile, Shell, Text, ToolTurn, WriteFile

# What a user puts under `agents.codex` to point the real CLI at a scripted server (see agent_config).
PROVIDER_ID = "scripted"
KEY_VARIABLE = "CODEX_API_KEY"  # the variable Codex itself knows, so `orchestrator agents` sees auth
FAKE_KEY = "sk-scripted-codex-7f3c9a2e41d84b6f9e0c5d1a8b7e6f42-not-a-real-key"
MODEL = "scripted-model"  # priced in adapters/base.py, so cost is testable; Codex uses fallback tools


def agent_config(server_url: str) -> dict[str, Any]:
    """The `agents.codex` block that points the real Codex CLI at a scripted server at `server_url`.

    A custom provider (the built-in `openai` one cannot be re-pointed), one short retry so 401/500
    fail in about a second, and no analytics or plugin traffic to other hosts."""
    provider = (
        f'{{name="{PROVIDER_ID}", base_url="{server_url.rstrip("/")}/v1", env_key="{KEY_VARIABLE}", '
        'wire_api="responses", request_max_retries=1, stream_max_retries=1}'
    )
    return {
        "model": MODEL,
        "env": {KEY_VARIABLE: FAKE_KEY},
        "args": [
            "-c",
            f"model_provider={PROVIDER_ID}",
            "-c",
            f"model_providers.{PROVIDER_ID}={provider}",
            "-c",
            "analytics.enabled=false",
            "--disable",
            "plugins",
        ],
    }


# --- reading the request -------------------------------------------------------------------------


def offered_tools(body: Any) -> dict[str, dict[str, Any]]:
    """Tool name -> its declaration, from `tools` and any `additional_tools` input item, namespaces
    flattened (the call names the bare tool)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(tools: Any) -> None:
        for tool in tools if isinstance(tools, list) else []:
            if not isinstance(tool, dict):
                continue
            if tool.get("type") == "namespace":
                walk(tool.get("tools"))
            elif isinstance(tool.get("name"), str):
                found.setdefault(tool["name"], tool)
            elif isinstance(tool.get("type"), str):
                found.setdefault(tool["type"], tool)

    if isinstance(body, dict):
        walk(body.get("tools"))
        for item in body.get("input") or []:
            if isinstance(item, dict) and item.get("type") == "additional_tools":
                walk(item.get("tools"))
    return found


_CWD = re.compile(r"<cwd>([^<]+)</cwd>")
_ROOT = re.compile(r"<root>([^<]+)</root>")


def working_directory(body: Any) -> Path | None:
    """The CLI's working directory, as its environment context states it (the latest one wins)."""
    texts = [
        part.get("text", "")
        for item in (body.get("input") or [] if isinstance(body, dict) else [])
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict)
    ]
    for pattern in (_CWD, _ROOT):
        for text in reversed(texts):
            matches = pattern.findall(text)
            if matches:
                return Path(matches[-1].strip())
    return None


# --- the scenario turn in Codex's vocabulary -----------------------------------------------------


def patch_for(turn: WriteFile | EditFile, cwd: Path | None) -> str:
    """An apply_patch envelope for the turn. Paths stay relative: Codex resolves them against its cwd."""
    if isinstance(turn, WriteFile):
        body = "".join(f"+{line}\n" for line in turn.content.splitlines())
        return f"*** Begin Patch\n*** Add File: {turn.path}\n{body}*** End Patch\n"
    old_lines, new_lines = _edited_lines(turn, cwd)
    hunk = "".join(f"-{line}\n" for line in old_lines) + "".join(f"+{line}\n" for line in new_lines)
    return f"*** Begin Patch\n*** Update File: {turn.path}\n@@\n{hunk}*** End Patch\n"


def _edited_lines(turn: EditFile, cwd: Path | None) -> tuple[list[str], list[str]]:
    """apply_patch replaces whole lines. A model reads the file first; so do we, to widen `old` to the
    lines it sits in. Without the file, `old` and `new` are taken as whole lines."""
    try:
        text = (cwd / turn.path).read_text(encoding="utf-8") if cwd else None
    except OSError:
        text = None
    if text is None or turn.old not in text:
        return turn.old.splitlines(), turn.new.splitlines()
    at = text.index(turn.old)
    start = text.rfind("\n", 0, at) + 1
    end_nl = text.find("\n", at + len(turn.old))
    end = len(text) if end_nl < 0 else end_nl
    before, after = text[start:end], text[start:at] + turn.new + text[at + len(turn.old) : end]
    return before.splitlines(), after.splitlines()


def tool_call_for(
    turn: ToolTurn, tools: dict[str, dict[str, Any]], cwd: Path | None, call: str
) -> dict[str, Any]:
    """The output item that carries the turn, in the vocabulary the request offered."""
    code_mode = tools.get("exec", {}).get("type") == "custom"
    if isinstance(turn, Shell):
        if code_mode:
            js = (
                f"const r = await tools.exec_command({{cmd: {json.dumps(turn.command)}}});\ntext(r.output);\n"
            )
            return _custom_call(call, "exec", js)
        return _shell_call(call, turn.command, tools)
    patch = patch_for(turn, cwd)
    apply_patch = tools.get("apply_patch")
    if apply_patch is not None and apply_patch.get("type") == "function":
        return _function_call(call, "apply_patch", {"input": patch})
    if apply_patch is not None:
        return _custom_call(call, "apply_patch", patch)
    if code_mode:
        return _custom_call(
            call, "exec", f"const r = await tools.apply_patch({json.dumps(patch)});\ntext(r);\n"
        )
    if _shell_tool(tools) is not None:
        # Codex intercepts apply_patch run through its shell tool and applies it as a file change.
        return _shell_call(call, f"apply_patch <<'PATCH'\n{patch}PATCH\n", tools)
    return _custom_call(call, "apply_patch", patch)  # not offered: let the CLI refuse it itself


_SHELL_TOOLS = ("exec_command", "shell_command", "shell")


def _shell_tool(tools: dict[str, dict[str, Any]]) -> str | None:
    return next((name for name in _SHELL_TOOLS if tools.get(name, {}).get("type") == "function"), None)


def _shell_call(call: str, command: str, tools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name = _shell_tool(tools) or "exec_command"
    properties = tools.get(name, {}).get("parameters", {}).get("properties", {})
    if "cmd" in properties or name == "exec_command":
        return _function_call(call, name, {"cmd": command})
    if properties.get("command", {}).get("type") == "array":
        return _function_call(call, name, {"command": ["bash", "-lc", command]})
    return _function_call(call, name, {"command": command})


def _function_call(call: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call}",
        "call_id": f"call_{call}",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def _custom_call(call: str, name: str, text: str) -> dict[str, Any]:
    return {
        "type": "custom_tool_call",
        "id": f"ctc_{call}",
        "call_id": f"call_{call}",
        "name": name,
        "input": text,
        "status": "completed",
    }


def _message(call: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{call}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


# --- the wire format -------------------------------------------------------------------------------


def response_object(
    response_id: str, model: str, output: list[dict[str, Any]], usage: dict[str, Any] | None, status: str
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        "error": None,
        "incomplete_details": None,
    }


def usage_object(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def sse_events(final: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """The event sequence the Responses API streams for a finished response `final`."""
    events: list[tuple[str | None, Any]] = []

    def emit(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": len(events), **data}))

    opening = {**final, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    for index, item in enumerate(final["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            emit("response.content_part.added", **where, content_index=0, part=part)
            emit("response.output_text.delta", **where, content_index=0, delta=text, logprobs=[])
            emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part={**part, "text": text})
        elif item["type"] == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            emit("response.function_call_arguments.delta", **where, delta=item["arguments"])
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        else:  # custom_tool_call
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "input": ""},
            )
            emit("response.custom_tool_call_input.delta", **where, delta=item["input"])
            emit("response.custom_tool_call_input.done", **where, input=item["input"])
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=final)
    return events


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class OpenAIResponsesDialect:
    api = "openai_responses"

    def route(self, method: str, path: str) -> bool:
        # Codex 0.169 asks a custom provider for nothing else (no model list: it uses its bundled
        # catalog). GET /models is the OpenAI Chat dialect's, in the same OpenAI list format.
        return method == "POST" and path.endswith(("/responses", "/responses/compact"))

    def consumes_turn(self, request: ModelRequest) -> bool:
        """Main requests are the conversation's turns. Codex labels each request in a metadata header;
        anything it does not call a "turn" (compaction, say) is a side call."""
        if request.method != "POST" or not request.path.endswith("/responses"):
            return False
        try:
            metadata = json.loads(request.headers.get("x-codex-turn-metadata") or "{}")
        except ValueError:
            metadata = {}
        kind = metadata.get("request_kind") if isinstance(metadata, dict) else None
        return kind in (None, "turn")

    def respond_side(self, request: ModelRequest, ctx: TurnContext, out: ResponseWriter) -> None:
        model = _model_of(request, ctx)
        output = [_message(f"side{ctx.serial}", "ok")]
        if request.path.endswith("/compact"):
            out.json(200, {"output": output})
            return
        self._send(
            request,
            out,
            response_object(f"resp_side{ctx.serial}", model, output, usage_object(0, 0), "completed"),
        )

    def respond(
        self, request: ModelRequest, turn: ToolTurn | Text, ctx: TurnContext, out: ResponseWriter
    ) -> None:
        call = f"{ctx.serial:04d}"
        if isinstance(turn, Text):
            item = _message(call, turn.text)
        else:
            item = tool_call_for(turn, offered_tools(request.body), working_directory(request.body), call)
        usage = usage_object(ctx.scenario.input_tokens, ctx.scenario.output_tokens)
        final = response_object(f"resp_{call}", _model_of(request, ctx), [item], usage, "completed")
        self._send(request, out, final)

    def error_body(self, status: int, message: str) -> Any:
        kind, code = _ERROR_TYPES.get(status, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    @staticmethod
    def _send(request: ModelRequest, out: ResponseWriter, final: dict[str, Any]) -> None:
        if isinstance(request.body, dict) and request.body.get("stream"):
            out.sse(sse_events(final))
        else:
            out.json(200, final)


def _model_of(request: ModelRequest, ctx: TurnContext) -> str:
    model = request.body.get("model") if isinstance(request.body, dict) else None
    return model if isinstance(model, str) and model else ctx.scenario.model


DIALECT = OpenAIResponsesDialect()
