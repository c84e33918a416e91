"""Workflow files: the two shapes, the loader, and where workflows are found.

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

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import MinLen
from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationError
from pydantic_core import PydanticCustomError

from orchestrator.adapters import AGENT_NAMES
from orchestrator.engine.workflow_errors import Problem, WorkflowInvalid, _problems
from orchestrator.engine.workflow_model import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MIN_SUGGESTIONS_THRESHOLD,
    MAX_ITERATIONS_LIMIT,
    DiffBase,
    RunLimits,
    Workflow,
)
from orchestrator.engine.workflow_steps import GateStep, SetupEntry, Step, _Strict
from orchestrator.engine.workflow_union import AnyStep, TaskStep
from orchestrator.errors import ConfigError, UsageError
from orchestrator.files import load_yaml, read_config_text

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"


class _WorkflowBody(_Strict):
    description: str = ""
    max_iterations: int | None = Field(default=None, ge=1, le=MAX_ITERATIONS_LIMIT)
    min_suggestions_threshold: int | None = Field(default=None, ge=0)
    diff_base: DiffBase = "run_start"
    setup: tuple[SetupEntry, ...] | None = None
    base_gates: bool = True
    limits: RunLimits = Field(default_factory=RunLimits)
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
        data = load_yaml(text)
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
        limits=body.limits,
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
        steps: list[TaskStep | GateStep] = []
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
    import importlib.metadata  # here: 8 ms of imports that only an installed wheel needs

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
