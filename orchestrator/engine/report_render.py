"""The run report for people: the short text report (`orchestrator run`, `runs show`) and the Markdown
summary for CI. Pure functions of a RunReport (report.py builds it from the store)."""

from __future__ import annotations

import html

from orchestrator.engine.report import GATE_TAIL_LINES, RunReport
from orchestrator.engine.report_group_lines import WIDTH, group_lines, wrap
from orchestrator.engine.review import Finding
from orchestrator.store import TokenUsage


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


STEP_ID_COLUMN = 22


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
        # Laid out for 80 columns with step ids up to 22 characters (a best-of-N member's
        # "i1-s1-implement-codex"); a longer id (a subtask's) goes on a line of its own above its row.
        width = min(max(len(step.id) for step in report.steps), STEP_ID_COLUMN)
        for step in report.steps:
            files = f"{len(step.files_changed)} file{'' if len(step.files_changed) == 1 else 's'}"
            if len(step.id) > width:
                lines.append(f"  {step.id}")
            lines.append(
                f"  {step.id if len(step.id) <= width else '':<{width}} {step.agent:<8} {step.task:<9} "
                f"{step.status:<9} {short_sha(step.commit):<8} {files:<8} {format_cost(step.usage.cost_usd)}"
            )
            if step.error is not None:
                error = f"error ({step.error.kind or 'unknown'}): {step.error.message}"
                lines += wrap(error, WIDTH, " " * 4)
    if report.findings:
        lines.append(f"findings (last review): {len(report.findings)}")
        for severity, where, message in map(_finding_line, report.findings):
            lines.append(f"  [{severity}] {where + ' ' if where else ''}{message}")
    lines += group_lines(report.attempts, report.reviews, report.subtasks, report.routing)
    lines += _setup_lines(report)
    lines += _gate_lines(report)
    lines.append(f"total: {_usage_line(report.usage)}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


# A task from --task-file can be a whole spec: the summary shows its start (GitHub caps a step summary
# at 1 MiB); the JSON report keeps all of it.
TASK_SUMMARY_CHARS = 300


def _first_chars(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _result(passed: bool | None, exit_code: int | None, *, loud: bool = False) -> str:
    if passed is None:
        return "skipped"
    if passed:
        return "passed"
    word = "FAILED" if loud else "failed"
    return f"{word} (timed out)" if exit_code is None else f"{word} (exit {exit_code})"


_VERSUS = {
    "as_on_base": "as on the base: does not count against approval",
    "same_cause": "failed the same way on the base; it names no tests to compare, so it counts",
    "worse": "failed on the base too, with new failures now",
    "new": "passed on the base: the change broke it",
}


def _setup_lines(report: RunReport) -> list[str]:
    lines = []
    for item in report.setup:
        if item.ok is None:
            lines.append(f"setup ({item.where}): {item.note}")
            continue
        result = "ok" if item.ok else f"FAILED (exit {item.exit_code})"
        why = f" ({item.note})" if item.note else ""
        lines.append(f"setup ({item.where}): `{item.command}`{why}: {result}, {item.duration_s:.1f}s")
    return lines


def _gate_lines(report: RunReport) -> list[str]:
    lines = []
    shown = set()
    for gate in report.gates:
        line = f"gate `{gate.command}`: {_result(gate.passed, gate.exit_code, loud=True)}"
        if gate.base is not None:
            shown.add(gate.base.gate_index)
            line += f"; on the base: {_result(gate.base.passed, gate.base.exit_code)}"
        lines.append(line)
        if not gate.passed and gate.versus_base in _VERSUS:
            lines.append(f"  {_VERSUS[gate.versus_base]}")
        if not gate.passed and gate.cause_text:
            lines.append(f"  likely cause: {gate.cause_text}")
        if gate.base is not None and gate.base.passed is False and gate.base.cause_text:
            lines.append(f"  on the base: {gate.base.cause_text}")
    for base in report.base_gates:
        if base.gate_index not in shown:
            line = f"gate `{base.command}` on the base: {_result(base.passed, base.exit_code)}"
            lines.append(line + (f" ({base.cause_text})" if base.passed is False and base.cause_text else ""))
    return lines


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
    lines += _markdown_gates(report)
    lines += _markdown_setup(report)
    lines += ["", "### Totals", "", f"{_usage_line(report.usage)}."]
    if report.notes:
        lines += ["", "### Notes", "", *[f"- {_cell(note)}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def _details(title: str, text: str) -> list[str]:
    fence = "````" if "```" in text else "```"
    return [
        "",
        f"<details><summary>{title} (last lines)</summary>",
        "",
        fence,
        _tail(text),
        fence,
        "",
        "</details>",
    ]


def _markdown_gates(report: RunReport) -> list[str]:
    if not report.gates and not report.base_gates:
        return []
    lines = [
        "",
        "### Gates",
        "",
        "| Gate | Base (before any change) | Final | Exit code | Likely cause |",
        "| --- | --- | --- | ---: | --- |",
    ]
    shown = set()
    for gate in report.gates:
        base = "not run"
        if gate.base is not None:
            shown.add(gate.base.gate_index)
            base = _result(gate.base.passed, gate.base.exit_code)
        final = "passed" if gate.passed else f"**{_result(gate.passed, gate.exit_code)}**"
        if not gate.passed and gate.versus_base == "as_on_base":
            final = f"{_result(gate.passed, gate.exit_code)}, as on the base (does not count)"
        exit_code = "-" if gate.exit_code is None else str(gate.exit_code)
        cause = gate.cause_text if not gate.passed else ""
        if not cause and gate.base is not None and gate.base.passed is False:
            cause = f"base: {gate.base.cause_text}"
        lines.append(f"| {_code(gate.command)} | {base} | {final} | {exit_code} | {_cell(cause) or '-'} |")
    for item in report.base_gates:
        if item.gate_index not in shown:
            exit_code = "-" if item.exit_code is None else str(item.exit_code)
            cause = _cell(item.cause_text) or "-"
            result = _result(item.passed, item.exit_code)
            lines.append(f"| {_code(item.command)} | {result} | not run | {exit_code} | {cause} |")
    for gate in report.gates:
        if not gate.passed and gate.output_tail.strip():
            lines += _details(f"<code>{html.escape(gate.command)}</code> output", gate.output_tail)
    for item in report.base_gates:
        if item.passed is False and item.output_tail.strip():
            title = f"<code>{html.escape(item.command)}</code> output on the base"
            lines += _details(title, item.output_tail)
    return lines


def _markdown_setup(report: RunReport) -> list[str]:
    if not report.setup:
        return []
    lines = [
        "",
        "### Setup",
        "",
        "| Where | Command | Result | Time | Note |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for item in report.setup:
        result = "-" if item.ok is None else ("ok" if item.ok else f"**failed** (exit {item.exit_code})")
        time_s = "-" if item.ok is None else f"{item.duration_s:.1f}s"
        lines.append(
            f"| {item.where} | {_code(item.command)} | {result} | {time_s} | {_cell(item.note) or '-'} |"
        )
    for item in report.setup:
        if item.ok is False and item.output_tail.strip():
            lines += _details(
                f"setup <code>{html.escape(item.command)}</code> ({item.where})", item.output_tail
            )
    return lines
