"""The step kinds of work that splits: a planner's plan, its subtasks, and their merge.

- task: plan            # the planner answers with a JSON plan (plan.py): subtasks with
  agent: claude         #   id, prompt, depends_on, files
  max_subtasks: 6
- task: implement
  for_each: subtask     # each subtask on its own branch, started once what it depends on is in
  agents: [claude, codex]
- merge: subtasks       # every subtask in the run branch, in dependency order
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from orchestrator.engine.plan import DEFAULT_MAX_SUBTASKS, MAX_SUBTASKS_LIMIT
from orchestrator.engine.workflow_steps import AgentName, TaskKind, _AgentStepOptions, _Strict, editing_task


class PlanStep(_AgentStepOptions):
    """The planner: `agent` reads the repository and answers with a plan of at most `max_subtasks`."""

    task: Literal["plan"]
    agent: AgentName
    max_subtasks: int = Field(default=DEFAULT_MAX_SUBTASKS, ge=1, le=MAX_SUBTASKS_LIMIT)

    @property
    def read_only(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return f"plan ({self.agent}, at most {self.max_subtasks} subtasks)"

    @property
    def agents(self) -> tuple[str, ...]:
        return (self.agent,)


class ForEachStep(_AgentStepOptions):
    """`task` once per subtask of the plan, each by the next of `agents` in turn, at once where the plan
    allows. Without a usable plan it is one plain step by the first of `agents`."""

    task: TaskKind
    for_each: Literal["subtask"]
    agents: tuple[AgentName, ...] = Field(min_length=1)

    @field_validator("task")
    @classmethod
    def _edits(cls, value: TaskKind) -> TaskKind:
        return editing_task(value, "for_each_task", "for_each is")

    @property
    def read_only(self) -> bool:
        return False

    @property
    def label(self) -> str:
        return f"{self.task} (each subtask: {', '.join(self.agents)})"


class MergeStep(_Strict):
    """Every subtask in the run branch, in dependency order; one that does not merge stops the run for
    a human, both branches kept."""

    merge: Literal["subtasks"]
    optional: bool = False

    @property
    def task(self) -> Literal["merge"]:
        return "merge"

    @property
    def read_only(self) -> bool:
        return False

    @property
    def when(self) -> None:
        return None

    @property
    def description(self) -> str:
        return ""

    @property
    def agents(self) -> tuple[str, ...]:
        return ()

    @property
    def label(self) -> str:
        return "merge (subtasks)"
