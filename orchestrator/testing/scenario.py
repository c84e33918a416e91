"""Scenarios for the scripted model server: a short script of model turns.

A turn is what the "model" answers to one main request: a tool call (write a file, edit a file, run a
shell command), a final text, an HTTP error, or a hang. YAML or JSON, long or short form:

    turns:
      - write_file: {path: hello.txt, content: "hi\\n"}
      - text: done
      - {kind: error, status: 429, retry_after: 1, times: always}
      - pick: {cases: [{contains: "if x == 2", text: "..."}], otherwise: {text: "..."}}

`pick` answers by what the request holds (the first case whose `contains` is in the request's body,
else `otherwise`): a stand-in for a model that reads the diff it is shown, for requests that arrive in
no fixed order (reviews of parallel attempts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.errors import ConfigError

Times = int | Literal["always"]


class _Turn(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    # How many main requests this turn answers before the next one takes over ("always": for ever,
    # e.g. an error that every retry should see).
    times: Times = 1


class WriteFile(_Turn):
    kind: Literal["write_file"] = "write_file"
    path: str  # relative to the CLI's working directory
    content: str


class EditFile(_Turn):
    kind: Literal["edit_file"] = "edit_file"
    path: str
    old: str
    new: str


class Shell(_Turn):
    kind: Literal["shell"] = "shell"
    command: str


class Text(_Turn):
    kind: Literal["text"] = "text"
    text: str


class HttpError(_Turn):
    kind: Literal["error"] = "error"
    status: int
    message: str = "scripted error"
    retry_after: float | None = None


class Hang(_Turn):
    """Accept the request and answer nothing, for `seconds` or until the server stops."""

    kind: Literal["hang"] = "hang"
    seconds: float | None = None


ToolTurn = WriteFile | EditFile | Shell
PlainTurn = Annotated[WriteFile | EditFile | Shell | Text | HttpError | Hang, Field(discriminator="kind")]


class PickCase(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    contains: str = Field(min_length=1)
    turn: PlainTurn

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        # {contains: X, text: Y} -> {contains: X, turn: {kind: text, text: Y}}
        if isinstance(data, dict) and "turn" not in data and "contains" in data:
            rest = {k: v for k, v in data.items() if k != "contains"}
            return {"contains": data["contains"], "turn": _expand_short_form(rest)}
        return data


class Pick(_Turn):
    kind: Literal["pick"] = "pick"
    cases: list[PickCase] = Field(min_length=1)
    otherwise: PlainTurn

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("otherwise"), dict):
            data = {**data, "otherwise": _expand_short_form(data["otherwise"])}
        return data

    def choose(self, request_text: str) -> WriteFile | EditFile | Shell | Text | HttpError | Hang:
        return next((c.turn for c in self.cases if c.contains in request_text), self.otherwise)


Turn = Annotated[WriteFile | EditFile | Shell | Text | HttpError | Hang | Pick, Field(discriminator="kind")]

_SHORT_KINDS = {"write_file", "edit_file", "shell", "text", "error", "hang", "pick"}


def _expand_short_form(raw: Any) -> Any:
    """`{write_file: {...}}` -> `{kind: write_file, ...}`; `{text: done}` -> `{kind: text, text: done}`."""
    if not isinstance(raw, dict) or "kind" in raw:
        return raw
    keys = [k for k in raw if k in _SHORT_KINDS]
    if len(keys) != 1:
        return raw
    kind = keys[0]
    value = raw[kind]
    rest = {k: v for k, v in raw.items() if k != kind}
    if isinstance(value, dict):
        return {"kind": kind, **value, **rest}
    field_for_scalar = {"text": "text", "shell": "command", "error": "status", "hang": "seconds"}
    return {"kind": kind, field_for_scalar.get(kind, kind): value, **rest}


class Scenario(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    name: str = "scenario"
    turns: list[Turn] = Field(default_factory=list)
    # Tokens reported for each answer, so usage and cost are testable.
    input_tokens: int = 123
    output_tokens: int = 7
    # Model name the server reports when the request names none.
    model: str = "scripted-model"

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("turns"), list):
            data = {**data, "turns": [_expand_short_form(t) for t in data["turns"]]}
        return data


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scenario: {exc.strerror}", file=str(path)) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"not valid YAML/JSON: {exc}", file=str(path)) from exc
    return scenario_from_data(data, source=str(path))


def scenario_from_data(data: Any, *, source: str = "scenario") -> Scenario:
    if isinstance(data, list):
        data = {"turns": data}
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key_path = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            err["msg"],
            file=source,
            key_path=key_path,
            allowed="turns of write_file, edit_file, shell, text, error, hang, pick",
        ) from exc
