"""`orchestrator demo`: the default workflow with the four real CLIs and no account.

A fresh sample repository; the real Claude Code, Codex, Gemini CLI (and Copilot CLI, checked) pointed at
the scripted model server; Claude implements, the tests gate fails on a bug, Codex reviews the real diff
and requests a change, Gemini refines, the gate passes, and Codex's second review approves.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from orchestrator.cli.common import print_json
from orchestrator.cli.render import ConsoleRenderer
from orchestrator.cli.worker import run_cancellable
from orchestrator.config import settings_from_data
from orchestrator.engine.report_render import render_text
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command
from orchestrator.testing.scenario import scenario_from_data
from orchestrator.workspace.paths import default_workspace_dir

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.ui.app import Dashboard

DEMO_AGENTS = ("claude", "codex", "gemini")
DEMO_TASK = "Add calc.add(a, b) with a unit test"

CALC_BUGGY = "def add(a, b):\n    return a - b\n"
TESTS = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    "if __name__ == '__main__':\n    unittest.main()\n"
)
REVIEW_CHANGES = (
    "add() subtracts instead of adding, and the test fails.\n"
    '```json\n{"verdict": "request_changes", "findings": [{"severity": "high", "file": "calc.py", '
    '"line": 2, "message": "add() returns a - b; it must return a + b"}]}\n```'
)
REVIEW_APPROVE = 'The fix is right and the test passes.\n```json\n{"verdict": "approve", "findings": []}\n```'


def demo_scenario() -> dict[str, Any]:
    """The model's answers, in the order the run asks for them (each CLI in its own tool vocabulary)."""
    return {
        "name": "demo",
        "turns": [
            # i1 implement (claude)
            {"write_file": {"path": "calc.py", "content": CALC_BUGGY}},
            {"write_file": {"path": "test_calc.py", "content": TESTS}},
            {"text": "Added calc.add() and a unit test."},
            # i1 review (codex): the gate failed; the reviewer asks for the fix
            {"text": REVIEW_CHANGES},
            # i1 refine (gemini)
            {"edit_file": {"path": "calc.py", "old": "return a - b", "new": "return a + b"}},
            {"text": "add() now returns a + b."},
            # i2 review (codex)
            {"text": REVIEW_APPROVE},
        ],
    }


def demo_workflow(python: str) -> dict[str, Any]:
    """The built-in default workflow's steps, with its tests gate set to the sample's unittest command."""
    return {
        "description": "The default workflow (implement, tests, review, refine) for the demo's sample repo.",
        "max_iterations": 3,
        "steps": [
            {
                "agent": "claude",
                "task": "implement",
                "description": "Make the change the task asks for, with tests.",
            },
            {"run": f"{python} -m unittest -q", "name": "tests", "timeout_s": 120},
            {"agent": "codex", "task": "review", "description": "Review the diff since the base, read-only."},
            {
                "agent": "gemini",
                "task": "refine",
                "description": "Address the review's findings and the failing tests.",
            },
        ],
    }


def make_sample_repo(root: Path, python: str) -> Path:
    root.mkdir(parents=True)
    (root / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    (root / "README.md").write_text(
        "# calc\n\nA tiny calculator, built by the orchestrator's demo.\n", encoding="utf-8"
    )
    workflows = root / ".orchestrator" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "default.yaml").write_text(
        yaml.safe_dump(demo_workflow(python), sort_keys=False), encoding="utf-8"
    )
    ident = ["-c", "user.name=Demo", "-c", "user.email=demo@example.invalid", "-c", "commit.gpgsign=false"]
    run_command(["git", "init", "-q", "-b", "main"], root, check=True)
    run_command(["git", "add", "-A"], root, check=True)
    run_command(["git", *ident, "commit", "-q", "-m", "Start the calc project"], root, check=True)
    return root


def _serve_demo(settings: Settings, repo: Path, *, port: int, open_browser: bool) -> None:
    """The demo run, executed by the dashboard's process and shown live in it."""
    from orchestrator.cli.serve_cmd import serve_dashboard

    def start(dashboard: Dashboard) -> None:
        record = dashboard.context.service.create(RunSpec(task=DEMO_TASK, cwd=repo, repo=repo))
        dashboard.context.actions.execute(record.id)
        click.echo(f"demo run: {record.id} (open it from the dashboard's list)", err=True)

    serve_dashboard(
        settings=settings,
        env=os.environ,
        repos=[repo],
        host="127.0.0.1",
        port=port,
        open_browser=open_browser,
        on_ready=start,
    )


@click.command("demo")
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to make the sample repository (default: the workspace folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report.")
@click.option("--serve", "serve", is_flag=True, help="Run it live in the web dashboard (until Ctrl-C).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="With --serve.")
@click.option("--no-open", is_flag=True, help="With --serve: do not open a browser.")
def demo(where: Path | None, as_json: bool, serve: bool, port: int, no_open: bool) -> None:
    """A full run with the real CLIs against the scripted model server: no account, no network."""
    from orchestrator.cli.agents_cmd import check_agents
    from orchestrator.config import LoadedSettings
    from orchestrator.testing.model_server import ScriptedModelServer
    from orchestrator.testing.pointing import agents_config
    from orchestrator.trust import repo_config_files, trust_files

    python = sys.executable
    repo = make_sample_repo(
        (where or default_workspace_dir(os.environ)) / f"demo-{time.strftime('%Y%m%d-%H%M%S')}", python
    )
    # The demo wrote the sample's workflow (its gate runs the sample's tests) itself: trusted.
    trust_files(repo_config_files(repo), os.environ)
    server = ScriptedModelServer(scenario_from_data(demo_scenario(), source="demo")).start()
    try:
        config = agents_config(server.url, DEMO_AGENTS)
        config["fallback_order"] = list(DEMO_AGENTS)
        settings = settings_from_data(config, source="demo")
        missing = [a for a in check_agents(LoadedSettings(settings, None), DEMO_AGENTS) if not a.ready]
        if missing:
            lines = "\n".join(f"  {a.agent}: {a.reason}" + (f" ({a.fix})" if a.fix else "") for a in missing)
            raise click.ClickException(
                f"the demo needs these CLIs ready:\n{lines}\nrun `orchestrator install-clis`"
            )
        click.echo(f"sample repository: {repo}\nscripted model server: {server.url}\n", err=True)
        if serve:
            _serve_demo(settings, repo, port=port, open_browser=not no_open)
            return
        service = RunService(settings=settings, env=os.environ)
        try:
            record = service.create(RunSpec(task=DEMO_TASK, cwd=repo, repo=repo))
            renderer = ConsoleRenderer(stream=sys.stderr)
            report, interrupted = run_cancellable(
                lambda cancel: service.execute(record.id, subscribers=[renderer.run_event], cancel=cancel)
            )
            commits = service.workspace(record.id).log()
        finally:
            service.close()
    finally:
        server.stop()
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        click.echo(render_text(report))
        click.echo(f"the branch holds {len(commits)} commits, one per editing step:")
        for c in commits:
            click.echo(f"  {c.sha[:10]} {c.agent or '-':<7} {c.subject}")
        click.echo(f"\nsee it: git -C {repo} log --stat {record.branch}")
        click.echo(f"model requests served: {len(server.requests)}")
    sys.exit(130 if interrupted else report.exit_code)
