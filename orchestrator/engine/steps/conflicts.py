"""A subtask that does not merge into the run branch goes back to its own agent with both sides, then to
a third CLI; if neither resolves it, the subtask is left for a human (its branch keeps every commit).

Resolving happens in the subtask's own repository: the run branch is merged into it there (`git merge
--no-commit`), so the conflicted files hold both sides between markers; the agent edits them; a result
without markers is committed as the merge of the two, and that commit then goes into the run branch
(a fast-forward, unless another subtask was merged meanwhile: then it is merged again, and may go round
once more).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from orchestrator.engine.run_state import usage_of
from orchestrator.engine.workflow import ForEachStep
from orchestrator.events import Notice
from orchestrator.store import TokenUsage
from orchestrator.workspace.run_workspace import RunWorkspace

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine

MARKERS = ("<<<<<<< ", ">>>>>>> ")


def resolve_prompt(subtask_id: str, conflicts: Sequence[str]) -> str:
    return (
        f"Your work on subtask {subtask_id} does not merge with the rest of the run (other subtasks' work): "
        f"git found conflicts in {', '.join(conflicts)}. Those files now hold both sides between conflict "
        "markers (<<<<<<<, =======, >>>>>>>). Edit them so that what both sides meant is kept, remove every "
        "marker, and change nothing else. Do not commit: the orchestrator does."
    )


def merged_order_add(lock: threading.Lock, order: list[str], subtask_id: str) -> None:
    with lock:
        order.append(subtask_id)


def resolve_conflicts(
    engine: RunEngine,
    step: ForEachStep,
    ws: RunWorkspace,
    step_id: str,
    subtask_id: str,
    agent: str,
    conflicts: list[str],
    merging: threading.Lock,
    subject: str,
    trailers: Mapping[str, str],
) -> tuple[str | None, list[str], TokenUsage]:
    """(the run's new tip, [], usage) once resolved, or (None, the conflicted paths, usage)."""
    usage = TokenUsage()
    others = (*step.agents, *engine.workflow.agents, *engine.settings.fallback_order)
    third = next((a for a in others if a != agent and engine.readiness.of(a).ready), None)
    for resolver in [a for a in (agent, third) if a is not None]:
        with merging:
            head = engine.ws.head()
        conflicts = ws.start_merge(head) or conflicts
        engine.bus.publish(
            Notice(
                run_id=engine.run_id,
                level="warning",
                text=f"{step_id}: conflicts in {', '.join(conflicts)}; {resolver} is asked to resolve them",
            )
        )
        result = engine.call_agent(
            resolver,
            step.task,
            step_id,
            resolve_prompt(subtask_id, conflicts),
            read_only=False,
            timeout_s=step.timeout_s,
            model=step.model,
            cwd=ws.worktree,
            instance=f"{subtask_id}-resolve" if resolver == agent else f"{subtask_id}-resolve-{resolver}",
        )
        usage = usage + usage_of(result)
        if not result.success or _markers_left(ws, conflicts):
            ws.abort_merge()
            continue
        resolved = ws.finish_merge(head, step_id=step_id, agent=resolver, message=f"resolve {subject}")
        with merging:
            tip, conflicts = engine.ws.merge_in(resolved, subject=subject, trailers=trailers)
        if tip is not None:
            return tip, [], usage
    return None, conflicts, usage


def _markers_left(ws: RunWorkspace, paths: Sequence[str]) -> bool:
    for path in paths:
        try:
            text = (ws.worktree / path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # deleted: a resolution too
        if any(line.startswith(MARKERS) for line in text.splitlines()):
            return True
    return False
