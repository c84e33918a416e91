"""The OpenAI Responses dialect of the scripted model server, over plain HTTP (urllib), with no CLI.

Requests are shaped like Codex CLI 0.169.0's: its three tool vocabularies (code mode's free-form `exec`
in an `additional_tools` input item; a free-form apply_patch tool beside `exec_command`; `exec_command`
alone), its working directory in an `<environment_context>` message, `stream: true`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.testing.dialects.openai_responses import (
    DIALECT,
    FAKE_KEY,
    KEY_VARIABLE,
    agent_config,
    offered_tools,
    patch_for,
    working_directory,
)
from orchestrator.testing.scenario import EditFile, WriteFile

EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
    },
}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark"}}
CODE_MODE = {
    "type": "additional_tools",
    "role": "developer",
    "tools": [
        {
            "type": "namespace",
            "name": "functions",
            "tools": [
                {"type": "custom", "name": "exec", "format": {"type": "grammar", "syntax": "lark"}},
                {"type": "function", "name": "wait", "parameters": {"properties": {"cell_id": {}}}},
            ],
        }
    ],
}


def body(cwd: str, *, tools=None, extra_input=(), stream: bool = True) -> dict[str, Any]:
    context = f"<environment_context>\n  <cwd>{cwd}</cwd>\n  <shell>bash</shell>\n</environment_context>"
    payload: dict[str, Any] = {
        "model": "scripted-model",
        "stream": stream,
        "input": [
            *extra_input,
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": context}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Do the task."}]},
        ],
        "tool_choice": "auto",
    }
    if tools is not None:
        payload["tools"] = tools
    return payload


def call(server, payload: Any = None, path: str = "/v1/responses", headers=None, method: str = "POST"):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        server.url + path,
        data=data,
        method=method,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {FAKE_KEY}",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def only_output_item(raw: bytes) -> dict[str, Any]:
    completed = [data for name, data in sse(raw) if name == "response.completed"]
    [item] = completed[0]["response"]["output"]
    return item


# --- the wire format ---------------------------------------------------------------------------------


def test_text_turn_streams_like_the_api(model_server, tmp_path):
    server = model_server({"turns": [{"text": "done"}], "input_tokens": 246, "output_tokens": 14})
    status, headers, raw = call(server, body(str(tmp_path)))
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    events = sse(raw)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == name for name, data in events)
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["model"] == "scripted-model"
    assert final["usage"] == {
        "input_tokens": 246,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 14,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 260,
    }
    assert events[0][1]["response"]["id"] == final["id"]
    assert "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == "done"
    assert final["output"][0]["content"][0]["text"] == "done"
    assert server.turns_used == 1


def test_non_streaming_request_gets_one_response_object(model_server, tmp_path):
    server = model_server([{"text": "plain"}])
    status, headers, raw = call(server, body(str(tmp_path), stream=False))
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    response = json.loads(raw)
    assert response["object"] == "response"
    assert response["output"][0]["content"][0]["text"] == "plain"
    assert response["usage"]["total_tokens"] == 123 + 7


# --- Codex's tool vocabularies ---------------------------------------------------------------------------


def test_code_mode_writes_through_the_exec_tool(model_server, tmp_path):
    server = model_server([{"write_file": {"path": "hello.txt", "content": "hi\n"}}])
    status, _, raw = call(server, body(str(tmp_path), extra_input=[CODE_MODE]))
    assert status == 200
    names = [name for name, _ in sse(raw)]
    assert "response.custom_tool_call_input.delta" in names
    assert "response.custom_tool_call_input.done" in names
    item = only_output_item(raw)
    assert (item["type"], item["name"]) == ("custom_tool_call", "exec")
    assert item["call_id"]
    assert "await tools.apply_patch(" in item["input"]
    assert json.dumps("*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n") in item["input"]


def test_code_mode_runs_commands_through_exec_command(model_server, tmp_path):
    command = 'echo "it\'s" > out.txt'
    server = model_server([{"shell": command}])
    _, _, raw = call(server, body(str(tmp_path), extra_input=[CODE_MODE]))
    item = only_output_item(raw)
    assert item["name"] == "exec"
    assert "await tools.exec_command({cmd: " + json.dumps(command) + "})" in item["input"]


def test_classic_tools_use_the_free_form_apply_patch_and_exec_command(model_server, tmp_path):
    server = model_server([{"write_file": {"path": "a.txt", "content": "x\n"}}, {"shell": "ls -la"}])
    tools = [EXEC_COMMAND, APPLY_PATCH]
    _, _, raw = call(server, body(str(tmp_path), tools=tools))
    patch = only_output_item(raw)
    assert (patch["type"], patch["name"]) == ("custom_tool_call", "apply_patch")
    assert patch["input"] == "*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch\n"
    _, _, raw = call(server, body(str(tmp_path), tools=tools))
    shell = only_output_item(raw)
    assert (shell["type"], shell["name"]) == ("function_call", "exec_command")
    assert json.loads(shell["arguments"]) == {"cmd": "ls -la"}
    names = [name for name, _ in sse(raw)]
    assert "response.function_call_arguments.delta" in names
    assert "response.function_call_arguments.done" in names


def test_without_apply_patch_the_patch_goes_through_the_shell(model_server, tmp_path):
    # Codex's fallback tools for a model it has no metadata for; Codex intercepts `apply_patch` there.
    server = model_server([{"write_file": {"path": "a.txt", "content": "x\n"}}])
    _, _, raw = call(server, body(str(tmp_path), tools=[EXEC_COMMAND]))
    item = only_output_item(raw)
    assert item["name"] == "exec_command"
    assert json.loads(item["arguments"])["cmd"] == (
        "apply_patch <<'PATCH'\n*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch\nPATCH\n"
    )


def test_older_function_shapes_get_their_own_argument_names(model_server, tmp_path):
    shell = {
        "type": "function",
        "name": "shell",
        "parameters": {"properties": {"command": {"type": "array"}}},
    }
    apply_patch = {"type": "function", "name": "apply_patch", "parameters": {"properties": {"input": {}}}}
    server = model_server([{"shell": "make test"}, {"write_file": {"path": "b.txt", "content": "y\n"}}])
    _, _, raw = call(server, body(str(tmp_path), tools=[shell, apply_patch]))
    assert json.loads(only_output_item(raw)["arguments"]) == {"command": ["bash", "-lc", "make test"]}
    _, _, raw = call(server, body(str(tmp_path), tools=[shell, apply_patch]))
    assert json.loads(only_output_item(raw)["arguments"]) == {
        "input": "*** Begin Patch\n*** Add File: b.txt\n+y\n*** End Patch\n"
    }


def test_a_tool_that_was_not_offered_is_called_anyway(model_server, tmp_path):
    server = model_server([{"write_file": {"path": "a.txt", "content": "x\n"}}, {"shell": "ls"}])
    _, _, raw = call(server, body(str(tmp_path), tools=[]))
    assert only_output_item(raw)["name"] == "apply_patch"
    _, _, raw = call(server, body(str(tmp_path), tools=[]))
    item = only_output_item(raw)
    assert (item["name"], json.loads(item["arguments"])) == ("exec_command", {"cmd": "ls"})


# --- edits ------------------------------------------------------------------------------------------------


def test_edit_widens_old_text_to_the_lines_it_sits_in(tmp_path):
    (tmp_path / "README.md").write_text("# sample\nkeep me\nline two\n")
    patch = patch_for(EditFile(path="README.md", old="sample", new="example"), tmp_path)
    assert patch == "*** Begin Patch\n*** Update File: README.md\n@@\n-# sample\n+# example\n*** End Patch\n"
    multi = patch_for(EditFile(path="README.md", old="me\nline", new="you\nrow"), tmp_path)
    assert "@@\n-keep me\n-line two\n+keep you\n+row two\n" in multi


def test_edit_without_the_file_takes_whole_lines(tmp_path):
    patch = patch_for(EditFile(path="missing.txt", old="a\nb", new="c"), tmp_path)
    assert patch == "*** Begin Patch\n*** Update File: missing.txt\n@@\n-a\n-b\n+c\n*** End Patch\n"
    assert patch_for(EditFile(path="x", old="a", new="b"), None).endswith("@@\n-a\n+b\n*** End Patch\n")


def test_edit_reads_the_file_in_the_cli_working_directory(model_server, tmp_path):
    (tmp_path / "notes.txt").write_text("alpha beta\n")
    server = model_server([{"edit_file": {"path": "notes.txt", "old": "beta", "new": "gamma"}}])
    _, _, raw = call(server, body(str(tmp_path), tools=[EXEC_COMMAND, APPLY_PATCH]))
    assert "-alpha beta\n+alpha gamma\n" in only_output_item(raw)["input"]


def test_write_file_patch_lines():
    assert patch_for(WriteFile(path="d/e.txt", content="one\n\nthree"), None) == (
        "*** Begin Patch\n*** Add File: d/e.txt\n+one\n+\n+three\n*** End Patch\n"
    )


# --- reading the request ------------------------------------------------------------------------------------


def test_working_directory_prefers_the_latest_cwd_then_the_workspace_root():
    first = body("/home/dev/repo")
    assert working_directory(first) == Path("/home/dev/repo")
    resumed = {
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "<cwd>/old</cwd>"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "<cwd>/new</cwd>"}],
            },
        ]
    }
    assert working_directory(resumed) == Path("/new")
    roots_only = {
        "input": [{"type": "message", "content": [{"type": "input_text", "text": "<root>/ws</root>"}]}]
    }
    assert working_directory(roots_only) == Path("/ws")
    assert working_directory({"input": []}) is None
    assert working_directory(None) is None


def test_offered_tools_flattens_namespaces_and_additional_tools():
    found = offered_tools(body("/r", tools=[EXEC_COMMAND, {"type": "web_search"}], extra_input=[CODE_MODE]))
    assert set(found) == {"exec_command", "web_search", "exec", "wait"}
    assert found["exec"]["type"] == "custom"


# --- errors and side calls ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(401, "invalid_api_key"), (429, "rate_limit_exceeded"), (500, None)]
)
def test_error_turns_use_the_api_error_shape(model_server, tmp_path, status, code):
    server = model_server([{"error": {"status": status, "message": "scripted", "retry_after": 2}}])
    got, headers, raw = call(server, body(str(tmp_path)))
    assert got == status
    error = json.loads(raw)["error"]
    assert (error["message"], error["code"]) == ("scripted", code)
    assert error["type"] == {401: "invalid_request_error", 429: "requests", 500: "server_error"}[status]
    assert headers["Retry-After"] == "2"


def test_side_calls_do_not_consume_turns(model_server, tmp_path):
    server = model_server([{"text": "the real answer"}])
    compaction = {"x-codex-turn-metadata": json.dumps({"request_kind": "compaction"})}
    status, _, raw = call(server, body(str(tmp_path)), headers=compaction)
    assert status == 200
    assert only_output_item(raw)["type"] == "message"
    status, _, raw = call(server, body(str(tmp_path), stream=False), path="/v1/responses/compact")
    assert json.loads(raw)["output"][0]["type"] == "message"
    assert server.turns_used == 0
    assert [r.answered_with for r in server.requests] == ["side", "side"]
    turn = {"x-codex-turn-metadata": json.dumps({"request_kind": "turn"})}
    _, _, raw = call(server, body(str(tmp_path)), headers=turn)
    assert only_output_item(raw)["content"][0]["text"] == "the real answer"
    assert server.turns_used == 1
    assert server.requests[-1].api == "openai_responses"
    assert server.requests[-1].headers["authorization"] == "***"


def test_dialect_routes_only_its_paths():
    assert DIALECT.route("POST", "/v1/responses")
    assert DIALECT.route("POST", "/api/v1/responses")
    assert not DIALECT.route("POST", "/v1/chat/completions")
    assert not DIALECT.route("GET", "/v1/responses")
    assert not DIALECT.route("GET", "/v1/models")  # the OpenAI Chat dialect's, same list format


# --- pointing the real CLI here -------------------------------------------------------------------------------


def test_agent_config_points_a_custom_provider_at_the_server():
    config = agent_config("http://127.0.0.1:4242/")
    assert set(config) == {"model", "env", "args"}
    assert config["model"] == "scripted-model"
    assert config["env"] == {KEY_VARIABLE: FAKE_KEY}
    assert len(FAKE_KEY) >= 40
    args = config["args"]
    assert args[args.index("model_provider=scripted") - 1] == "-c"
    provider = next(a for a in args if a.startswith("model_providers.scripted="))
    assert 'base_url="http://127.0.0.1:4242/v1"' in provider
    assert f'env_key="{KEY_VARIABLE}"' in provider
    assert 'wire_api="responses"' in provider
    assert "request_max_retries=1" in provider and "stream_max_retries=1" in provider
    assert "analytics.enabled=false" in args
    assert args[args.index("plugins") - 1] == "--disable"
