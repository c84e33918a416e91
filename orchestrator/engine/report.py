"""The run report: what `--json` prints, the short human report, and the Markdown summary for CI.

Built only from the store (`build_report`), so a report of a finished, interrupted or resumed run reads
the same whichever process asks. The renderers are pure functions of the report.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from orchestrator.engine.review import Finding
from orchestrator.errors import EXIT_INTERRUPTED, EXIT_NOT_APPROVED, EXIT_OK
from orchestrator.events import GateFinished, Notice
from orchestrator.store import RunStatus, StepRecord, StepStatus, Store, TokenUsage

# How much of a failing gate's output the text and Markdown reports show (the JSON keeps all of it).
GATE_TAIL_LINES = 20


class StepError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str | None
    message: str


class StepReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    agent: str
    task: str
    status: StepStatus
    commit: str | None
    files_changed: list[str]
    usage: TokenUsage
    error: StepError | None


class GateReport(BaseModel):
    """A gate's last result in the run."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    command: str
    passed: bool
    exit_code: int | None
    step_id: str
    output_tail: str


class RunReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    run_id: str
    status: RunStatus
    stop_reason: str | None
    branch: str
    base: str
    iterations: int
    steps: list[StepReport]
    findings: list[Finding]  # the last review's
    gates: list[GateReport]
    usage: TokenUsage  # the run's totals
    task: str
    workflow: str
    repo: str
    duration_s: float
    notes: list[str]  # fallbacks taken, warnings, costs that could not be priced

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @property
    def exit_code(self) -> int:
        """0 only when approved; 130 when interrupted or cancelled; 1 otherwise."""
        if self.status == "approved":
            return EXIT_OK
        if self.status in ("interrupted", "cancelled"):
            return EXIT_INTERRUPTED
        return EXIT_NOT_APPROVED


# --- building ---------------------------------------------------------------------------------------


def _step_report(step: StepRecord) -> StepReport:
    error = None
    if step.error_message is not None or step.error_kind is not None:
        error = StepError(kind=step.error_kind, message=step.error_message or step.error_kind or "")
    return StepReport(
        id=step.step_id,
        agent=step.agent,
        task=step.task,
        status=step.status,
        commit=step.commit,
        files_changed=step.files_changed,
        usage=step.usage,
        error=error,
    )


def _last_findings(steps: Iterable[StepRecord]) -> list[Finding]:
    """The findings of the last step (in workflow order) that recorded any: the last review."""
    findings: list[Finding] = []
    for step in steps:
        if isinstance(step.detail.get("findings"), list):
            findings = [Finding.model_validate(item) for item in step.detail["findings"]]
    return findings


def _notes(steps: Iterable[StepRecord], notices: Iterable[Notice]) -> list[str]:
    notes: list[str] = []
    for step in steps:
        notes += [f"{step.step_id}: {note}" for note in step.detail.get("notes", []) if isinstance(note, str)]
        used = step.usage
        if used.cost_usd is None and (used.input_tokens or used.output_tokens):
            notes.append(
                f"{step.step_id}: the cost of {step.agent}'s tokens is unknown (no price for its model)"
            )
    notes += [notice.text for notice in notices if notice.level != "info"]
    # A note is often both in a step's detail and in the notice the engine published about it.
    return list(dict.fromkeys(notes))


def build_report(store: Store, run_id: str, *, now: float | None = None) -> RunReport:
    run = store.get_run(run_id)
    steps = store.steps(run_id)
    gates: dict[str, GateReport] = {}
    notices: list[Notice] = []
    for stored in store.events(run_id, types=("gate_finished", "notice")):
        event = stored.event
        if isinstance(event, GateFinished):
            # Later results replace earlier ones; the first run of a gate keeps its place in the list.
            gates[event.command] = GateReport(
                command=event.command,
                passed=event.passed,
                exit_code=event.exit_code,
                step_id=event.step_id,
                output_tail=event.output_tail,
            )
        elif isinstance(event, Notice):
            notices.append(event)
    end = run.finished_at if run.finished_at is not None else (now if now is not None else time.time())
    return RunReport(
        run_id=run.id,
        status=run.status,
        stop_reason=run.stop_reason,
        branch=run.branch,
        base=run.base,
        iterations=run.iterations,
        steps=[_step_report(step) for step in steps],
        findings=_last_findings(steps),
        gates=list(gates.values()),
        usage=store.usage_total(run_id),
        task=run.task,
        workflow=run.workflow_name,
        repo=run.repo,
        duration_s=round(max(end - run.created_at, 0.0), 3),
        notes=_notes(steps, notices),
    )


# --- rendering --------------------------------------------------------------------------------------


def format_cost(cost: float | None) -> str:
    return "n/a" if cost is None else f"${cost:.4f}"


def format_duration(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def short_sha(commit: str | None) -> str:
    return commit[:8] if commit else "-"


def _tail(text: str, lines: int = GATE_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _finding_line(finding: Finding) -> tuple[str, str, str]:
    return finding.severity, finding.location(), finding.message


def _usage_line(usage: TokenUsage) -> str:
    cached = f" ({usage.cached_tokens:,} cached)" if usage.cached_tokens else ""
    return (
        f"{usage.input_tokens:,} input{cached} / {usage.output_tokens:,} output tokens, "
        f"{format_cost(usage.cost_usd)}"
    )


def render_text(report: RunReport) -> str:
    """A short report for people, for the end of `orchestrator run`."""
    stop = (
        f" (stop: {report.stop_reason})" if report.stop_reason and report.stop_reason != report.status else ""
    )
    plural = "" if report.iterations == 1 else "s"
    lines = [
        f"run {report.run_id}: {report.status}{stop}, {report.iterations} iteration{plural}, "
        f"{format_duration(report.duration_s)}",
        f"branch {report.branch} (base {report.base})",
    ]
    if report.steps:
        lines.append("steps:")
        width = max(len(step.id) for step in report.steps)
        for step in report.steps:
            files = f"{len(step.files_changed)} file{'' if len(step.files_changed) == 1 else 's'}"
            lines.append(
                f"  {step.id:<{width}}  {step.agent:<8} {step.task:<10} {step.status:<11} "
                f"{short_sha(step.commit):<8}  {files:<8}  {format_cost(step.usage.cost_usd)}"
            )
            if step.error is not None:
                lines.append(f"  {'':<{width}}  error ({step.error.kind or 'unknown'}): {step.error.message}")
    if report.findings:
        lines.append(f"findings (last review): {len(report.findings)}")
        for severity, where, message in map(_finding_line, report.findings):
            lines.append(f"  [{severity}] {where + ' ' if where else ''}{message}")
    for gate in report.gates:
        verdict = "passed" if gate.passed else f"FAILED (exit {gate.exit_code})"
        lines.append(f"gate `{gate.command}`: {verdict}")
    lines.append(f"total: {_usage_line(report.usage)}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


# A task from --task-file can be a whole spec: the summary shows its start (GitHub caps a step summary
# at 1 MiB); the JSON report keeps all of it.
TASK_SUMMARY_CHARS = 300


def _first_chars(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """An inline code span that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _agents_table(report: RunReport) -> list[str]:
    totals: dict[str, tuple[int, TokenUsage]] = {}
    for step in report.steps:
        count, usage = totals.get(step.agent, (0, TokenUsage()))
        totals[step.agent] = (count + 1, usage + step.usage)
    lines = ["| Agent | Steps | Input tokens | Output tokens | Cost |", "| --- | ---: | ---: | ---: | ---: |"]
    for agent, (count, usage) in totals.items():
        lines.append(
            f"| {_cell(agent)} | {count} | {usage.input_tokens:,} | {usage.output_tokens:,} | "
            f"{format_cost(usage.cost_usd)} |"
        )
    return lines


def render_markdown(report: RunReport) -> str:
    """The summary for CI (`--summary FILE`, e.g. $GITHUB_STEP_SUMMARY)."""
    lines = [
        f"## Orchestrator run {_code(report.run_id)}: {report.status}",
        "",
        "| | |",
        "| --- | --- |",
        f"| Status | **{report.status}** |",
        f"| Stop reason | {_cell(report.stop_reason or '-')} |",
        f"| Branch | {_code(report.branch)} (base {_code(report.base)}) |",
        f"| Workflow | {_cell(report.workflow)}, {report.iterations} iteration"
        f"{'' if report.iterations == 1 else 's'}, {format_duration(report.duration_s)} |",
        f"| Task | {_cell(_first_chars(report.task, TASK_SUMMARY_CHARS))} |",
        f"| Cost | {format_cost(report.usage.cost_usd)} |",
        "",
        "### Steps",
        "",
    ]
    if report.steps:
        lines += [
            "| Step | Agent | Task | Status | Commit | Files | Cost |",
            "| --- | --- | --- | --- | --- | ---: | ---: |",
        ]
        for step in report.steps:
            commit = _code(short_sha(step.commit)) if step.commit else "-"
            lines.append(
                f"| {_cell(step.id)} | {_cell(step.agent)} | {_cell(step.task)} | {step.status} | {commit} | "
                f"{len(step.files_changed)} | {format_cost(step.usage.cost_usd)} |"
            )
        errors = [step for step in report.steps if step.error is not None]
        if errors:
            lines.append("")
            for step in errors:
                assert step.error is not None
                lines.append(
                    f"- {_code(step.id)} failed ({step.error.kind or 'unknown'}): {_cell(step.error.message)}"
                )
        lines += ["", "### Agents", "", *_agents_table(report)]
    else:
        lines.append("No step ran.")
    lines += ["", "### Findings (last review)", ""]
    if report.findings:
        for severity, where, message in map(_finding_line, report.findings):
            place = f" {_code(where)}" if where else ""
            lines.append(f"- **{severity}**{place}: {_cell(message)}")
    else:
        lines.append("None.")
    if report.gates:
        lines += ["", "### Gates", "", "| Gate | Result | Exit code |", "| --- | --- | ---: |"]
        for gate in report.gates:
            result = "passed" if gate.passed else "**failed**"
            exit_code = "-" if gate.exit_code is None else str(gate.exit_code)
            lines.append(f"| {_code(gate.command)} | {result} | {exit_code} |")
        for gate in report.gates:
            if not gate.passed and gate.output_tail.strip():
                fence = "````" if "```" in gate.output_tail else "```"
                lines += [
                    "",
                    f"<details><summary><code>{html.escape(gate.command)}</code> output (last lines)</summary>",
                    "",
                    fence,
                    _tail(gate.output_tail),
                    fence,
                    "",
                    "</details>",
                ]
    lines += ["", "### Totals", "", f"{_usage_line(report.usage)}."]
    if report.notes:
        lines += ["", "### Notes", "", *[f"- {_cell(note)}" for note in report.notes]]
    return "\n".join(lines) + "\n"
