"""A workflow, resolved: what the engine runs and the store keeps as JSON; and `--agent TASK=AGENT`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field

from orchestrator.adapters import AGENT_NAMES
from orchestrator.engine.gate_commands import AUTO_GATE
from orchestrator.engine.workflow_steps import (
    TASKS,
    AgentName,
    GateStep,
    SetupEntry,
    SetupStep,
    Step,
    TaskKind,
    _Strict,
)
from orchestrator.engine.workflow_union import AnyStep, TaskStep
from orchestrator.errors import UsageError

# What the reviewer compares against: the commit the run started from (the run's own changes), or the
# merge-base of the current branch with its base branch (review-only: review a branch as it is).
DiffBase = Literal["run_start", "merge_base"]

DEFAULT_MAX_ITERATIONS = 3
DEFAULT_MIN_SUGGESTIONS_THRESHOLD = 0  # 0: the rule is off unless a workflow sets it
MAX_ITERATIONS_LIMIT = 50
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 64
# Steps of these tasks run in the first iteration only: later ones work on the findings instead.
FIRST_ITERATION_TASKS = frozenset({"implement", "plan", "merge"})


class RunLimits(_Strict):
    """`limits:` agent steps of this run at once, and at most so many of one CLI (providers rate-limit)."""

    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY)
    per_agent: dict[AgentName, int] = Field(default_factory=dict)

    def model_post_init(self, _context: object) -> None:
        for agent, cap in self.per_agent.items():
            if not 1 <= cap <= MAX_CONCURRENCY:
                raise ValueError(f"limits.per_agent.{agent} must be from 1 to {MAX_CONCURRENCY}, not {cap}")


class RoutingChoice(_Strict):
    """What `agent: auto` chose for a step when the run started, and why (routing.py)."""

    task: str
    agent: str
    reason: str
    records: str = ""  # every candidate's record, one clause each


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
    limits: RunLimits = Field(default_factory=RunLimits)
    steps: tuple[AnyStep, ...] = Field(min_length=1)
    routing: tuple[RoutingChoice, ...] = ()  # filled when the run starts, for `agent: auto`

    @property
    def setup_steps(self) -> tuple[SetupStep, ...]:
        """What runs before the first gate: the workflow's `setup:`, or its default."""
        if self.setup is not None:
            return self.setup
        return (SetupStep(run=AUTO_GATE),) if any(g.is_auto for g in self.gates) else ()

    @property
    def agent_steps(self) -> tuple[Step, ...]:
        """The plain agent steps (one agent each)."""
        return tuple(s for s in self.steps if isinstance(s, Step))

    @property
    def task_steps(self) -> tuple[TaskStep, ...]:
        """Every step an agent takes: plain ones, attempts and consensus reviews."""
        return tuple(s for s in self.steps if not isinstance(s, GateStep))

    @property
    def gates(self) -> tuple[GateStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, GateStep))

    @property
    def has_review(self) -> bool:
        return any(s.task == "review" for s in self.task_steps)

    @property
    def edits(self) -> bool:
        """Whether any step may change files (False for review-only)."""
        return any(not s.read_only for s in self.task_steps)

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent a step names, once each, in order."""
        return tuple(dict.fromkeys(a for s in self.task_steps for a in s.agents))

    def steps_for_iteration(self, iteration: int) -> tuple[tuple[int, TaskStep | GateStep], ...]:
        """(index in `steps`, step) to run in `iteration` (1-based): all of them first, then all but
        `implement`, which later iterations replace by working on the findings."""
        return tuple(
            (index, step)
            for index, step in enumerate(self.steps)
            if iteration == 1 or isinstance(step, GateStep) or step.task not in FIRST_ITERATION_TASKS
        )

    @property
    def can_iterate(self) -> bool:
        """Whether a second iteration could change anything: it needs a step that edits files."""
        return any(not isinstance(s, GateStep) and not s.read_only for _, s in self.steps_for_iteration(2))

    def summary(self) -> str:
        return " -> ".join(f"gate ({s.label})" if isinstance(s, GateStep) else s.label for s in self.steps)


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
    """A copy of `workflow` whose plain steps of each overridden task use the given agent (the agents
    of attempts and consensus reviews are given in the workflow itself)."""
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
