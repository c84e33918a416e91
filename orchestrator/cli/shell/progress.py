"""The shell's live view of a run: for the current step, its agent, elapsed time, tokens and cost so far
and what it is doing now; one line per finished step; one summary line at the end.

`StepProgress` and the `format_*` functions are pure. `ProgressView` is the run's event subscriber: a
rich Live line on a terminal, or plain lines (not a TTY, NO_COLOR, TERM=dumb, CI) that stay readable in
a log and in tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from orchestrator.cli.render import describe_tool, wants_plain
from orchestrator.engine.report import RunReport
from orchestrator.engine.report_render import format_cost, format_duration
from orchestrator.events import (
    AgentActivity,
    AgentErrorEvent,
    AssistantMessage,
    FollowUp,
    GateFinished,
    Notice,
    RunEvent,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolUse,
    Usage,
)
from orchestrator.store import TokenUsage

THINKING = "thinking"
MESSAGE_CHARS = 160


@dataclass
class StepProgress:
    step_id: str
    agent: str
    task: str
    started: float  # time.monotonic() when the step started
    usage: TokenUsage = field(default_factory=TokenUsage)
    activity: str = THINKING

    def apply(self, event: object) -> bool:
        """Take one agent event; True when what the view shows changed."""
        if isinstance(event, Usage):
            # As the store counts: "total" replaces what came before, "delta" adds.
            now = TokenUsage(
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                cached_tokens=event.cached_tokens,
                cost_usd=event.cost_usd,
            )
            self.usage = now if event.scope == "total" else self.usage + now
            return True
        if isinstance(event, ToolUse):
            before = self.activity
            self.activity = describe_tool(event)
            return self.activity != before
        return False


def format_tokens(usage: TokenUsage) -> str:
    return f"{usage.input_tokens:,} in / {usage.output_tokens:,} out"


def format_elapsed(seconds: float) -> str:
    """Tenths of a second while a step is young (so the live line visibly moves), then 1m05s."""
    seconds = max(seconds, 0.0)
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)


def format_progress(step: StepProgress, now: float) -> str:
    """'i1-s1-implement · fake · 3.2s · 1,200 in / 300 out · $0.0012 · editing app.py'"""
    elapsed = format_elapsed(now - step.started)
    return " · ".join(
        [
            step.step_id,
            step.agent,
            elapsed,
            format_tokens(step.usage),
            format_cost(step.usage.cost_usd),
            step.activity,
        ]
    )


def format_step_end(step: StepProgress | None, event: StepFinished, now: float) -> str:
    """The line a finished step leaves behind."""
    parts = [f"{event.step_id} {event.status}", event.agent]
    if step is not None:
        parts += [
            format_elapsed(now - step.started),
            format_tokens(step.usage),
            format_cost(step.usage.cost_usd),
        ]
    if event.commit:
        count = len(event.files_changed)
        parts.append(f"commit {event.commit[:10]} ({count} file{'' if count == 1 else 's'})")
    if event.error:
        parts.append(event.error)
    return " · ".join(parts)


def format_summary(report: RunReport) -> str:
    """The one line a run ends with: 'approved · branch orchestrator/<id> · 2 iterations · $0.0021'."""
    status: str = report.status
    if report.stop_reason and report.stop_reason not in (report.status, "approved"):
        status += f" ({report.stop_reason})"
    iterations = f"{report.iterations} iteration{'' if report.iterations == 1 else 's'}"
    return " · ".join([status, f"branch {report.branch}", iterations, format_cost(report.usage.cost_usd)])


def first_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    shown = lines[0][:limit]
    return shown + (" …" if len(lines) > 1 or len(lines[0]) > limit else "")


def wants_plain_view(env: Mapping[str, str], stream: TextIO) -> bool:
    """Plain lines unless a capable terminal: not for pipes, CI, NO_COLOR or TERM=dumb."""
    return wants_plain(env, stream) or bool(env.get("NO_COLOR")) or env.get("TERM", "dumb") in ("dumb", "")


class ProgressView:
    """Subscribe `view.event` to a run; `start()` before it, `stop()` after (also on errors)."""

    def __init__(self, stream: TextIO, *, plain: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.plain = plain
        self.clock = clock
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.step: StepProgress | None = None
        self._lock = threading.Lock()
        self._live: Live | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.plain and self._live is None:
            self._live = Live(
                get_renderable=self._renderable,
                console=self.console,
                refresh_per_second=4,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        with self._lock:
            self.step = None

    def _renderable(self) -> Text:
        with self._lock:
            step = self.step
            line = format_progress(step, self.clock()) if step is not None else ""
        return Text(line, style="cyan")

    # --- output ------------------------------------------------------------------------------------

    def line(self, text: str, style: str = "") -> None:
        if self.plain:
            self.stream.write(text + "\n")
            self.stream.flush()
        else:
            self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))

    def event(self, event: RunEvent) -> None:
        self._show(event)
        if self._live is not None:
            self._live.refresh()  # at once, not at the next tick: the live line follows the events

    def _show(self, event: RunEvent) -> None:
        if isinstance(event, AgentActivity):
            self._agent(event)
        elif isinstance(event, RunStarted):
            self.line(f"run {event.run_id}: workflow {event.workflow}, branch {event.branch}", "bold")
        elif isinstance(event, StepStarted):
            with self._lock:
                self.step = StepProgress(event.step_id, event.agent, event.task, self.clock())
            who = "the gate" if event.agent == "gate" else f"{event.task} by {event.agent}"
            self.line(f"{event.step_id}: {who} (iteration {event.iteration})", "bold cyan")
        elif isinstance(event, StepFinished):
            with self._lock:
                step = self.step if self.step is not None and self.step.step_id == event.step_id else None
                self.step = None
            style = "green" if event.status == "succeeded" else "yellow"
            self.line(format_step_end(step, event, self.clock()), style)
        elif isinstance(event, GateFinished):
            verdict = "passed" if event.passed else f"failed (exit {event.exit_code})"
            self.line(f"gate {event.command}: {verdict}", "green" if event.passed else "red")
        elif isinstance(event, Notice):
            style = {"warning": "yellow", "error": "red"}.get(event.level, "dim")
            self.line(f"note: {event.text}", style)
        elif isinstance(event, FollowUp):
            self.line(f"follow-up from iteration {event.iteration}: {event.text}", "bold")

    def _agent(self, activity: AgentActivity) -> None:
        inner = activity.event
        with self._lock:
            step = self.step
            changed = step is not None and step.step_id == activity.step_id and step.apply(inner)
            progress = format_progress(step, self.clock()) if step is not None else ""
        if isinstance(inner, AssistantMessage):
            said = first_line(inner.text)
            if said:
                self.line(f"  {activity.agent}: {said}")
        elif isinstance(inner, AgentErrorEvent):
            self.line(f"  {activity.agent}: error [{inner.kind}] {inner.message}", "red")
        elif isinstance(inner, ToolUse) and changed and self.plain:
            # Plain output has no live line: each new activity is a line, with the step's figures.
            self.line(f"  {progress}")
