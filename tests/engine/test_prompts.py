from __future__ import annotations

import pytest

from orchestrator.engine.prompts import (
    MAX_FINDINGS_SHOWN,
    MAX_GATE_TAIL_CHARS,
    RENDERERS,
    GateFailure,
    PromptContext,
    render_document,
    render_followup,
    render_implement,
    render_refine,
    render_review,
    render_review_retry,
    render_step,
    render_suggestions,
)
from orchestrator.engine.review import REVIEW_FORMAT_INSTRUCTIONS, Finding, parse_review
from orchestrator.engine.workflow import TASKS

TASK = "Add a --verbose flag to the CLI"
DIFF = "diff --git a/cli.py b/cli.py\n--- a/cli.py\n+++ b/cli.py\n@@ -1 +1,2 @@\n+VERBOSE = False\n"
FINDING = Finding(severity="high", file="cli.py", line=2, message="VERBOSE is never read")
GATE = GateFailure(
    name="tests", command="pytest -q", exit_code=1, output_tail="FAILED tests/test_cli.py::test_verbose"
)

FULL = PromptContext(
    task=TASK,
    iteration=2,
    description="Look at the flag handling",
    diff=DIFF,
    files=("cli.py", "tests/test_cli.py"),
    diff_note="1 file not shown: the diff was cut at 60000 characters",
    findings=(FINDING,),
    suggestions=(Finding(severity="low", message="use logging instead of a global"),),
    failing_gates=(GATE,),
)


def test_every_task_has_a_renderer():
    assert set(RENDERERS) == set(TASKS)
    for task in TASKS:
        text = render_step(task, FULL)
        assert TASK in text and text.endswith("\n") and "\n\n\n" not in text


def test_implement_carries_only_what_it_needs():
    text = render_implement(PromptContext(task=TASK, description="Make the change"))
    assert TASK in text and "This step: Make the change" in text
    assert "Do not commit" in text
    for absent in ("read-only", "verdict", "Findings", "Changes since the base", "iteration"):
        assert absent not in text


def test_review_is_read_only_and_asks_for_the_json_verdict():
    text = render_review(FULL)
    assert "read-only" in text and "Do not create, edit or delete files" in text
    assert REVIEW_FORMAT_INSTRUCTIONS in text
    assert text.rstrip().endswith(REVIEW_FORMAT_INSTRUCTIONS.rstrip())  # the format is the last word
    assert "- cli.py\n- tests/test_cli.py" in text and DIFF.rstrip() in text and FULL.diff_note in text
    assert "[high] cli.py:2: VERBOSE is never read" in text and "Repeat only those that are not" in text
    assert "`pytest -q` (tests) failed, exit code 1" in text and GATE.output_tail in text
    assert "use logging instead of a global" in text
    assert "iteration 2" in text
    assert "Do not commit" not in text


def test_a_prompt_never_parses_as_a_verdict():
    # A CLI that echoes its prompt must not be read as having answered.
    for task in TASKS:
        assert parse_review(render_step(task, FULL)) is None
    assert parse_review(render_review_retry("I approve.")) is None


def test_first_review_without_changes():
    text = render_review(PromptContext(task=TASK))
    assert "There are no changes yet." in text
    assert "previous review" not in text and "Failing checks" not in text and "iteration" not in text


def test_refine_lists_the_findings_gates_and_suggestions():
    text = render_refine(FULL)
    assert "Fix each one" in text and "[high] cli.py:2: VERBOSE is never read" in text
    assert "Make these pass." in text and GATE.output_tail in text
    assert "they are optional" in text
    assert "Do not commit" in text and "read-only" not in text
    assert text.index("Findings to address") < text.index("Changes since the base")


def test_suggestions_are_read_only_and_do_not_repeat_findings():
    text = render_suggestions(FULL)
    assert "read-only" in text and REVIEW_FORMAT_INSTRUCTIONS in text and "Do not repeat them." in text


def test_document_changes_docs_only_and_takes_review_findings():
    text = render_document(FULL)
    assert "documentation" in text and "not behaviour" in text and "Address each one." in text
    assert "read-only" not in text


def test_followup():
    text = render_followup(FULL, "Also add --quiet")
    assert "Also add --quiet" in text and TASK in text and DIFF.rstrip() in text
    assert text.index("Earlier task") < text.index("What to do now")


def test_review_retry_carries_the_answer_and_cuts_it():
    text = render_review_retry("The change looks right to me.")
    assert "The change looks right to me." in text and REVIEW_FORMAT_INSTRUCTIONS in text
    long = render_review_retry("a" * 7000 + "THE END", limit=100)
    assert "[...]" in long and "THE END" in long and "a" * 101 not in long


def test_a_diff_with_backticks_gets_a_longer_fence():
    diff = "+```python\n+print(1)\n+```\n"
    text = render_review(PromptContext(task=TASK, diff=diff, files=("README.md",)))
    assert "````diff\n" + diff.rstrip() + "\n````" in text


def test_findings_and_gate_output_are_capped():
    many = tuple(Finding(message=f"problem {i}") for i in range(MAX_FINDINGS_SHOWN + 5))
    huge = GateFailure(name="t", command="make test", exit_code=None, output_tail="x" * 10_000 + "LAST LINE")
    text = render_refine(PromptContext(task=TASK, findings=many, failing_gates=(huge,)))
    assert f"{MAX_FINDINGS_SHOWN}. [medium]: problem {MAX_FINDINGS_SHOWN - 1}" in text
    assert f"problem {MAX_FINDINGS_SHOWN}\n" not in text and "... and 5 more" in text
    assert "timed out" in text and "LAST LINE" in text and "x" * (MAX_GATE_TAIL_CHARS + 1) not in text


def test_multi_line_findings_stay_under_their_number():
    text = render_refine(PromptContext(task=TASK, findings=(Finding(message="first line\nsecond line"),)))
    assert "1. [medium]: first line\n   second line" in text


@pytest.mark.parametrize("task", TASKS)
def test_rendering_is_pure(task):
    assert render_step(task, FULL) == render_step(task, FULL)
