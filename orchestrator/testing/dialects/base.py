"""What a dialect of the scripted model server implements, and the response writer it writes with."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.testing.scenario import Scenario, Text, ToolTurn


@dataclass
class ModelRequest:
    """One request as the server received it (also what the request log keeps)."""

    api: str
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # secrets masked
    body: Any  # parsed JSON, or None
    consumed_turn: int | None = None  # index of the scenario turn that answered it, if any
    answered_with: str | None = None  # kind of answer: a turn kind, "side", "exhausted"


class ResponseWriter(Protocol):
    def json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None: ...

    def sse(self, events: Iterable[tuple[str | None, Any]], headers: Mapping[str, str] | None = None) -> None:
        """Stream `event: NAME` (when not None) + `data: JSON` blocks, flushing each one."""
        ...


@dataclass
class TurnContext:
    scenario: Scenario
    turn_index: int | None
    # A counter a dialect may use for unique ids (call ids, message ids).
    serial: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Dialect(Protocol):
    api: str  # "anthropic", "openai_responses", "openai_chat", "gemini"

    def route(self, method: str, path: str) -> bool:
        """Whether this dialect answers that request."""
        ...

    def consumes_turn(self, request: ModelRequest) -> bool:
        """False for side calls (titles, routing, token counts, model lists) the scenario should not see."""
        ...

    def respond_side(self, request: ModelRequest, ctx: TurnContext, out: ResponseWriter) -> None: ...

    def respond(
        self, request: ModelRequest, turn: ToolTurn | Text, ctx: TurnContext, out: ResponseWriter
    ) -> None:
        """Answer a main request with a tool call or a final text, streaming if the request asked to."""
        ...

    def error_body(self, status: int, message: str) -> Any:
        """The API's own error JSON for an HTTP error turn."""
        ...


def encode_sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()
