"""The built-in `best-of-3` end to end with the real CLIs, each against a scripted model server of its own:
three attempts at once, each reviewed read-only by the CLI that wrote none of them, the smallest diff wins."""

from __future__ import annotations

import json

from orchestrator.proc import run_command

from .workflow_run import run_workflow

APPROVE = {"text": 'Fine.\n```json\n{"verdict": "approve", "findings": []}\n```'}


def write(content: str) -> list[dict]:
    return [{"write_file": {"path": "calc.py", "content": content}}, {"text": "Added divide()."}]


TURNS = {
    "claude": write("def divide(a, b):\n    return a / b\n"),
    "codex": write("def divide(a, b):\n    # divide a by b\n    result = a / b\n    return result\n"),
    "gemini": write("def divide(a, b):\n    '''a / b'''\n    return a / b\n"),
    # one review of each attempt (the three at once: every answer alike), then the workflow's review
    "copilot": [APPROVE, APPROVE, APPROVE, APPROVE],
}


def test_best_of_3_reviews_each_attempt_and_the_smallest_diff_becomes_the_run_branch(tmp_path):
    run = run_workflow(tmp_path, TURNS, task="add divide()", workflow="best-of-3")
    repo, report = run.repo, run.report
    assert report.status == "approved", report.to_json()[-3000:]
    [group] = json.loads(report.to_json())["attempts"]
    assert group["winner"] == "claude"
    by_name = {a["name"]: a for a in group["attempts"]}
    assert set(by_name) == {"claude", "codex", "gemini"}
    assert all(
        a["completed"] and a["reviewer"] == "copilot" and a["review_verdict"] == "approve"
        for a in by_name.values()
    )
    assert by_name["claude"]["diff_lines"] < by_name["gemini"]["diff_lines"] < by_name["codex"]["diff_lines"]
    assert all(a["cost_usd"] is not None for a in by_name.values())
    assert all(run.turns_used[a] == len(TURNS[a]) for a in TURNS)
    # The winner is the run branch; every attempt stays on a branch of its own.
    assert (
        run_command(["git", "show", f"{report.branch}:calc.py"], repo).stdout
        == TURNS["claude"][0]["write_file"]["content"]
    )
    for name, attempt in by_name.items():
        tip = run_command(["git", "rev-parse", attempt["branch"]], repo).stdout.strip()
        assert attempt["branch"] == f"orchestrator/{report.run_id}-{name}" and tip == attempt["commit"]
    assert run.checkout_unchanged
