"""Task queues per capability. A run needs the agents its (routed) workflow names; its steps go to the
queue `<prefix>.agents.<a+b+...>` (sorted names), which only workers with all of those agents ready
serve. A worker serves the queue of every non-empty subset of its ready agents (31 with all 5) plus
`<prefix>.workflows` (the workflows themselves, and the small `end_run` activity)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations


def workflow_queue(prefix: str) -> str:
    return f"{prefix}.workflows"


def agents_queue(prefix: str, agents: Iterable[str]) -> str:
    names = sorted(set(agents))
    if not names:
        raise ValueError("a run names at least one agent")
    return f"{prefix}.agents.{'+'.join(names)}"


def served_queues(prefix: str, ready: Iterable[str]) -> list[str]:
    """The step queues of a worker whose ready agents are `ready`."""
    names = sorted(set(ready))
    return [
        agents_queue(prefix, subset)
        for size in range(1, len(names) + 1)
        for subset in combinations(names, size)
    ]
