from __future__ import annotations

import itertools

import pytest

from orchestrator.engine.consensus import (
    LINE_WINDOW,
    LOCATED_SIMILARITY,
    UNLOCATED_SIMILARITY,
    build_consensus,
    choose_attempt_reviewer,
    choose_reviewers,
    choose_second_reviewer,
    confirm,
    confirmation_request,
    same_problem,
    similarity,
    words,
)
from orchestrator.engine.review import Finding, ReviewVerdict, parse_review, unparsed_review


def f(message, file="src/app.py", line=10, severity="medium"):
    return Finding(severity=severity, file=file, line=line, message=message)


def rv(*findings, verdict=None):
    return ReviewVerdict(verdict=verdict or ("request_changes" if findings else "approve"), findings=findings)


# Pairs of real-looking phrasings of one problem, and of two different problems, that set the
# thresholds (the module's comment quotes these numbers).
SAME_PROBLEM = [
    ("Missing null check on input in parse()", "parse() does not check for None input"),
    ("The loop is off by one and skips the last element", "Off-by-one: the last item is never processed"),
    (
        "SQL query built with string formatting allows injection",
        "SQL injection: user input is interpolated into the query",
    ),
    ("No test covers the empty list case", "Missing test for an empty list"),
    ("Division by zero when count is 0", "count can be zero here, which raises ZeroDivisionError"),
]
DIFFERENT_PROBLEMS = [
    ("Missing null check on input in parse()", "parse() leaks the file handle"),
    ("No test covers the empty list case", "The loop is off by one and skips the last element"),
    ("Variable name is unclear", "Function is too long"),
]


def test_words_are_normalised():
    assert words("Checks the INPUT, checked inputs; checking!") == {"check", "input"}
    assert words("returns None") == {"return", "null"}
    assert words("the is a of") == frozenset()


@pytest.mark.parametrize(("a", "b"), SAME_PROBLEM)
def test_phrasings_of_one_problem_at_one_place_match(a, b):
    assert similarity(a, b) >= LOCATED_SIMILARITY
    assert same_problem(f(a, line=10), f(b, line=10 + LINE_WINDOW))


@pytest.mark.parametrize(("a", "b"), DIFFERENT_PROBLEMS)
def test_different_problems_at_one_place_do_not_match(a, b):
    assert similarity(a, b) < LOCATED_SIMILARITY
    assert not same_problem(f(a), f(b))


def test_place_rules():
    a = "Missing null check on input in parse()"
    b = "parse() does not check for None input"
    assert not same_problem(f(a, line=10), f(b, line=10 + LINE_WINDOW + 1))  # too far apart
    assert not same_problem(f(a, file="src/a.py"), f(b, file="src/b.py"))
    assert not same_problem(f(a, file=None, line=None), f(b, line=None))  # whole change vs a file
    assert same_problem(f(a, file="./src/app.py"), f(b, file="src/app.py"))
    # without lines it takes more words in common
    off_by_one = SAME_PROBLEM[1]
    assert similarity(*off_by_one) < UNLOCATED_SIMILARITY
    assert not same_problem(f(off_by_one[0], line=None), f(off_by_one[1], line=3))
    assert same_problem(f(a, line=None), f(b, line=99))
    assert same_problem(f("Typo", file=None, line=None), f("typo.", file=None, line=None))


def test_a_cluster_at_quorum_counts_and_one_below_is_dropped():
    reviews = [
        (
            "codex",
            rv(
                f("Missing null check on input in parse()", line=12),
                f("Rename x to count", severity="low", line=40),
            ),
        ),
        ("gemini", rv(f("parse() does not check for None input", line=14))),
        ("copilot", rv(f("The loop is off by one and skips the last element", line=30))),
    ]
    consensus = build_consensus(reviews, quorum=2)
    assert [c.status for c in consensus.clusters] == ["counts", "below_quorum", "below_quorum"]
    counted = consensus.counted[0]
    assert counted.reviewers == ("codex", "gemini")
    assert counted.finding.message == "Missing null check on input in parse()"  # earliest of the most severe
    assert consensus.findings == (counted.finding,)
    assert consensus.verdict == "request_changes"
    assert consensus.verdicts == {
        "codex": "request_changes",
        "gemini": "request_changes",
        "copilot": "request_changes",
    }


def test_the_representative_is_the_most_severe_and_the_cluster_takes_its_severity():
    reviews = [
        ("codex", rv(f("SQL query built with string formatting allows injection", severity="medium"))),
        ("gemini", rv(f("SQL injection: user input is interpolated into the query", severity="high"))),
    ]
    consensus = build_consensus(reviews, quorum=2)
    (cluster,) = consensus.clusters
    assert cluster.severity == "high" and cluster.finding.severity == "high"
    assert cluster.finding.message.startswith("SQL injection")


def test_clusters_do_not_depend_on_the_order_reviewers_answered_in():
    reviews = [
        ("a", rv(f("The loop is off by one and skips the last element", line=30))),
        (
            "b",
            rv(
                f("Off-by-one: the last item is never processed", line=31),
                f("Variable name is unclear", line=5),
            ),
        ),
        ("c", rv(f("off by one in the loop, the last element is skipped", line=29))),
        ("d", rv(f("Function is too long", line=5))),
    ]

    def shape(consensus):
        return sorted((sorted(c.reviewers), c.status) for c in consensus.clusters)

    expected = shape(build_consensus(reviews, quorum=2))
    assert expected == [(["a", "b", "c"], "counts"), (["b"], "below_quorum"), (["d"], "below_quorum")]
    for permutation in itertools.permutations(reviews):
        assert shape(build_consensus(list(permutation), quorum=2)) == expected


def test_one_reviewer_raising_a_thing_twice_is_still_one_reviewer():
    reviews = [
        (
            "codex",
            rv(f("Missing null check on input in parse()"), f("parse() does not check for None input")),
        ),
        ("gemini", rv()),
    ]
    consensus = build_consensus(reviews, quorum=2)
    (cluster,) = consensus.clusters
    assert cluster.reviewers == ("codex",) and len(cluster.members) == 2
    assert cluster.status == "below_quorum"
    assert consensus.verdict == "approve"


def test_a_high_finding_from_one_reviewer_needs_a_second_reviewer():
    reviews = [
        ("codex", rv(f("Division by zero when count is 0", severity="high", line=20))),
        ("gemini", rv()),
        ("copilot", rv(f("Rename x", severity="low"))),
    ]
    consensus = build_consensus(reviews, quorum=2)
    assert consensus.pending == (0,)
    assert consensus.clusters[0].status == "needs_second_reviewer"
    assert consensus.verdict is None  # not decided until the second reviewer answers
    assert consensus.findings == ()

    question = confirmation_request(consensus.clusters[0])
    assert "high-severity" in question and "src/app.py:20" in question and "Division by zero" in question

    second = choose_second_reviewer(
        ["codex", "gemini", "copilot", "claude"], consensus.clusters[0], authors=["claude"]
    )
    assert second == "gemini"

    yes = confirm(
        consensus,
        0,
        "gemini",
        rv(f("count can be zero here, which raises ZeroDivisionError", line=21, severity="high")),
    )
    assert yes.clusters[0].status == "counts" and yes.clusters[0].reviewers == ("codex", "gemini")
    assert yes.clusters[0].confirmed_by == "gemini"
    assert yes.verdict == "request_changes" and len(yes.findings) == 1

    no = confirm(consensus, 0, "gemini", rv())
    assert no.clusters[0].status == "not_confirmed" and no.verdict == "approve" and no.findings == ()

    unrelated = confirm(consensus, 0, "gemini", rv(f("Function is too long", line=21)))
    assert unrelated.clusters[0].status == "not_confirmed"

    garbled = confirm(consensus, 0, "gemini", unparsed_review("sorry, out of tokens"))
    assert garbled == consensus and garbled.pending == (0,)  # still waiting: ask someone else
    assert (
        choose_second_reviewer(["gemini", "copilot"], consensus.clusters[0], authors=[], asked=["gemini"])
        == "copilot"
    )

    with pytest.raises(ValueError, match="another one"):
        confirm(consensus, 0, "codex", rv())
    with pytest.raises(ValueError, match="not waiting"):
        confirm(yes, 0, "copilot", rv())


def test_a_medium_finding_below_quorum_is_not_put_to_a_second_reviewer():
    consensus = build_consensus([("codex", rv(f("Missing test"))), ("gemini", rv())], quorum=2)
    assert consensus.clusters[0].status == "below_quorum" and consensus.pending == ()


def test_the_quorum_is_capped_at_the_readable_reviews_and_unreadable_answers_abstain():
    reviews = [
        ("codex", rv(f("Missing null check on input in parse()"))),
        ("gemini", unparsed_review("I could not finish the review, sorry")),
    ]
    consensus = build_consensus(reviews, quorum=2)
    assert consensus.abstained == ("gemini",) and consensus.effective_quorum == 1
    assert consensus.counted[0].reviewers == ("codex",)
    assert "gemini" not in consensus.verdicts
    assert consensus.verdict == "request_changes"


def test_low_findings_alone_approve_and_no_findings_approve():
    reviews = [
        ("codex", rv(f("Rename x", severity="low"))),
        ("gemini", rv(f("rename x please", severity="low"))),
    ]
    consensus = build_consensus(reviews, quorum=2)
    assert consensus.counted and consensus.verdict == "approve"
    assert build_consensus([("codex", rv()), ("gemini", rv())], quorum=2).verdict == "approve"


def test_reviews_read_from_real_answers_cluster():
    codex = parse_review(
        'Looks mostly fine.\n```json\n{"verdict": "request_changes", "findings": [{"severity": "High", '
        '"file": "calc.py", "line": "7-9", "message": "Division by zero when count is 0"}]}\n```'
    )
    gemini = parse_review(
        '{"verdict": "changes requested", "findings": [{"severity": "major", "file": "./calc.py", "line": 8, '
        '"message": "count can be zero here, which raises ZeroDivisionError",}]}'
    )
    assert codex and gemini
    consensus = build_consensus([("codex", codex), ("gemini", gemini)], quorum=2)
    assert [c.status for c in consensus.clusters] == ["counts"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="quorum"):
        build_consensus([], quorum=0)
    with pytest.raises(ValueError, match="once"):
        build_consensus([("codex", rv()), ("codex", rv())], quorum=1)
    empty = build_consensus([], quorum=2)
    assert empty.clusters == () and empty.verdict == "approve" and empty.effective_quorum == 1


# --- who reviews ------------------------------------------------------------------------------


def test_the_author_never_reviews_its_own_work():
    choice = choose_reviewers(["claude", "codex", "gemini", "codex", "copilot"], authors=["claude"], count=2)
    assert choice.chosen == ("codex", "gemini") and choice.excluded == ("claude",) and choice.short_by == 0
    all_of_them = choose_reviewers(["claude", "codex", "gemini"], authors={"claude", "codex"})
    assert all_of_them.chosen == ("gemini",) and all_of_them.short_by == 0
    short = choose_reviewers(["claude", "codex"], authors=["claude"], count=3)
    assert short.chosen == ("codex",) and short.short_by == 2
    nobody = choose_reviewers(["claude"], authors=["claude"], count=1)
    assert nobody.chosen == () and nobody.short_by == 1


def test_an_attempt_is_reviewed_by_a_cli_that_wrote_none_where_possible():
    pool = ["claude", "codex", "gemini", "copilot"]
    attempts = ["claude", "codex", "gemini"]
    assert choose_attempt_reviewer(pool, author="claude", all_authors=attempts) == "copilot"
    # every CLI wrote an attempt: any but the author
    assert (
        choose_attempt_reviewer(["claude", "codex"], author="claude", all_authors=["claude", "codex"])
        == "codex"
    )
    assert (
        choose_attempt_reviewer(["codex", "claude"], author="codex", all_authors=["claude", "codex"])
        == "claude"
    )
    assert choose_attempt_reviewer(["claude"], author="claude", all_authors=["claude"]) is None


def test_the_second_reviewer_is_nobody_who_raised_it_wrote_it_or_was_asked():
    consensus = build_consensus([("codex", rv(f("Bad", severity="high")))], quorum=2)
    cluster = consensus.clusters[0]
    pool = ["codex", "claude", "gemini", "copilot"]
    assert choose_second_reviewer(pool, cluster, authors=["claude"]) == "gemini"
    assert choose_second_reviewer(pool, cluster, authors=["claude"], asked=["gemini"]) == "copilot"
    assert choose_second_reviewer(pool, cluster, authors=["claude", "gemini", "copilot"]) is None
