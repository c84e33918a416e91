"""Run a group of tasks at once on threads, each started once the tasks it depends on have succeeded.

The step kinds that fan out (attempts, consensus reviews, subtasks) hand their members here. The pool
bounds the threads; what bounds the agents is taken inside each agent call (agent_calls.py:
`limits.concurrency`, `limits.per_agent` and the machine's per-CLI slots), so a member that is not an
agent (a gate run, a git merge) does not hold an agent's slot. Every thread has ended when `run_group`
returns, whatever happened: a failing member fails alone (its exception is its outcome), and a
member whose dependency failed is not started.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Task(Generic[T]):
    id: str
    run: Callable[[], T]
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None
    started: bool = True  # False: a dependency failed (or the group was cancelled) before it could start

    @property
    def ok(self) -> bool:
        return self.started and self.error is None


def run_group(
    tasks: Sequence[Task[T]], *, max_workers: int, cancel: threading.Event | None = None, name: str = "group"
) -> dict[str, Outcome[T]]:
    """Every task's outcome, by id. Dependencies must name tasks of the group (ValueError otherwise)."""
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"task ids must be unique; got {ids}")
    unknown = sorted({d for t in tasks for d in t.depends_on} - set(ids))
    if unknown:
        raise ValueError(f"unknown dependencies: {', '.join(unknown)}")
    outcomes: dict[str, Outcome[T]] = {}
    waiting = list(tasks)
    running: dict[Future[T], str] = {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix=name) as pool:
        while waiting or running:
            changed = True
            while changed:  # a task given up on can make others given up on, in any order
                changed = False
                for task in list(waiting):
                    if any(d in outcomes and not outcomes[d].ok for d in task.depends_on) or (
                        cancel is not None and cancel.is_set()
                    ):
                        outcomes[task.id] = Outcome(started=False)
                    elif all(d in outcomes for d in task.depends_on):
                        running[pool.submit(task.run)] = task.id
                    else:
                        continue
                    waiting.remove(task)
                    changed = True
            if not running:
                if waiting:  # a cycle: nothing can start
                    for task in waiting:
                        outcomes[task.id] = Outcome(started=False, error=ValueError("dependency cycle"))
                    waiting.clear()
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task_id = running.pop(future)
                error = future.exception()
                outcomes[task_id] = Outcome(error=error) if error else Outcome(value=future.result())
    return {task_id: outcomes[task_id] for task_id in ids}
