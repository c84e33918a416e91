"""What the shell's user typed: a message for the agents, a /command, or a mistake. Pure.

Every command, its arguments and its help live in COMMANDS, so /help, the parser, the error messages and
tab completion cannot disagree.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.adapters import AGENT_NAMES
from orchestrator.engine.workflow import TASKS, parse_agent_overrides
from orchestrator.errors import UsageError


@dataclass(frozen=True)
class CommandSpec:
    name: str  # with the slash: "/workflow"
    usage: str  # the arguments, as shown in /help: "NAME", "[TASK]", ""
    help: str
    min_args: int = 0
    max_args: int = 0
    free_text: bool = False  # the rest of the line is one argument (a task), not words


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/help", "", "this list"),
    CommandSpec(
        "/new",
        "[TASK]",
        "start a fresh run (with TASK now, or with your next message)",
        max_args=1,
        free_text=True,
    ),
    CommandSpec("/workflow", "[NAME]", "show the workflows, or use NAME for the next new run", max_args=1),
    CommandSpec(
        "/agent",
        "[TASK=AGENT | clear]",
        "who does a task in the next new run, e.g. /agent review=codex",
        max_args=1,
    ),
    CommandSpec("/agents", "", "each coding CLI: installed, version, auth, ready"),
    CommandSpec("/status", "", "the current run: status, branch, steps, cost"),
    CommandSpec("/groups", "", "the run's attempts side by side, reviewers' verdicts, subtask graph"),
    CommandSpec("/diff", "", "what the current run changed since its base"),
    CommandSpec("/log", "", "the run branch's commits, one per editing step"),
    CommandSpec("/undo", "", "roll back the last editing step (kept under a backup ref)"),
    CommandSpec("/merge", "", "merge the run branch into your current branch"),
    CommandSpec("/discard", "", "drop the run's branch and worktree (kept under a backup ref)"),
    CommandSpec("/cost", "", "tokens and cost per step, per agent, and in total"),
    CommandSpec("/runs", "", "the newest runs of this repository"),
    CommandSpec("/exit", "", "leave the shell (Ctrl-D too)"),
)
ALIASES: dict[str, str] = {"/quit": "/exit", "/?": "/help"}
BY_NAME: dict[str, CommandSpec] = {spec.name: spec for spec in COMMANDS}
NAMES: tuple[str, ...] = tuple(spec.name for spec in COMMANDS)
ESCAPE = "//"  # a message that starts with '/' is typed with '//'


@dataclass(frozen=True)
class Message:
    """Text for the agents: a task, or a follow-up on the current run."""

    text: str


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Invalid:
    """A mistake, and what would have been valid."""

    error: str
    hint: str


Parsed = Message | Command | Invalid | None


def command_list() -> str:
    return ", ".join(NAMES)


def help_text() -> str:
    width = max(len(f"{s.name} {s.usage}".strip()) for s in COMMANDS)
    lines = ["Type a task to start a run; each later message follows up on the same run and branch."]
    lines += [f"  {f'{s.name} {s.usage}'.strip():<{width}}  {s.help}" for s in COMMANDS]
    lines.append("Ctrl-C cancels the running step (the branch keeps its commits); Ctrl-D leaves.")
    lines.append(f"A message that starts with '/' is typed with '{ESCAPE}'.")
    return "\n".join(lines)


def parse_input(line: str) -> Parsed:
    """One line from the prompt. None for a blank line."""
    text = line.strip()
    if not text:
        return None
    if text.startswith(ESCAPE):
        return Message(text[1:])
    if not text.startswith("/"):
        return Message(text)
    word, _, rest = text.partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    spec = BY_NAME.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, NAMES, n=1)
        return Invalid(
            f"unknown command {word}" + (f" (did you mean {close[0]}?)" if close else ""),
            f"commands: {command_list()}; /help says what each does",
        )
    rest = rest.strip()
    args: tuple[str, ...] = ((rest,) if rest else ()) if spec.free_text else tuple(rest.split())
    if not spec.min_args <= len(args) <= spec.max_args:
        usage = f"{spec.name} {spec.usage}".strip()
        return Invalid(f"{spec.name} takes {_count(spec)}", f"usage: {usage}")
    if spec.name == "/agent" and args and args[0] != "clear":
        try:
            parse_agent_overrides(args)
        except UsageError as exc:
            return Invalid(exc.message.replace("--agent", "/agent"), _agent_hint())
    return Command(spec.name, args)


def _count(spec: CommandSpec) -> str:
    if spec.max_args == 0:
        return "no arguments"
    if spec.min_args == spec.max_args:
        return f"exactly {spec.min_args} argument{'s' if spec.min_args > 1 else ''}"
    return f"at most {spec.max_args} argument{'s' if spec.max_args > 1 else ''}"


def _agent_hint() -> str:
    return f"usage: /agent TASK=AGENT (tasks: {', '.join(TASKS)}; agents: {', '.join(AGENT_NAMES)}), or /agent clear"


def completions(buffer: str, text: str, *, workflows: Sequence[str] = ()) -> list[str]:
    """What Tab may complete `text` (the word under the cursor) to, given the whole line `buffer`."""
    before = buffer[: len(buffer) - len(text)] if buffer.endswith(text) else buffer
    words = before.split()
    if not words:
        return [name + " " for name in NAMES if name.startswith(text)] if text.startswith("/") else []
    if len(words) > 1:
        return []
    command = ALIASES.get(words[0], words[0])
    if command == "/workflow":
        return [name for name in workflows if name.startswith(text)]
    if command == "/agent":
        options = ["clear", *(f"{task}={agent}" for task in TASKS for agent in AGENT_NAMES)]
        if "=" not in text:
            options = ["clear", *(f"{task}=" for task in TASKS)]
        return [option for option in options if option.startswith(text)]
    return []
