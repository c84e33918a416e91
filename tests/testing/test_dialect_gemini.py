"""The Gemini dialect of the scripted model server, over plain HTTP (urllib), with no CLI.

The request bodies copy the shape Gemini CLI 0.61.0 sends (recorded from the real binary, trimmed to
what the dialect reads): `contents` with a <session_context> part, `systemInstruction`, `tools` of
`functionDeclarations` with `parametersJsonSchema`, and `generationConfig`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from orchestrator.testing.dialects.base import ModelRequest, TurnContext
from orchestrator.testing.dialects.gemini import (
    DIALECT,
    FAKE_API_KEY,
    MODEL,
    agent_config,
    example_of,
    working_directory,
)
from orchestrator.testing.pointing import agent_config as pointing_config
from orchestrator.testing.scenario import Scenario

CWD = "/home/dev/repo"
SESSION_CONTEXT = (
    "<session_context>\nThis is the Gemini CLI. We are setting up the context for our chat.\n"
    "My operating system is: linux\n- **Workspace Directories:**\n  - /home/dev/repo\n"
    "- **Directory Structure:**\n\n/home/dev/repo/\n└───.git/...\n</session_context>"
)


def declaration(name: str, properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"the {name} tool",
        "parametersJsonSchema": {
            "type": "object",
            "properties": {k: {"type": "string", "description": d} for k, d in properties.items()},
            "required": required,
        },
    }


READ_FILE = declaration("read_file", {"file_path": "The path to the file to read."}, ["file_path"])
WRITE_FILE = declaration(
    "write_file",
    {"file_path": "The path to the file to write to.", "content": "The content to write to the file."},
    ["file_path", "content"],
)
REPLACE = declaration(
    "replace",
    {
        "file_path": "The path to the file to modify.",
        "instruction": "A clear, semantic instruction for the code change.",
        "old_string": "The exact literal text to replace.",
        "new_string": "The exact literal text to replace `old_string` with.",
    },
    ["file_path", "instruction", "old_string", "new_string"],
)
SHELL = declaration(
    "run_shell_command",
    {"command": "Exact bash command to execute as `bash -c <command>`", "description": "Brief description."},
    ["command"],
)
AUTO_EDIT_TOOLS = [READ_FILE, WRITE_FILE, REPLACE]  # what --approval-mode auto_edit offers (no shell)


def main_body(tools: list[dict[str, Any]], prompt: str = "Create hello.txt") -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": SESSION_CONTEXT}, {"text": prompt}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are a non-interactive CLI agent."}]},
        "tools": [{"functionDeclarations": tools}],
        "generationConfig": {"temperature": 1, "thinkingConfig": {"includeThoughts": True}},
    }


def post(url: str, body: Any) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "x-goog-api-key": FAKE_API_KEY},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read()


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    """The `data:` payloads of an SSE body (the Gemini API sends no event names)."""
    chunks = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        assert not block.startswith("event:"), block
        assert block.startswith("data: "), block
        chunks.append(json.loads(block[len("data: ") :]))
    return chunks


def stream(server, body: dict[str, Any], model: str = MODEL) -> list[dict[str, Any]]:
    status, headers, raw = post(f"{server.url}/v1beta/models/{model}:streamGenerateContent?alt=sse", body)
    assert status == 200, raw
    assert headers["Content-Type"] == "text/event-stream"
    return sse_chunks(raw)


def parts_of(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]


# --- routing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "routed"),
    [
        ("POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", True),
        ("POST", "/v1beta/models/gemini-2.5-pro:generateContent", True),
        ("POST", "/v1beta/models/gemini-2.5-pro:countTokens", True),
        ("POST", "/proxy/prefix/v1beta/models/m:generateContent", True),  # a base URL with a path
        ("GET", "/v1beta/models", True),
        ("GET", "/v1beta/models/gemini-2.5-pro", True),
        ("POST", "/v1/models/gemini-2.5-pro:generateContent", True),
        ("GET", "/v1/models", False),  # OpenAI's model list belongs to the OpenAI dialects
        ("POST", "/v1/messages", False),
        ("POST", "/v1/chat/completions", False),
        ("POST", "/v1beta/models/m:embedContent", False),
        ("POST", "/v1beta/models/m", False),
    ],
)
def test_route(method, path, routed):
    assert DIALECT.route(method, path) is routed


# --- main requests: the CLI's own tools ---------------------------------------------------------------


def test_write_file_turn_streams_a_function_call_to_write_file(model_server):
    server = model_server([{"write_file": {"path": "hello.txt", "content": "hi\n"}}, {"text": "done"}])
    chunks = stream(server, main_body(AUTO_EDIT_TOOLS))
    assert len(chunks) == 1
    candidate = chunks[0]["candidates"][0]
    assert candidate["content"]["role"] == "model"
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "write_file", "args": {"file_path": "hello.txt", "content": "hi\n"}}}
    ]
    usage = chunks[0]["usageMetadata"]
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"], usage["totalTokenCount"]) == (
        123,
        7,
        130,
    )
    assert chunks[0]["modelVersion"] == MODEL
    assert chunks[0]["responseId"]
    (logged,) = server.requests
    assert (logged.api, logged.consumed_turn, logged.answered_with) == ("gemini", 0, "write_file")
    assert logged.query == {"alt": "sse"}
    assert logged.headers["x-goog-api-key"] == "***"  # the key is never logged


def test_text_turn_streams_in_chunks_with_usage_and_stop_on_the_last(model_server):
    text = "A final answer long enough to be sent in several chunks, as the API streams text."
    server = model_server([{"text": text}])
    chunks = stream(server, main_body(AUTO_EDIT_TOOLS))
    assert len(chunks) > 1
    assert "".join(p["text"] for p in parts_of(chunks)) == text
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    # The prompt's tokens on every chunk (as the API does), the candidates' only once, at the end.
    assert all(c["usageMetadata"]["promptTokenCount"] == 123 for c in chunks)
    assert [c["usageMetadata"].get("candidatesTokenCount") for c in chunks][-1] == 7
    assert all("candidatesTokenCount" not in c["usageMetadata"] for c in chunks[:-1])
    assert len({c["responseId"] for c in chunks}) == 1


def test_edit_turn_calls_replace_with_its_required_instruction(model_server):
    server = model_server([{"edit_file": {"path": "a.py", "old": "x = 1", "new": "x = 2"}}])
    (part,) = parts_of(stream(server, main_body(AUTO_EDIT_TOOLS)))
    call = part["functionCall"]
    assert call["name"] == "replace"
    assert call["args"]["file_path"] == "a.py"
    assert (call["args"]["old_string"], call["args"]["new_string"]) == ("x = 1", "x = 2")
    assert call["args"]["instruction"]  # required by the CLI's schema


def test_shell_turn_calls_run_shell_command(model_server):
    server = model_server([{"shell": "echo ran > out.txt"}])
    (part,) = parts_of(stream(server, main_body([*AUTO_EDIT_TOOLS, SHELL])))
    assert part["functionCall"] == {"name": "run_shell_command", "args": {"command": "echo ran > out.txt"}}


def test_a_tool_the_cli_did_not_offer_is_still_called_by_its_own_name(model_server):
    # A read-only run offers no write or shell tool: the call goes out anyway, so the CLI refuses it.
    server = model_server([{"shell": "rm -rf build"}, {"write_file": {"path": "x.txt", "content": "x"}}])
    (shell,) = parts_of(stream(server, main_body([READ_FILE])))
    assert shell["functionCall"] == {"name": "run_shell_command", "args": {"command": "rm -rf build"}}
    (write,) = parts_of(stream(server, main_body([READ_FILE])))
    assert write["functionCall"] == {"name": "write_file", "args": {"file_path": "x.txt", "content": "x"}}


def test_tools_are_found_by_argument_names_when_renamed(model_server):
    create = declaration(
        "create_file",
        {"absolute_path": "The absolute path of the file.", "text": "What to write."},
        ["absolute_path", "text"],
    )
    server = model_server([{"write_file": {"path": "src/new.py", "content": "pass\n"}}])
    (part,) = parts_of(stream(server, main_body([READ_FILE, create])))
    # The tool wants an absolute path: the scenario's relative one is joined to the stated workspace.
    assert part["functionCall"] == {
        "name": "create_file",
        "args": {"absolute_path": f"{CWD}/src/new.py", "text": "pass\n"},
    }


def test_non_streaming_main_request_gets_one_json_response(model_server):
    server = model_server([{"write_file": {"path": "a.txt", "content": "a"}}])
    status, headers, raw = post(
        f"{server.url}/v1beta/models/{MODEL}:generateContent", main_body(AUTO_EDIT_TOOLS)
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert body["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "write_file"
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"]["candidatesTokenCount"] == 7
    assert server.turns_used == 1


def test_the_model_in_the_path_is_reported(model_server):
    server = model_server([{"text": "ok"}])
    chunks = stream(server, main_body(AUTO_EDIT_TOOLS), model="gemini-2.5-flash")
    assert chunks[-1]["modelVersion"] == "gemini-2.5-flash"


def test_an_exhausted_scenario_answers_text(model_server):
    server = model_server([])
    parts = parts_of(stream(server, main_body(AUTO_EDIT_TOOLS)))
    assert "no more turns" in "".join(p["text"] for p in parts)
    assert server.requests[0].answered_with == "exhausted"


# --- side calls ---------------------------------------------------------------------------------------


def test_routing_call_gets_json_fitting_its_schema_and_consumes_no_turn(model_server):
    server = model_server([{"text": "main answer"}])
    router = {
        "contents": [{"role": "user", "parts": [{"text": "Create hello.txt"}]}],
        "systemInstruction": {"parts": [{"text": "You are a specialized Task Routing AI."}]},
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {
                "type": "OBJECT",
                "properties": {
                    "complexity_reasoning": {"type": "STRING"},
                    "complexity_score": {"type": "INTEGER"},
                },
                "required": ["complexity_reasoning", "complexity_score"],
            },
        },
    }
    status, _, raw = post(f"{server.url}/v1beta/models/gemini-3.5-flash-lite:generateContent", router)
    assert status == 200
    answer = json.loads(json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"])
    assert isinstance(answer["complexity_reasoning"], str)
    assert isinstance(answer["complexity_score"], int)
    assert server.turns_used == 0
    assert server.requests[0].answered_with == "side"
    assert server.main_requests() == []
    # The scenario's first turn is still there for the main request.
    assert parts_of(stream(server, main_body(AUTO_EDIT_TOOLS)))[0]["text"] == "main answer"


def test_side_call_without_schema_streamed(model_server):
    server = model_server([{"text": "main"}])
    body = {"contents": [{"role": "user", "parts": [{"text": "summarise"}]}]}
    chunks = stream(server, body)
    assert parts_of(chunks) == [{"text": "ok"}]
    assert server.turns_used == 0


def test_count_tokens_and_model_lists(model_server):
    server = model_server([])
    status, _, raw = post(f"{server.url}/v1beta/models/{MODEL}:countTokens", main_body([]))
    assert status == 200 and json.loads(raw) == {"totalTokens": 123}
    status, raw = get(f"{server.url}/v1beta/models/gemini-2.5-pro")
    assert json.loads(raw)["name"] == "models/gemini-2.5-pro"
    assert server.turns_used == 0


def test_model_list():
    # Over HTTP, `GET .../models` is answered by the OpenAI dialects, which come first and claim any path
    # ending in /models; Gemini CLI 0.61.0 never lists models in a headless run.
    class Recorder:
        def json(self, status, body, headers=None):
            self.sent = (status, body)

    request = ModelRequest(api="gemini", method="GET", path="/v1beta/models", query={}, headers={}, body=None)
    out = Recorder()
    DIALECT.respond_side(request, TurnContext(scenario=Scenario(), turn_index=None), out)
    status, body = out.sent
    assert status == 200
    assert [m["name"] for m in body["models"]] == [f"models/{MODEL}"]


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name"),
    [(401, "UNAUTHENTICATED"), (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (418, "UNKNOWN")],
)
def test_http_error_turns_use_the_apis_error_body(model_server, status, name):
    server = model_server(
        [{"error": {"status": status, "message": "scripted", "retry_after": 2}, "times": "always"}]
    )
    url = f"{server.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    for _ in range(2):  # "always": every retry sees it
        code, headers, raw = post(url, main_body(AUTO_EDIT_TOOLS))
        assert code == status
        assert json.loads(raw) == {"error": {"code": status, "message": "scripted", "status": name}}
        assert headers["Retry-After"] == "2"
    assert server.turns_used == 0  # an "always" turn never moves on


# --- pointing the CLI at the server -------------------------------------------------------------------


def test_agent_config_points_gemini_at_the_server():
    config = agent_config("http://127.0.0.1:4321")
    assert set(config) == {"env", "model"}
    env = config["env"]
    assert env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:4321"
    assert env["GEMINI_API_KEY"] == FAKE_API_KEY and len(FAKE_API_KEY) >= 40
    assert env["GEMINI_CLI_NO_RELAUNCH"] == "true"
    assert env["ORCHESTRATOR_GEMINI_MAX_ATTEMPTS"] == "1"
    assert config["model"] == MODEL  # with -m the CLI makes no routing call
    assert pointing_config("gemini", "http://127.0.0.1:4321") == config


def test_working_directory_from_the_session_context():
    assert working_directory(main_body([])) == CWD
    older = {"contents": [{"parts": [{"text": "I'm currently working in the directory: /srv/app\n"}]}]}
    assert working_directory(older) == "/srv/app"
    assert working_directory({"contents": []}) is None
    assert working_directory("not a body") is None


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string", "enum": ["flash", "pro"]}, "flash"),
        ({"type": "BOOLEAN"}, False),
        ({"type": "integer", "minimum": 5}, 5),
        ({"type": ["string", "null"]}, "scripted"),
        ({"type": "array", "items": {"type": "string"}}, []),
        ({"anyOf": [{"type": "number"}, {"type": "string"}]}, 1),
        (
            {"properties": {"next_speaker": {"type": "string", "enum": ["user", "model"]}}},
            {"next_speaker": "user"},
        ),
        ("not a schema", None),
    ],
)
def test_example_of(schema, value):
    assert example_of(schema) == value
