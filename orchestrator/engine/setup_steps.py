"""`setup:`: what makes the files git ignores but the gates need (node_modules, a virtualenv inside the
repository), chosen from the lockfile for `run: auto`. Pure: which command, which cache, which tool.

Caches live under <state home>/cache/, shared by every run, so the second run of a repository installs
from disk; nothing is ever written into the user's checkout (setup runs in the run's repository and in
the base checkout only).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.engine.workflow import SetupStep, parse_gate_argv


@dataclass(frozen=True)
class SetupCommand:
    """One command to run before the gates, and why it was chosen."""

    argv: tuple[str, ...]
    timeout_s: float
    reason: str = ""  # "package-lock.json found", for the report
    env: Mapping[str, str] = field(default_factory=dict)  # cache locations
    # When its program is not installed: what to tell the user (the gates then run without it).
    missing_hint: str = ""

    @property
    def display(self) -> str:
        return " ".join(self.argv)


# The files whose change means the setup must run again (an agent added a dependency).
MANIFESTS = (
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "bun.lock",
    "bun.lockb",
    "uv.lock",
    "poetry.lock",
    "Pipfile.lock",
    "pdm.lock",
    "pyproject.toml",
    "requirements.txt",
)


def manifests_fingerprint(tree: Path) -> str:
    """A hash of the files that decide what setup installs."""
    digest = hashlib.sha256()
    for name in MANIFESTS:
        path = tree / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _package_json(tree: Path) -> dict[str, object]:
    try:
        data = json.loads((tree / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def node_dependencies(tree: Path) -> list[str]:
    """The package.json's dependencies and devDependencies (names)."""
    data = _package_json(tree)
    names: list[str] = []
    for key in ("dependencies", "devDependencies"):
        deps = data.get(key)
        if isinstance(deps, dict):
            names += [str(name) for name in deps]
    return names


def _yarn_berry(tree: Path) -> bool:
    manager = _package_json(tree).get("packageManager")
    if isinstance(manager, str) and manager.startswith("yarn@"):
        return not manager.startswith("yarn@1.")
    return (tree / ".yarnrc.yml").is_file()


def auto_setup(tree: Path, cache_dir: Path, timeout_s: float) -> tuple[list[SetupCommand], list[str]]:
    """What `setup: run: auto` runs in `tree`: one install per ecosystem, from the lockfile found.
    Returns the commands and notes (what was found but needs nothing, or could not be judged)."""
    commands: list[SetupCommand] = []
    notes: list[str] = []

    def add(argv: list[str], reason: str, hint: str, env: Mapping[str, str] | None = None) -> None:
        commands.append(SetupCommand(tuple(argv), timeout_s, reason, dict(env or {}), hint))

    npm_cache = str(cache_dir / "npm")
    if (tree / "pnpm-lock.yaml").is_file():
        add(
            ["pnpm", "install", "--frozen-lockfile", "--store-dir", str(cache_dir / "pnpm-store")],
            "pnpm-lock.yaml found",
            "install pnpm (`corepack enable pnpm`, or `npm install -g pnpm`)",
        )
    elif (tree / "yarn.lock").is_file():
        berry = _yarn_berry(tree)
        add(
            ["yarn", "install", "--immutable" if berry else "--frozen-lockfile"],
            "yarn.lock found",
            "install yarn (`corepack enable yarn`, or `npm install -g yarn`)",
            {"YARN_CACHE_FOLDER": str(cache_dir / "yarn")},
        )
    elif (tree / "bun.lock").is_file() or (tree / "bun.lockb").is_file():
        add(
            ["bun", "install", "--frozen-lockfile"],
            "bun.lock found",
            "install bun (https://bun.sh)",
            {"BUN_INSTALL_CACHE_DIR": str(cache_dir / "bun")},
        )
    elif (tree / "package-lock.json").is_file() or (tree / "npm-shrinkwrap.json").is_file():
        lock = "package-lock.json" if (tree / "package-lock.json").is_file() else "npm-shrinkwrap.json"
        add(
            ["npm", "ci", "--cache", npm_cache, "--prefer-offline", "--no-audit", "--no-fund"],
            f"{lock} found",
            "install Node.js and npm",
        )
    elif node_dependencies(tree):
        # No lockfile: install what package.json asks for, without writing a lockfile into the run.
        add(
            [
                "npm",
                "install",
                "--no-package-lock",
                "--cache",
                npm_cache,
                "--prefer-offline",
                "--no-audit",
                "--no-fund",
            ],
            "package.json has dependencies and no lockfile",
            "install Node.js and npm",
        )

    if (tree / "uv.lock").is_file():
        add(
            ["uv", "sync", "--frozen"],
            "uv.lock found",
            "install uv (`pip install uv`, or https://docs.astral.sh/uv/)",
            {"UV_CACHE_DIR": str(cache_dir / "uv"), "UV_PROJECT_ENVIRONMENT": ".venv"},
        )
    elif (tree / "poetry.lock").is_file():
        add(
            ["poetry", "install", "--no-interaction"],
            "poetry.lock found",
            "install poetry (`pipx install poetry`)",
            {"POETRY_VIRTUALENVS_IN_PROJECT": "true", "POETRY_CACHE_DIR": str(cache_dir / "poetry")},
        )
    elif (tree / "pdm.lock").is_file():
        add(
            ["pdm", "sync", "--no-self"],
            "pdm.lock found",
            "install pdm (`pipx install pdm`)",
            {"PDM_CACHE_DIR": str(cache_dir / "pdm")},
        )
    elif (tree / "Pipfile.lock").is_file():
        add(
            ["pipenv", "sync", "--dev"],
            "Pipfile.lock found",
            "install pipenv (`pipx install pipenv`)",
            {"PIPENV_VENV_IN_PROJECT": "1", "PIPENV_CACHE_DIR": str(cache_dir / "pipenv")},
        )
    if not commands:
        notes.append("setup (auto): no lockfile found, nothing to install")
    return commands, notes


def plan_setup(
    steps: tuple[SetupStep, ...], tree: Path, cache_dir: Path
) -> tuple[list[SetupCommand], list[str]]:
    """The commands for a workflow's `setup:` list in `tree` (auto entries resolved)."""
    commands: list[SetupCommand] = []
    notes: list[str] = []
    for step in steps:
        if step.is_auto:
            found, found_notes = auto_setup(tree, cache_dir, step.timeout_s)
            commands += found
            notes += found_notes
        else:
            commands.append(SetupCommand(parse_gate_argv(step.run), step.timeout_s, "the workflow's setup"))
    return commands, notes


def tool_missing(command: SetupCommand, path: str) -> str | None:
    """What to say when the command's program is not installed (None when it is)."""
    exe = command.argv[0]
    if "/" in exe or shutil.which(exe, path=path) is not None:
        return None
    what = f"{command.reason}: " if command.reason else ""
    hint = command.missing_hint or f"install `{exe}` or put it on PATH"
    return (
        f"{what}`{command.display}` needs `{exe}`, which is not on PATH: {hint}; or give the workflow "
        "a `setup:` of its own. The gates run without it."
    )
