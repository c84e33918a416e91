"""What a reviewer answers, read robustly: a verdict and findings, as one JSON object at the end.

Reviewers are language models; they wrap the object in prose or a ```json fence, add a trailing comma,
write "High" or "critical", or quote a line number. We accept all of that. We do not accept an object
without a recognisable verdict: then `parse_review` returns None, the engine asks once more, and after
that `unparsed_review` turns the text itself into one finding.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["high", "medium", "low"]
Verdict = Literal["approve", "request_changes"]


class Finding(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    severity: Severity = "medium"
    file: str | None = None
    line: int | None = None
    message: str

    def location(self) -> str:
        """`path:line`, `path`, or "" when the finding is about the change as a whole."""
        if self.file and self.line is not None:
            return f"{self.file}:{self.line}"
        return self.file or ""


class ReviewVerdict(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    verdict: Verdict
    findings: tuple[Finding, ...] = ()
    # True when no JSON object was found and the answer's text became the one finding.
    unparsed: bool = False

    @property
    def approved(self) -> bool:
        return self.verdict == "approve"


REVIEW_FORMAT_INSTRUCTIONS = """\
End your answer with one JSON object (a ```json fenced block is fine) and nothing after it:
{"verdict": "approve" | "request_changes",
 "findings": [{"severity": "high" | "medium" | "low", "file": "path/or/null", "line": 12, "message": "..."}]}
- "approve" only when the change does the task and you would merge it as it is.
- One finding per problem. "file" is the path relative to the repository root, or null for the change
  as a whole; "line" is a line number in the new version of that file, or null.
- "high": wrong behaviour, data loss, security, or the task not done. "medium": a real defect or a missing
  test. "low": style and naming; do not request changes for "low" findings alone."""

# Words reviewers use for the two verdicts, after lowercasing and turning spaces and dashes into "_".
_VERDICTS: dict[str, Verdict] = {
    "approve": "approve",
    "approved": "approve",
    "accept": "approve",
    "accepted": "approve",
    "lgtm": "approve",
    "pass": "approve",
    "request_changes": "request_changes",
    "changes_requested": "request_changes",
    "request_change": "request_changes",
    "needs_changes": "request_changes",
    "needs_work": "request_changes",
    "reject": "request_changes",
    "rejected": "request_changes",
    "fail": "request_changes",
}

_SEVERITIES: dict[str, Severity] = {
    "high": "high",
    "critical": "high",
    "blocker": "high",
    "major": "high",
    "error": "high",
    "medium": "medium",
    "moderate": "medium",
    "warning": "medium",
    "low": "low",
    "minor": "low",
    "nit": "low",
    "info": "low",
    "suggestion": "low",
}

# An object worth trying starts with a brace and then (after blanks) a key.
_OBJECT_START = re.compile(r'\{\s*"')
_LEADING_INT = re.compile(r"\s*(\d+)")


def parse_review(text: str) -> ReviewVerdict | None:
    """The last JSON object in `text` that carries a verdict, or None when there is none."""
    for start in reversed([m.start() for m in _OBJECT_START.finditer(text)]):
        raw = _decode_object(text, start)
        if raw is None:
            continue
        verdict = _to_verdict(raw)
        if verdict is not None:
            return verdict
    return None


def unparsed_review(text: str, *, limit: int = 4000) -> ReviewVerdict:
    """A review that never gave its JSON: it requests changes, with its own words as the one finding."""
    body = text.strip() or "(the reviewer gave no answer)"
    if len(body) > limit:
        body = "[...]\n" + body[-limit:]
    return ReviewVerdict(
        verdict="request_changes",
        findings=(Finding(severity="medium", message=body),),
        unparsed=True,
    )


def findings_fingerprint(findings: Iterable[Finding]) -> str:
    """Equal for two reviews that raise the same problems, whatever their order, severities or lines.

    Lines move when code is edited and severities drift between reviewers, so only the file and the
    message (case and spacing normalised) identify a finding.
    """
    keys = sorted({f"{f.file or ''}\0{_normalise_message(f.message)}" for f in findings})
    digest = hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
    return digest[:16]


def _normalise_message(message: str) -> str:
    return " ".join(message.lower().split()).rstrip(".!;: ")


def json_objects_last_first(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object in `text`, the last one first, read as robustly as a review's (prose around
    it, a ```json fence, trailing commas). The planner's answer is read with this too."""
    for start in reversed([m.start() for m in _OBJECT_START.finditer(text)]):
        raw = _decode_object(text, start)
        if raw is not None:
            yield raw


# --- decoding ------------------------------------------------------------------------------------


def _decode_object(text: str, start: int) -> dict[str, Any] | None:
    """The JSON object starting at `start`, tolerating trailing commas; None if it is not one."""
    cleaned = _balanced_object(text, start)
    if cleaned is None:
        return None
    try:
        value = json.loads(cleaned)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _balanced_object(text: str, start: int) -> str | None:
    """Text of the brace-balanced span from `start`, with commas before a closing bracket removed.

    Walks the characters once, minding strings and escapes, so braces inside messages do not count.
    """
    out: list[str] = []
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                out.append(char)
                return "".join(out)
        elif char == "," and _next_significant(text, index + 1) in ("}", "]"):
            continue  # a trailing comma: JSON refuses it, reviewers write it
        out.append(char)
    return None


def _next_significant(text: str, index: int) -> str:
    while index < len(text) and text[index].isspace():
        index += 1
    return text[index] if index < len(text) else ""


def _to_verdict(raw: dict[str, Any]) -> ReviewVerdict | None:
    verdict_word = raw.get("verdict")
    if not isinstance(verdict_word, str):
        return None
    verdict = _VERDICTS.get(re.sub(r"[\s-]+", "_", verdict_word.strip().lower()))
    if verdict is None:
        return None
    raw_findings = raw.get("findings", [])
    if raw_findings is None:
        raw_findings = []
    if not isinstance(raw_findings, list):
        return None
    findings = [f for f in (_to_finding(item) for item in raw_findings) if f is not None]
    return ReviewVerdict(verdict=verdict, findings=tuple(findings))


def _to_finding(item: Any) -> Finding | None:
    if isinstance(item, str):  # some reviewers list plain sentences
        return Finding(message=item.strip()) if item.strip() else None
    if not isinstance(item, dict):
        return None
    message = item.get("message") or item.get("description") or item.get("issue")
    if not isinstance(message, str) or not message.strip():
        return None
    return Finding(
        severity=_to_severity(item.get("severity")),
        file=_to_file(item.get("file")),
        line=_to_line(item.get("line")),
        message=message.strip(),
    )


def _to_severity(value: Any) -> Severity:
    # An unknown label must not lose the finding: it counts as "medium".
    if isinstance(value, str):
        return _SEVERITIES.get(value.strip().lower(), "medium")
    return "medium"


def _to_file(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and value.strip().lower() not in ("null", "none"):
        return value.strip()
    return None


def _to_line(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):  # "12" or "12-15": the first line is what a person looks at
        match = _LEADING_INT.match(value)
        if match:
            return int(match.group(1)) or None
    return None
