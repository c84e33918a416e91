"""The built-in `plan` end to end with the real CLIs, each against a scripted model server of its own:
claude plans, claude and codex implement a subtask each at once, the merges go in, codex reviews."""

from __future__ import annotations

import json

from orchestrator.proc import run_command

from .workflow_run import run_workflow

PLAN = {
    "subtasks": [
        {"id": "add", "prompt": "Write add(a, b) in add.py.", "depends_on": [], "files": ["add.py"]},
        {"id": "sub", "prompt": "Write sub(a, b) in sub.py.", "depends_on": [], "files": ["sub.py"]},
    ]
}
TURNS = {
    "claude": [
        {"text": "Two independent parts.\n```json\n" + json.dumps(PLAN) + "\n```"},
        {"write_file": {"path": "add.py", "content": "def add(a, b):\n    return a + b\n"}},
        {"text": "add() written."},
    ],
    "codex": [
        {"write_file": {"path": "sub.py", "content": "def sub(a, b):\n    return a - b\n"}},
        {"text": "sub() written."},
        {"text": 'Both parts are right.\n```json\n{"verdict": "approve", "findings": []}\n```'},
    ],
    "gemini": [],  # the refine step is not needed
}


def test_plan_splits_the_task_runs_the_subtasks_at_once_and_merges_them(tmp_path):
    run = run_workflow(tmp_path, TURNS, task="add add() and sub()", workflow="plan", readme="# ops\n")
    repo, report = run.repo, run.report
    assert report.status == "approved", report.to_json()[-3000:]
    [graph] = json.loads(report.to_json())["subtasks"]
    by_id = {s["id"]: s for s in graph["subtasks"]}
    assert {(i, s["agent"], s["state"]) for i, s in by_id.items()} == {
        ("add", "claude", "merged"),
        ("sub", "codex", "merged"),
    }
    assert sorted(graph["merge_order"]) == ["add", "sub"]
    assert all(run.turns_used[a] == len(TURNS[a]) for a in TURNS)
    files = run_command(["git", "ls-tree", "--name-only", report.branch], repo).stdout.split()
    assert {"add.py", "sub.py"} <= set(files)
    for s in by_id.values():
        assert run_command(["git", "rev-parse", s["branch"]], repo).stdout.strip() == s["commit"]
    assert run.checkout_unchanged
