"""merge: subtasks: every subtask of the plan in the run branch, in dependency order.

for_each merges each subtask as soon as it is done (one at a time, after everything it waits for, so in
dependency order): a subtask that depends on another must start from that work. This step checks the
outcome and states it: the merge order, and for a subtask that failed or did not merge, its branch
(kept, with every commit) and the conflicted files; then the run stops for a human. Without a plan (the
plain loop ran instead) there is nothing to merge and the step is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.engine.run_state import step_id_for
from orchestrator.engine.steps import StepAt
from orchestrator.engine.workflow import MergeStep
from orchestrator.store import StepRecord

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


class MergeKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        step = at.step
        assert isinstance(step, MergeStep)
        step_id = step_id_for(at.iteration, at.index, step)
        engine.store.start_step(
            engine.run_id, step_id, iteration=at.iteration, index=at.index, agent="merge", task="merge"
        )
        subtasks = next(
            (
                record.detail
                for record in reversed(engine.store.steps(engine.run_id))
                if record.iteration == at.iteration and isinstance(record.detail.get("subtasks"), list)
            ),
            None,
        )
        if engine.state.plan is None or subtasks is None:
            engine.end_step(
                step_id,
                "merge",
                "skipped",
                detail={"notes": ["no plan: the plain loop ran, nothing to merge"]},
            )
            return
        left = [s for s in subtasks["subtasks"] if s["state"] != "merged"]
        order = list(subtasks.get("merge_order", []))
        detail = {
            "merge_order": order,
            "unmerged": left,
            "notes": [f"merged in this order: {', '.join(order)}"],
        }
        if not left:
            engine.end_step(step_id, "merge", "succeeded", commit=engine.head(), detail=detail)
            engine.state.steps_run += 1
            return
        why = "; ".join(
            f"{s['id']} {s['state']}"
            + (f" in {', '.join(s['conflicts'])}" if s["conflicts"] else "")
            + f" (its work is on {s['branch']})"
            for s in left
        )
        message = f"not every subtask is in the run branch: {why}; resolve by hand, nothing was lost"
        engine.end_step(
            step_id, "merge", "failed", error_kind="merge_conflict", error_message=message, detail=detail
        )
        engine.state.steps_run += 1
        if not step.optional:
            engine.state.failed_step = f"{step_id}: {message}"

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        return None  # a finished merge step changed nothing: for_each did the merging
