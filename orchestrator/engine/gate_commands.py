"""Gate and setup commands: split like a shell would, run without one; `run: auto` finds the tests."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Protocol

# A gate whose `run` is exactly this runs the repository's own test command, found by
# detect_test_command(); with no test suite the gate has nothing to run and is reported as skipped.
AUTO_GATE = "auto"

# Tokens a shell would treat as syntax. Gates run without a shell, so these would reach the program
# as plain arguments; refuse them instead of running something else than the user meant.
_SHELL_SYNTAX = frozenset({"&&", "||", "|", ";", "&", ">", ">>", "<", "<<", "2>", "2>&1", "&>", "|&"})
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class _Gate(Protocol):
    @property
    def run(self) -> str: ...

    @property
    def is_auto(self) -> bool: ...


def parse_gate_argv(run: str) -> tuple[str, ...]:
    """Split a gate's command as a POSIX shell would (quotes, escapes, `#` comments), for running
    without a shell. ValueError when it cannot be split or uses shell syntax it would not get."""
    try:
        argv = tuple(shlex.split(run, comments=True, posix=True))
    except ValueError as exc:
        raise ValueError(f"cannot split {run!r}: {exc}") from None
    if not argv:
        raise ValueError("the command is empty")
    syntax = [token for token in argv if token in _SHELL_SYNTAX]
    if syntax:
        raise ValueError(
            f"{syntax[0]!r} is shell syntax and gates run without a shell: use one gate per command, "
            f"or run: \"sh -c '...'\" when you need a shell"
        )
    if _ENV_ASSIGNMENT.match(argv[0]):
        raise ValueError(f'{argv[0]!r} sets a variable, which needs a shell: write run: "env {run.strip()}"')
    return argv


def detect_test_command(repo: Path) -> tuple[str, ...] | None:
    """The repository's own test command, judged from its files; None when it has no test suite."""
    if _has_python_tests(repo):
        return ("pytest", "-q")
    package_json = repo / "package.json"
    if package_json.is_file():
        try:
            scripts = json.loads(package_json.read_text(encoding="utf-8")).get("scripts") or {}
        except (ValueError, OSError, AttributeError):
            scripts = {}
        test_script = scripts.get("test") if isinstance(scripts, dict) else None
        # `npm init` writes a test script that only fails; that is not a test suite.
        if isinstance(test_script, str) and "no test specified" not in test_script:
            return ("npm", "test", "--silent")
    if (repo / "Cargo.toml").is_file():
        return ("cargo", "test", "--quiet")
    if (repo / "go.mod").is_file():
        return ("go", "test", "./...")
    for makefile in ("GNUmakefile", "makefile", "Makefile"):
        path = repo / makefile
        if path.is_file() and re.search(r"^test\s*:", _read(path), re.MULTILINE):
            return ("make", "test")
    return None


def _has_python_tests(repo: Path) -> bool:
    if (repo / "pytest.ini").is_file() or (repo / "conftest.py").is_file():
        return True
    markers = {"pyproject.toml": "[tool.pytest", "setup.cfg": "[tool:pytest]", "tox.ini": "[pytest]"}
    if any(marker in _read(repo / name) for name, marker in markers.items()):
        return True
    if any(repo.glob("test_*.py")) or any(repo.glob("*_test.py")):
        return True
    for folder in ("tests", "test"):
        if (repo / folder).is_dir() and (
            any((repo / folder).rglob("test_*.py")) or any((repo / folder).rglob("*_test.py"))
        ):
            return True
    return False


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def resolve_gate_argv(gate: _Gate, repo: Path) -> tuple[str, ...] | None:
    """What to run for `gate` in `repo`: its own command, or for `run: auto` the detected test
    command; None when `auto` finds no test suite (the engine reports the gate as skipped)."""
    return detect_test_command(repo) if gate.is_auto else parse_gate_argv(gate.run)
