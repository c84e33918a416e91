"""The workflow language of parallel, conditional and consensus steps: accepted as the issue shows it,
anything else refused at load with its key path and what is allowed."""

from __future__ import annotations

import pytest

from orchestrator.engine.workflow import (
    AttemptsStep,
    ConsensusStep,
    GateStep,
    Step,
    WorkflowInvalid,
    instance_names,
    parse_workflow_data,
)

CONTRACT = {
    "max_iterations": 3,
    "limits": {"concurrency": 4, "per_agent": {"claude": 2}},
    "steps": [
        {
            "task": "implement",
            "attempts": ["claude", "codex", "gemini"],
            "select": ["gates", "review", "smallest_diff", "cost"],
        },
        {"run": "auto"},
        {"task": "review", "reviewers": ["codex", "gemini", "copilot"], "quorum": 2},
        {"task": "refine", "agent": "claude", "when": "review.verdict == 'request_changes'"},
    ],
}


def load(data):
    return parse_workflow_data(data, file="wf.yaml", stem="wf")[0].workflow


def problem(data):
    with pytest.raises(WorkflowInvalid) as info:
        load(data)
    return info.value


def test_the_issue_s_workflow_loads_as_written():
    wf = load(CONTRACT)
    attempts, gate, review, refine = wf.steps
    assert isinstance(attempts, AttemptsStep) and attempts.names == ("claude", "codex", "gemini")
    assert attempts.select == ("gates", "review", "smallest_diff", "cost")
    assert isinstance(gate, GateStep) and gate.is_auto
    assert isinstance(review, ConsensusStep) and review.quorum == 2 and review.read_only
    assert isinstance(refine, Step) and refine.when == "review.verdict == 'request_changes'"
    assert wf.limits.concurrency == 4 and wf.limits.per_agent == {"claude": 2}
    assert wf.has_review and wf.edits
    assert wf.agents == ("claude", "codex", "gemini", "copilot")
    # Later iterations do not implement again, a best of N included.
    assert [i for i, _ in wf.steps_for_iteration(2)] == [1, 2, 3]
    # The resolved workflow survives the store's JSON round trip.
    assert type(wf).model_validate(wf.model_dump(mode="json")) == wf


def test_defaults_select_quorum_and_limits():
    wf = load(
        {
            "steps": [
                {"task": "implement", "attempts": ["fake", "fake"]},
                {"task": "review", "reviewers": ["fake", "fake", "fake"]},
            ]
        }
    )
    attempts, review = wf.steps
    assert attempts.select == ("gates", "review", "smallest_diff", "cost")
    assert attempts.names == ("fake", "fake-2") and review.names == ("fake", "fake-2", "fake-3")
    assert review.quorum == 2 and wf.limits.concurrency == 4 and wf.limits.per_agent == {}


def test_instance_names_number_repeats_only():
    assert instance_names(("claude", "codex", "claude", "claude")) == (
        "claude",
        "codex",
        "claude-2",
        "claude-3",
    )


@pytest.mark.parametrize(
    ("step", "key_path", "message_part", "allowed_part"),
    [
        (
            {"task": "implement", "attempts": ["claude", "codex"], "retries": 2},
            "steps[0].retries",
            "unknown key",
            "select",
        ),
        ({"task": "implement", "attempts": ["claude"]}, "steps[0].attempts", "at least 2", None),
        (
            {"task": "implement", "attempts": ["claude", "nobody"]},
            "steps[0].attempts[1]",
            "unknown agent",
            "codex",
        ),
        (
            {"task": "implement", "attempts": ["claude", "codex"], "select": ["gates", "speed"]},
            "steps[0].select",
            "speed",
            "smallest_diff",
        ),
        (
            {"task": "implement", "attempts": ["claude", "codex"], "select": ["cost", "cost"]},
            "steps[0].select",
            "twice",
            None,
        ),
        ({"task": "review", "attempts": ["claude", "codex"]}, "steps[0].task", "edits files", "implement"),
        (
            {"task": "review", "reviewers": ["codex", "gemini"], "quorum": 3},
            "steps[0]",
            "quorum 3 is more than the 2 reviewers",
            "1 to 2",
        ),
        ({"task": "refine", "reviewers": ["codex", "gemini"]}, "steps[0].task", "not allowed", "review"),
        (
            {"task": "review", "reviewers": ["codex", "gemini"], "agent": "claude"},
            "steps[0].agent",
            "unknown key",
            "reviewers",
        ),
        (
            {"task": "refine", "agent": "claude", "when": "review.verdict == 'aprove'"},
            "steps[0].when",
            "never 'aprove'",
            "'request_changes'",
        ),
        (
            {"task": "refine", "agent": "claude", "when": "reviews.verdict"},
            "steps[0].when",
            "did you mean",
            None,
        ),
        ({"task": "refine", "agent": "claude", "when": "__import__('os')"}, "steps[0].when", "column", None),
    ],
)
def test_invalid_steps_are_refused_at_load(step, key_path, message_part, allowed_part):
    error = problem({"steps": [step]})
    first = error.problems[0]
    assert first.key_path == key_path, error.message
    assert message_part in first.message, error.message
    if allowed_part is not None:
        assert first.allowed is not None and allowed_part in first.allowed


@pytest.mark.parametrize(
    ("limits", "key_path"),
    [
        ({"concurrency": 0}, "limits.concurrency"),
        ({"per_agent": {"nobody": 1}}, "limits.per_agent"),
        ({"parallel": 2}, "limits.parallel"),
    ],
)
def test_invalid_limits_are_refused(limits, key_path):
    error = problem({"limits": limits, "steps": [{"agent": "fake", "task": "implement"}]})
    assert error.problems[0].key_path.startswith(key_path), error.message


def test_a_step_of_no_kind_says_every_kind():
    error = problem({"steps": [{"description": "what"}]})
    assert "attempts" in (error.problems[0].allowed or "") and "reviewers" in (
        error.problems[0].allowed or ""
    )


def test_the_issue_s_plan_workflow_loads_as_written():
    from orchestrator.engine.workflow import ForEachStep, MergeStep, PlanStep

    wf = load(
        {
            "steps": [
                {"task": "plan", "agent": "claude", "max_subtasks": 6},
                {"task": "implement", "for_each": "subtask", "agents": ["claude", "codex"]},
                {"merge": "subtasks"},
                {"run": "auto"},
                {"task": "review", "agent": "codex"},
            ]
        }
    )
    plan, each, merge, _, review = wf.steps
    assert isinstance(plan, PlanStep) and plan.max_subtasks == 6 and plan.read_only
    assert isinstance(each, ForEachStep) and each.agents == ("claude", "codex") and not each.read_only
    assert isinstance(merge, MergeStep) and merge.agents == () and merge.task == "merge"
    assert isinstance(review, Step)
    # Planning, subtasks and the merge happen once; later iterations work on the findings.
    assert [i for i, _ in wf.steps_for_iteration(2)] == [3, 4]
    assert type(wf).model_validate(wf.model_dump(mode="json")) == wf


@pytest.mark.parametrize(
    ("step", "key_path", "message_part"),
    [
        ({"task": "plan", "agent": "claude", "max_subtasks": 0}, "steps[0].max_subtasks", "greater than"),
        ({"task": "plan", "agent": "claude", "subtasks": 3}, "steps[0].subtasks", "unknown key"),
        ({"task": "review", "for_each": "subtask", "agents": ["codex"]}, "steps[0].task", "edits files"),
        ({"task": "implement", "for_each": "file", "agents": ["codex"]}, "steps[0].for_each", "not allowed"),
        ({"task": "implement", "for_each": "subtask", "agents": []}, "steps[0].agents", "at least 1"),
        ({"merge": "everything"}, "steps[0].merge", "not allowed"),
        ({"merge": "subtasks", "agent": "codex"}, "steps[0].agent", "unknown key"),
    ],
)
def test_invalid_plan_steps_are_refused_at_load(step, key_path, message_part):
    error = problem({"steps": [step]})
    first = error.problems[0]
    assert first.key_path == key_path, error.message
    assert message_part in first.message, error.message
