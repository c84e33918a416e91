"""`orchestrator run-agent AGENT PROMPT --cwd DIR`: one headless agent step, rendered live."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from orchestrator.adapters import AGENT_NAMES, get_adapter
from orchestrator.adapters.base import AgentRequest, PermissionMode, credential_vars_for
from orchestrator.adapters.runner import run_agent_step
from orchestrator.cli.common import config_option, print_json, settings_for
from orchestrator.cli.render import ConsoleRenderer
from orchestrator.cli.worker import run_cancellable
from orchestrator.config import agent_child_vars
from orchestrator.errors import EXIT_INTERRUPTED
from orchestrator.proc import use_process_records
from orchestrator.secrets import SecretMasker, process_masker
from orchestrator.workspace.paths import state_home
from orchestrator.workspace.sandbox import resolve_sandbox


def agent_run_dir(agent: str, cwd: Path, env: Mapping[str, str] = os.environ) -> Path:
    """A folder of this agent's own for this directory, outside it: settings, usage reports, TMPDIR.
    Stable across calls, so a `--resume` finds what the CLI kept there."""
    digest = hashlib.sha256(str(cwd).encode()).hexdigest()[:12]
    return state_home(env) / "agents" / agent / digest


@click.command("run-agent")
@click.argument("agent", type=click.Choice(AGENT_NAMES))
@click.argument("prompt")
@click.option(
    "--cwd",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("."),
    help="Directory the agent works in (default: here).",
)
@config_option
@click.option(
    "--read-only", is_flag=True, help="Reviewer mode: the agent may not edit files or run writing commands."
)
@click.option("--bypass", is_flag=True, help="Allow everything (the CLI's own full bypass). Use with care.")
@click.option("--resume", "resume_session", default=None, help="Resume this CLI session (a follow-up).")
@click.option("--model", default=None, help="Model to use (default: the agent's configured model).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the outcome.")
@click.option(
    "--transcript",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the CLI's raw output lines to this file (stderr beside it).",
)
def run_agent(
    agent: str,
    prompt: str,
    cwd: Path,
    config_path: Path | None,
    read_only: bool,
    bypass: bool,
    resume_session: str | None,
    model: str | None,
    as_json: bool,
    transcript: Path | None,
) -> None:
    """Run one headless step of AGENT on PROMPT in --cwd. Exit 0 only when the agent succeeded."""
    if read_only and bypass:
        raise click.UsageError("--read-only and --bypass contradict each other; choose one")
    cwd = cwd.resolve()
    loaded = settings_for(config_path, cwd)
    adapter = get_adapter(agent)
    config = loaded.settings.agent(agent)
    permission = (
        PermissionMode.READ_ONLY if read_only else PermissionMode.BYPASS if bypass else PermissionMode.EDIT
    )
    request = AgentRequest(
        prompt=prompt,
        cwd=cwd,
        run_dir=agent_run_dir(agent, cwd),
        permission=permission,
        resume_session=resume_session,
        model=model or config.model,
        extra_args=tuple(config.args),
        env=agent_child_vars(
            agent, config, credential_vars_for(adapter, os.environ, config.args), os.environ
        ),
        command=config.command,
    )
    # Masks what the agent is given (and key-shaped strings) in the output, the transcript, the JSON.
    masker = SecretMasker.from_environments(os.environ, {agent: dict(request.env)})
    process_masker().add(masker)
    renderer = ConsoleRenderer(stream=sys.stderr)
    sandbox = resolve_sandbox(loaded.settings.sandbox, os.environ)  # it may write only --cwd here
    use_process_records(state_home(os.environ) / "procs")
    # In a worker thread, so Ctrl-C, SIGTERM and SIGHUP cancel the step through its kill ladder.
    result, interrupted = run_cancellable(
        lambda cancel: run_agent_step(
            adapter,
            request,
            config,
            parent_env=os.environ,
            on_event=lambda event: renderer.agent_event(agent, event),
            cancel=cancel,
            transcript=transcript,
            sandbox=sandbox,
            masker=masker,
        )
    )
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    from orchestrator.audit import audit_agent_step, audit_log, run_masker

    audit = audit_log(os.environ, masker=run_masker(os.environ, [config.env]))
    audit_agent_step(audit, result, run_id=None, step_id=None)
    if as_json:
        print_json(masker.mask_value(result.to_json()))
    else:
        s = result.summary
        status = "succeeded" if s.success else f"failed [{s.error_kind}]: {s.error_message}"
        cost = f"${s.cost_usd:.4f}" if s.cost_usd is not None else "cost unknown"
        click.echo(
            f"{agent}: {status}; {len(result.files_changed)} files changed; "
            f"{s.input_tokens} in / {s.output_tokens} out tokens, {cost}; session {s.session_id or '-'}"
        )
        if s.final_text and s.success:
            click.echo(s.final_text)
    sys.exit(0 if result.success else 1)
