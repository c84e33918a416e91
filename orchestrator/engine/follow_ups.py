"""Follow-ups: a finished run continued with a new request, on the same branch.

A follow-up adds iterations after the run's last one: the first of them starts with the implement step
again, driven by the follow-up's text, and the run may go on for as many iterations as a fresh run of
its workflow would. Both facts are kept in the run's event log as a FollowUp event (events.py), the one
source of truth: whichever process resumes the run (this machine after a crash, or any cluster worker
for its next step) reads them back from the store, so a follow-up started on one machine goes on
anywhere. The submitting side of a cluster run writes the event itself, then resubmits the workflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.engine.workflow import Workflow
from orchestrator.events import FollowUp
from orchestrator.store import RunRecord, Store

# Where follow-ups were kept, per machine, before they went to the event log: still read, so runs
# continued before then resume as they did.
LEGACY_FILE = "follow-ups.json"


def next_follow_up(run: RunRecord, text: str, *, source: str = "") -> FollowUp:
    """The FollowUp that continues `run` (as it is now) with `text`: from the iteration after its last,
    for as many iterations as the run was allowed."""
    workflow = Workflow.model_validate(run.workflow)
    first = max(run.iterations, 0) + 1
    allowed = run.options.max_iterations or workflow.max_iterations
    return FollowUp(
        run_id=run.id, text=text, iteration=first, max_iterations=first - 1 + allowed, source=source
    )


@dataclass(frozen=True)
class FollowUpPlan:
    """Where an engine starts a run that has follow-ups: the latest follow-up's first iteration (the
    iterations before it are finished; restore their state, do not walk them again), and up to which
    iteration it may go; plus each follow-up iteration's text."""

    texts: dict[int, str]
    first: int | None = None
    max_iterations: int | None = None


def plan_follow_ups(known: list[FollowUp], legacy: dict[int, str]) -> FollowUpPlan:
    texts = {**legacy, **{f.iteration: f.text for f in known}}
    if not known:
        return FollowUpPlan(texts)
    latest = max(known, key=lambda f: f.iteration)
    return FollowUpPlan(texts, first=latest.iteration, max_iterations=latest.max_iterations)


def stored_follow_ups(store: Store, run_id: str) -> list[FollowUp]:
    """The run's FollowUp events, oldest first."""
    return [s.event for s in store.events(run_id, types=("follow_up",)) if isinstance(s.event, FollowUp)]


def legacy_follow_ups(run_dir: Path) -> dict[int, str]:
    try:
        raw = json.loads((run_dir / LEGACY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {int(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
