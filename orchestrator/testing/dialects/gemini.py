"""The Gemini API (generativelanguage `v1beta`), as Gemini CLI calls it.

Routes: `POST .../v1beta/models/M:streamGenerateContent?alt=sse` (the agent's turns, SSE), `...:generateContent`
(one JSON object: the CLI's routing classifier when it runs without `-m`, and other helper calls),
`...:countTokens`, and `GET .../v1beta/models[/M]`.

A request that offers function declarations is the agent's own conversation and consumes a scenario
turn, answered as a `functionCall` to the CLI's own tool (write_file / replace / run_shell_command,
found by name and argument names among the declarations). A request without tools is a side call
(router, next-speaker check, compression) and gets a minimal answer that fits the JSON schema it asks
for, if any.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from orchestrator.testing.dialects.base import ModelRequest, ResponseWriter, TurnContext
from orchestrator.testing.scenario import EditFile, Shell, Text, ToolTurn, WriteFile

API = "gemini"
MODEL = "scripted-model"
# Long and unique, so that a leak into any output is easy to find (and masking cannot garble text).
FAKE_API_KEY = "scripted-gemini-key-9d41c7e2b85f4a06a3e8c1f7d2b9e5a4-orchestrator"

# `.../v1beta/models/NAME:action`; a base-URL path prefix is kept by the CLI, so match the tail. Plain
# `/v1/models` (OpenAI's model list) is left to the other dialects unless it names a Gemini action.
_PATH = re.compile(r"/v1(?P<beta>beta|alpha)?/models(?:/(?P<model>[^/:]+)(?::(?P<action>[A-Za-z]+))?)?$")
_GENERATE = ("streamGenerateContent", "generateContent")

# The API's own `status` strings (google.rpc.Code), by HTTP status.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Argument names each kind of tool is recognised by, Gemini CLI's own first.
_PATH_KEYS = ("file_path", "path", "absolute_path", "filename")
_CONTENT_KEYS = ("content", "contents", "file_text", "text")
_OLD_KEYS = ("old_string", "old_str", "old_text", "old")
_NEW_KEYS = ("new_string", "new_str", "new_text", "new")
_COMMAND_KEYS = ("command", "cmd")

# Gemini CLI's own tools. When the request does not offer one (its default and plan modes leave out
# the shell, the default mode also the edit tools), the call still goes to this name: the CLI then
# refuses it in its own words ("not found" / denied by policy), which is what a test of a read-only
# run must see. Substituting another offered tool would hide that refusal.
_CANONICAL: dict[str, tuple[str, ...]] = {
    "write": ("write_file", "file_path", "content"),
    "edit": ("replace", "file_path", "old_string", "new_string"),
    "shell": ("run_shell_command", "command"),
}

# Where Gemini CLI states its working directory: the first "Workspace Directories" entry of its
# <session_context> (older builds: "I'm currently working in the directory: /x").
_CWD = re.compile(
    r"(?:Workspace Directories:\*{0,2}\s*\n\s*-\s*|currently working in the directory:\s*)(/[^\n]*)"
)


class GeminiDialect:
    api = API

    def route(self, method: str, path: str) -> bool:
        match = _PATH.search(path)
        if match is None:
            return False
        action = match.group("action")
        if method == "GET":
            return action is None and (match.group("beta") is not None or match.group("model") is not None)
        if method != "POST" or action is None:
            return False
        return action in (*_GENERATE, "countTokens")

    def consumes_turn(self, request: ModelRequest) -> bool:
        return _action(request.path) in _GENERATE and bool(offered_tools(request.body))

    def respond_side(self, request: ModelRequest, ctx: TurnContext, out: ResponseWriter) -> None:
        match = _PATH.search(request.path)
        model = (match.group("model") if match else None) or ctx.scenario.model
        if request.method == "GET":
            if match is not None and match.group("model"):
                out.json(200, _model_info(model))
            else:
                out.json(200, {"models": [_model_info(ctx.scenario.model)]})
            return
        body = request.body if isinstance(request.body, dict) else {}
        action = _action(request.path)
        if action == "countTokens":
            out.json(200, {"totalTokens": ctx.scenario.input_tokens})
            return
        # A helper call: the routing classifier, a next-speaker or loop check, a summary. Each states
        # the JSON it wants as a schema; an instance of it (first enum value, shortest values) will do.
        schema = _response_schema(body)
        text = json.dumps(example_of(schema)) if schema is not None else "ok"
        _send(request, _response([{"text": text}], model, ctx), out)

    def respond(
        self, request: ModelRequest, turn: ToolTurn | Text, ctx: TurnContext, out: ResponseWriter
    ) -> None:
        match = _PATH.search(request.path)
        model = (match.group("model") if match else None) or ctx.scenario.model
        if isinstance(turn, Text):
            parts: list[dict[str, Any]] = [{"text": turn.text}]
        else:
            parts = [{"functionCall": function_call(turn, request.body)}]
        _send(request, _response(parts, model, ctx), out)

    def error_body(self, status: int, message: str) -> Any:
        name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
        return {"error": {"code": status, "message": message, "status": name}}


DIALECT = GeminiDialect()


def agent_config(server_url: str) -> dict[str, Any]:
    """The `agents.gemini` block that points Gemini CLI at a scripted server, with no account.

    The adapter turns a configured key plus base URL into the settings the CLI needs headless (API-key
    auth selected, usage statistics and update checks off) in a home of the run's own."""
    return {
        "env": {
            "GOOGLE_GEMINI_BASE_URL": server_url,
            "GEMINI_API_KEY": FAKE_API_KEY,
            # One node process instead of a relaunched child: faster start, half the memory.
            "GEMINI_CLI_NO_RELAUNCH": "true",
            # By default it retries 429/5xx ten times with 5-30 s back-off (minutes); one attempt
            # makes a scripted 429 or 500 fail at once, as the adapter's settings file says.
            "ORCHESTRATOR_GEMINI_MAX_ATTEMPTS": "1",
        },
        "model": MODEL,
    }


# --- requests -----------------------------------------------------------------------------------------


def _action(path: str) -> str | None:
    match = _PATH.search(path)
    return match.group("action") if match else None


@dataclass(frozen=True)
class OfferedTool:
    name: str
    properties: Mapping[str, Any]  # argument name -> its JSON schema
    required: tuple[str, ...]

    def key(self, candidates: tuple[str, ...]) -> str | None:
        return next((c for c in candidates if c in self.properties), None)

    def wants_absolute(self, key: str) -> bool:
        prop = self.properties.get(key)
        description = prop.get("description", "") if isinstance(prop, dict) else ""
        return "absolute" in str(description).lower()


def offered_tools(body: Any) -> list[OfferedTool]:
    """The function declarations of a request (both `parametersJsonSchema` and `parameters` forms)."""
    found: list[OfferedTool] = []
    tools = body.get("tools") if isinstance(body, dict) else None
    for tool in tools if isinstance(tools, list) else []:
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for declaration in declarations if isinstance(declarations, list) else []:
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                continue
            schema = declaration.get("parametersJsonSchema") or declaration.get("parameters") or {}
            props = schema.get("properties") if isinstance(schema, dict) else None
            required = schema.get("required") if isinstance(schema, dict) else None
            found.append(
                OfferedTool(
                    name=declaration["name"],
                    properties=props if isinstance(props, dict) else {},
                    required=tuple(r for r in required or [] if isinstance(r, str)),
                )
            )
    return found


def find_tool(tools: list[OfferedTool], role: str) -> OfferedTool:
    """The offered tool for a role (write, edit, shell): the CLI's own name when offered, else a tool
    with the right argument names, else the canonical tool as the CLI would declare it (not offered)."""
    canonical_name, *canonical_keys = _CANONICAL[role]
    by_name = {t.name: t for t in tools}
    if canonical_name in by_name:
        return by_name[canonical_name]
    for tool in tools:
        has_path, has_content = tool.key(_PATH_KEYS), tool.key(_CONTENT_KEYS)
        has_old, has_new = tool.key(_OLD_KEYS), tool.key(_NEW_KEYS)
        if role == "write" and has_path and has_content and not has_old:
            return tool
        if role == "edit" and has_path and has_old and has_new:
            return tool
        if role == "shell" and tool.key(_COMMAND_KEYS) and not has_path:
            return tool
    return OfferedTool(
        name=canonical_name, properties={k: {"type": "string"} for k in canonical_keys}, required=()
    )


def working_directory(body: Any) -> str | None:
    """The CLI's working directory, as its session context (first user message) states it."""
    for text in _texts(body):
        match = _CWD.search(text)
        if match:
            return match.group(1).strip()
    return None


def _texts(body: Any) -> Iterator[str]:
    if not isinstance(body, dict):
        return
    system = body.get("systemInstruction")
    contents = [system] if isinstance(system, dict) else []
    contents += [c for c in body.get("contents") or [] if isinstance(c, dict)]
    for content in contents:
        for part in content.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def function_call(turn: ToolTurn, body: Any) -> dict[str, Any]:
    """The `functionCall` for a scenario turn, in the offered tool's own argument names."""
    tools = offered_tools(body)
    if isinstance(turn, Shell):
        tool = find_tool(tools, "shell")
        args: dict[str, Any] = {tool.key(_COMMAND_KEYS) or "command": turn.command}
        return {"name": tool.name, "args": _fill_required(tool, args, "Run the scripted command")}
    role = "write" if isinstance(turn, WriteFile) else "edit"
    tool = find_tool(tools, role)
    path_key = tool.key(_PATH_KEYS) or "file_path"
    path = turn.path
    cwd = working_directory(body)
    if tool.wants_absolute(path_key) and cwd and not PurePosixPath(path).is_absolute():
        path = str(PurePosixPath(cwd) / path)
    args = {path_key: path}
    if isinstance(turn, WriteFile):
        args[tool.key(_CONTENT_KEYS) or "content"] = turn.content
        return {"name": tool.name, "args": _fill_required(tool, args, "Write the scripted file")}
    assert isinstance(turn, EditFile)
    args[tool.key(_OLD_KEYS) or "old_string"] = turn.old
    args[tool.key(_NEW_KEYS) or "new_string"] = turn.new
    # Gemini CLI's `replace` requires an `instruction` (what the change is for).
    return {"name": tool.name, "args": _fill_required(tool, args, "Apply the scripted edit")}


def _fill_required(tool: OfferedTool, args: dict[str, Any], purpose: str) -> dict[str, Any]:
    """Required arguments the scenario does not speak to (a description, an instruction) get a short
    value of their type, so the CLI's argument validation passes."""
    for key in tool.required:
        if key not in args:
            prop = tool.properties.get(key)
            args[key] = purpose if _type_of(prop) == "string" else example_of(prop)
    return args


# --- responses ----------------------------------------------------------------------------------------


def _response(parts: list[dict[str, Any]], model: str, ctx: TurnContext) -> dict[str, Any]:
    prompt, output = ctx.scenario.input_tokens, ctx.scenario.output_tokens
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        },
        "modelVersion": model,
        "responseId": f"scripted-{ctx.serial:06d}-{uuid.uuid4().hex[:12]}",
    }


def _send(request: ModelRequest, response: dict[str, Any], out: ResponseWriter) -> None:
    if _action(request.path) == "streamGenerateContent":
        out.sse((None, chunk) for chunk in stream_chunks(response))
    else:
        out.json(200, response)


def stream_chunks(response: Mapping[str, Any], text_chunk: int = 24) -> Iterator[dict[str, Any]]:
    """A response as `streamGenerateContent?alt=sse` sends it: text in several chunks, a function call
    whole; every chunk carries the prompt's usage, only the last the candidates' tokens and the
    finish reason."""
    candidate = response["candidates"][0]
    usage = response["usageMetadata"]
    prompt_usage = {k: v for k, v in usage.items() if k != "candidatesTokenCount"}
    prompt_usage["totalTokenCount"] = usage["promptTokenCount"]
    pieces: list[dict[str, Any]] = []
    for part in candidate["content"]["parts"]:
        text = part.get("text")
        if isinstance(text, str) and len(text) > text_chunk:
            pieces += [{"text": text[i : i + text_chunk]} for i in range(0, len(text), text_chunk)]
        else:
            pieces.append(part)
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        chunk_candidate: dict[str, Any] = {"content": {"parts": [piece], "role": "model"}, "index": 0}
        if last:
            chunk_candidate["finishReason"] = candidate["finishReason"]
        yield {
            "candidates": [chunk_candidate],
            "usageMetadata": usage if last else prompt_usage,
            "modelVersion": response["modelVersion"],
            "responseId": response["responseId"],
        }


def _model_info(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def _response_schema(body: Mapping[str, Any]) -> Any:
    config = body.get("generationConfig")
    if not isinstance(config, dict):
        return None
    return config.get("responseJsonSchema") or config.get("responseSchema")


def _type_of(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON Schema allows ["string", "null"]
        kind = next((k for k in kind if k != "null"), None)
    return kind.lower() if isinstance(kind, str) else None


def example_of(schema: Any) -> Any:
    """A small value that satisfies a (Gemini or JSON) schema: what a helper call's parser accepts."""
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_of(schema[key][0])
    kind = _type_of(schema)
    props = schema.get("properties")
    if kind == "object" or (kind is None and isinstance(props, dict)):
        return {name: example_of(sub) for name, sub in props.items()} if isinstance(props, dict) else {}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        return minimum if isinstance(minimum, int | float) else 1
    if kind == "boolean":
        return False
    if kind == "string":
        return "scripted"
    return None
