"""`orchestrator testing serve-model`: the scripted model server from the command line, so a user can
dry-run a workflow with the real CLIs, for free."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from orchestrator.testing.scenario import load_scenario


@click.group("testing")
def testing() -> None:
    """Tools for testing with the real CLIs and no account."""


@testing.command("serve-model")
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="Scenario file (YAML or JSON): the turns the model answers with.",
)
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option(
    "--write-config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write an orchestrator config pointing every CLI at this server.",
)
def serve_model(scenario_path: Path, port: int, write_config: Path | None) -> None:
    """Serve the Anthropic, OpenAI (Responses, Chat) and Gemini APIs on 127.0.0.1, playing SCENARIO."""
    from orchestrator.testing.model_server import ScriptedModelServer
    from orchestrator.testing.pointing import agents_config

    scenario = load_scenario(scenario_path)
    server = ScriptedModelServer(scenario, port=port).start()
    config = agents_config(server.url)
    text = yaml.safe_dump(config, sort_keys=False)
    if write_config:
        write_config.write_text(text, encoding="utf-8")
    click.echo(f"scripted model server on {server.url} ({len(scenario.turns)} turns); Ctrl-C to stop")
    click.echo(
        "point the CLIs at it with this configuration"
        + (f" (written to {write_config}):" if write_config else ":")
    )
    click.echo(text)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        click.echo(f"served {len(server.requests)} requests, {server.turns_used} turns used")
