"""The report's view of the steps that ran several agents: best-of-N attempts, consensus reviews and a
plan's subtasks (pure: read from the steps in the store and the run's workflow).

A group's parent step writes its whole outcome only when it ends; while it runs, the view is built
from its members' own steps (`<parent>-<name>`, each with its outcome once it ends), so `runs show`, the
shell and the dashboard can show a group as it goes. Every entry says whether it is `running`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.engine.workflow_steps import instance_names
from orchestrator.store import StepRecord
from orchestrator.workspace.run_records import branch_name, member_run_id

ATTEMPT_KEYS = (
    "name",
    "agent",
    "branch",
    "commit",
    "completed",
    "gates_passed",
    "gates_total",
    "diff_lines",
    "cost_usd",
    "reviewer",
    "review_verdict",
    "review_score",
    "error",
)
_ENDED = {"succeeded", "failed", "skipped", "cancelled"}


def _spec(workflow: dict[str, Any], index: int) -> dict[str, Any]:
    steps = workflow.get("steps") or []
    spec = steps[index] if 0 <= index < len(steps) else {}
    return spec if isinstance(spec, dict) else {}


def _is_parent(step: StepRecord, workflow: dict[str, Any], key: str) -> bool:
    """Whether `step` is a group's parent step of one kind, from the workflow: its step there has `key`
    and the id is the step's own (a member's id is longer)."""
    spec = _spec(workflow, step.index)
    return key in spec and step.step_id == f"i{step.iteration}-s{step.index + 1}-{spec.get('task')}"


def _members(steps: Sequence[StepRecord], parent: StepRecord) -> dict[str, StepRecord]:
    prefix = f"{parent.step_id}-"
    return {
        s.step_id[len(prefix) :]: s
        for s in steps
        if s.iteration == parent.iteration and s.index == parent.index and s.step_id.startswith(prefix)
    }


def _attempt_state(attempt: dict[str, Any], winner: str | None, decided: bool) -> str:
    if attempt.get("state") in {"waiting", "running", "reviewing"}:
        return str(attempt["state"])
    if not attempt.get("completed"):
        return "failed"
    if decided:
        return "chosen" if attempt["name"] == winner else "not chosen"
    return "done"


def _live_attempts(
    parent: StepRecord, members: dict[str, StepRecord], names: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        own, review = members.get(name), members.get(f"{name}-review")
        if own is not None and isinstance(own.detail.get("attempt"), dict):
            row = {key: own.detail["attempt"].get(key) for key in ATTEMPT_KEYS}
        else:
            row = dict.fromkeys(ATTEMPT_KEYS)
            row.update(
                name=name,
                agent=own.agent if own else None,
                branch=branch_name(member_run_id(parent.run_id, name, parent.iteration)),
                completed=False,
                gates_passed=0,
                gates_total=0,
                state="running" if own is not None and own.status == "running" else "waiting",
            )
        if review is not None:
            row["reviewer"] = review.agent
            if isinstance(review.detail.get("attempt_review"), dict):
                row.update(review.detail["attempt_review"])
            elif review.status == "running":
                row["state"] = "reviewing"
        rows.append(row)
    return rows


def attempts_of(steps: Iterable[StepRecord], workflow: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per best-of-N step: its attempts side by side, the winner and why."""
    steps = list(steps)
    workflow = workflow or {}
    parents = {s.step_id: s for s in steps if isinstance(s.detail.get("attempts"), list)}
    parents.update(
        {s.step_id: s for s in steps if s.step_id not in parents and _is_parent(s, workflow, "attempts")}
    )
    found = []
    for parent in sorted(parents.values(), key=lambda s: (s.iteration, s.index)):
        decided = isinstance(parent.detail.get("attempts"), list)
        if decided:
            attempts = [{key: a.get(key) for key in ATTEMPT_KEYS} for a in parent.detail["attempts"]]
        else:
            members = _members(steps, parent)
            planned = list(instance_names(tuple(_spec(workflow, parent.index).get("attempts") or ())))
            seen = [n for n in members if not n.endswith("-review") and n not in planned]
            attempts = _live_attempts(parent, members, planned + seen)
        winner = parent.detail.get("winner")
        for attempt in attempts:
            attempt["state"] = _attempt_state(attempt, winner, decided)
        found.append(
            {
                "step": parent.step_id,
                "running": not decided and parent.status not in _ENDED,
                "winner": winner,
                "select": parent.detail.get("select")
                or list(_spec(workflow, parent.index).get("select", [])),
                "explain": parent.detail.get("explain", ""),
                "attempts": attempts,
            }
        )
    return found


def reviews_of(steps: Iterable[StepRecord], workflow: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per consensus review: each reviewer's verdict and every cluster with its status (while
    it runs: each reviewer's verdict as it comes, no clusters yet)."""
    steps = list(steps)
    workflow = workflow or {}
    found = []
    done = {s.step_id for s in steps if isinstance(s.detail.get("reviews"), list)}
    for step in steps:
        if step.step_id in done:
            found.append(
                {
                    "step": step.step_id,
                    "running": False,
                    "verdict": step.detail.get("verdict"),
                    "quorum": step.detail.get("quorum"),
                    "effective_quorum": step.detail.get("effective_quorum"),
                    "reviewers": step.detail["reviews"],
                    "clusters": step.detail.get("clusters", []),
                }
            )
        elif _is_parent(step, workflow, "reviewers"):
            spec = _spec(workflow, step.index)
            reviewers = []
            for name, member in _members(steps, step).items():
                verdict = member.detail.get("review") or {}
                reviewers.append(
                    {
                        "reviewer": name,
                        "agent": member.agent,
                        "verdict": verdict.get("verdict") if member.status != "running" else None,
                        "state": member.status,
                    }
                )
            found.append(
                {
                    "step": step.step_id,
                    "running": step.status not in _ENDED,
                    "verdict": None,
                    "quorum": spec.get("quorum"),
                    "effective_quorum": None,
                    "reviewers": reviewers,
                    "clusters": [],
                }
            )
    return found


def _planned_subtasks(steps: Sequence[StepRecord], parent: StepRecord) -> list[dict[str, Any]]:
    """The subtasks of the plan the for_each follows: the last plan step before it, same iteration."""
    plans = [
        s
        for s in steps
        if s.iteration == parent.iteration
        and s.index < parent.index
        and isinstance(s.detail.get("plan"), dict)
    ]
    if not plans:
        return []
    subtasks = plans[-1].detail["plan"].get("subtasks") or []
    return [s for s in subtasks if isinstance(s, dict)]


def subtasks_of(steps: Iterable[StepRecord], workflow: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per for_each over a plan: the subtask graph (depends_on) with each subtask's state,
    branch and commits, and the order the merges went in (while it runs: from the plan and the
    subtasks' own steps)."""
    steps = list(steps)
    workflow = workflow or {}
    found = []
    for step in steps:
        if isinstance(step.detail.get("subtasks"), list):
            found.append(
                {
                    "step": step.step_id,
                    "running": False,
                    "merge_order": step.detail.get("merge_order", []),
                    "serialized": step.detail.get("serialized", []),
                    "subtasks": step.detail["subtasks"],
                }
            )
            continue
        planned = _planned_subtasks(steps, step) if _is_parent(step, workflow, "for_each") else []
        if not planned:
            continue
        agents = list(_spec(workflow, step.index).get("agents") or ["?"])
        members = _members(steps, step)
        rows: list[dict[str, Any]] = []
        merged: list[tuple[float, str]] = []
        for i, sub in enumerate(planned):
            member = members.get(str(sub.get("id")))
            if member is not None and isinstance(member.detail.get("subtask"), dict):
                row = dict(member.detail["subtask"])
            else:
                row = {
                    "id": sub.get("id"),
                    "agent": member.agent if member else agents[i % len(agents)],
                    "step_id": f"{step.step_id}-{sub.get('id')}",
                    "branch": branch_name(member_run_id(step.run_id, f"st-{sub.get('id')}", step.iteration)),
                    "depends_on": list(sub.get("depends_on") or []),
                    "state": "running" if member is not None and member.status == "running" else "pending",
                    "commit": None,
                    "merge_commit": None,
                    "conflicts": [],
                    "error": None,
                }
            if row.get("state") == "merged" and member is not None:
                merged.append((member.finished_at or 0.0, str(row["id"])))
            rows.append(row)
        found.append(
            {
                "step": step.step_id,
                "running": step.status not in _ENDED,
                "merge_order": [name for _, name in sorted(merged)],
                "serialized": [],
                "subtasks": rows,
            }
        )
    return found
