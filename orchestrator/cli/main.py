"""`orchestrator` / `orch`: the top-level command group and the one error handler around it.

Subcommands live in their own modules and are imported only when invoked, so `--help` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from orchestrator import __version__
from orchestrator.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, OrchestratorError

# command name -> ("module:attribute", one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "agents": (
        "orchestrator.cli.agents_cmd:agents",
        "Show each coding CLI: installed, version, auth, ready.",
    ),
    "run-agent": ("orchestrator.cli.run_agent_cmd:run_agent", "Run one headless agent step in a directory."),
    "install-clis": (
        "orchestrator.cli.install_cmd:install_clis_cmd",
        "Install the pinned coding CLIs from npm.",
    ),
    "testing": ("orchestrator.cli.testing_cmd:testing", "Test tools: the scripted model server."),
    "run": ("orchestrator.cli.run_cmd:run", "Run a workflow on a task, on a git branch of its own."),
    "runs": ("orchestrator.cli.runs_cmd:runs", "List, inspect, resume, roll back, merge or discard runs."),
    "workflows": ("orchestrator.cli.workflows_cmd:workflows", "List, show and validate workflows."),
    "shell": ("orchestrator.cli.shell_cmd:shell", "Work with the agents in conversation (a REPL)."),
    "demo": ("orchestrator.cli.demo_cmd:demo", "A full run with the real CLIs and no account."),
    "trust": (
        "orchestrator.cli.trust_cmd:trust",
        "Allow a repository's own config to run commands (like direnv allow).",
    ),
    "doctor": (
        "orchestrator.cli.doctor_cmd:doctor",
        "Check the state folder, free space, the run store and the CLIs (--repair).",
    ),
    "audit": ("orchestrator.cli.audit_cmd:audit", "What agents ran and what was written to your repos."),
    "worker": (
        "orchestrator.cli.cluster_cmd:worker",
        "Serve this machine's ready CLIs to the cluster (Temporal).",
    ),
    "serve": (
        "orchestrator.cli.serve_cmd:serve",
        "The web dashboard: every run live, steered from the browser.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        _configure_logging_once(ctx.find_root().params)
        module_name, _, attr = entry[0].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return _not_built(cmd_name)
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


_logging_ready = False


def _configure_logging_once(params: dict[str, Any]) -> None:
    """Logs go to stderr (stdout is for --json) or $ORCHESTRATOR_LOG_FILE, secrets masked; at
    --log-level / $ORCHESTRATOR_LOG_LEVEL (default: warning on stderr, info into a file); human lines
    on a terminal, JSON lines otherwise or with --log-format json. Done only when a command runs, so
    `--help` stays fast."""
    global _logging_ready
    if _logging_ready:
        return
    from orchestrator.logs import configure_logging

    log_file = os.environ.get("ORCHESTRATOR_LOG_FILE")
    level = params.get("log_level") or ("info" if log_file else "warning")
    fmt = params.get("log_format") or "auto"
    configure_logging(
        level,
        json=None if fmt == "auto" else fmt == "json",
        file=Path(log_file).expanduser() if log_file else None,
    )
    _logging_ready = True


def _not_built(name: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        raise click.UsageError(f"`{name}` is not available in this build")

    return placeholder


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="orchestrator")
@click.option(
    "--log-level",
    envvar="ORCHESTRATOR_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
    default=None,
    help="Log at this level or above (default: warning; info with ORCHESTRATOR_LOG_FILE).",
)
@click.option(
    "--log-format",
    envvar="ORCHESTRATOR_LOG_FORMAT",
    type=click.Choice(["auto", "human", "json"]),
    default=None,
    help="Log lines for people or JSON lines (default auto: human on a terminal). Never on stdout.",
)
def cli(log_level: str | None, log_format: str | None) -> None:
    """Make the real coding CLIs work one task together: implement, review the real diff, refine,
    on a git branch of its own."""


def _crash_log(exc: BaseException) -> Path | None:
    """The traceback, under the state home's crashes/ (where ORCHESTRATOR_HOME says, never HOME when
    it says otherwise); the system's temporary folder when the state home cannot be written."""
    import tempfile

    from orchestrator.workspace.paths import state_home

    text = f"ai-agents-orchestrator {__version__}\npython {sys.version}\nargv {sys.argv}\n\n" + "".join(
        traceback.format_exception(exc)
    )
    name = f"crash-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    for log_dir in (state_home(os.environ) / "crashes", Path(tempfile.gettempdir())):
        path = log_dir / name
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(_masked(text), encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _masked(text: str) -> str:
    from orchestrator.secrets import process_masker

    return process_masker().mask(text)


def _log_failure(message: str, exc: BaseException) -> None:
    """Errors (store faults among them) reach the log file too; on stderr the message says it already."""
    if not _logging_ready or not os.environ.get("ORCHESTRATOR_LOG_FILE"):
        return
    from orchestrator.logs import get_logger

    get_logger("orchestrator.cli").error(message, error_type=type(exc).__name__, error=str(exc))


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; map our errors to their exit codes, ^C (and SIGTERM, SIGHUP) to 130, anything else to
    3 plus a crash log."""
    from orchestrator.cli.worker import install_termination_handlers

    install_termination_handlers()  # SIGTERM and SIGHUP cancel like Ctrl-C, and end with 130
    try:
        # Without standalone mode click returns the code of ctx.exit(n) instead of raising it.
        code = cli.main(args=argv, prog_name="orchestrator", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OrchestratorError as exc:
        _log_failure("command failed", exc)
        click.echo(_masked(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # the last resort: keep the evidence for a bug report
        _log_failure("internal error", exc)
        path = _crash_log(exc)
        where = f"a crash log with the traceback is at {path}" if path else "no crash log could be written"
        click.echo(f"internal error: {_masked(repr(exc))}\n  {where}", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
