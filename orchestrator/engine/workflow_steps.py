"""The step kinds of a workflow's YAML, as strict models (unknown keys refused, checked at load time).

- agent step:      `agent` does `task`                             (Step)
- gate:            `run` a command; exit 0 passes                  (GateStep)
- attempts:        `task` by each of `attempts` at once, the best by `select` wins   (AttemptsStep)
- consensus review: `reviewers` review at once, a finding counts at `quorum`        (ConsensusStep)
Any agent-like step may carry `when:`, an expression (expressions.py) checked when the workflow loads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.adapters import AGENT_NAMES
from orchestrator.engine.expressions import validate_when
from orchestrator.engine.gate_commands import AUTO_GATE, parse_gate_argv
from orchestrator.engine.selection import DEFAULT_SELECT, SELECT_KEYS, SelectKey, validate_select

TaskKind = Literal["implement", "review", "refine", "suggestions", "document"]
TASKS: tuple[TaskKind, ...] = get_args(TaskKind)
# These steps only read the tree and answer with findings; the rest edit files in the run's worktree.
READ_ONLY_TASKS: frozenset[TaskKind] = frozenset({"review", "suggestions"})

DEFAULT_GATE_TIMEOUT_S = 600.0
DEFAULT_SETUP_TIMEOUT_S = 900.0
MAX_ATTEMPTS = 8
MAX_REVIEWERS = 8
DEFAULT_QUORUM = 2


class _Strict(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


def _known_agent(value: str) -> str:
    if value not in AGENT_NAMES:
        raise PydanticCustomError(
            "unknown_agent", "unknown agent '{agent}'", {"agent": value, "allowed": ", ".join(AGENT_NAMES)}
        )
    return value


def _known_agent_or_auto(value: str) -> str:
    return value if value == "auto" else _known_agent(value)


AgentName = Annotated[str, AfterValidator(_known_agent)]
# `auto`: the CLI is chosen when the run starts, by its record in the store (routing.py).
AgentOrAuto = Annotated[str, AfterValidator(_known_agent_or_auto)]
When = Annotated[str, AfterValidator(validate_when)]


def instance_names(agents: tuple[str, ...]) -> tuple[str, ...]:
    """How a group's members are named: the agent, then `<agent>-2`, `<agent>-3` for repeats."""
    seen: dict[str, int] = {}
    names = []
    for agent in agents:
        seen[agent] = seen.get(agent, 0) + 1
        names.append(agent if seen[agent] == 1 else f"{agent}-{seen[agent]}")
    return tuple(names)


class _AgentStepOptions(_Strict):
    """What every step an agent takes may say besides its kind's own keys (listed after them when a
    key is refused: workflow_errors.allowed_keys)."""

    description: str = ""
    optional: bool = False  # when it fails or no agent can take it, the run goes on without it
    timeout_s: float | None = Field(default=None, gt=0)
    model: str | None = None
    when: When | None = None  # run only when this holds; skipped otherwise


def editing_task(value: TaskKind, code: str, what: str) -> TaskKind:
    """`value`, refused when it is a read-only task (`what` says which kind of step wants an editing
    one: "attempts are", "for_each is")."""
    if value in READ_ONLY_TASKS:
        raise PydanticCustomError(
            code,
            what + " for a task that edits files, not '{task}'",
            {"task": value, "allowed": ", ".join(t for t in TASKS if t not in READ_ONLY_TASKS)},
        )
    return value


def one_command(value: str, code: str, example: str) -> str:
    """`value`, refused unless it splits into one command as a gate or setup runs it (no shell)."""
    try:
        parse_gate_argv(value)
    except ValueError as exc:
        raise PydanticCustomError(code, "{problem}", {"problem": str(exc), "allowed": example}) from None
    return value


class Step(_AgentStepOptions):
    """An agent step: `agent` does `task`."""

    agent: AgentOrAuto
    task: TaskKind

    @property
    def read_only(self) -> bool:
        return self.task in READ_ONLY_TASKS

    @property
    def label(self) -> str:
        return f"{self.task} ({self.agent})"

    @property
    def agents(self) -> tuple[str, ...]:
        return (self.agent,)


class AttemptsStep(_AgentStepOptions):
    """Best of N: each agent of `attempts` does `task` at once, in a repository and on a branch of its
    own; every attempt runs the workflow's gates; `select` ranks them and the winner becomes the run."""

    task: TaskKind
    attempts: tuple[AgentName, ...] = Field(min_length=2, max_length=MAX_ATTEMPTS)
    select: tuple[SelectKey, ...] = DEFAULT_SELECT

    @field_validator("select", mode="before")
    @classmethod
    def _select(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            try:
                validate_select([str(v) for v in value])
            except ValueError as exc:
                raise PydanticCustomError(
                    "select_keys", "{problem}", {"problem": str(exc), "allowed": ", ".join(SELECT_KEYS)}
                ) from None
        return value

    @field_validator("task")
    @classmethod
    def _edits(cls, value: TaskKind) -> TaskKind:
        return editing_task(value, "attempts_task", "attempts are")

    @property
    def read_only(self) -> bool:
        return False

    @property
    def names(self) -> tuple[str, ...]:
        return instance_names(self.attempts)

    @property
    def label(self) -> str:
        return f"{self.task} (best of {len(self.attempts)}: {', '.join(self.attempts)})"

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.attempts))


class ConsensusStep(_AgentStepOptions):
    """Several reviewers at once, read-only; their findings are clustered and one counts at `quorum`."""

    task: Literal["review"]
    reviewers: tuple[AgentName, ...] = Field(min_length=2, max_length=MAX_REVIEWERS)
    quorum: int = Field(default=DEFAULT_QUORUM, ge=1, le=MAX_REVIEWERS)

    @model_validator(mode="after")
    def _quorum_fits(self) -> ConsensusStep:
        if self.quorum > len(self.reviewers):
            raise PydanticCustomError(
                "quorum",
                "quorum {quorum} is more than the {count} reviewers",
                {
                    "quorum": self.quorum,
                    "count": len(self.reviewers),
                    "allowed": f"1 to {len(self.reviewers)}",
                },
            )
        return self

    @property
    def read_only(self) -> bool:
        return True

    @property
    def names(self) -> tuple[str, ...]:
        return instance_names(self.reviewers)

    @property
    def label(self) -> str:
        return f"review ({', '.join(self.reviewers)}; quorum {self.quorum})"

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.reviewers))


class GateStep(_Strict):
    """A check: `run` is split like a shell would split it, run without a shell; exit 0 passes."""

    run: str
    name: str | None = None
    timeout_s: float = Field(default=DEFAULT_GATE_TIMEOUT_S, gt=0)
    optional: bool = False  # its failure is reported but does not block approval

    @field_validator("run")
    @classmethod
    def _splits(cls, value: str) -> str:
        return one_command(
            value, "gate_command", f'one command per gate, e.g. run: "pytest -q", or run: {AUTO_GATE}'
        )

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
        return one_command(
            value, "setup_command", f'one command per entry, e.g. "npm ci", or run: {AUTO_GATE}'
        )

    @property
    def is_auto(self) -> bool:
        return self.run.strip() == AUTO_GATE

    @property
    def label(self) -> str:
        return self.name or ("setup" if self.is_auto else self.run)


def _setup_entry(value: Any) -> Any:
    return {"run": value} if isinstance(value, str) else value


SetupEntry = Annotated[SetupStep, BeforeValidator(_setup_entry)]
