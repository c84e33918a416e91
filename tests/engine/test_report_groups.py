"""The report's groups while they run (built from the members' own steps) and their lines for people
(pure; never wider than 80 columns, agents' control characters dropped)."""

from __future__ import annotations

import pytest

from orchestrator.engine.report import build_report
from orchestrator.engine.report_group_lines import attempt_lines, group_lines, review_lines, subtask_lines
from orchestrator.engine.report_render import render_text
from orchestrator.store import Store, TokenUsage

RUN = "20261203-070000-abcdef"
SHA = "3333333333aaaaaaaaaabbbbbbbbbbcccccccccc"
ATTEMPTS = {"task": "implement", "attempts": ["fake", "fake", "codex"], "select": ["gates", "review"]}
PLAN = {"task": "plan", "agent": "fake"}
FOR_EACH = {"task": "implement", "for_each": "subtask", "agents": ["fake", "codex"]}
CONSENSUS = {"task": "review", "reviewers": ["codex", "gemini"], "quorum": 2}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "orchestrator.db") as opened:
        yield opened


def new_run(store: Store, tmp_path, steps: list[dict]) -> None:
    store.create_run(
        run_id=RUN,
        repo=tmp_path,
        task="t",
        workflow_name="w",
        workflow={"steps": steps},
        base="main",
        branch=f"orchestrator/{RUN}",
    )


def start(store: Store, step_id: str, index: int, agent: str, task: str) -> None:
    store.start_step(RUN, step_id, iteration=1, index=index, agent=agent, task=task)


def attempt(name: str, agent: str, **fields) -> dict:
    return {
        "name": name,
        "agent": agent,
        "step_id": f"i1-s1-implement-{name}",
        "branch": f"orchestrator/{RUN}-{name}",
        "completed": True,
        "commit": SHA,
        "diff_lines": 4,
        "gates_passed": 1,
        "gates_total": 1,
        "cost_usd": 0.0012,
        "error": None,
        "reviewer": None,
        "review_verdict": None,
        "review_score": None,
        **fields,
    }


def test_attempts_show_as_they_go_from_the_members_steps(store, tmp_path):
    new_run(store, tmp_path, [ATTEMPTS])
    start(store, "i1-s1-implement", 0, "fake", "implement")
    start(store, "i1-s1-implement-fake", 0, "fake", "implement")  # still working
    start(store, "i1-s1-implement-fake-2", 0, "fake", "implement")
    store.finish_step(
        RUN,
        "i1-s1-implement-fake-2",
        status="succeeded",
        commit=SHA,
        usage=TokenUsage(cost_usd=0.0012),
        detail={"attempt": attempt("fake-2", "fake")},
    )
    start(store, "i1-s1-implement-fake-2-review", 0, "codex", "review")  # its review, under way
    [group] = build_report(store, RUN).attempts
    assert group["running"] is True and group["winner"] is None and group["select"] == ["gates", "review"]
    rows = {a["name"]: a for a in group["attempts"]}
    assert list(rows) == ["fake", "fake-2", "codex"]  # codex's attempt has not started yet
    assert [rows[n]["state"] for n in rows] == ["running", "reviewing", "waiting"]
    assert rows["fake-2"]["reviewer"] == "codex" and rows["fake-2"]["diff_lines"] == 4
    assert rows["codex"]["branch"] == f"orchestrator/{RUN}-codex"
    lines = group_lines(build_report(store, RUN).attempts, [], [], [])
    assert lines[0] == "attempts (i1-s1-implement): running, by gates, review"
    assert "    fake-2     reviewing  1/1   codex reviewing            4   $0.0012" in lines


def test_a_decided_group_marks_the_winner_and_says_why(store, tmp_path):
    new_run(store, tmp_path, [ATTEMPTS])
    start(store, "i1-s1-implement", 0, "fake", "implement")
    detail = {
        "attempts": [
            attempt("fake", "fake", review_verdict="request_changes", review_score=-1.0, reviewer="gemini"),
            attempt("fake-2", "fake", review_verdict="approve", review_score=1.0, reviewer="gemini"),
            attempt("codex", "codex", completed=False, commit=None, error="rate_limit: 429 " * 12),
        ],
        "winner": "fake-2",
        "select": ["gates", "review"],
        "explain": "chosen: fake-2 (by gates, review)\nfake-2 before fake on review: 1 vs -1",
    }
    store.finish_step(RUN, "i1-s1-implement", status="succeeded", commit=SHA, detail=detail)
    [group] = build_report(store, RUN).attempts
    assert group["running"] is False
    assert [a["state"] for a in group["attempts"]] == ["not chosen", "chosen", "failed"]
    lines = attempt_lines(group)
    assert "  * fake-2     chosen     1/1   gemini approve +1          4   $0.0012" in lines
    assert "    fake       not chosen 1/1   gemini changes -1          4   $0.0012" in lines
    assert "  why: fake-2 before fake on review: 1 vs -1" in lines
    assert f"  branch codex: orchestrator/{RUN}-codex" in lines
    assert all(len(line) <= 80 for line in lines)
    assert sum(1 for line in lines if "rate_limit" in line) >= 2  # the long error wraps, not cut


def test_subtasks_show_the_plan_s_graph_with_each_state_while_it_runs(store, tmp_path):
    new_run(store, tmp_path, [PLAN, FOR_EACH])
    plan = {
        "subtasks": [
            {"id": "api", "prompt": "p", "depends_on": [], "files": []},
            {"id": "ui", "prompt": "p", "depends_on": ["api"], "files": []},
            {"id": "docs", "prompt": "p", "depends_on": [], "files": []},
        ]
    }
    start(store, "i1-s1-plan", 0, "fake", "plan")
    store.finish_step(RUN, "i1-s1-plan", status="succeeded", detail={"plan": plan})
    start(store, "i1-s2-implement", 1, "fake", "implement")
    start(store, "i1-s2-implement-api", 1, "fake", "implement")
    merged = {
        "id": "api",
        "agent": "fake",
        "step_id": "i1-s2-implement-api",
        "branch": f"orchestrator/{RUN}-st-api",
        "depends_on": [],
        "state": "merged",
        "commit": SHA,
        "merge_commit": SHA,
        "conflicts": [],
        "error": None,
    }
    store.finish_step(RUN, "i1-s2-implement-api", status="succeeded", detail={"subtask": merged})
    start(store, "i1-s2-implement-docs", 1, "fake", "implement")
    [graph] = build_report(store, RUN).subtasks
    assert graph["running"] is True and graph["merge_order"] == ["api"]
    states = {s["id"]: (s["state"], s["agent"], s["depends_on"]) for s in graph["subtasks"]}
    assert states == {
        "api": ("merged", "fake", []),
        "ui": ("pending", "codex", ["api"]),  # agents in turn, as for_each hands them out
        "docs": ("running", "fake", []),
    }
    lines = subtask_lines(graph)
    assert lines[0] == "subtasks (i1-s2-implement): running, 1 of 3 merged, in order api"
    assert "  ui             pending     codex    api                      -" in lines
    assert "  api            merged      fake     -                        33333333" in lines


def test_a_consensus_review_shows_each_reviewer_as_it_answers(store, tmp_path):
    new_run(store, tmp_path, [CONSENSUS])
    start(store, "i1-s1-review", 0, "codex", "review")
    start(store, "i1-s1-review-codex", 0, "codex", "review")
    store.finish_step(
        RUN,
        "i1-s1-review-codex",
        status="succeeded",
        detail={"review": {"verdict": "request_changes", "findings": []}},
    )
    start(store, "i1-s1-review-gemini", 0, "gemini", "review")
    [review] = build_report(store, RUN).reviews
    assert review["running"] is True and review["quorum"] == 2
    assert [(r["reviewer"], r["verdict"]) for r in review["reviewers"]] == [
        ("codex", "request_changes"),
        ("gemini", None),
    ]
    assert review_lines(review) == [
        "reviews (i1-s1-review): running; quorum 2",
        "  reviewers: codex request_changes, gemini reviewing",
    ]


def test_clusters_say_how_many_raised_them_and_whether_quorum_was_reached():
    review = {
        "step": "i1-s3-review",
        "running": False,
        "verdict": "request_changes",
        "quorum": 2,
        "effective_quorum": 2,
        "reviewers": [
            {"reviewer": "codex", "verdict": "request_changes"},
            {"reviewer": "gemini", "verdict": "request_changes"},
            {"reviewer": "copilot", "verdict": None},
        ],
        "clusters": [
            {
                "status": "counts",
                "severity": "high",
                "reviewers": ["codex", "gemini"],
                "confirmed_by": None,
                "finding": {"file": "calc.py", "line": 3, "message": "divide by zero\x1b[31m is not handled"},
            },
            {
                "status": "not_confirmed",
                "severity": "high",
                "reviewers": ["codex"],
                "confirmed_by": "gemini",
                "finding": {"file": None, "line": None, "message": "word " * 40},
            },
        ],
    }
    lines = review_lines(review)
    assert lines[0] == "reviews (i1-s3-review): request_changes; quorum 2: reached by 1 of 2 findings"
    assert lines[1] == "  reviewers: codex request_changes, gemini request_changes, copilot no answer"
    assert "  [high] counted, 2 reviewers: codex, gemini" in lines
    assert "      calc.py:3 divide by zero [31m is not handled" in lines  # no escape reaches the terminal
    assert "  [high] not confirmed, 1 reviewer: codex; second look by gemini" in lines
    assert all(len(line) <= 80 and "\x1b" not in line for line in lines)


def test_render_text_of_a_run_with_a_running_group_fits_80_columns_in_its_group_lines(store, tmp_path):
    new_run(store, tmp_path, [ATTEMPTS])
    start(store, "i1-s1-implement", 0, "fake", "implement")
    text = render_text(build_report(store, RUN))
    group = text[text.index("attempts (") : text.index("total:")]
    assert "    fake       waiting    0/0   -" in group
    assert all(len(line) <= 80 for line in group.splitlines())
