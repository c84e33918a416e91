"""The prompt of each step, rendered purely from what that step needs.

A prompt carries the task, the diff since the base (already cut to its budget by the workspace, with the
list of files), the last findings and the failing gates' output tails. Never a transcript: every agent
starts fresh, so a prompt must say everything the step needs and nothing it does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.engine.review import REVIEW_FORMAT_INSTRUCTIONS, Finding
from orchestrator.engine.workflow import TaskKind

MAX_FINDINGS_SHOWN = 40
MAX_GATE_TAIL_CHARS = 4000

_EDIT_RULES = """\
You are working in a git repository of its own, on a branch of its own; the current directory is the repository.
- Change only what the task needs; keep the project's style and add or update tests for what you change.
- Run the project's tests if you can.
- Do not commit, push, rebase or switch branches: the orchestrator commits your changes after this step."""

_READ_ONLY_RULES = """\
This step is read-only. Do not create, edit or delete files, and do not run commands that write
(no formatters, installs or git commands that change anything). Read the code and answer."""


@dataclass(frozen=True)
class GateFailure:
    """A gate that failed on the current tree: what ran and the end of what it printed."""

    name: str
    command: str
    exit_code: int | None  # None: it was killed (timed out)
    output_tail: str


@dataclass(frozen=True)
class PromptContext:
    task: str  # what the user asked for
    iteration: int = 1
    description: str = ""  # the step's description in the workflow
    diff: str = ""  # the diff since the base, already cut to the size budget
    files: Sequence[str] = ()  # every file the diff touches, also those the cut left out
    diff_note: str = ""  # what the cut left out, from the workspace
    findings: Sequence[Finding] = ()  # the last review's findings
    suggestions: Sequence[Finding] = ()  # from a `suggestions` step, to consider
    failing_gates: Sequence[GateFailure] = ()


def render_implement(ctx: PromptContext) -> str:
    return _join(
        "You are implementing a change in this repository.",
        _section("Task", ctx.task),
        _step_note(ctx),
        _section("Rules", _EDIT_RULES),
        _gates(ctx),
        "When you are done, say in a few lines what you changed and why.",
    )


def render_review(ctx: PromptContext) -> str:
    return _join(
        "You are reviewing a change made in this repository for the task below.",
        _section("Task the change is meant to do", ctx.task),
        _step_note(ctx),
        _section("Rules", _READ_ONLY_RULES),
        _diff(ctx),
        _gates(ctx),
        _findings(
            "Findings of the previous review",
            ctx.findings,
            "Check whether each is fixed. Repeat only those that are not; do not raise fixed ones again.",
        ),
        _findings("Suggestions made earlier", ctx.suggestions, "Raise one only if it is a real problem."),
        _section(
            "Your answer",
            "Judge whether the change does the task correctly, safely and with tests; look for bugs, missing "
            "cases and regressions in the diff above and the code around it.\n\n"
            + REVIEW_FORMAT_INSTRUCTIONS,
        ),
    )


def render_refine(ctx: PromptContext) -> str:
    return _join(
        "You are refining a change in this repository: a review found problems with it.",
        _section("Task", ctx.task),
        _step_note(ctx),
        _section("Rules", _EDIT_RULES),
        _findings(
            "Findings to address",
            ctx.findings,
            "Fix each one. If you judge a finding wrong, leave that code alone and say why in your answer.",
        ),
        _gates(ctx, "Make these pass."),
        _findings(
            "Suggestions", ctx.suggestions, "Take those that make the change better; they are optional."
        ),
        _diff(ctx),
        "When you are done, say for each finding what you did.",
    )


def render_suggestions(ctx: PromptContext) -> str:
    return _join(
        "You are advising on a change made in this repository for the task below.",
        _section("Task", ctx.task),
        _step_note(ctx),
        _section("Rules", _READ_ONLY_RULES),
        _diff(ctx),
        _gates(ctx),
        _findings("Findings already raised", ctx.findings, "Do not repeat them."),
        _section(
            "Your answer",
            "Suggest better approaches, risks and missing cases, one finding each. Use the verdict "
            '"approve" when you have nothing worth changing.\n\n' + REVIEW_FORMAT_INSTRUCTIONS,
        ),
    )


def render_document(ctx: PromptContext) -> str:
    return _join(
        "You are writing documentation in this repository.",
        _section("Task", ctx.task),
        _step_note(ctx),
        _section(
            "Rules",
            _EDIT_RULES
            + "\n- Change documentation (README, docs/, docstrings, comments) only, not behaviour.",
        ),
        _findings("Findings of the review of your documentation", ctx.findings, "Address each one."),
        _diff(ctx),
        "When you are done, say in a few lines what you documented.",
    )


def render_followup(ctx: PromptContext, request: str) -> str:
    """A new request on top of earlier work: the earlier task and its diff, then what to do now."""
    return _join(
        "You are continuing work in this repository.",
        _section("Earlier task (already worked on; its changes are in the diff below)", ctx.task),
        _section("What to do now", request),
        _section("Rules", _EDIT_RULES),
        _findings("Open findings from the last review", ctx.findings, "Keep them in mind."),
        _gates(ctx),
        _diff(ctx),
        "When you are done, say in a few lines what you changed.",
    )


def render_review_retry(previous_answer: str, *, limit: int = 6000) -> str:
    """Asked once when a review ended without its JSON object. It carries the answer itself, so it
    works whether or not the CLI resumes the reviewer's session."""
    answer = previous_answer.strip()
    if len(answer) > limit:
        answer = "[...]\n" + answer[-limit:]
    fence = _fence_for(answer)
    return _join(
        "A review you gave ended without the JSON object the orchestrator reads. Do not review again and do "
        "not edit anything: answer with only that object, for the review below.",
        _section("Your review", f"{fence}\n{answer or '(empty)'}\n{fence}"),
        REVIEW_FORMAT_INSTRUCTIONS,
    )


RENDERERS: dict[TaskKind, Callable[[PromptContext], str]] = {
    "implement": render_implement,
    "review": render_review,
    "refine": render_refine,
    "suggestions": render_suggestions,
    "document": render_document,
}


def render_step(task: TaskKind, ctx: PromptContext) -> str:
    return RENDERERS[task](ctx)


# --- pieces ------------------------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return "\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n"


def _section(title: str, body: str) -> str:
    return f"## {title}\n{body.strip()}" if body.strip() else ""


def _step_note(ctx: PromptContext) -> str:
    lines = []
    if ctx.description.strip():
        lines.append(f"This step: {ctx.description.strip()}")
    if ctx.iteration > 1:
        lines.append(f"This is iteration {ctx.iteration}: earlier iterations already worked on the task.")
    return "\n".join(lines)


def _diff(ctx: PromptContext) -> str:
    if not ctx.diff.strip() and not ctx.files:
        return _section("Changes since the base", "There are no changes yet.")
    body = []
    if ctx.files:
        body.append("Files changed:\n" + "\n".join(f"- {name}" for name in ctx.files))
    if ctx.diff_note.strip():
        body.append(ctx.diff_note.strip())
    if ctx.diff.strip():
        fence = _fence_for(ctx.diff)
        body.append(f"{fence}diff\n{ctx.diff.rstrip()}\n{fence}")
    return _section("Changes since the base", "\n\n".join(body))


def _findings(title: str, findings: Sequence[Finding], guidance: str) -> str:
    if not findings:
        return ""
    lines = []
    for number, finding in enumerate(findings[:MAX_FINDINGS_SHOWN], 1):
        where = f" {finding.location()}" if finding.location() else ""
        lines.append(f"{number}. [{finding.severity}]{where}: {_indent(finding.message.strip())}")
    if len(findings) > MAX_FINDINGS_SHOWN:
        lines.append(f"... and {len(findings) - MAX_FINDINGS_SHOWN} more of lower priority.")
    return _section(title, f"{guidance}\n" + "\n".join(lines))


def _gates(ctx: PromptContext, guidance: str = "") -> str:
    if not ctx.failing_gates:
        return ""
    blocks = [guidance] if guidance else []
    for gate in ctx.failing_gates:
        how = "timed out" if gate.exit_code is None else f"exit code {gate.exit_code}"
        tail = gate.output_tail.rstrip()
        if len(tail) > MAX_GATE_TAIL_CHARS:
            tail = "[...]\n" + tail[-MAX_GATE_TAIL_CHARS:]
        fence = _fence_for(tail)
        blocks.append(
            f"`{gate.command}` ({gate.name}) failed, {how}. The end of its output:\n{fence}\n{tail}\n{fence}"
        )
    return _section("Failing checks", "\n\n".join(blocks))


def _indent(text: str) -> str:
    return text.replace("\n", "\n   ")


def _fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks inside `text`, so the block cannot end early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)
