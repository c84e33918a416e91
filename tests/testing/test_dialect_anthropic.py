"""The Anthropic dialect of the scripted model server, over plain HTTP (urllib), with no CLI.

Requests are shaped like Claude Code 2.1.329's: its tool names and input schemas, its working directory
stated in a mid-conversation system message, `?beta=true`, `stream: true`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from orchestrator.testing.dialects.anthropic import (
    DIALECT,
    FAKE_API_KEY,
    agent_config,
    working_directory,
)

REPO = "/home/dev/repo"

CLAUDE_TOOLS = [
    {"name": "Bash", "input_schema": {"properties": {"command": {}, "timeout": {}, "description": {}}}},
    {"name": "Edit", "input_schema": {"properties": {"file_path": {}, "old_string": {}, "new_string": {}}}},
    {"name": "Read", "input_schema": {"properties": {"file_path": {}, "offset": {}, "limit": {}}}},
    {"name": "Glob", "input_schema": {"properties": {"pattern": {}, "path": {}}}},
    {"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}},
]


def body(*, tools=CLAUDE_TOOLS, cwd: str = REPO, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK."}
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Do the task."}]},
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": f"# Environment\n - Primary working directory: {cwd}\n"}
                ],
            },
        ],
        "tools": tools,
        **extra,
    }


def post(server, payload: Any, path: str = "/v1/messages?beta=true") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "x-api-key": FAKE_API_KEY},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def assembled(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The content blocks a client rebuilds from the stream (partial JSON joined, then parsed)."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    return [blocks[i] for i in sorted(blocks)]


# --- routing ----------------------------------------------------------------------------------------------


def test_routes():
    assert DIALECT.route("POST", "/v1/messages")
    assert DIALECT.route("POST", "/anthropic/v1/messages")  # a base URL with a path prefix
    assert DIALECT.route("POST", "/v1/messages/count_tokens")
    assert not DIALECT.route("GET", "/v1/messages")
    assert not DIALECT.route("POST", "/v1/chat/completions")
    assert not DIALECT.route("POST", "/v1/responses")
    assert not DIALECT.route("GET", "/v1/models")  # shared with the OpenAI APIs; Claude Code never asks


# --- main requests ----------------------------------------------------------------------------------------


def test_write_file_streams_a_write_call_with_an_absolute_path(model_server):
    server = model_server({"turns": [{"write_file": {"path": "src/hello.txt", "content": "hi\n"}}]})
    status, headers, raw = post(server, body())
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = sse(raw)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["role"] == "assistant"
    assert start["model"] == "claude-sonnet-4-5"
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 123
    (call,) = assembled(events)
    assert call["type"] == "tool_use" and call["name"] == "Write" and call["id"].startswith("toolu_")
    assert call["input"] == {"file_path": f"{REPO}/src/hello.txt", "content": "hi\n"}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 7
    (logged,) = server.main_requests("anthropic")
    assert logged.consumed_turn == 0 and logged.query == {"beta": "true"}
    assert logged.headers["x-api-key"] == "***"


def test_text_without_streaming(model_server):
    server = model_server({"turns": [{"text": "all done"}], "input_tokens": 50, "output_tokens": 5})
    status, _, raw = post(server, body(stream=False))
    message = json.loads(raw)
    assert status == 200
    assert message["type"] == "message" and message["content"] == [{"type": "text", "text": "all done"}]
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    assert message["usage"]["input_tokens"] == 50 and message["usage"]["output_tokens"] == 5


def test_text_streams_as_text_deltas(model_server):
    server = model_server([{"text": "done"}])
    events = sse(post(server, body())[2])
    assert assembled(events) == [{"type": "text", "text": "done"}]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_edit_reads_the_file_first(model_server):
    # Claude Code's Edit fails unless the file was read in this conversation.
    server = model_server([{"edit_file": {"path": "a.py", "old": "x = 1", "new": "x = 2"}}])
    read, edit = assembled(sse(post(server, body())[2]))
    assert (read["name"], read["input"]) == ("Read", {"file_path": f"{REPO}/a.py"})
    assert edit["name"] == "Edit"
    assert edit["input"] == {"file_path": f"{REPO}/a.py", "old_string": "x = 1", "new_string": "x = 2"}
    assert read["id"] != edit["id"]


def test_write_over_an_existing_file_reads_it_first(model_server, tmp_path):
    (tmp_path / "old.txt").write_text("before\n")
    server = model_server(
        [
            {"write_file": {"path": "old.txt", "content": "after\n"}},
            {"write_file": {"path": "new.txt", "content": "fresh\n"}},
        ]
    )
    first = assembled(sse(post(server, body(cwd=str(tmp_path)))[2]))
    assert [b["name"] for b in first] == ["Read", "Write"]
    second = assembled(sse(post(server, body(cwd=str(tmp_path)))[2]))
    assert [b["name"] for b in second] == ["Write"]
    assert second[0]["input"]["file_path"] == str(tmp_path / "new.txt")


def test_shell_calls_bash(model_server):
    server = model_server([{"shell": "pytest -q"}])
    (call,) = assembled(sse(post(server, body())[2]))
    assert call["name"] == "Bash" and call["input"]["command"] == "pytest -q"


def test_a_tool_the_cli_did_not_offer_is_still_called_by_its_own_name(model_server):
    # A run whose shell tool was taken away: the call is made anyway, so the CLI's refusal shows.
    read_only_tools = [t for t in CLAUDE_TOOLS if t["name"] in {"Read", "Glob"}]
    server = model_server([{"shell": "rm -rf build"}, {"write_file": {"path": "x", "content": "y"}}])
    (shell,) = assembled(sse(post(server, body(tools=read_only_tools))[2]))
    assert shell["name"] == "Bash"
    (write,) = assembled(sse(post(server, body(tools=read_only_tools))[2]))
    assert write["name"] == "Write"


def test_tools_are_found_by_schema_when_named_otherwise(model_server):
    renamed = [
        {"name": "mcp__fs__create", "input_schema": {"properties": {"file_path": {}, "content": {}}}},
        {"name": "run", "input_schema": {"properties": {"command": {}}}},
    ]
    server = model_server([{"write_file": {"path": "a.txt", "content": "1"}}, {"shell": "ls"}])
    assert assembled(sse(post(server, body(tools=renamed))[2]))[0]["name"] == "mcp__fs__create"
    assert assembled(sse(post(server, body(tools=renamed))[2]))[0]["name"] == "run"


def test_working_directory_from_system_prompt_or_messages():
    assert working_directory(body(cwd="/w/x")) == "/w/x"
    older = {
        "system": [{"type": "text", "text": "<env>\nWorking directory: /srv/app\n</env>"}],
        "messages": [],
    }
    assert working_directory(older) == "/srv/app"
    assert working_directory({"system": "no env here", "messages": []}) is None


def test_out_of_turns_answers_plain_text(model_server):
    server = model_server([{"text": "only"}])
    post(server, body())
    events = sse(post(server, body())[2])
    assert assembled(events) == [{"type": "text", "text": "(the scenario has no more turns)"}]
    assert server.requests[-1].answered_with == "exhausted"


# --- side calls -------------------------------------------------------------------------------------------


def test_count_tokens_is_a_side_call(model_server):
    server = model_server([{"text": "main"}])
    status, _, raw = post(server, body(stream=False), path="/v1/messages/count_tokens?beta=true")
    assert status == 200 and json.loads(raw) == {"input_tokens": 123}
    assert server.turns_used == 0 and server.requests[-1].answered_with == "side"


def test_a_tool_less_request_is_a_side_call(model_server):
    # Titles, topics and quota probes send no tools; they must not eat the scenario.
    server = model_server([{"write_file": {"path": "a.txt", "content": "1"}}])
    title = {
        "model": "claude-haiku-4-5",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": "Write a title"}],
    }
    status, _, raw = post(server, title)
    message = json.loads(raw)
    assert status == 200 and message["content"][0]["type"] == "text" and message["stop_reason"] == "end_turn"
    assert server.turns_used == 0
    (call,) = assembled(sse(post(server, body())[2]))
    assert call["name"] == "Write"


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_http_errors_in_the_apis_own_shape(model_server, status, error_type):
    server = model_server([{"error": {"status": status, "message": "scripted"}}])
    code, _, raw = post(server, body())
    error = json.loads(raw)
    assert code == status
    assert error["type"] == "error" and error["error"] == {"type": error_type, "message": "scripted"}
    assert error["request_id"].startswith("req_")


def test_rate_limit_carries_retry_after(model_server):
    server = model_server([{"error": {"status": 429, "retry_after": 2}, "times": 2}, {"text": "ok"}])
    assert post(server, body())[1]["Retry-After"] == "2"
    assert post(server, body())[0] == 429
    assert post(server, body(stream=False))[0] == 200


# --- pointing the CLI at the server -----------------------------------------------------------------------


def test_agent_config_points_claude_here_and_keeps_it_quiet():
    config = agent_config("http://127.0.0.1:4321")
    assert set(config) == {"env", "model"}
    env = config["env"]
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4321"
    assert env["ANTHROPIC_API_KEY"] == FAKE_API_KEY and len(FAKE_API_KEY) >= 40
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert int(env["CLAUDE_CODE_MAX_RETRIES"]) <= 1
    assert int(env["API_TIMEOUT_MS"]) >= 10_000  # our idle limit, not the CLI's, ends a hang
    assert all(isinstance(v, str) for v in env.values())
    assert config["model"] == "claude-sonnet-4-5"
