"""Workflows: the YAML schema (unknown keys refused), the loader, agent overrides, and gate commands.

Two file shapes load:
- one workflow, with `steps:` at the top (the built-ins in workflows/ and `.orchestrator/workflows/`);
- a `workflows:` mapping of named workflows, the format of the legacy AI-Agents-Orchestrator. There a
  workflow is either a mapping (`max_iterations`, `min_suggestions_threshold`, `steps`) or, as in its
  shipped config/agents.yaml, just the list of steps; the file's `settings:` block gives defaults and
  its `agents:` block may disable agents or set their timeouts. The other keys that really occur in
  those blocks are accepted and reported as unused (LEGACY_UNUSED_*); any other key is refused.

Every problem names the file, the key path and what is allowed, and exits 2 (ConfigError).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from annotated_types import MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.adapters import AGENT_NAMES
from orchestrator.errors import ConfigError, UsageError
from orchestrator.files import read_config_text

TaskKind = Literal["implement", "review", "refine", "suggestions", "document"]
TASKS: tuple[TaskKind, ...] = get_args(TaskKind)
# These steps only read the tree and answer with findings; the rest edit files in the run's worktree.
READ_ONLY_TASKS: frozenset[TaskKind] = frozenset({"review", "suggestions"})

# What the reviewer compares against: the commit the run started from (the run's own changes), or the
# merge-base of the current branch with its base branch (review-only: review a branch as it is).
DiffBase = Literal["run_start", "merge_base"]

DEFAULT_MAX_ITERATIONS = 3
DEFAULT_MIN_SUGGESTIONS_THRESHOLD = 0  # 0: the rule is off unless a workflow sets it
DEFAULT_GATE_TIMEOUT_S = 600.0
DEFAULT_SETUP_TIMEOUT_S = 900.0
MAX_ITERATIONS_LIMIT = 50
# A gate whose `run` is exactly this runs the repository's own test command, found by
# detect_test_command(); with no test suite the gate has nothing to run and is reported as skipped.
AUTO_GATE = "auto"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"
# Tokens a shell would treat as syntax. Gates run without a shell, so these would reach the program
# as plain arguments; refuse them instead of running something else than the user meant.
_SHELL_SYNTAX = frozenset({"&&", "||", "|", ";", "&", ">", ">>", "<", "<<", "2>", "2>&1", "&>", "|&"})
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- steps ------------------------------------------------------------------------------------------


class Step(_Strict):
    """An agent step: `agent` does `task`."""

    agent: str
    task: TaskKind
    description: str = ""
    optional: bool = False  # when it fails or no agent can take it, the run goes on without it
    timeout_s: float | None = Field(default=None, gt=0)
    model: str | None = None

    @field_validator("agent")
    @classmethod
    def _known_agent(cls, value: str) -> str:
        if value not in AGENT_NAMES:
            raise PydanticCustomError(
                "unknown_agent",
                "unknown agent '{agent}'",
                {"agent": value, "allowed": ", ".join(AGENT_NAMES)},
            )
        return value

    @property
    def read_only(self) -> bool:
        return self.task in READ_ONLY_TASKS

    @property
    def label(self) -> str:
        return f"{self.task} ({self.agent})"


class GateStep(_Strict):
    """A check: `run` is split like a shell would split it, run without a shell; exit 0 passes."""

    run: str
    name: str | None = None
    timeout_s: float = Field(default=DEFAULT_GATE_TIMEOUT_S, gt=0)
    optional: bool = False  # its failure is reported but does not block approval

    @field_validator("run")
    @classmethod
    def _splits(cls, value: str) -> str:
        try:
            parse_gate_argv(value)
        except ValueError as exc:
            raise PydanticCustomError(
                "gate_command",
                "{problem}",
                {
                    "problem": str(exc),
                    "allowed": f'one command per gate, e.g. run: "pytest -q", or run: {AUTO_GATE}',
                },
            ) from None
        return value

    @property
    def is_auto(self) -> bool:
        return self.run.strip() == AUTO_GATE

    @property
    def label(self) -> str:
        return self.name or ("tests" if self.is_auto else self.run)


class SetupStep(_Strict):
    """A command run in the run's repository before its first gate (and in the base checkout before
    the base run), to make what git ignores but the gates need: node_modules, a virtualenv inside the
    repository, generated files. `run: auto` picks the install command from the lockfile it finds.
    A plain string in the YAML list is the same as `run: <string>`."""

    run: str
    name: str | None = None
    timeout_s: float = Field(default=DEFAULT_SETUP_TIMEOUT_S, gt=0)

    @field_validator("run")
    @classmethod
    def _splits(cls, value: str) -> str:
        try:
            parse_gate_argv(value)
        except ValueError as exc:
            raise PydanticCustomError(
                "setup_command",
                "{problem}",
                {
                    "problem": str(exc),
                    "allowed": f'one command per entry, e.g. "npm ci", or run: {AUTO_GATE}',
                },
            ) from None
        return value

    @property
    def is_auto(self) -> bool:
        return self.run.strip() == AUTO_GATE

    @property
    def label(self) -> str:
        return self.name or ("setup" if self.is_auto else self.run)


def _setup_entry(value: Any) -> Any:
    return {"run": value} if isinstance(value, str) else value


SetupEntry = Annotated[SetupStep, BeforeValidator(_setup_entry)]


def _step_kind(value: Any) -> str | None:
    if isinstance(value, GateStep) or (isinstance(value, dict) and "run" in value):
        return "gate step"
    if isinstance(value, Step) or (isinstance(value, dict) and ("agent" in value or "task" in value)):
        return "agent step"
    return None


AnyStep = Annotated[
    Annotated[Step, Tag("agent step")] | Annotated[GateStep, Tag("gate step")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step is an agent step (agent, task) or a gate (run)",
    ),
]


# --- a workflow, resolved -------------------------------------------------------------------------------


class Workflow(_Strict):
    """One workflow with every default applied: what the engine runs and the store keeps as JSON."""

    name: str = Field(min_length=1)
    description: str = ""
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=MAX_ITERATIONS_LIMIT)
    min_suggestions_threshold: int = Field(default=DEFAULT_MIN_SUGGESTIONS_THRESHOLD, ge=0)
    diff_base: DiffBase = "run_start"
    # None: `run: auto` setup when a gate is `run: auto` (the repository's own tests), none otherwise.
    setup: tuple[SetupEntry, ...] | None = None
    # Run the gates once on the base too (in a checkout of their own), to tell failures that were
    # there before any change from the ones the agents caused. `--no-base-gates` turns it off per run.
    base_gates: bool = True
    steps: tuple[AnyStep, ...] = Field(min_length=1)

    @property
    def setup_steps(self) -> tuple[SetupStep, ...]:
        """What runs before the first gate: the workflow's `setup:`, or its default."""
        if self.setup is not None:
            return self.setup
        return (SetupStep(run=AUTO_GATE),) if any(g.is_auto for g in self.gates) else ()

    @property
    def agent_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if isinstance(s, Step))

    @property
    def gates(self) -> tuple[GateStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, GateStep))

    @property
    def has_review(self) -> bool:
        return any(s.task == "review" for s in self.agent_steps)

    @property
    def edits(self) -> bool:
        """Whether any step may change files (False for review-only)."""
        return any(not s.read_only for s in self.agent_steps)

    def steps_for_iteration(self, iteration: int) -> tuple[tuple[int, Step | GateStep], ...]:
        """(index in `steps`, step) to run in `iteration` (1-based): all of them first, then all but
        `implement`, which later iterations replace by working on the findings."""
        return tuple(
            (index, step)
            for index, step in enumerate(self.steps)
            if iteration == 1 or not (isinstance(step, Step) and step.task == "implement")
        )

    @property
    def can_iterate(self) -> bool:
        """Whether a second iteration could change anything: it needs a step that edits files."""
        return any(isinstance(s, Step) and not s.read_only for _, s in self.steps_for_iteration(2))

    def summary(self) -> str:
        return " -> ".join(s.label if isinstance(s, Step) else f"gate ({s.label})" for s in self.steps)


# --- the file shapes ---------------------------------------------------------------------------------


class _WorkflowBody(_Strict):
    description: str = ""
    max_iterations: int | None = Field(default=None, ge=1, le=MAX_ITERATIONS_LIMIT)
    min_suggestions_threshold: int | None = Field(default=None, ge=0)
    diff_base: DiffBase = "run_start"
    setup: tuple[SetupEntry, ...] | None = None
    base_gates: bool = True
    steps: tuple[AnyStep, ...] = Field(min_length=1)


class SingleWorkflowFile(_WorkflowBody):
    """A file holding one workflow, `steps:` at the top; its name is the file's name without `.yaml`."""


class LegacyAgent(_Strict):
    """An entry of the legacy `agents:` block. `enabled: false` drops the agent's steps (as the legacy
    tool did) and `timeout` becomes those steps' timeout_s; the other keys are accepted and unused."""

    enabled: bool = True
    timeout: float | None = Field(default=None, gt=0)
    command: str | None = None
    role: str | None = None
    description: str | None = None


LEGACY_UNUSED_AGENT_KEYS: tuple[str, ...] = ("command", "role", "description")


class LegacySettings(_Strict):
    """The legacy `settings:` block: defaults for the file's workflows, plus keys that configured the
    legacy tool itself (accepted so its files load unchanged, and unused here)."""

    max_iterations: int | None = Field(default=None, ge=1, le=MAX_ITERATIONS_LIMIT)
    min_suggestions_threshold: int | None = Field(default=None, ge=0)
    output_dir: str | None = None
    workspace_dir: str | None = None
    log_level: str | None = None
    log_file: str | None = None
    create_reports: bool | None = None
    reports_dir: str | None = None
    colored_output: bool | None = None


LEGACY_UNUSED_SETTINGS: tuple[str, ...] = (
    "output_dir",
    "workspace_dir",
    "log_level",
    "log_file",
    "create_reports",
    "reports_dir",
    "colored_output",
)


def _workflow_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "workflow_name", "'{name}' is not a workflow name", {"name": value, "allowed": _NAME_RULE}
        )
    return value


def _agent_name(value: str) -> str:
    if value not in AGENT_NAMES:
        raise PydanticCustomError(
            "unknown_agent", "unknown agent '{agent}'", {"agent": value, "allowed": ", ".join(AGENT_NAMES)}
        )
    return value


def _entry_kind(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        return "legacy step list"
    if isinstance(value, dict | _WorkflowBody):
        return "workflow mapping"
    return None


WorkflowEntry = Annotated[
    Annotated[_WorkflowBody, Tag("workflow mapping")]
    | Annotated[tuple[AnyStep, ...], MinLen(1), Tag("legacy step list")],
    Discriminator(
        _entry_kind,
        custom_error_type="workflow_kind",
        custom_error_message="a workflow is a mapping with `steps:`, or a list of steps",
    ),
]


class WorkflowFile(_Strict):
    """A file holding named workflows under `workflows:` (the legacy format and its extensions)."""

    workflows: dict[Annotated[str, AfterValidator(_workflow_name)], WorkflowEntry] = Field(min_length=1)
    agents: dict[Annotated[str, AfterValidator(_agent_name)], LegacyAgent] = Field(default_factory=dict)
    settings: LegacySettings = Field(default_factory=LegacySettings)


# What is allowed where a discriminator found neither shape (its own error context cannot carry it:
# a dict there makes the nested Annotated types unhashable).
_KIND_ALLOWED = {
    "step_kind": "agent + task (+ description, optional, timeout_s, model), or run (+ name, timeout_s, optional)",
    "workflow_kind": "a mapping of description, max_iterations, min_suggestions_threshold, diff_base, setup, base_gates, steps; or a list of steps",
}

# The tags of the unions above appear in pydantic's error locations; they are not keys of the file.
_TAGS = frozenset({"agent step", "gate step", "workflow mapping", "legacy step list"})


# --- errors ------------------------------------------------------------------------------------------


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
            allowed = ", ".join(model.model_fields) if model else None
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


# --- reading files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileWorkflow:
    """A workflow read from a file, with notes on what the file held that we do not use."""

    workflow: Workflow
    notes: tuple[str, ...] = ()


def read_workflow_file(path: Path) -> list[FileWorkflow]:
    """Every workflow in `path`, resolved. Raises ConfigError (exit 2) naming file, key path, allowed."""
    file = str(path)
    text = read_config_text(path, what="workflow file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{problem}{where}", file=file, hint="fix the YAML syntax") from None
    return parse_workflow_data(data, file=file, stem=path.stem)


def parse_workflow_data(data: Any, *, file: str, stem: str) -> list[FileWorkflow]:
    """Resolve already-loaded YAML data. `stem` names a single-workflow file's workflow."""
    top_keys = "steps (one workflow), or workflows (named workflows)"
    if not isinstance(data, dict):
        raise WorkflowInvalid(file, [Problem("", "a workflow file is a YAML mapping", top_keys)])
    if "workflows" in data and "steps" in data:
        raise WorkflowInvalid(
            file, [Problem("steps", "`steps:` and `workflows:` cannot both be at the top", top_keys)]
        )
    if "workflows" in data:
        try:
            multi = WorkflowFile.model_validate(data)
        except ValidationError as exc:
            raise WorkflowInvalid(file, _problems(exc, WorkflowFile)) from None
        return _resolve_multi(multi, file)
    if "steps" in data:
        try:
            single = SingleWorkflowFile.model_validate(data)
        except ValidationError as exc:
            raise WorkflowInvalid(file, _problems(exc, SingleWorkflowFile)) from None
        return [FileWorkflow(_resolve(stem, single, LegacySettings()))]
    raise WorkflowInvalid(file, [Problem("", "no workflow found", top_keys)])


def _resolve(name: str, body: _WorkflowBody, settings: LegacySettings) -> Workflow:
    def first(*values: int | None, default: int) -> int:
        return next((v for v in values if v is not None), default)

    return Workflow(
        name=name,
        description=body.description,
        max_iterations=first(body.max_iterations, settings.max_iterations, default=DEFAULT_MAX_ITERATIONS),
        min_suggestions_threshold=first(
            body.min_suggestions_threshold,
            settings.min_suggestions_threshold,
            default=DEFAULT_MIN_SUGGESTIONS_THRESHOLD,
        ),
        diff_base=body.diff_base,
        setup=body.setup,
        base_gates=body.base_gates,
        steps=body.steps,
    )


def _resolve_multi(file_model: WorkflowFile, file: str) -> list[FileWorkflow]:
    file_notes = []
    unused_settings = [k for k in LEGACY_UNUSED_SETTINGS if getattr(file_model.settings, k) is not None]
    if unused_settings:
        file_notes.append(f"unused legacy settings: {', '.join(unused_settings)}")
    unused_agent_keys = [
        key
        for key in LEGACY_UNUSED_AGENT_KEYS
        if any(getattr(agent, key) is not None for agent in file_model.agents.values())
    ]
    if unused_agent_keys:
        file_notes.append(
            f"unused legacy agent keys: {', '.join(unused_agent_keys)} (agents are set up in the orchestrator config)"
        )
    disabled = {name for name, agent in file_model.agents.items() if not agent.enabled}
    timeouts = {name: agent.timeout for name, agent in file_model.agents.items() if agent.timeout is not None}

    resolved = []
    for name, entry in file_model.workflows.items():
        body = entry if isinstance(entry, _WorkflowBody) else _WorkflowBody(steps=entry)
        notes = list(file_notes)
        steps: list[Step | GateStep] = []
        for index, step in enumerate(body.steps):
            if isinstance(step, Step) and step.agent in disabled:
                notes.append(f"step {index + 1} ({step.label}) dropped: agents.{step.agent}.enabled is false")
                continue
            if isinstance(step, Step) and step.timeout_s is None and step.agent in timeouts:
                step = step.model_copy(update={"timeout_s": timeouts[step.agent]})
            steps.append(step)
        if not steps:
            raise WorkflowInvalid(
                file, [Problem(f"workflows.{name}", "every step's agent is disabled in `agents:`")]
            )
        body = body.model_copy(update={"steps": tuple(steps)})
        resolved.append(FileWorkflow(_resolve(name, body, file_model.settings), tuple(notes)))
    return resolved


def validate_file(path: Path) -> list[Workflow]:
    """The workflows in `path`, or ConfigError (exit 2) with file, key path and what is allowed."""
    return [fw.workflow for fw in read_workflow_file(path)]


# --- finding workflows -------------------------------------------------------------------------------

WorkflowSource = Literal["builtin", "repo", "file"]


@dataclass(frozen=True)
class LoadedWorkflow:
    workflow: Workflow
    source: WorkflowSource
    path: Path
    notes: tuple[str, ...] = ()


DISTRIBUTION = "ai-agents-orchestrator"


def builtin_dir() -> Path:
    """The built-in workflows: workflows/ beside the package in a source or editable install. An
    installed wheel carries them as data files (pyproject's data-files) under
    <scheme data>/share/ai-agents-orchestrator/workflows/, found through the distribution's record."""
    root = Path(__file__).resolve().parents[2]
    if (root / "workflows").is_dir() and (root / "pyproject.toml").is_file():
        return root / "workflows"
    return _installed_builtin_dir() or Path(sys.prefix) / "share" / DISTRIBUTION / "workflows"


def _installed_builtin_dir() -> Path | None:
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.parts[-3:-1] == (DISTRIBUTION, "workflows") and file.suffix == ".yaml":
            return Path(str(file.locate())).resolve().parent
    return None


def repo_workflow_dir(repo: Path) -> Path:
    return repo / ".orchestrator" / "workflows"


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith((".yaml", ".yml"))


def load_workflow(spec: str, *, repo: Path | None) -> LoadedWorkflow:
    """`spec` is a built-in name, a name from `<repo>/.orchestrator/workflows/` (which wins over a
    built-in of the same name), or a path to a YAML file; `FILE#NAME` picks one of a file's workflows."""
    target, _, wanted = spec.partition("#")
    if _looks_like_path(target):
        path = Path(target).expanduser()
        if not path.exists():  # a folder, FIFO or device exists: read_config_text says what it is
            raise UsageError(
                f"workflow file {path} does not exist", hint="give a built-in name or a path to a .yaml file"
            )
        return _pick(path, "file", wanted or None, prefer=None)
    if not _NAME.fullmatch(target):
        raise UsageError(f"{spec!r} is not a workflow name or a path", hint=f"a name is {_NAME_RULE}")
    candidates: list[tuple[WorkflowSource, Path]] = []
    if repo is not None:
        candidates += [("repo", repo_workflow_dir(repo) / f"{target}{ext}") for ext in (".yaml", ".yml")]
    candidates.append(("builtin", builtin_dir() / f"{target}.yaml"))
    for source, path in candidates:
        if path.is_file():
            return _pick(path, source, wanted or None, prefer=target)
    names = sorted({listing.name for listing in list_workflows(repo) if listing.error is None})
    raise UsageError(
        f"no workflow named {target!r}",
        hint=f"choose one of: {', '.join(names)}; or give a path to a .yaml file",
    )


def _pick(path: Path, source: WorkflowSource, wanted: str | None, *, prefer: str | None) -> LoadedWorkflow:
    found = read_workflow_file(path)
    by_name = {fw.workflow.name: fw for fw in found}
    if wanted is not None:
        chosen = by_name.get(wanted)
        if chosen is None:
            raise UsageError(f"{path} has no workflow named {wanted!r}", hint=f"it has: {', '.join(by_name)}")
    elif len(found) == 1:
        chosen = found[0]
    elif (prefer is not None and prefer in by_name) or "default" in by_name:
        chosen = by_name.get(prefer or "") or by_name["default"]
    else:
        raise UsageError(
            f"{path} holds {len(found)} workflows",
            hint=f"choose one with {path}#NAME; it has: {', '.join(by_name)}",
        )
    return LoadedWorkflow(chosen.workflow, source, path, chosen.notes)


@dataclass(frozen=True)
class WorkflowListing:
    """One line of `orchestrator workflows list`. `error` is set for a file that does not validate."""

    name: str
    source: WorkflowSource
    path: Path
    description: str = ""
    summary: str = ""
    shadowed: bool = False  # a built-in that a repository workflow of the same name replaces
    error: str | None = None


def list_workflows(repo: Path | None) -> list[WorkflowListing]:
    """The repository's workflows (from `<repo>/.orchestrator/workflows/`), then the built-ins."""
    repo_listings = _listings(repo_workflow_dir(repo), "repo") if repo is not None else []
    repo_names = {listing.name for listing in repo_listings}
    builtin_listings = [
        replace(listing, shadowed=listing.name in repo_names)
        for listing in _listings(builtin_dir(), "builtin")
    ]
    return repo_listings + builtin_listings


def _listings(directory: Path, source: WorkflowSource) -> list[WorkflowListing]:
    listings = []
    for path in _yaml_files(directory):
        try:
            found = read_workflow_file(path)
        except ConfigError as exc:
            listings.append(WorkflowListing(path.stem, source, path, error=exc.message))
            continue
        for fw in found:
            wf = fw.workflow
            # A file's workflows are loaded as `stem` (its own name) or `stem#name`.
            name = path.stem if wf.name == path.stem or len(found) == 1 else f"{path.stem}#{wf.name}"
            listings.append(WorkflowListing(name, source, path, wf.description, wf.summary()))
    return listings


# --- who does what -------------------------------------------------------------------------------------


def parse_agent_overrides(values: Iterable[str]) -> dict[TaskKind, str]:
    """`["review=codex", "refine=claude"]` -> {task: agent}. UsageError (exit 2) on anything else."""
    overrides: dict[TaskKind, str] = {}
    for value in values:
        task, sep, agent = (part.strip() for part in value.partition("="))
        if not sep or not task or not agent:
            raise UsageError(f"--agent {value!r} is not TASK=AGENT", hint="for example: --agent review=codex")
        if task not in TASKS:
            raise UsageError(f"--agent {value!r}: unknown task {task!r}", hint=f"tasks: {', '.join(TASKS)}")
        if agent not in AGENT_NAMES:
            raise UsageError(
                f"--agent {value!r}: unknown agent {agent!r}", hint=f"agents: {', '.join(AGENT_NAMES)}"
            )
        kind: TaskKind = next(t for t in TASKS if t == task)
        if overrides.get(kind, agent) != agent:
            raise UsageError(f"--agent gives two agents for {task!r}", hint="give each task once")
        overrides[kind] = agent
    return overrides


def apply_agent_overrides(workflow: Workflow, values: Iterable[str]) -> Workflow:
    """A copy of `workflow` whose steps of each overridden task use the given agent."""
    overrides = parse_agent_overrides(values)
    present = {step.task for step in workflow.agent_steps}
    for task in overrides:
        if task not in present:
            raise UsageError(
                f"--agent {task}=...: workflow {workflow.name!r} has no {task!r} step",
                hint=f"its tasks: {', '.join(t for t in TASKS if t in present)}",
            )
    steps = tuple(
        step.model_copy(update={"agent": overrides[step.task]})
        if isinstance(step, Step) and step.task in overrides
        else step
        for step in workflow.steps
    )
    return workflow.model_copy(update={"steps": steps})


# --- gate commands ------------------------------------------------------------------------------------


def parse_gate_argv(run: str) -> tuple[str, ...]:
    """Split a gate's command as a POSIX shell would (quotes, escapes, `#` comments), for running
    without a shell. ValueError when it cannot be split or uses shell syntax it would not get."""
    try:
        argv = tuple(shlex.split(run, comments=True, posix=True))
    except ValueError as exc:
        raise ValueError(f"cannot split {run!r}: {exc}") from None
    if not argv:
        raise ValueError("the command is empty")
    syntax = [token for token in argv if token in _SHELL_SYNTAX]
    if syntax:
        raise ValueError(
            f"{syntax[0]!r} is shell syntax and gates run without a shell: use one gate per command, "
            f"or run: \"sh -c '...'\" when you need a shell"
        )
    if _ENV_ASSIGNMENT.match(argv[0]):
        raise ValueError(f'{argv[0]!r} sets a variable, which needs a shell: write run: "env {run.strip()}"')
    return argv


def detect_test_command(repo: Path) -> tuple[str, ...] | None:
    """The repository's own test command, judged from its files; None when it has no test suite."""
    if _has_python_tests(repo):
        return ("pytest", "-q")
    package_json = repo / "package.json"
    if package_json.is_file():
        try:
            scripts = json.loads(package_json.read_text(encoding="utf-8")).get("scripts") or {}
        except (ValueError, OSError, AttributeError):
            scripts = {}
        test_script = scripts.get("test") if isinstance(scripts, dict) else None
        # `npm init` writes a test script that only fails; that is not a test suite.
        if isinstance(test_script, str) and "no test specified" not in test_script:
            return ("npm", "test", "--silent")
    if (repo / "Cargo.toml").is_file():
        return ("cargo", "test", "--quiet")
    if (repo / "go.mod").is_file():
        return ("go", "test", "./...")
    for makefile in ("GNUmakefile", "makefile", "Makefile"):
        path = repo / makefile
        if path.is_file() and re.search(r"^test\s*:", _read(path), re.MULTILINE):
            return ("make", "test")
    return None


def _has_python_tests(repo: Path) -> bool:
    if (repo / "pytest.ini").is_file() or (repo / "conftest.py").is_file():
        return True
    markers = {"pyproject.toml": "[tool.pytest", "setup.cfg": "[tool:pytest]", "tox.ini": "[pytest]"}
    if any(marker in _read(repo / name) for name, marker in markers.items()):
        return True
    if any(repo.glob("test_*.py")) or any(repo.glob("*_test.py")):
        return True
    for folder in ("tests", "test"):
        if (repo / folder).is_dir() and (
            any((repo / folder).rglob("test_*.py")) or any((repo / folder).rglob("*_test.py"))
        ):
            return True
    return False


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def resolve_gate_argv(gate: GateStep, repo: Path) -> tuple[str, ...] | None:
    """What to run for `gate` in `repo`: its own command, or for `run: auto` the detected test
    command; None when `auto` finds no test suite (the engine reports the gate as skipped)."""
    return detect_test_command(repo) if gate.is_auto else parse_gate_argv(gate.run)
