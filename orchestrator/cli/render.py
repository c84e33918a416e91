"""Rendering events for people: rich on a terminal, plain timestamped lines otherwise (CI, pipes).

NO_COLOR is honoured (no escape codes at all: make_console); `plain` is chosen when stdout is not a TTY
or CI=true.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.events import (
    AgentActivity,
    AgentErrorEvent,
    AgentEvent,
    AssistantMessage,
    BaseGateFinished,
    FollowUp,
    GateFinished,
    Notice,
    Result,
    RunEvent,
    RunFinished,
    RunStarted,
    SessionStarted,
    SetupFinished,
    StepFinished,
    StepStarted,
    ToolUse,
    Usage,
)

if TYPE_CHECKING:
    from rich.console import Console

_VERB = {
    "file_edit": ("editing", "edited"),
    "file_read": ("reading", "read"),
    "command_run": ("running", "ran"),
    "search": ("searching", "searched"),
    "other": ("using", "used"),
}


def describe_tool(event: ToolUse) -> str:
    """'editing src/app.py', 'running pytest', 'refused: editing x.py' (what the agent is doing now)."""
    target = event.path or (event.command and event.command[:80]) or event.tool
    doing, done = _VERB.get(event.action, _VERB["other"])
    if event.status == "started":
        return f"{doing} {target}"
    if event.status == "refused":
        return f"refused: {doing} {target}"
    if event.status == "failed":
        return f"failed: {doing} {target}"
    return f"{done} {target}"


def make_console(stream: TextIO | None = None, **options: Any) -> Console:
    """A rich console that prints no escape codes at all when NO_COLOR is set. (Rich alone drops only
    the colours and still prints bold, italic and underline.)"""
    from rich.console import Console  # here: plain output (CI, pipes) never needs rich (15 ms to import)

    if os.environ.get("NO_COLOR"):
        options["color_system"] = None
    return Console(file=stream, **options)


def wants_plain(env: Mapping[str, str], stream: TextIO) -> bool:
    return env.get("CI", "").lower() in {"1", "true", "yes"} or not stream.isatty()


class ConsoleRenderer:
    """Prints agent and run events as they come. Used by run-agent, run and the shell."""

    def __init__(
        self, *, plain: bool | None = None, stream: TextIO | None = None, quiet: bool = False
    ) -> None:
        self.stream = stream or sys.stderr
        self.plain = wants_plain(os.environ, self.stream) if plain is None else plain
        self._console: Console | None = None
        self.quiet = quiet
        # An adapter may complete a result after the process ends (adding the final text): say
        # "finished" once per step.
        self._last_was_result = False

    @property
    def console(self) -> Console:
        """The rich console, made on first use: plain output never uses it."""
        if self._console is None:
            self._console = make_console(self.stream, highlight=False, soft_wrap=True)
        return self._console

    def _line(self, who: str, text: str, style: str = "") -> None:
        if self.quiet:
            return
        if self.plain:
            # Every line of a multi-line message carries the stamp too, so CI logs stay line-oriented.
            stamp = f"[{time.strftime('%H:%M:%S')}] {who}: "
            self.stream.write("".join(f"{stamp}{line}\n" for line in text.splitlines() or [""]))
            self.stream.flush()
        else:
            from rich.markup import escape

            body = escape(text)
            self.console.print(
                f"[bold]{escape(who)}[/] [{style}]{body}[/]" if style else f"[bold]{escape(who)}[/] {body}"
            )

    def agent_event(self, agent: str, event: AgentEvent) -> None:
        repeated_result = isinstance(event, Result) and self._last_was_result
        if not isinstance(event, Usage):
            self._last_was_result = isinstance(event, Result)
        if repeated_result:
            return
        if isinstance(event, SessionStarted):
            self._line(agent, f"session {event.session_id or '?'} ({event.model or 'default model'})", "dim")
        elif isinstance(event, AssistantMessage):
            text = event.text.strip()
            if text:
                lines = text.splitlines()
                shown = "\n".join(lines[:12]) + (
                    f"\n… ({len(lines) - 12} more lines)" if len(lines) > 12 else ""
                )
                self._line(agent, shown)
        elif isinstance(event, ToolUse):
            style = {"refused": "red", "failed": "yellow", "succeeded": "green"}.get(event.status, "cyan")
            self._line(agent, describe_tool(event), style)
        elif isinstance(event, AgentErrorEvent):
            self._line(agent, f"error [{event.kind}]: {event.message}", "bold red")
        elif isinstance(event, Result):
            self._line(
                agent,
                "finished" if event.success else "finished with failure",
                "green" if event.success else "red",
            )
        elif isinstance(event, Usage):
            return

    def run_event(self, event: RunEvent) -> None:
        if isinstance(event, AgentActivity):
            self.agent_event(f"{event.agent}", event.event)
        elif isinstance(event, RunStarted):
            self._line(
                "run", f"{event.run_id} started: workflow {event.workflow}, branch {event.branch}", "bold"
            )
        elif isinstance(event, StepStarted):
            who = "running the gate" if event.agent == "gate" else f"{event.task} by {event.agent}"
            self._line("step", f"{event.step_id}: {who} (iteration {event.iteration})", "bold cyan")
        elif isinstance(event, StepFinished):
            what = f"{event.step_id} {event.status}"
            if event.commit:
                what += f", commit {event.commit[:10]} ({len(event.files_changed)} files)"
            if event.error:
                what += f": {event.error}"
            self._line("step", what, "green" if event.status == "succeeded" else "yellow")
        elif isinstance(event, GateFinished):
            versus = ", as on the base (does not count)" if event.versus_base == "as_on_base" else ""
            self._line(
                "gate",
                f"{event.command}: {'passed' if event.passed else 'failed'}{versus}",
                "green" if event.passed else ("yellow" if versus else "red"),
            )
        elif isinstance(event, BaseGateFinished):
            result = {True: "passed", False: "failed", None: "skipped"}[event.passed]
            cause = f" ({event.cause_text})" if event.passed is False and event.cause_text else ""
            self._line("base", f"{event.command}: {result} before any change{cause}", "dim")
        elif isinstance(event, SetupFinished):
            if event.ok is not None:
                result = "done" if event.ok else f"failed (exit {event.exit_code})"
                self._line(
                    "setup", f"{event.where}: {event.command}: {result}, {event.duration_s:.1f}s", "dim"
                )
        elif isinstance(event, Notice):
            self._line("note", event.text, {"warning": "yellow", "error": "red"}.get(event.level, "dim"))
        elif isinstance(event, FollowUp):
            self._line("run", f"follow-up from iteration {event.iteration}: {event.text}", "bold")
        elif isinstance(event, RunFinished):
            self._line("run", f"{event.status} ({event.stop_reason}); branch {event.branch}", "bold")
