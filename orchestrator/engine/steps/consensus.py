"""Consensus review: `reviewers:` review the run's tree at once, read-only; their findings are clustered
(consensus.py: same file, nearby lines, same meaning) and a cluster counts once `quorum:` distinct
reviewers raised it. A high-severity finding raised by one reviewer alone is put to a second reviewer
before it counts. The author's CLI never reviews its own work: a reviewer whose CLI takes an editing
step of the workflow is left out (and said so).

Each reviewer is a sub-step `<step>-<member>` (its usage, transcript and verdict of its own); the step
itself holds the consensus: the verdict, the counted findings (what the refine step is given), every
cluster with its status, and each reviewer's verdict. Resume: finished reviewers are not asked again.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrator.engine.consensus import (
    Consensus,
    build_consensus,
    choose_second_reviewer,
    confirm,
    confirmation_request,
)
from orchestrator.engine.review import REVIEW_FORMAT_INSTRUCTIONS, Finding, ReviewVerdict
from orchestrator.engine.run_state import Cancelled, step_id_for, usage_of
from orchestrator.engine.scheduler import Task, run_group
from orchestrator.engine.steps import StepAt
from orchestrator.engine.workflow import ConsensusStep
from orchestrator.events import Notice, StepStarted
from orchestrator.store import COMPLETED_STEP_STATUSES, StepRecord

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


class ConsensusKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        step = at.step
        assert isinstance(step, ConsensusStep)
        parent_id = step_id_for(at.iteration, at.index, step)
        authors = set(engine.readiness.authors(engine.workflow))
        members = [(n, a) for n, a in zip(step.names, step.reviewers, strict=True) if a not in authors]
        notes = [
            f"{a} wrote the change, so it does not review it"
            for a in dict.fromkeys(step.reviewers)
            if a in authors
        ]
        ready = [(n, a) for n, a in members if engine.readiness.of(a).ready]
        notes += [
            f"{n} is not ready ({engine.readiness.of(a).reason})" for n, a in members if (n, a) not in ready
        ]
        engine.store.start_step(
            engine.run_id,
            parent_id,
            iteration=at.iteration,
            index=at.index,
            agent=step.reviewers[0],
            task="review",
        )
        engine.bus.publish(
            StepStarted(
                run_id=engine.run_id,
                step_id=parent_id,
                agent=step.reviewers[0],
                task="review",
                iteration=at.iteration,
            )
        )
        for note in notes:
            engine.bus.publish(Notice(run_id=engine.run_id, level="warning", text=f"{parent_id}: {note}"))
        if not ready:
            engine.end_step(
                parent_id,
                step.reviewers[0],
                "skipped" if step.optional else "failed",
                error_kind="other",
                error_message="no reviewer could take the review: " + "; ".join(notes),
                detail={"notes": notes},
            )
            if not step.optional:
                engine.state.failed_step = f"{parent_id}: no reviewer could take the review"
            return
        head_before = engine.head()
        engine.watch_user_refs()
        prompt = engine.prompt("review", step.description, at.iteration, None)
        group = [
            Task(name, functools.partial(_review, engine, at, f"{parent_id}-{name}", agent, name, prompt))
            for name, agent in ready
        ]
        outcomes = run_group(
            group, max_workers=engine.run_slots.concurrency, cancel=engine.cancel, name="review"
        )
        reviews = [(name, outcomes[name].value) for name, _ in ready]
        engine.undo_read_only(parent_id, "reviewers", head_before, notes)
        if engine.cancel.is_set():
            engine.end_step(
                parent_id, step.reviewers[0], "cancelled", error_kind="other", error_message="cancelled"
            )
            raise Cancelled
        answered = [(name, verdict) for name, verdict in reviews if verdict is not None]
        if not answered:
            engine.end_step(
                parent_id,
                step.reviewers[0],
                "skipped" if step.optional else "failed",
                error_kind="other",
                error_message="every reviewer failed",
                detail={"notes": notes},
            )
            if not step.optional:
                engine.state.failed_step = f"{parent_id}: every reviewer failed"
            return
        consensus = build_consensus(answered, quorum=step.quorum)
        consensus = _confirm_pending(engine, at, parent_id, consensus, ready)
        verdict = ReviewVerdict(verdict=consensus.verdict or "approve", findings=consensus.findings)
        engine.take_verdict(verdict, head_before, at.iteration)
        detail = _detail(consensus, verdict, notes, dict(ready))
        engine.end_step(parent_id, step.reviewers[0], "succeeded", detail=detail)
        engine.state.steps_run += 1

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        if "verdict" in record.detail:
            verdict = ReviewVerdict(
                verdict=record.detail["verdict"],
                findings=[Finding.model_validate(f) for f in record.detail.get("findings", [])],
            )
            engine.take_verdict(verdict, engine.head_at(record), record.iteration)


def _review(
    engine: RunEngine, at: StepAt, step_id: str, agent: str, name: str, prompt: str
) -> ReviewVerdict | None:
    """One reviewer's review (a sub-step); None when it failed."""
    step = at.step
    assert isinstance(step, ConsensusStep)
    known = engine.store.step(engine.run_id, step_id)
    if known is not None and known.status in COMPLETED_STEP_STATUSES and "review" in known.detail:
        return ReviewVerdict.model_validate(known.detail["review"])  # resume: asked before
    engine.store.start_step(
        engine.run_id, step_id, iteration=at.iteration, index=at.index, agent=agent, task="review"
    )
    result = engine.call_agent(
        agent,
        "review",
        step_id,
        prompt,
        read_only=True,
        timeout_s=step.timeout_s,
        model=step.model,
        instance=name,
    )
    usage = usage_of(result)
    verdict = None
    if result.success:
        verdict, extra = engine.review_verdict(
            agent, step_id, result, timeout_s=step.timeout_s, instance=name
        )
        usage = usage + extra
    engine.end_step(
        step_id,
        agent,
        "succeeded" if result.success else "failed",
        usage=usage,
        error_kind=None if result.success else result.summary.error_kind,
        error_message=None if result.success else result.summary.error_message,
        session_id=result.summary.session_id,
        detail={"review": verdict.model_dump(mode="json")} if verdict else {},
    )
    return verdict


def _confirm_pending(
    engine: RunEngine, at: StepAt, parent_id: str, consensus: Consensus, ready: list[tuple[str, str]]
) -> Consensus:
    """Put each high-severity finding that only one reviewer raised to a second reviewer (one at a time:
    they are few). A cluster nobody is left to confirm stays below quorum."""
    agents = dict(ready)
    pool = [name for name, _ in ready]
    for index in consensus.pending:
        asked: list[str] = []
        while consensus.clusters[index].status == "needs_second_reviewer":
            second = choose_second_reviewer(pool, consensus.clusters[index], authors=(), asked=asked)
            if second is None:
                clusters = list(consensus.clusters)
                clusters[index] = replace(clusters[index], status="below_quorum")
                consensus = replace(consensus, clusters=tuple(clusters))
                break
            asked.append(second)
            prompt = f"{confirmation_request(consensus.clusters[index])}\n\n{REVIEW_FORMAT_INSTRUCTIONS}"
            answer = _review(
                engine, at, f"{parent_id}-confirm{index + 1}-{second}", agents[second], second, prompt
            )
            if answer is not None:
                consensus = confirm(consensus, index, second, answer)
    return consensus


def _detail(
    consensus: Consensus, verdict: ReviewVerdict, notes: list[str], agents: dict[str, str]
) -> dict[str, Any]:
    return {
        "verdict": verdict.verdict,
        "findings": [f.model_dump(mode="json") for f in verdict.findings],
        "quorum": consensus.quorum,
        "effective_quorum": consensus.effective_quorum,
        "reviews": [
            {"reviewer": name, "agent": agents.get(name, name), "verdict": v}
            for name, v in consensus.verdicts.items()
        ]
        + [
            {"reviewer": name, "agent": agents.get(name, name), "verdict": None}
            for name in consensus.abstained
        ],
        "clusters": [
            {
                "status": c.status,
                "severity": c.severity,
                "reviewers": list(c.reviewers),
                "confirmed_by": c.confirmed_by,
                "finding": c.finding.model_dump(mode="json"),
            }
            for c in consensus.clusters
        ],
        "notes": notes,
    }
