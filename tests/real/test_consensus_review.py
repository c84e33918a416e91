"""The built-in `consensus-review` end to end with the real CLIs, each against a scripted model server of
its own (the reviewers run at once, so one shared script would be answered in a racy order)."""

from __future__ import annotations

import json

from orchestrator.proc import run_command

from .workflow_run import run_workflow

MISSING_CHECK = {
    "severity": "medium",
    "file": "calc.py",
    "line": 2,
    "message": "divide() does not check for a zero divisor",
}
SAME_PROBLEM = {
    "severity": "medium",
    "file": "calc.py",
    "line": 3,
    "message": "no check for zero divisor in divide()",
}


def review(verdict: str, *findings: dict) -> dict:
    return {
        "text": "Reviewed.\n```json\n"
        + json.dumps({"verdict": verdict, "findings": list(findings)})
        + "\n```"
    }


APPROVE = review("approve")
TURNS = {
    "claude": [
        {"write_file": {"path": "calc.py", "content": "def divide(a, b):\n    return a / b\n"}},
        {"text": "Added divide()."},
        # refine, after the reviewers agreed on the missing check
        {
            "write_file": {
                "path": "calc.py",
                "content": "def divide(a, b):\n    if b == 0:\n        raise ZeroDivisionError('b is 0')\n    return a / b\n",
            }
        },
        {"text": "divide() checks for a zero divisor."},
    ],
    "codex": [review("request_changes", MISSING_CHECK), APPROVE],
    "gemini": [review("request_changes", SAME_PROBLEM), APPROVE],
    "copilot": [
        review(
            "request_changes",
            {"severity": "low", "file": "calc.py", "line": 1, "message": "name the module math_ops"},
        ),
        APPROVE,
    ],
}


def test_consensus_review_counts_what_two_reviewers_raise_then_approves_the_refined_change(tmp_path):
    run = run_workflow(tmp_path, TURNS, task="add divide()", workflow="consensus-review")
    repo, report = run.repo, run.report
    assert report.status == "approved", report.to_json()[-3000:]
    first, second = json.loads(report.to_json())["reviews"]
    assert first["verdict"] == "request_changes" and second["verdict"] == "approve"
    assert {r["reviewer"]: r["verdict"] for r in first["reviewers"]} == {
        "codex": "request_changes",
        "gemini": "request_changes",
        "copilot": "request_changes",
    }
    counted = [c for c in first["clusters"] if c["status"] == "counts"]
    assert [sorted(c["reviewers"]) for c in counted] == [["codex", "gemini"]]
    # The refine step got the finding two reviewers agreed on, not copilot's lone low one.
    statuses = {s.id: s.status for s in report.steps}
    assert statuses["i1-s4-refine"] == "succeeded"
    assert all(run.turns_used[a] == len(TURNS[a]) for a in TURNS)
    shown = run_command(["git", "show", f"{report.branch}:calc.py"], repo).stdout
    assert "b == 0" in shown
    assert run.checkout_unchanged
