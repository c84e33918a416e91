"""The planner's answer: a JSON plan of subtasks, read, validated and scheduled (all pure).

A planner ends its answer with {"subtasks": [{"id", "prompt", "depends_on", "files"}, ...]}. The object
is found the way a review's is (prose around it, a ```json fence and trailing commas are fine). Every
problem is collected, not just the first, because an invalid plan gets exactly one repair round: the
planner is shown `PlanInvalid.repair_prompt()` and answers again; if that fails too, the run falls back
to the plain loop (the scheduler's decision, not this module's).

Scheduling: a subtask starts once everything it waits for is done. It waits for what it declares in
`depends_on`, and for every earlier subtask (in the plan's order) that declares one of the same files
when the two have no order between them yet: two agents editing one file at once would conflict, so
they run one after the other, the one the planner listed first going first.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.review import json_objects_last_first
from orchestrator.errors import OrchestratorError

DEFAULT_MAX_SUBTASKS = 6
MAX_SUBTASKS_LIMIT = 50
MAX_PROMPT_CHARS = 20_000
# An id becomes part of a branch name (orchestrator/<run-id>/<subtask-id>) and of ref names.
SUBTASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
SUBTASK_ID_RULE = "1-40 letters, digits, '_' or '-', starting with a letter or digit"

PLAN_FORMAT_INSTRUCTIONS = """\
End your answer with one JSON object (a ```json fenced block is fine) and nothing after it:
{"subtasks": [{"id": "short-id", "prompt": "what to do, complete on its own",
               "depends_on": ["ids that must be done first"], "files": ["paths it will edit"]}]}
- At most {max_subtasks} subtasks. Each id is unique: letters, digits, '_' or '-'.
- Each prompt is given to an agent that sees only the repository and that prompt.
- "depends_on" lists only ids of this plan, with no cycles. Subtasks that do not depend on each other
  run at the same time on branches of their own and are merged in dependency order.
- "files" are paths relative to the repository root; subtasks declaring the same file run one after
  the other."""


@dataclass(frozen=True)
class Subtask:
    id: str
    prompt: str
    depends_on: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    subtasks: tuple[Subtask, ...]

    @property
    def size(self) -> int:
        return len(self.subtasks)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.subtasks)

    def subtask(self, subtask_id: str) -> Subtask:
        for subtask in self.subtasks:
            if subtask.id == subtask_id:
                return subtask
        raise KeyError(subtask_id)


@dataclass(frozen=True)
class PlanProblem:
    where: str  # "plan", "subtasks[2]" or "subtasks[2] (id 'b')"
    message: str

    def render(self) -> str:
        return f"{self.where}: {self.message}"


class PlanInvalid(OrchestratorError):
    """The planner's answer is not a usable plan; `problems` lists every reason."""

    def __init__(self, problems: Sequence[PlanProblem], *, max_subtasks: int) -> None:
        self.problems = tuple(problems)
        self.max_subtasks = max_subtasks
        lines = "\n".join(f"- {p.render()}" for p in self.problems)
        super().__init__(
            f"the plan is not valid:\n{lines}",
            hint="the planner gets one repair round with these problems; then the run uses the plain loop",
        )

    def repair_prompt(self) -> str:
        """What the planner is told in its one repair round."""
        lines = "\n".join(f"- {p.render()}" for p in self.problems)
        return (
            f"Your plan could not be used:\n{lines}\n\n"
            "Answer again with the whole corrected plan, not only the changed subtasks.\n"
            + plan_format_instructions(self.max_subtasks)
        )


def plan_format_instructions(max_subtasks: int = DEFAULT_MAX_SUBTASKS) -> str:
    return PLAN_FORMAT_INSTRUCTIONS.replace("{max_subtasks}", str(max_subtasks))


# --- reading and validating --------------------------------------------------------------------


def parse_plan(text: str, *, max_subtasks: int = DEFAULT_MAX_SUBTASKS) -> Plan:
    """The plan at the end of a planner's answer; PlanInvalid with every problem when it is not one."""
    for raw in json_objects_last_first(text):
        if "subtasks" in raw:
            return validate_plan(raw, max_subtasks=max_subtasks)
    raise PlanInvalid(
        [PlanProblem("plan", 'no JSON object with "subtasks" was found at the end of the answer')],
        max_subtasks=max_subtasks,
    )


def validate_plan(raw: Mapping[str, Any], *, max_subtasks: int = DEFAULT_MAX_SUBTASKS) -> Plan:
    if not 1 <= max_subtasks <= MAX_SUBTASKS_LIMIT:
        raise ValueError(f"max_subtasks must be 1..{MAX_SUBTASKS_LIMIT}, not {max_subtasks}")
    items = raw.get("subtasks")
    if not isinstance(items, list):
        problem = PlanProblem("plan", '"subtasks" must be a list of subtask objects')
        raise PlanInvalid([problem], max_subtasks=max_subtasks)
    problems: list[PlanProblem] = []
    if not items:
        problems.append(PlanProblem("plan", "the plan has no subtasks"))
    elif len(items) > max_subtasks:
        problems.append(
            PlanProblem("plan", f"the plan has {len(items)} subtasks; at most {max_subtasks} are allowed")
        )
    known = [_valid_id(item) for item in items]
    ids = [i for i in dict.fromkeys(known) if i is not None]
    subtasks: list[Subtask] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        subtask = _read_subtask(item, f"subtasks[{index}]", problems)
        if subtask is None:
            continue
        where = _where(index, subtask.id)
        if subtask.id in first_index:
            problems.append(
                PlanProblem(where, f"duplicate id (subtasks[{first_index[subtask.id]}] has it too)")
            )
            continue
        first_index[subtask.id] = index
        subtasks.append(subtask)
        for dependency in subtask.depends_on:
            if dependency not in ids:
                problems.append(
                    PlanProblem(
                        where,
                        f"depends on {dependency!r}, which is not an id of this plan (ids: {', '.join(ids)})",
                    )
                )
    if not problems:
        cycle = find_cycle({s.id: s.depends_on for s in subtasks})
        if cycle is not None:
            problems.append(PlanProblem("plan", "the dependencies form a cycle: " + " -> ".join(cycle)))
    if problems:
        raise PlanInvalid(problems, max_subtasks=max_subtasks)
    return Plan(tuple(subtasks))


def _where(index: int, subtask_id: str | None) -> str:
    return f"subtasks[{index}] (id {subtask_id!r})" if subtask_id else f"subtasks[{index}]"


def _valid_id(item: Any) -> str | None:
    raw = item.get("id") if isinstance(item, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw).strip()
    return text if SUBTASK_ID.fullmatch(text) else None


def _read_subtask(item: Any, where: str, problems: list[PlanProblem]) -> Subtask | None:
    if not isinstance(item, dict):
        problems.append(PlanProblem(where, "a subtask is an object with id, prompt, depends_on and files"))
        return None
    raw_id = item.get("id")
    subtask_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    if subtask_id is None:
        problems.append(PlanProblem(where, f"a subtask needs an id ({SUBTASK_ID_RULE})"))
        return None
    subtask_id = subtask_id.strip()
    if not SUBTASK_ID.fullmatch(subtask_id):
        problems.append(PlanProblem(where, f"the id {subtask_id!r} is not allowed ({SUBTASK_ID_RULE})"))
        return None
    where = f"{where} (id {subtask_id!r})"
    ok = True
    prompt = item.get("prompt", item.get("description"))
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(PlanProblem(where, "the prompt is empty: say what the agent should do"))
        ok = False
    elif len(prompt) > MAX_PROMPT_CHARS:
        problems.append(
            PlanProblem(where, f"the prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
        )
        ok = False
    depends_on = _read_ids(item.get("depends_on", item.get("dependencies")), where, problems)
    files = _read_files(item.get("files"), where, problems)
    if depends_on is None or files is None or not ok:
        return None
    assert isinstance(prompt, str)
    return Subtask(id=subtask_id, prompt=prompt.strip(), depends_on=depends_on, files=files)


def _read_ids(value: Any, where: str, problems: list[PlanProblem]) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        problems.append(PlanProblem(where, '"depends_on" must be a list of subtask ids'))
        return None
    return tuple(dict.fromkeys(str(v).strip() for v in value))


def _read_files(value: Any, where: str, problems: list[PlanProblem]) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(PlanProblem(where, '"files" must be a list of paths'))
        return None
    files: list[str] = []
    for path in value:
        normal = normalise_path(path)
        if normal is None:
            problems.append(
                PlanProblem(where, f"{path!r} is not a path inside the repository (use a relative path)")
            )
            return None
        files.append(normal)
    return tuple(dict.fromkeys(files))


def normalise_path(path: str) -> str | None:
    """`./src//a.py` -> `src/a.py`; None for absolute paths and paths that leave the repository."""
    text = path.strip().replace("\\", "/")
    if text.startswith("/") or re.match(r"[A-Za-z]:/", text):
        return None
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../") or normal == ".":
        return None
    return normal


def find_cycle(depends_on: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] (a waits for b ...), or None. Deterministic: ids are visited in the
    mapping's order, dependencies in their listed order; dependencies on unknown ids are ignored."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dependency in depends_on.get(node, ()):
            if dependency not in depends_on:
                continue
            if state.get(dependency) == 1:
                return [*path[path.index(dependency) :], dependency]
            if dependency not in state:
                found = visit(dependency)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in depends_on:
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None


# --- scheduling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serialization:
    """`then` waits for `first` because both declare `files` and nothing else ordered them."""

    first: str
    then: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Schedule:
    # What each subtask waits for: its depends_on plus the serializations, in plan order.
    waits_for: Mapping[str, tuple[str, ...]]
    # Levels: batch k holds the subtasks whose longest chain of waits has length k, in plan order.
    batches: tuple[tuple[str, ...], ...]
    serialized: tuple[Serialization, ...]

    @property
    def order(self) -> tuple[str, ...]:
        """A topological order (the merge order): batch by batch, plan order within a batch."""
        return tuple(subtask_id for batch in self.batches for subtask_id in batch)

    def ready(self, done: Collection[str], started: Collection[str] = ()) -> tuple[str, ...]:
        """Subtasks not yet started whose waits are all done, in plan order: what may start now."""
        return tuple(
            subtask_id
            for subtask_id in self.order_in_plan
            if subtask_id not in done
            and subtask_id not in started
            and all(w in done for w in self.waits_for[subtask_id])
        )

    @property
    def order_in_plan(self) -> tuple[str, ...]:
        return tuple(self.waits_for)


def schedule_plan(plan: Plan) -> Schedule:
    """The schedule of a valid plan (validate_plan's output: ids unique, dependencies known, acyclic)."""
    ids = plan.ids
    waits: dict[str, list[str]] = {s.id: list(s.depends_on) for s in plan.subtasks}
    serialized: list[Serialization] = []
    # For each subtask, the earlier ones nearest first: a run of subtasks on one file becomes a chain
    # (c waits for b waits for a) rather than c waiting for both.
    for j, later in enumerate(plan.subtasks):
        for earlier in reversed(plan.subtasks[:j]):
            shared = tuple(f for f in earlier.files if f in later.files)
            if not shared:
                continue
            # Adding `later waits for earlier` cannot close a cycle unless `earlier` already waits
            # (transitively) for `later`; then they are ordered already, the other way round.
            if _waits_transitively(waits, later.id, earlier.id) or _waits_transitively(
                waits, earlier.id, later.id
            ):
                continue
            waits[later.id].append(earlier.id)
            serialized.append(Serialization(earlier.id, later.id, shared))
    position = {subtask_id: index for index, subtask_id in enumerate(ids)}
    level: dict[str, int] = {}

    def level_of(subtask_id: str) -> int:
        if subtask_id not in level:
            level[subtask_id] = 1 + max((level_of(w) for w in waits[subtask_id]), default=-1)
        return level[subtask_id]

    for subtask_id in ids:
        level_of(subtask_id)
    batches = [
        tuple(sorted((s for s in ids if level[s] == k), key=position.__getitem__))
        for k in range(max(level.values(), default=-1) + 1)
    ]
    return Schedule(
        waits_for={s: tuple(sorted(waits[s], key=position.__getitem__)) for s in ids},
        batches=tuple(batches),
        serialized=tuple(serialized),
    )


def _waits_transitively(waits: Mapping[str, Sequence[str]], start: str, target: str) -> bool:
    """Whether `start` waits, directly or through others, for `target`."""
    seen: set[str] = set()
    stack = list(waits[start])
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(waits[node])
    return False
