from __future__ import annotations

import json
import time

import pytest

from orchestrator.engine.review import (
    REVIEW_FORMAT_INSTRUCTIONS,
    Finding,
    ReviewVerdict,
    findings_fingerprint,
    parse_review,
    unparsed_review,
)

FENCED_ANSWER = """\
I read the diff. The parser handles the new flag, but two things need work.

```json
{
  "verdict": "request_changes",
  "findings": [
    {"severity": "high", "file": "src/cli.py", "line": 42, "message": "--verbose is parsed but never used"},
    {"severity": "low", "file": null, "line": null, "message": "No changelog entry"}
  ]
}
```
"""


def test_fenced_object_after_prose():
    review = parse_review(FENCED_ANSWER)
    assert review == ReviewVerdict(
        verdict="request_changes",
        findings=(
            Finding(
                severity="high", file="src/cli.py", line=42, message="--verbose is parsed but never used"
            ),
            Finding(severity="low", file=None, line=None, message="No changelog entry"),
        ),
    )
    assert not review.approved and not review.unparsed


def test_bare_object_with_prose_after_it():
    review = parse_review('Looks fine. {"verdict": "approve", "findings": []} Thanks!')
    assert review is not None and review.approved and review.findings == ()


def test_last_valid_object_wins():
    text = (
        'First thought: {"verdict": "approve", "findings": []}\n'
        "On a second look, no:\n"
        '{"verdict": "request_changes", "findings": [{"severity": "medium", "message": "missing test"}]}'
    )
    review = parse_review(text)
    assert review is not None
    assert review.verdict == "request_changes"
    assert [f.message for f in review.findings] == ["missing test"]


def test_an_invalid_last_object_does_not_hide_an_earlier_valid_one():
    text = '{"verdict": "approve", "findings": []}\nAnd some data: {"verdict": "maybe"} {"count": 3}'
    review = parse_review(text)
    assert review is not None and review.approved


def test_trailing_commas_are_tolerated():
    text = '{"verdict": "request_changes", "findings": [{"severity": "high", "message": "bug",},],}'
    review = parse_review(text)
    assert review is not None
    assert review.findings == (Finding(severity="high", message="bug"),)


def test_braces_and_quotes_inside_messages_do_not_confuse_the_parser():
    text = (
        '{"verdict": "request_changes", "findings": [{"severity": "low", "file": "a.py", "line": 3, '
        '"message": "use {} not dict(), and \\"}\\" in f-strings, trailing ,}"}]}'
    )
    review = parse_review(text)
    assert review is not None
    assert review.findings[0].message == 'use {} not dict(), and "}" in f-strings, trailing ,}'


@pytest.mark.parametrize(
    ("word", "verdict"),
    [
        ("APPROVE", "approve"),
        ("Approved", "approve"),
        ("LGTM", "approve"),
        ("Request Changes", "request_changes"),
        ("request-changes", "request_changes"),
        ("changes_requested", "request_changes"),
    ],
)
def test_verdict_words(word, verdict):
    review = parse_review(f'{{"verdict": "{word}"}}')
    assert review is not None and review.verdict == verdict


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("High", "high"),
        ("CRITICAL", "high"),
        ("Medium", "medium"),
        ("minor", "low"),
        ("nit", "low"),
        ("weird", "medium"),
        (3, "medium"),
    ],
)
def test_severity_case_and_synonyms(severity, expected):

    text = json.dumps({"verdict": "request_changes", "findings": [{"severity": severity, "message": "m"}]})
    review = parse_review(text)
    assert review is not None and review.findings[0].severity == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [(7, 7), ("12", 12), ("12-15", 12), (0, None), (-3, None), (True, None), ("n/a", None), (None, None)],
)
def test_line_numbers(line, expected):

    text = json.dumps(
        {"verdict": "request_changes", "findings": [{"line": line, "file": "x.py", "message": "m"}]}
    )
    review = parse_review(text)
    assert review is not None and review.findings[0].line == expected


def test_file_and_message_forms():
    text = (
        '{"verdict": "request_changes", "findings": ['
        '"a plain sentence", {"file": "", "description": "uses description"}, {"file": "null", "message": "  "},'
        '{"file": " b.py ", "issue": "uses issue"}, 42]}'
    )
    review = parse_review(text)
    assert review is not None
    assert review.findings == (
        Finding(message="a plain sentence"),
        Finding(message="uses description"),
        Finding(file="b.py", message="uses issue"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "No problems found, approve.",
        '{"findings": []}',
        '{"verdict": "perhaps", "findings": []}',
        '{"verdict": "approve", "findings": "none"}',
        '["verdict", "approve"]',
        '{"verdict": "approve", "findings": [',
        REVIEW_FORMAT_INSTRUCTIONS,
    ],
)
def test_no_verdict_object(text):
    assert parse_review(text) is None


def test_null_findings_mean_none():
    review = parse_review('{"verdict": "approve", "findings": null}')
    assert review == ReviewVerdict(verdict="approve")


def test_large_answers_parse_quickly():
    noise = "def f(x):\n    return {'a': {'b': [x, {'c': 1}]}}\n" * 4000  # ~200 kB of braces
    text = noise + '\n{"verdict": "approve", "findings": []}\n'
    start = time.perf_counter()
    review = parse_review(text)
    assert review is not None and review.approved
    assert time.perf_counter() - start < 1.0


def test_unparsed_review_turns_the_text_into_one_finding():
    review = unparsed_review("  The code looks wrong in three places.  ")
    assert review.verdict == "request_changes" and review.unparsed
    assert review.findings == (Finding(severity="medium", message="The code looks wrong in three places."),)
    long = unparsed_review("x" * 10_000, limit=100)
    assert long.findings[0].message == "[...]\n" + "x" * 100
    assert unparsed_review("").findings[0].message == "(the reviewer gave no answer)"


def test_fingerprint_ignores_order_severity_line_case_and_spacing():
    first = [
        Finding(severity="high", file="a.py", line=3, message="Missing test for the flag."),
        Finding(severity="low", file=None, message="no changelog"),
    ]
    second = [
        Finding(severity="low", file=None, line=9, message="No  changelog"),
        Finding(severity="medium", file="a.py", line=30, message="missing test for the flag"),
    ]
    assert findings_fingerprint(first) == findings_fingerprint(second)


def test_fingerprint_changes_with_file_or_message():
    base = [Finding(file="a.py", message="missing test")]
    assert findings_fingerprint(base) != findings_fingerprint([Finding(file="b.py", message="missing test")])
    assert findings_fingerprint(base) != findings_fingerprint([Finding(file="a.py", message="wrong test")])
    assert findings_fingerprint(base) != findings_fingerprint([])
    assert findings_fingerprint([]) == findings_fingerprint(())


def test_location():
    assert Finding(file="a.py", line=3, message="m").location() == "a.py:3"
    assert Finding(file="a.py", message="m").location() == "a.py"
    assert Finding(message="m").location() == ""
