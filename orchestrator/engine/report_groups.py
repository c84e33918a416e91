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


def group_lines(
    attempts: list[dict[str, Any]],
    reviews: list[dict[str, Any]],
    subtasks: list[dict[str, Any]],
    routing: list[dict[str, Any]],
) -> list[str]:
    """The human report's lines for the above: attempts side by side, the reviewers' verdicts and
    clusters, the subtask graph with its state, and what `agent: auto` chose."""
    lines: list[str] = []
    for group in attempts:
        lines.append(
            f"attempts ({group['step']}): chosen {group['winner'] or 'none'} by {', '.join(group['select'])}"
        )
        for a in group["attempts"]:
            mark = "*" if a["name"] == group["winner"] else " "
            gates = f"{a['gates_passed']}/{a['gates_total']} gates"
            diff = "-" if a["diff_lines"] is None else f"{a['diff_lines']} lines"
            review = a["review_verdict"] or "-"
            cost = "n/a" if a["cost_usd"] is None else f"${a['cost_usd']:.4f}"
            tail = f"  {a['error']}" if a["error"] else ""
            lines.append(
                f" {mark}{a['name']:<12} {gates:<10} {diff:<10} review {review:<16} {cost:<9} {a['branch']}{tail}"
            )
    for review in reviews:
        verdicts = ", ".join(f"{r['reviewer']} {r['verdict'] or 'unreadable'}" for r in review["reviewers"])
        lines.append(
            f"reviews ({review['step']}, quorum {review['quorum']}): {review['verdict']}; {verdicts}"
        )
        for cluster in review["clusters"]:
            finding = cluster["finding"]
            where = finding.get("file") or ""
            if where and finding.get("line"):
                where += f":{finding['line']}"
            lines.append(
                f"  {cluster['status']:<22} [{cluster['severity']}] {where + ' ' if where else ''}"
                f"{finding['message']} ({', '.join(cluster['reviewers'])})"
            )
    for graph in subtasks:
        lines.append(f"subtasks ({graph['step']}): merged in order {', '.join(graph['merge_order']) or '-'}")
        for s in graph["subtasks"]:
            after = f" after {', '.join(s['depends_on'])}" if s["depends_on"] else ""
            lines.append(f"  {s['id']:<12} {s['state']:<11} by {s['agent']:<8} {s['branch']}{after}")
    for choice in routing:
        lines.append(f"routing: {choice['task']} -> {choice['agent']} ({choice['reason']})")
    return lines
