"""The report's view of the steps that ran several agents: best-of-N attempts and consensus reviews
(pure: read from the steps' detail in the store)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.store import StepRecord


def attempts_of(steps: Iterable[StepRecord]) -> list[dict[str, Any]]:
    """One entry per best-of-N step: its attempts side by side, the winner and why."""
    found = []
    for step in steps:
        if isinstance(step.detail.get("attempts"), list):
            found.append(
                {
                    "step": step.step_id,
                    "winner": step.detail.get("winner"),
                    "select": step.detail.get("select", []),
                    "explain": step.detail.get("explain", ""),
                    "attempts": [
                        {
                            key: attempt.get(key)
                            for key in (
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
                        }
                        for attempt in step.detail["attempts"]
                    ],
                }
            )
    return found


def reviews_of(steps: Iterable[StepRecord]) -> list[dict[str, Any]]:
    """One entry per consensus review: each reviewer's verdict and every cluster with its status."""
    return [
        {
            "step": step.step_id,
            "verdict": step.detail.get("verdict"),
            "quorum": step.detail.get("quorum"),
            "effective_quorum": step.detail.get("effective_quorum"),
            "reviewers": step.detail["reviews"],
            "clusters": step.detail.get("clusters", []),
        }
        for step in steps
        if isinstance(step.detail.get("reviews"), list)
    ]


def subtasks_of(steps: Iterable[StepRecord]) -> list[dict[str, Any]]:
    """One entry per for_each over a plan: the subtask graph (depends_on) with each subtask's state,
    branch and commits, and the order the merges went in."""
    return [
        {
            "step": step.step_id,
            "merge_order": step.detail.get("merge_order", []),
            "serialized": step.detail.get("serialized", []),
            "subtasks": step.detail["subtasks"],
        }
        for step in steps
        if isinstance(step.detail.get("subtasks"), list)
    ]
