"""`agent: auto`: the CLI chosen by its record in the store, exploring the untried first (pure parts),
and end to end: the choice is made when the run starts and the report says what and why."""

from __future__ import annotations

from orchestrator.engine.routing import EXPLORE_BELOW, choose, records
from orchestrator.engine.workflow import Step, parse_workflow_data
from orchestrator.store import StepRecord, TokenUsage


def step(
    agent: str,
    status: str = "succeeded",
    *,
    task: str = "implement",
    cost: float | None = 0.01,
    took: float = 10.0,
):
    return StepRecord(
        run_id="r",
        step_id="i1-s1-implement",
        iteration=1,
        index=0,
        agent=agent,
        task=task,
        status=status,
        attempts=1,
        commit=None,
        files_changed=[],
        usage=TokenUsage(cost_usd=cost),
        error_kind=None,
        error_message=None,
        session_id=None,
        started_at=100.0,
        finished_at=100.0 + took,
        detail={},
    )


def test_records_count_only_finished_steps_of_the_task():
    history = [
        step("claude"),
        step("claude", "failed"),
        step("claude", "running"),
        step("claude", task="review"),
    ]
    [claude, codex] = records("implement", history, ["claude", "codex"])
    assert (claude.steps, claude.succeeded, codex.steps) == (2, 1, 0)
    assert claude.mean_cost_usd == 0.01 and claude.mean_duration_s == 10.0 and codex.mean_cost_usd is None


def test_an_untried_candidate_is_explored_first():
    history = [step("claude")] * 5
    choice = choose("implement", history, ["claude", "codex"])
    assert (
        choice is not None and choice.agent == "codex" and choice.reason.startswith("exploring: codex has 0")
    )
    assert EXPLORE_BELOW == 2


def test_success_rate_then_cost_then_duration_decide():
    history = [step("claude"), step("claude", "failed"), step("codex"), step("codex")]
    assert choose("implement", history, ["claude", "codex"]).agent == "codex"  # 2/2 beats 1/2
    cheaper = [
        step("claude", cost=0.05),
        step("claude", cost=0.05),
        step("codex", cost=0.01),
        step("codex", cost=0.01),
    ]
    choice = choose("implement", cheaper, ["claude", "codex"])
    assert choice.agent == "codex" and "codex 2/2 succeeded, $0.0100" in choice.reason
    faster = [step("claude", took=50), step("claude", took=50), step("codex", took=5), step("codex", took=5)]
    assert choose("implement", faster, ["claude", "codex"]).agent == "codex"
    tie = [step("claude"), step("claude"), step("codex"), step("codex")]
    assert choose("implement", tie, ["codex", "claude"]).agent == "codex"  # fallback_order breaks a tie
    assert choose("implement", tie, []) is None


def test_auto_is_accepted_where_an_agent_is_named_and_nowhere_else():
    wf = parse_workflow_data({"steps": [{"agent": "auto", "task": "implement"}]}, file="w", stem="w")[
        0
    ].workflow
    assert isinstance(wf.steps[0], Step) and wf.steps[0].agent == "auto" and wf.routing == ()
