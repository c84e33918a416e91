from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.engine.stop import STOP_REASONS, StopState, decide_stop, gates_passing
from orchestrator.engine.workflow import GateStep, Step, Workflow

# A review in iteration 1 of 3 that asked for changes, with the gates passing: nothing stops yet.
MID_RUN = StopState(
    iteration=1,
    max_iterations=3,
    just_reviewed=True,
    verdict="request_changes",
    findings_count=2,
    fingerprint="aaaa",
    previous_fingerprint=None,
    gates_passing=True,
)


def reason(state: StopState) -> str | None:
    decision = decide_stop(state)
    return None if decision is None else decision.reason


def test_going_on_is_the_default():
    assert decide_stop(MID_RUN) is None
    assert decide_stop(StopState(iteration=1, max_iterations=3)) is None


def test_approved_when_the_review_approves_and_gates_pass():
    decision = decide_stop(replace(MID_RUN, verdict="approve", findings_count=0))
    assert decision is not None and decision.reason == "approved" and decision.approved
    assert "every gate passes" in decision.detail


@pytest.mark.parametrize("gates", [False, None])
def test_not_approved_while_a_gate_fails_or_has_not_run(gates):
    assert reason(replace(MID_RUN, verdict="approve", findings_count=0, gates_passing=gates)) is None


def test_a_stale_or_missing_verdict_is_not_approval():
    assert reason(replace(MID_RUN, just_reviewed=False, verdict=None)) is None


def test_without_a_review_the_gates_approve_at_the_end_of_the_iteration():
    quick = StopState(iteration=1, max_iterations=1, has_review=False, can_iterate=False, gates_passing=True)
    assert reason(quick) is None  # mid-iteration: the gates have not all run
    assert reason(replace(quick, iteration_complete=True)) == "approved"
    assert reason(replace(quick, iteration_complete=True, gates_passing=False)) == "max_iterations"


def test_below_threshold():
    state = replace(MID_RUN, min_suggestions_threshold=3, findings_count=2)
    decision = decide_stop(state)
    assert decision is not None and decision.reason == "below_threshold"
    assert "2 finding(s), fewer than 3" in decision.detail
    assert reason(replace(state, findings_count=3)) is None
    assert reason(replace(state, min_suggestions_threshold=0, findings_count=0)) is None  # 0 turns it off
    assert reason(replace(state, gates_passing=False)) is None  # failing gates still need a refine
    assert reason(replace(state, just_reviewed=False)) is None  # judged only right after the review


def test_no_progress_when_a_review_repeats_the_previous_findings():
    state = replace(MID_RUN, iteration=2, previous_fingerprint="aaaa")
    decision = decide_stop(state)
    assert decision is not None and decision.reason == "no_progress" and "repeats" in decision.detail
    assert reason(replace(state, previous_fingerprint="bbbb")) is None
    assert reason(replace(state, just_reviewed=False)) is None


def test_no_progress_when_no_later_iteration_edits():
    state = StopState(
        iteration=1, max_iterations=3, iteration_complete=True, can_iterate=False, gates_passing=False
    )
    decision = decide_stop(state)
    assert decision is not None and decision.reason == "no_progress" and "edits" in decision.detail


def test_max_iterations_only_at_the_end_of_the_last_iteration():
    state = replace(MID_RUN, just_reviewed=False, iteration=3)
    assert reason(state) is None
    assert reason(replace(state, iteration_complete=True)) == "max_iterations"
    assert reason(replace(state, iteration=2, iteration_complete=True)) is None


def test_limits():
    assert reason(replace(MID_RUN, elapsed_s=600.0, timeout_s=600.0)) == "timed_out"
    assert reason(replace(MID_RUN, elapsed_s=599.9, timeout_s=600.0)) is None
    assert reason(replace(MID_RUN, spent_usd=2.0, budget_usd=2.0)) == "budget_exceeded"
    assert reason(replace(MID_RUN, spent_usd=1.99, budget_usd=2.0)) is None
    assert reason(replace(MID_RUN, steps_run=8, max_steps=8)) == "step_limit"
    assert reason(replace(MID_RUN, steps_run=7, max_steps=8)) is None
    decision = decide_stop(replace(MID_RUN, spent_usd=2.5, budget_usd=2.0))
    assert decision is not None and decision.detail == "$2.50 spent of a $2.00 budget"


def test_step_failed():
    decision = decide_stop(replace(MID_RUN, failed_step="i1-s3-refine (gemini): crashed"))
    assert decision is not None and decision.reason == "step_failed"
    assert decision.detail == "a required step failed: i1-s3-refine (gemini): crashed"


def test_precedence():
    approved = replace(MID_RUN, verdict="approve", findings_count=0)
    everything = replace(
        approved,
        elapsed_s=9,
        timeout_s=1,
        spent_usd=9,
        budget_usd=1,
        steps_run=9,
        max_steps=1,
        iteration=3,
        iteration_complete=True,
    )
    # Approval reached as a limit runs out is still approval: the work is done.
    assert reason(everything) == "approved"
    # A step killed because the run's time ran out is reported as timed_out, not as a failure.
    failed = replace(everything, failed_step="x", verdict="request_changes")
    assert reason(failed) == "timed_out"
    assert reason(replace(failed, timeout_s=None)) == "budget_exceeded"
    assert reason(replace(failed, timeout_s=None, budget_usd=None)) == "step_failed"
    # A failed step blocks approval.
    assert reason(replace(approved, failed_step="x")) == "step_failed"
    # Judging the review comes before the iteration count and the step limit.
    low = replace(
        MID_RUN, min_suggestions_threshold=5, iteration=3, iteration_complete=True, steps_run=9, max_steps=1
    )
    assert reason(low) == "below_threshold"
    assert reason(replace(low, min_suggestions_threshold=0)) == "max_iterations"
    assert reason(replace(low, min_suggestions_threshold=0, iteration_complete=False)) == "step_limit"


def test_every_reason_is_reachable():
    states = {
        "approved": replace(MID_RUN, verdict="approve"),
        "below_threshold": replace(MID_RUN, min_suggestions_threshold=9),
        "no_progress": replace(MID_RUN, previous_fingerprint="aaaa"),
        "max_iterations": replace(MID_RUN, just_reviewed=False, iteration=3, iteration_complete=True),
        "budget_exceeded": replace(MID_RUN, spent_usd=1, budget_usd=1),
        "timed_out": replace(MID_RUN, elapsed_s=1, timeout_s=1),
        "step_limit": replace(MID_RUN, steps_run=1, max_steps=1),
        "step_failed": replace(MID_RUN, failed_step="x"),
    }
    assert set(states) == set(STOP_REASONS)
    assert {name: reason(state) for name, state in states.items()} == {name: name for name in states}


WORKFLOW = Workflow(
    name="w",
    steps=(
        Step(agent="claude", task="implement"),
        GateStep(run="pytest -q"),
        GateStep(run="ruff check .", optional=True),
        Step(agent="codex", task="review"),
        GateStep(run="auto"),
    ),
)


@pytest.mark.parametrize(
    ("latest", "expected"),
    [
        ({}, None),
        ({1: True}, None),  # gate 4 has not run yet
        ({1: True, 4: True}, True),
        ({1: True, 4: None}, True),  # `auto` found no tests: skipped, not failed
        ({1: True, 2: False, 4: True}, True),  # the optional gate does not block
        ({1: False}, False),  # a failure is known before every gate has run
        ({1: True, 4: False}, False),
    ],
)
def test_gates_passing(latest, expected):
    assert gates_passing(WORKFLOW, latest) is expected


def test_gates_passing_without_gates():
    assert gates_passing(Workflow(name="w", steps=(Step(agent="codex", task="review"),)), {}) is True
