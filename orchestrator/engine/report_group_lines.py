"""The groups of a report as lines for people (`runs show`, the end of `orchestrator run`, the shell):
attempts side by side, the reviewers' verdicts and clustered findings, the subtask graph with each
subtask's state, and what `agent: auto` chose. Pure, and no line is wider than `width` (80 by default:
a terminal's), so long names and messages are cut or wrapped rather than running on."""

from __future__ import annotations

import re
import textwrap
from typing import Any

WIDTH = 80
# What agents write (messages, names) may hold control characters: escape sequences would act on
# the terminal, and new lines would break the columns.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_VERDICT = {"approve": "approve", "request_changes": "changes", None: "no answer"}


def fit(text: str, width: int) -> str:
    """`text` on one line of at most `width` characters, cut with an ellipsis."""
    text = _CONTROL.sub(" ", str(text))
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def wrap(text: str, width: int, indent: str, first: str | None = None) -> list[str]:
    """`text` wrapped to `width`, the first line starting with `first` (else `indent`)."""
    return textwrap.wrap(
        " ".join(_CONTROL.sub(" ", str(text)).split()),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [(indent if first is None else first).rstrip()]


def _cost(cost: float | None) -> str:
    return "n/a" if cost is None else f"${cost:.4f}"


def _review(a: dict[str, Any]) -> str:
    if not a.get("reviewer"):
        return "-"
    verdict = "reviewing" if a.get("state") == "reviewing" else _VERDICT.get(a.get("review_verdict"), "?")
    score = a.get("review_score")
    return f"{a['reviewer']} {verdict}" + ("" if score is None else f" {score:+g}")


def attempt_lines(group: dict[str, Any], width: int = WIDTH) -> list[str]:
    head = f"attempts ({group['step']})"
    if group.get("running"):
        head += ": running"
    else:
        head += f": chosen {group['winner'] or 'none'}"
    if group.get("select"):
        head += f", by {', '.join(group['select'])}"
    lines = wrap(head, width, "  ", first="")
    lines.append(
        fit(f"    {'attempt':<10} {'state':<10} {'gates':<5} {'review':<22} {'diff':>5} {'cost':>9}", width)
    )
    for a in group["attempts"]:
        mark = "*" if a["name"] == group.get("winner") else " "
        gates = f"{a.get('gates_passed') or 0}/{a.get('gates_total') or 0}"
        diff = "-" if a.get("diff_lines") is None else str(a["diff_lines"])
        row = (
            f"  {mark} {fit(a['name'], 10):<10} {fit(a.get('state') or '', 10):<10} {gates:<5} "
            f"{fit(_review(a), 22):<22} {diff:>5} {_cost(a.get('cost_usd')):>9}"
        )
        lines.append(fit(row, width))
        if a.get("error"):
            lines += wrap(a["error"], width, " " * 6, first=f"    {fit(a['name'], 10)}: ")
    reasons = str(group.get("explain") or "").splitlines()[1:]
    for i, reason in enumerate(reasons):
        lines += wrap(reason, width, " " * 7, first="  why: " if i == 0 else " " * 7)
    for a in group["attempts"]:
        lines.append(fit(f"  branch {a['name']}: {a.get('branch') or '-'}", width))
    return lines


def review_lines(review: dict[str, Any], width: int = WIDTH) -> list[str]:
    clusters = review.get("clusters") or []
    counted = sum(1 for c in clusters if c.get("status") == "counts")
    head = f"reviews ({review['step']}): "
    head += "running" if review.get("running") else str(review.get("verdict") or "no verdict")
    head += f"; quorum {review.get('quorum')}"
    if review.get("effective_quorum") not in (None, review.get("quorum")):
        head += f" (effective {review['effective_quorum']})"
    if not review.get("running"):
        head += f": reached by {counted} of {len(clusters)} finding{'' if len(clusters) == 1 else 's'}"
    lines = wrap(head, width, "  ", first="")
    verdicts = ", ".join(
        f"{r['reviewer']} {'reviewing' if r.get('state') == 'running' else (r.get('verdict') or 'no answer')}"
        for r in review.get("reviewers") or []
    )
    lines += wrap(verdicts or "none yet", width, "    ", first="  reviewers: ")
    for c in clusters:
        finding = c.get("finding") or {}
        where = finding.get("file") or ""
        if where and finding.get("line"):
            where += f":{finding['line']}"
        raised = c.get("reviewers") or []
        count = f"{len(raised)} reviewer{'' if len(raised) == 1 else 's'}: {', '.join(raised)}"
        if c.get("confirmed_by"):
            count += f"; second look by {c['confirmed_by']}"
        status = {"counts": "counted"}.get(c.get("status", ""), str(c.get("status", "")).replace("_", " "))
        lines.append(fit(f"  [{c.get('severity')}] {status}, {count}", width))
        lines += wrap(f"{where + ' ' if where else ''}{finding.get('message', '')}", width, "      ")
    return lines


def subtask_lines(graph: dict[str, Any], width: int = WIDTH) -> list[str]:
    subtasks = graph["subtasks"]
    merged = sum(1 for s in subtasks if s.get("state") == "merged")
    head = f"subtasks ({graph['step']}): {'running, ' if graph.get('running') else ''}"
    head += f"{merged} of {len(subtasks)} merged"
    if graph.get("merge_order"):
        head += f", in order {', '.join(graph['merge_order'])}"
    lines = wrap(head, width, "  ", first="")
    lines.append(fit(f"  {'id':<14} {'state':<11} {'agent':<8} {'after':<24} {'merge':<10}", width))
    for s in subtasks:
        after = ", ".join(s.get("depends_on") or []) or "-"
        merge = (s.get("merge_commit") or "")[:8] or ("conflict" if s.get("conflicts") else "-")
        row = (
            f"  {fit(s['id'], 14):<14} {fit(s.get('state', ''), 11):<11} {fit(s.get('agent') or '-', 8):<8} "
        )
        lines.append(fit(row + f"{fit(after, 24):<24} {merge}", width))
        if s.get("conflicts"):
            lines += wrap(f"conflicts in {', '.join(s['conflicts'])}", width, " " * 6, first=" " * 4)
        if s.get("error"):
            lines += wrap(s["error"], width, " " * 6, first=" " * 4)
    for pair in graph.get("serialized") or []:
        files = ", ".join(pair.get("files") or [])
        lines += wrap(
            f"{pair['then']} after {pair['first']} (both change {files})",
            width,
            "    ",
            first="  one at a time: ",
        )
    for s in subtasks:
        lines.append(fit(f"  branch {s['id']}: {s.get('branch') or '-'}", width))
    return lines


def group_lines(
    attempts: list[dict[str, Any]],
    reviews: list[dict[str, Any]],
    subtasks: list[dict[str, Any]],
    routing: list[dict[str, Any]],
    width: int = WIDTH,
) -> list[str]:
    """The human report's lines for the groups, in the order above."""
    lines: list[str] = []
    for group in attempts:
        lines += attempt_lines(group, width)
    for review in reviews:
        lines += review_lines(review, width)
    for graph in subtasks:
        lines += subtask_lines(graph, width)
    for choice in routing:
        lines += wrap(
            f"{choice['task']} -> {choice['agent']} ({choice['reason']})", width, "    ", first="routing: "
        )
    return lines
