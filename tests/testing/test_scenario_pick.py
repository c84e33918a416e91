"""The `pick` turn of the scripted model server: one turn whose answer depends on what the request
holds, for requests that come in no fixed order (the reviews of parallel attempts)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from orchestrator.errors import ConfigError
from orchestrator.testing.dialects.openai_chat import FAKE_API_KEY, MODEL
from orchestrator.testing.scenario import Pick, Text, scenario_from_data

PICK = {
    "pick": {
        "cases": [
            {"contains": "if x == 2", "text": "special-cased"},
            {"contains": "x - 1", "error": 500},
        ],
        "otherwise": {"text": "fine"},
    },
    "times": "always",
}


def ask(server: Any, prompt: str) -> str:
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}],
        "stream": False,
    }
    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {FAKE_API_KEY}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["choices"][0]["message"]["content"])
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"


def test_pick_short_forms_parse_into_cases_and_otherwise():
    [turn] = scenario_from_data([PICK]).turns
    assert isinstance(turn, Pick) and turn.times == "always"
    assert turn.choose("+    if x == 2:") == Text(text="special-cased")
    assert turn.choose("return x * 2") == Text(text="fine")
    assert turn.choose("return x - 1").kind == "error"


def test_pick_answers_each_request_by_its_body_in_any_order(model_server):
    server = model_server([PICK])
    assert ask(server, "diff: return x * 2") == "fine"
    assert ask(server, "diff:\n+    if x == 2:\n+        return 4") == "special-cased"
    assert ask(server, "diff: return x - 1") == "HTTP 500"
    assert ask(server, "diff: return x * 2") == "fine"
    assert [r.answered_with for r in server.main_requests()] == ["text", "text", "error", "text"]


def test_a_pick_without_cases_is_refused():
    with pytest.raises(ConfigError):
        scenario_from_data([{"pick": {"cases": [], "otherwise": {"text": "x"}}}])
