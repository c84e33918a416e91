"""Best of N: rank the attempts by `select: [gates, review, smallest_diff, cost]`, keys in the given order.

Every published gain from parallel attempts filters by tests first and ranks the rest (PEERS.md), so
`gates` leads the default. Each key compares two attempts and says "better", "worse" or "equal"; the
first key that is not "equal" decides, and when every key is equal the attempt listed first in
`attempts:` wins, so a ranking never depends on which attempt happened to finish first.

- gates: all gates passed beats not; then more gates passed beats fewer.
- review: a higher review_score() beats a lower one; no score (no readable review) comes last.
- smallest_diff: fewer changed lines (added + removed) beat more; unknown comes last.
- cost: cheaper beats dearer; unknown cost (a CLI that reports none) comes last.
Numbers are compared rounded to 6 decimals, so $0.1 + $0.2 equals $0.3.

An attempt that failed (no result to use) or changed nothing (0 lines) is not eligible: it ranks after
every eligible one, and when none is eligible there is no winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from orchestrator.engine.review import ReviewVerdict

SelectKey = Literal["gates", "review", "smallest_diff", "cost"]
SELECT_KEYS: tuple[SelectKey, ...] = get_args(SelectKey)
DEFAULT_SELECT: tuple[SelectKey, ...] = ("gates", "review", "smallest_diff", "cost")

# review_score: an approval is worth more than any number of low findings can take away from a
# request for changes with none; each finding costs by its severity.
APPROVE_POINTS = 10.0
FINDING_COST = {"high": 5.0, "medium": 2.0, "low": 0.5}

_UNKNOWN = float("inf")


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt came to; `name` is how the report names it (e.g. "claude", or "claude-2")."""

    name: str
    completed: bool = True  # the agent step finished with a commit to judge
    gates_passed: int = 0
    gates_total: int = 0
    review_score: float | None = None
    diff_lines: int | None = None
    cost_usd: float | None = None

    @property
    def all_gates_passed(self) -> bool:
        return self.gates_passed == self.gates_total

    @property
    def eligible(self) -> bool:
        return self.completed and self.diff_lines != 0


def review_score(review: ReviewVerdict | None) -> float | None:
    """APPROVE_POINTS for an approval, less FINDING_COST per finding; None without a readable review."""
    if review is None or review.unparsed:
        return None
    score = APPROVE_POINTS if review.approved else 0.0
    return score - sum(FINDING_COST[f.severity] for f in review.findings)


def validate_select(keys: Sequence[str]) -> tuple[SelectKey, ...]:
    """The keys, checked: known, each once, at least one. ValueError says what is allowed."""
    if not keys:
        raise ValueError(f"select needs at least one key (allowed: {', '.join(SELECT_KEYS)})")
    seen: list[SelectKey] = []
    for key in keys:
        if key not in SELECT_KEYS:
            raise ValueError(f"unknown select key {key!r} (allowed: {', '.join(SELECT_KEYS)})")
        if key in seen:
            raise ValueError(
                f"select key {key!r} is listed twice (allowed: each of {', '.join(SELECT_KEYS)} once)"
            )
        seen.append(key)
    return tuple(seen)


def _value(attempt: AttemptResult, key: SelectKey) -> tuple[float, ...]:
    """Smaller is better."""
    if key == "gates":
        return (0.0 if attempt.all_gates_passed else 1.0, -float(attempt.gates_passed))
    if key == "review":
        return (_UNKNOWN if attempt.review_score is None else -round(attempt.review_score, 6),)
    if key == "smallest_diff":
        return (_UNKNOWN if attempt.diff_lines is None else float(attempt.diff_lines),)
    return (_UNKNOWN if attempt.cost_usd is None else round(attempt.cost_usd, 6),)


def _describe(attempt: AttemptResult, key: SelectKey) -> str:
    if key == "gates":
        return f"{attempt.gates_passed}/{attempt.gates_total} gates"
    if key == "review":
        return "no review" if attempt.review_score is None else f"review {attempt.review_score:g}"
    if key == "smallest_diff":
        return "diff unknown" if attempt.diff_lines is None else f"{attempt.diff_lines} lines"
    return "cost unknown" if attempt.cost_usd is None else f"${attempt.cost_usd:.4f}"


@dataclass(frozen=True)
class Ranking:
    order: tuple[AttemptResult, ...]  # best first; eligible ones before the rest
    select: tuple[SelectKey, ...]
    reasons: tuple[str, ...]  # why order[i] is ahead of order[i + 1], one line each

    @property
    def winner(self) -> AttemptResult | None:
        return self.order[0] if self.order and self.order[0].eligible else None

    def explain(self) -> str:
        if not self.order:
            return "no attempts"
        if self.winner is None:
            return "no attempt can be chosen: " + ", ".join(f"{a.name} {_unusable(a)}" for a in self.order)
        lines = [f"chosen: {self.winner.name} (by {', '.join(self.select)})", *self.reasons]
        return "\n".join(lines)


def _unusable(attempt: AttemptResult) -> str:
    return "failed" if not attempt.completed else "changed nothing"


def rank_attempts(attempts: Sequence[AttemptResult], select: Sequence[str] = DEFAULT_SELECT) -> Ranking:
    """Attempts best first by `select` (see the module's docstring); pure and deterministic."""
    keys = validate_select(select)
    names = [a.name for a in attempts]
    if len(set(names)) != len(names):
        raise ValueError(f"attempt names must be unique; got {names}")
    position = {a.name: i for i, a in enumerate(attempts)}
    order = sorted(
        attempts,
        key=lambda a: (0 if a.eligible else 1, *(_value(a, k) for k in keys), position[a.name]),
    )
    reasons = tuple(_reason(ahead, behind, keys) for ahead, behind in zip(order, order[1:], strict=False))
    return Ranking(order=tuple(order), select=keys, reasons=reasons)


def _reason(ahead: AttemptResult, behind: AttemptResult, keys: Sequence[SelectKey]) -> str:
    prefix = f"{ahead.name} before {behind.name}"
    if ahead.eligible and not behind.eligible:
        return f"{prefix}: {behind.name} {_unusable(behind)}"
    for key in keys:
        if _value(ahead, key) != _value(behind, key):
            return f"{prefix} on {key}: {_describe(ahead, key)} vs {_describe(behind, key)}"
    return f"{prefix}: equal on {', '.join(keys)}; listed first in attempts"
