"""The OpenAI Chat Completions dialect of the scripted model server, over plain HTTP (urllib), no CLI.

The request bodies copy the shape Copilot CLI 1.0.102 sends in bring-your-own-key mode (recorded from
the real binary, trimmed to what the dialect reads): a system message stating the working directory,
`tools` of `function`s (`bash`, `view`, `create`, `edit`, ...), `stream: true` with
`stream_options.include_usage`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.testing.dialects.base import ModelRequest, TurnContext
from orchestrator.testing.dialects.openai_chat import (
    DIALECT,
    FAKE_API_KEY,
    MODEL,
    agent_config,
    offered_tools,
    working_directory,
)
from orchestrator.testing.pointing import agent_config as pointing_config
from orchestrator.testing.scenario import Scenario

CWD = "/home/dev/repo"


def function(name: str, properties: list[str], description: str = "") -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description or f"the {name} tool",
            "parameters": {
                "type": "object",
                "properties": {p: {"type": "string"} for p in properties},
                "required": properties[:1],
            },
        },
    }


COPILOT_TOOLS = [
    function("bash", ["command", "description", "shellId", "mode", "detach", "initial_wait"]),
    function("read_bash", ["shellId", "delay"]),
    function("view", ["path", "view_range"]),
    function(
        "create",
        ["path", "file_text"],
        "Tool for creating new files.\n* Cannot be used if the specified path already exists",
    ),
    function("edit", ["path", "old_str", "new_str"]),
    function("grep", ["pattern", "paths"]),
]


def system_prompt(cwd: str) -> str:
    return (
        "You are the GitHub Copilot CLI.\n<environment_context>\nYou are working in the following "
        f"environment.\n* Current working directory: {cwd}\n* Git repository root: {cwd}\n"
        "* Operating System: linux\n</environment_context>"
    )


def body(*, cwd: str = CWD, stream: bool = True, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": system_prompt(cwd)},
            {"role": "user", "content": "<current_datetime>now</current_datetime>\n\nDo it."},
        ],
        "temperature": 0,
        "tools": COPILOT_TOOLS if tools is None else tools,
        "stream": stream,
    }
    if stream:
        data["stream_options"] = {"include_usage": True}
    return data


def post(server, payload: dict[str, Any], path: str = "/v1/chat/completions", headers=None):
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(payload).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {FAKE_API_KEY}",
            **(headers or {}),
        },
        method="POST",
    )
    return urllib.request.urlopen(request, timeout=10)


def sse_chunks(response) -> list[Any]:
    """The `data:` payloads of an SSE response, in order; `[DONE]` stays a string."""
    text = response.read().decode()
    assert "event:" not in text  # Chat Completions streams carry no event names
    chunks = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            payload = block[len("data: ") :]
            chunks.append(payload if payload == "[DONE]" else json.loads(payload))
    return chunks


def assembled_call(chunks: list[Any]) -> tuple[str, str, dict[str, Any]]:
    """(id, name, arguments) of the one tool call a stream carries, joined from its deltas."""
    call_id, name, arguments = "", "", ""
    for chunk in chunks:
        if chunk == "[DONE]" or not chunk["choices"]:
            continue
        for call in chunk["choices"][0]["delta"].get("tool_calls") or []:
            assert call["index"] == 0
            call_id = call.get("id") or call_id
            name = call.get("function", {}).get("name") or name
            arguments += call.get("function", {}).get("arguments", "")
    return call_id, name, json.loads(arguments)


# --- routing --------------------------------------------------------------------------------------


def test_routes_chat_completions_and_model_lists_only():
    assert DIALECT.api == "openai_chat"
    assert DIALECT.route("POST", "/v1/chat/completions")
    assert DIALECT.route("POST", "/proxy/v1/chat/completions/")
    assert DIALECT.route("GET", "/v1/models")
    assert not DIALECT.route("POST", "/v1/responses")
    assert not DIALECT.route("POST", "/v1/messages")
    assert not DIALECT.route("GET", "/v1/chat/completions")
    assert not DIALECT.route("POST", "/v1beta/models/m:streamGenerateContent")


def test_tool_less_requests_are_side_calls():
    def request(payload, headers=None, method="POST"):
        return ModelRequest(
            api="openai_chat",
            method=method,
            path="/v1/chat/completions",
            query={},
            headers=headers or {},
            body=payload,
        )

    assert DIALECT.consumes_turn(request(body()))
    assert not DIALECT.consumes_turn(request(body(tools=[])))
    # Copilot labels the first request of a prompt; a labelled conversation request is main even bare.
    assert DIALECT.consumes_turn(request(body(tools=[]), {"x-interaction-type": "conversation-user"}))
    assert not DIALECT.consumes_turn(request(None, method="GET"))


# --- answers in Copilot's tool vocabulary -----------------------------------------------------------


def test_write_file_streams_a_create_call_with_an_absolute_path(model_server):
    server = model_server(
        Scenario.model_validate(
            {"turns": [{"write_file": {"path": "src/hello.txt", "content": "hi\n"}}], "input_tokens": 50}
        )
    )
    with post(server, body()) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        chunks = sse_chunks(response)
    assert chunks[-1] == "[DONE]"
    first = chunks[0]
    assert first["object"] == "chat.completion.chunk"
    assert first["model"] == MODEL
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks[:-1]}) == 1  # one completion id throughout
    call_id, name, arguments = assembled_call(chunks)
    assert call_id.startswith("call_")
    assert name == "create"
    assert arguments == {"path": f"{CWD}/src/hello.txt", "file_text": "hi\n"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    assert finishes[-1] == "tool_calls"
    assert set(finishes[:-1]) == {None}
    usage = chunks[-2]
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == 50
    assert usage["usage"]["completion_tokens"] == 7
    assert usage["usage"]["total_tokens"] == 57
    assert all(c["usage"] is None for c in chunks[:-2])
    assert server.turns_used == 1
    logged = server.main_requests("openai_chat")[0]
    assert logged.answered_with == "write_file"
    assert logged.headers["authorization"] == "***"


def test_edit_file_calls_edit_with_old_and_new(model_server):
    server = model_server([{"edit_file": {"path": "a.py", "old": "x = 1", "new": "x = 2"}}])
    with post(server, body()) as response:
        _, name, arguments = assembled_call(sse_chunks(response))
    assert name == "edit"
    assert arguments == {"path": f"{CWD}/a.py", "old_str": "x = 1", "new_str": "x = 2"}


def test_shell_calls_bash_with_the_required_description(model_server):
    server = model_server([{"shell": "echo ran > out.txt"}])
    with post(server, body()) as response:
        _, name, arguments = assembled_call(sse_chunks(response))
    assert name == "bash"
    assert arguments["command"] == "echo ran > out.txt"
    assert arguments["description"]  # required by Copilot's bash schema


def test_write_over_an_existing_file_replaces_its_text_with_edit(model_server, tmp_path):
    """`create` refuses an existing file, so the model would edit: old = the whole current text."""
    (tmp_path / "notes.txt").write_text("old text\n")
    server = model_server([{"write_file": {"path": "notes.txt", "content": "new text\n"}}])
    with post(server, body(cwd=str(tmp_path))) as response:
        _, name, arguments = assembled_call(sse_chunks(response))
    assert name == "edit"
    assert arguments == {
        "path": str(tmp_path / "notes.txt"),
        "old_str": "old text\n",
        "new_str": "new text\n",
    }


def test_other_tool_vocabularies_are_found_by_their_argument_names(model_server):
    tools = [
        function("write_file", ["file_path", "content"]),
        function("replace", ["file_path", "old_string", "new_string"]),
        function("run_shell_command", ["command"]),
    ]
    server = model_server(
        [
            {"write_file": {"path": "a.txt", "content": "x"}},
            {"edit_file": {"path": "a.txt", "old": "x", "new": "y"}},
            {"shell": "ls"},
        ]
    )
    calls = []
    for _ in range(3):
        with post(server, body(tools=tools)) as response:
            calls.append(assembled_call(sse_chunks(response))[1:])
    assert calls == [
        ("write_file", {"file_path": f"{CWD}/a.txt", "content": "x"}),
        ("replace", {"file_path": f"{CWD}/a.txt", "old_string": "x", "new_string": "y"}),
        ("run_shell_command", {"command": "ls"}),
    ]


def test_a_tool_the_cli_did_not_offer_is_called_by_copilots_name_anyway(model_server):
    """So the CLI's own refusal shows, rather than a silent substitute."""
    server = model_server([{"write_file": {"path": "a.txt", "content": "x"}}, {"shell": "ls"}])
    read_only_tools = [function("view", ["path"]), function("grep", ["pattern"])]
    with post(server, body(tools=read_only_tools, stream=False)) as response:
        write = json.load(response)["choices"][0]["message"]["tool_calls"][0]["function"]
    with post(server, body(tools=read_only_tools, stream=False)) as response:
        shell = json.load(response)["choices"][0]["message"]["tool_calls"][0]["function"]
    assert (write["name"], json.loads(write["arguments"])) == (
        "create",
        {"path": f"{CWD}/a.txt", "file_text": "x"},
    )
    assert (shell["name"], json.loads(shell["arguments"])) == ("bash", {"command": "ls"})


def test_without_a_stated_working_directory_paths_stay_relative(model_server):
    server = model_server([{"write_file": {"path": "a.txt", "content": "x"}}])
    payload = body()
    payload["messages"] = payload["messages"][1:]
    with post(server, payload) as response:
        _, _, arguments = assembled_call(sse_chunks(response))
    assert arguments["path"] == "a.txt"


# --- text, the non-streaming form, side calls, errors ------------------------------------------------


def test_text_streams_content_deltas_and_stops(model_server):
    server = model_server([{"text": "all done"}])
    with post(server, body()) as response:
        chunks = sse_chunks(response)
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c != "[DONE]" and c["choices"]
    )
    assert text == "all done"
    assert (
        len([c for c in chunks if c != "[DONE]" and c["choices"] and c["choices"][0]["delta"].get("content")])
        == 2
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks if c != "[DONE]" and c["choices"]][-1] == "stop"


def test_non_streaming_request_gets_one_completion_object(model_server):
    server = model_server([{"text": "plain"}, {"shell": "ls"}])
    with post(server, body(stream=False)) as response:
        assert response.headers["Content-Type"] == "application/json"
        completion = json.load(response)
    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "plain", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert completion["usage"]["prompt_tokens"] == 123
    with post(server, body(stream=False)) as response:
        choice = json.load(response)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["type"] == "function"


def test_side_calls_do_not_consume_turns(model_server):
    server = model_server([{"text": "the real answer"}])
    with post(server, body(tools=[], stream=False)) as response:
        side = json.load(response)
    assert side["choices"][0]["message"]["content"]
    assert server.turns_used == 0
    assert server.requests[0].answered_with == "side"
    with post(server, body(stream=False)) as response:
        assert json.load(response)["choices"][0]["message"]["content"] == "the real answer"


def test_model_list_names_the_requested_model():
    class Writer:
        def json(self, status, body, headers=None):
            self.status, self.body = status, body

        def sse(self, events, headers=None):
            raise AssertionError("a model list is plain JSON")

    writer = Writer()
    request = ModelRequest(
        api="openai_chat", method="GET", path="/v1/models", query={}, headers={}, body=None
    )
    DIALECT.respond_side(request, TurnContext(scenario=Scenario(), turn_index=None), writer)
    assert writer.status == 200
    assert writer.body["data"][0]["id"] == MODEL


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (401, "invalid_request_error", "invalid_api_key"),
        (429, "requests", "rate_limit_exceeded"),
        (500, "server_error", None),
    ],
)
def test_http_error_turns_use_the_openai_error_body(model_server, status, error_type, code):
    server = model_server([{"error": {"status": status, "message": "scripted", "retry_after": 2}}])
    with pytest.raises(urllib.error.HTTPError) as raised:
        post(server, body())
    assert raised.value.code == status
    assert raised.value.headers["Retry-After"] == "2"
    error = json.loads(raised.value.read())["error"]
    assert error == {"message": "scripted", "type": error_type, "param": None, "code": code}
    raised.value.close()


# --- helpers and configuration ----------------------------------------------------------------------


def test_working_directory_and_offered_tools_read_the_request():
    assert working_directory(body(cwd="/srv/app")) == "/srv/app"
    assert (
        working_directory({"messages": [{"role": "user", "content": "Current working directory: /x"}]})
        is None
    )
    assert working_directory(None) is None
    parts = {"messages": [{"role": "system", "content": [{"type": "text", "text": system_prompt("/p")}]}]}
    assert working_directory(parts) == "/p"
    names = [t.name for t in offered_tools(body())]
    assert names == ["bash", "read_bash", "view", "create", "edit", "grep"]
    assert offered_tools({"tools": [{"type": "function"}, "junk"]}) == []


def test_agent_config_points_copilot_at_the_server_in_byok_mode():
    config = agent_config("http://127.0.0.1:4321/")
    assert config == pointing_config("copilot", "http://127.0.0.1:4321/")
    assert set(config) == {"env", "model"}
    env = config["env"]
    assert env["COPILOT_PROVIDER_BASE_URL"] == "http://127.0.0.1:4321/v1"
    assert env["COPILOT_PROVIDER_TYPE"] == "openai"
    assert env["COPILOT_PROVIDER_WIRE_API"] == "completions"
    assert env["COPILOT_MODEL"] == config["model"] == MODEL
    assert env["COPILOT_OFFLINE"] == "true"  # no GitHub auth, telemetry or update traffic
    # Copilot masks a key's value wherever it appears in its output: it must be long and unique.
    assert env["COPILOT_PROVIDER_API_KEY"] == FAKE_API_KEY
    assert len(FAKE_API_KEY) >= 32
    assert Path(__file__).read_text().count(FAKE_API_KEY) == 0
