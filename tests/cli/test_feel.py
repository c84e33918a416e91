"""How the CLI feels: `--help` is fast and light, `--version` answers, data comes as JSON on request,
and NO_COLOR means no escape codes even on a terminal."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import click
import pytest
import yaml

from orchestrator import __version__
from orchestrator.cli.main import COMMANDS, cli, main
from orchestrator.proc import child_env, run_command

# Imported by `import orchestrator.cli.main` or `orchestrator --help`, these would cost more than the
# whole budget allows. Measured here (best of three imports in a fresh interpreter, Python 3.11, a
# loaded 2-core machine): pydantic (BaseModel) 166 ms, structlog 152 ms, flask 101 ms, flask_socketio
# 243 ms, prometheus_client 48 ms, asyncio 32 ms, rich.console 27 ms, yaml 15 ms, pexpect 7 ms; and our
# own modules built on them: orchestrator.events 203 ms, .config 172 ms, .adapters 169 ms, .store
# 216 ms, .engine.service 257 ms, .workspace.git 33 ms, .proc 26 ms. For comparison click, which the
# group needs, is 17 ms, and sqlite3 (2 ms), subprocess (3 ms) and json (2 ms) do not count as heavy.
HEAVY_PACKAGES = (
    "pydantic",
    "pydantic_core",
    "structlog",
    "flask",
    "flask_socketio",
    "socketio",
    "engineio",
    "werkzeug",
    "jinja2",
    "prometheus_client",
    "asyncio",
    "rich",
    "yaml",
    "pexpect",
)
HEAVY_OURS = (
    "orchestrator.events",
    "orchestrator.config",
    "orchestrator.adapters",
    "orchestrator.store",
    "orchestrator.engine",
    "orchestrator.workspace",
    "orchestrator.proc",
    "orchestrator.logs",
    "orchestrator.metrics",
    "orchestrator.testing",
    "orchestrator.ui",
)

# Commands that print no data to script against, so need no --json. Anything else must take --json.
NO_DATA = {
    "shell": "an interactive REPL",
    "testing serve-model": "a server: its configuration for the CLIs goes to a file with --write-config",
    "serve": "a server: it prints its URL; its data is the dashboard's JSON API under /api",
    "worker": "a server: it serves the cluster until stopped; its steps are in the runs (runs show --json)",
    "install-clis": "an action: its exit code and one line say how it went",
    "workflows validate": "a check: its exit code and its error naming file and key are the result",
}


def fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    return child_env(
        os.environ,
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            **extra,
        },
    )


def python(code: str, tmp_path: Path) -> str:
    result = run_command([sys.executable, "-c", code], tmp_path, env=fresh_env(tmp_path), timeout_s=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def heavy_in(modules: list[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if name.split(".")[0] in HEAVY_PACKAGES
        or any(name == m or name.startswith(m + ".") for m in HEAVY_OURS)
    )


def test_help_lists_every_command(tmp_path):
    """How fast it answers is measured in benchmarks/bench_cli_start.py (not a timed test: the machines
    are shared); what keeps it fast, importing nothing heavy, is the next test."""
    argv = [sys.executable, "-m", "orchestrator", "--help"]
    result = run_command(argv, tmp_path, env=fresh_env(tmp_path), timeout_s=60)
    assert result.returncode == 0 and "Usage: orchestrator" in result.stdout
    assert all(name in result.stdout for name in COMMANDS)


def test_importing_the_cli_pulls_in_nothing_heavy(tmp_path):
    imported = json.loads(
        python("import json, sys, orchestrator.cli.main; print(json.dumps(sorted(sys.modules)))", tmp_path)
    )
    assert "click" in imported and "orchestrator.cli.main" in imported
    assert heavy_in(imported) == []


def modules_after(argvs: list[list[str]], tmp_path: Path) -> list[str]:
    """The modules a fresh interpreter holds after running the CLI with each argv in turn."""
    code = (
        "import json, sys\n"
        "from orchestrator.cli.main import main\n"
        f"for argv in {argvs!r}:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (argv, exc.code)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    return list(json.loads(python(code, tmp_path).splitlines()[-1]))


def test_help_and_version_pull_in_nothing_heavy(tmp_path):
    assert heavy_in(modules_after([["--help"], ["--version"]], tmp_path)) == []


def test_the_heavy_check_sees_what_a_command_imports(tmp_path):
    # A command's own --help imports its module (and what that needs): the check above would notice.
    heavy = heavy_in(modules_after([["run", "--help"]], tmp_path))
    assert {"pydantic", "yaml", "orchestrator.engine.service"} <= set(heavy)


def test_version(tmp_path):
    result = run_command(
        [sys.executable, "-m", "orchestrator", "--version"], tmp_path, env=fresh_env(tmp_path), timeout_s=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"orchestrator, version {__version__}"


def _leaf_commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    leaves: list[tuple[str, click.Command]] = []

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{path} {name}"
                walk(sub, f"{path} {name}".strip())
        else:
            leaves.append((path, command))

    walk(cli, "")
    return leaves


def test_every_data_printing_command_takes_json():
    leaves = dict(_leaf_commands())
    assert {"run", "runs list", "agents", "workflows list"} <= set(leaves)
    missing = [
        path
        for path, command in leaves.items()
        if path not in NO_DATA
        and path.split()[0] not in NO_DATA
        and not any("--json" in param.opts for param in command.params)
    ]
    assert missing == []
    assert set(NO_DATA) - set(leaves) - {"shell"} == set(), "an exemption names a command that is gone"


@pytest.mark.parametrize(
    "argv",
    [["workflows", "list", "--json"], ["workflows", "show", "default", "--json"], ["runs", "list", "--json"]],
)
def test_json_output_is_json(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    assert isinstance(json.loads(out), list | dict)


class Terminal:
    """A pseudo-terminal standing in for stdout and stderr of an in-process command, read as bytes."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.stream = open(slave, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self.data = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the slave side was closed
                return
            if not chunk:
                return
            self.data += chunk

    def close(self) -> bytes:
        self.stream.close()
        self.reader.join(10)
        os.close(self.master)
        return bytes(self.data)


def run_on_terminal(argv: list[str], monkeypatch) -> tuple[int, bytes]:
    terminal = Terminal()
    try:
        with monkeypatch.context() as patch, pytest.raises(SystemExit) as info:
            patch.setattr(sys, "stdout", terminal.stream)
            patch.setattr(sys, "stderr", terminal.stream)
            main(argv)
    finally:
        output = terminal.close()
    return int(info.value.code or 0), output


@pytest.fixture
def fake_step(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump({"turns": [{"write_file": {"path": "x.txt", "content": "x"}}, {"text": "all done"}]})
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
    )
    return ["run-agent", "fake", "write x", "--cwd", str(work), "--config", str(config)], scenario


@pytest.mark.parametrize("which", ["run-agent", "agents"])
@pytest.mark.parametrize("no_color", [True, False])
def test_no_color_gives_no_escape_codes_on_a_terminal(which, no_color, fake_step, tmp_path, monkeypatch):
    run_agent, scenario = fake_step
    argv = run_agent if which == "run-agent" else ["agents"]
    # On a terminal and outside CI the rich renderer is used, which is what NO_COLOR must quiet.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "state"))
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    code, output = run_on_terminal(argv, monkeypatch)
    assert code == 0, output.decode(errors="replace")
    text = output.decode()
    assert ("all done" in text) if which == "run-agent" else ("claude" in text and "codex" in text)
    if no_color:
        assert b"\x1b" not in output, text
    else:  # the same run without NO_COLOR is styled: the check above can see escape codes
        assert b"\x1b[" in output
