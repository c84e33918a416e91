"""A workflow file's problems: each names the file, the key path and what is allowed (exit 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from orchestrator.engine.workflow_union import STEP_KIND_ALLOWED, STEP_TAGS
from orchestrator.errors import ConfigError

# What is allowed where a discriminator found neither shape (its own error context cannot carry it:
# a dict there makes the nested Annotated types unhashable).
_KIND_ALLOWED = {
    "step_kind": STEP_KIND_ALLOWED,
    "workflow_kind": "a mapping of description, max_iterations, min_suggestions_threshold, diff_base, setup, base_gates, limits, steps; or a list of steps",
}

# The tags of the unions in the schema appear in pydantic's error locations; they are not keys of the file.
_TAGS = STEP_TAGS | {"workflow mapping", "legacy step list"}


@dataclass(frozen=True)
class Problem:
    key_path: str  # "" for the file as a whole
    message: str
    allowed: str | None = None

    def render(self, file: str) -> str:
        text = f"{file}: {self.key_path}: {self.message}" if self.key_path else f"{file}: {self.message}"
        return f"{text} (allowed: {self.allowed})" if self.allowed else text


class WorkflowInvalid(ConfigError):
    """A workflow file failed validation; `problems` holds every problem, one line each in the message."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        first = problems[0]
        super().__init__(
            first.message,
            file=file,
            key_path=first.key_path or None,
            allowed=first.allowed,
            hint="`orchestrator workflows list` gives the built-in files: each is a valid example",
        )
        self.problems = tuple(problems)
        self.message = "\n".join(p.render(file) for p in problems)


def _problems(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    errors = exc.errors(include_url=False)
    problems = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc for other in errors
        ):
            continue  # "at least 1 item" only because an item was invalid: that item's error says it all
        ctx = error.get("ctx") or {}
        allowed: str | None = None
        message = str(error["msg"])
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
            model = _model_at(root, loc[:-1])
            allowed = ", ".join(allowed_keys(model)) if model else None
        elif "allowed" in ctx:
            allowed = str(ctx["allowed"])
        elif error["type"] in _KIND_ALLOWED:
            allowed = _KIND_ALLOWED[error["type"]]
        elif error["type"] == "literal_error":
            message = f"{error['input']!r} is not allowed here"
            allowed = str(ctx.get("expected"))
        elif error["type"] == "missing":
            message = "this key is required"
        problems.append(Problem(_key_path(loc), message, allowed))
    return problems


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """A model's keys for a refusal: its kind's own first, then those it shares with other kinds (a
    step's `description`, `optional`, ... come from a base class, which pydantic lists first)."""
    own = [name for name in model.model_fields if name in vars(model).get("__annotations__", {})]
    return own + [name for name in model.model_fields if name not in own]


def _key_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _TAGS or part == "[key]":
            continue
        else:
            text += f".{part}" if text else part
    return text


def _model_at(root: Any, loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model whose keys are allowed at `loc`, found by walking the annotations the way pydantic did."""
    current: Any = root
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return None
    current = _unannotated(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unannotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _descend(annotation: Any, part: str | int) -> Any:
    annotation = _unannotated(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        return None if field is None else field.annotation
    if isinstance(part, str) and part in _TAGS:
        for member in get_args(annotation):
            if get_origin(member) is Annotated and any(
                isinstance(meta, Tag) and meta.tag == part for meta in get_args(member)[1:]
            ):
                return get_args(member)[0]
        return None
    origin = get_origin(annotation)
    if origin in (Union, UnionType):  # `X | None`: the key's model is in X
        members = [m for m in get_args(annotation) if m is not type(None)]
        return _descend(members[0], part) if len(members) == 1 else None
    if origin in (list, tuple) and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    return None
