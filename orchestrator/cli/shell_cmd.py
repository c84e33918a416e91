"""`orchestrator shell`: work with the agents in conversation.

The first message starts a run; each later one follows up on the same run and branch; /new starts
afresh. Ctrl-C during a step cancels that step and comes back to the prompt; at the prompt it clears the
line; Ctrl-D or /exit leaves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from orchestrator.cli.common import config_option, settings_for
from orchestrator.cli.shell.commands import completions, parse_input
from orchestrator.cli.shell.line_editing import LineEditor
from orchestrator.cli.shell.progress import wants_plain_view
from orchestrator.cli.shell.session import ShellSession
from orchestrator.cli.worker import Terminated, termination_requested
from orchestrator.engine.service import RunService
from orchestrator.engine.workflow import list_workflows
from orchestrator.workspace.paths import state_home


def repl(session: ShellSession, editor: LineEditor | None) -> None:
    """Read, act, repeat, until /exit or end of input."""
    while True:
        try:
            line = input(session.prompt())
        except EOFError:
            session.say("")
            return
        except Terminated:  # SIGTERM or SIGHUP: leave (main exits 130)
            raise
        except KeyboardInterrupt:  # at the prompt: a fresh line
            session.say("")
            continue
        if editor is not None:
            editor.remember(line)
        try:
            if not session.handle(parse_input(line)):
                return
        except Terminated:
            raise
        except KeyboardInterrupt:  # between a run's end and the prompt: nothing is running
            session.say("")
        signum = termination_requested()
        if signum is not None:  # it came during a step, which was cancelled: now leave
            raise Terminated(signum)


@click.command("shell")
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The repository (default: the one holding the current directory; outside any, a new one per run).",
)
@click.option(
    "--workflow",
    default=None,
    help="A built-in name, a YAML file, or a name in <repo>/.orchestrator/workflows/ (default: from the configuration).",
)
@config_option
def shell(repo: Path | None, workflow: str | None, config_path: Path | None) -> None:
    """A conversation with the agents: a task, then follow-ups on the same run. /help lists the commands."""
    cwd = Path.cwd()
    loaded = settings_for(config_path, repo or cwd)
    service = RunService(settings=loaded.settings, env=os.environ)
    editor: LineEditor | None = None
    try:
        session = ShellSession(
            service=service,
            loaded=loaded,
            cwd=cwd,
            repo=repo.resolve() if repo is not None else None,
            workflow_spec=workflow or loaded.settings.workflow,
            out=sys.stdout,
            plain=wants_plain_view(os.environ, sys.stdout),
        )
        if sys.stdin.isatty():

            def complete(buffer: str, text: str) -> list[str]:
                names = [w.name for w in list_workflows(session.repo) if w.error is None]
                return completions(buffer, text, workflows=names)

            editor = LineEditor(state_home(os.environ) / "shell_history", complete)
        session.say(
            f"orchestrator shell · workflow {session.workflow_name} · "
            "type a task to start a run, /help for commands, Ctrl-D to leave"
        )
        repl(session, editor)
    finally:
        if editor is not None:
            editor.close()
        service.close()
