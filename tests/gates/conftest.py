"""Real projects for the gate tests: git repositories, a virtualenv with the user's checkout installed
editable (made once per session: pip is slow), Node projects with a local dependency and a lockfile.
Runs are driven through the run service with the fake agent (a real process)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.report import RunReport
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.events import RunEvent
from orchestrator.proc import child_env, run_command

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
CALC = "def add(a, b):\n    return a + b\n"
CALC_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
SETUPTOOLS = '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'


def commit_all(repo: Path, message: str = "initial") -> None:
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", message], repo, check=True
    )


def make_repo(path: Path, files: dict[str, str], *, ignore: Sequence[str] = ()) -> Path:
    path.mkdir(parents=True)
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    for name, text in {
        **files,
        ".gitignore": "".join(f"{p}\n" for p in ("__pycache__/", "*.egg-info/", *ignore)),
    }.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    commit_all(path)
    return path


def src_layout_files(package: str = "calc") -> dict[str, str]:
    return {
        "pyproject.toml": SETUPTOOLS + f'[project]\nname = "{package}"\nversion = "0.1"\n',
        f"src/{package}/__init__.py": CALC,
        "tests/test_calc.py": CALC_TEST.replace("calc", package),
    }


def flat_layout_files(package: str = "flatcalc") -> dict[str, str]:
    return {
        "pyproject.toml": SETUPTOOLS
        + f'[project]\nname = "{package}"\nversion = "0.1"\n[tool.setuptools]\npackages = ["{package}"]\n',
        f"{package}/__init__.py": CALC,
        "tests/test_calc.py": CALC_TEST.replace("calc", package),
    }


@dataclass(frozen=True)
class UserVenv:
    """The user's virtualenv: pytest, and their checkouts installed editable (pip install -e)."""

    path: Path
    src_checkout: Path  # src layout, package `calc`
    flat_checkout: Path  # flat layout, package `flatcalc`

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """The environment of a user who activated this virtualenv."""
        return {
            **base,
            "PATH": f"{self.path / 'bin'}{os.pathsep}{base.get('PATH', '')}",
            "VIRTUAL_ENV": str(self.path),
        }


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory: pytest.TempPathFactory) -> UserVenv:
    root = tmp_path_factory.mktemp("user")
    src = make_repo(root / "calc", src_layout_files())
    flat = make_repo(root / "flatcalc", flat_layout_files())
    venv = root / "venv"
    run_command([sys.executable, "-m", "venv", str(venv)], root, check=True, timeout_s=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run_command(
        [*pip, "pytest", "-e", str(src), "-e", str(flat)],
        root,
        env=child_env(os.environ),
        check=True,
        timeout_s=600,
    )
    return UserVenv(venv, src, flat)


class GateRun:
    """One repository, one scenario for the fake agent, one workflow; `run()` returns the report."""

    def __init__(
        self,
        tmp: Path,
        repo: Path,
        turns: list[dict[str, Any]],
        steps: list[dict[str, Any]],
        env: dict[str, str],
        sandbox: str | None = None,
        **workflow: Any,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.repo = repo
        scenario = tmp / "scenario.yaml"
        scenario.write_text(yaml.safe_dump({"turns": turns}))
        self.workflow = tmp / "wf.yaml"
        self.workflow.write_text(yaml.safe_dump({"max_iterations": 1, **workflow, "steps": steps}))
        data = {
            "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}, "timeout_s": 60}},
            "fallback_order": ["fake"],
        }
        if sandbox is not None:
            data["sandbox"] = sandbox
        self.env = {**env, "ORCHESTRATOR_HOME": str(tmp / "state")}
        self.service = RunService(settings=settings_from_data(data), env=self.env)
        self.events: list[RunEvent] = []

    def run(self, **spec: Any) -> RunReport:
        record = self.service.create(
            RunSpec(task="change calc", cwd=self.repo, workflow=str(self.workflow), **spec)
        )
        self.run_id = record.id
        return self.service.execute(record.id, subscribers=[self.events.append])

    def worktree(self) -> Path:
        return self.service.workspace(self.run_id).worktree


@pytest.fixture
def gate_run(tmp_path: Path) -> Iterator[Any]:
    made: list[GateRun] = []

    def make(
        repo: Path,
        turns: list[dict[str, Any]],
        steps: list[dict[str, Any]],
        env: dict[str, str] | None = None,
        sandbox: str | None = None,
        **workflow: Any,
    ) -> GateRun:
        run = GateRun(
            tmp_path / f"run{len(made)}", repo, turns, steps, env or dict(os.environ), sandbox, **workflow
        )
        made.append(run)
        return run

    yield make
    for run in made:
        run.service.close()


@dataclass(frozen=True)
class NodeProject:
    repo: Path  # the user's checkout: package.json, package-lock.json, no node_modules committed
    npm_cache: Path


@pytest.fixture(scope="session")
def node_project(tmp_path_factory: pytest.TempPathFactory) -> NodeProject:
    """A Node project whose test needs a dependency: a local package packed into a tarball that the
    repository carries (`file:vendor/...tgz`), locked in package-lock.json. No registry is involved."""
    root = tmp_path_factory.mktemp("node")
    cache = root / "npm-cache"
    env = child_env(os.environ)
    dep = root / "leftpad"
    dep.mkdir()
    (dep / "package.json").write_text('{"name": "leftpad-local", "version": "1.0.0", "main": "index.js"}\n')
    (dep / "index.js").write_text("module.exports = (s, n) => ' '.repeat(Math.max(0, n - s.length)) + s;\n")
    repo = make_repo(
        root / "strpad",
        {
            "package.json": '{"name": "strpad", "version": "1.0.0", "private": true, '
            '"scripts": {"test": "node --test"}}\n',
            "index.js": "const pad = require('leftpad-local');\nexports.right = (s) => pad(s, 5);\n",
            "test/pad.test.js": "const test = require('node:test');\nconst assert = require('node:assert');\n"
            "const { right } = require('../index.js');\n"
            "test('pads', () => assert.strictEqual(right('ab'), '   ab'));\n",
        },
        ignore=["node_modules/"],
    )
    (repo / "vendor").mkdir()
    run_command(
        ["npm", "pack", "--silent", "--pack-destination", str(repo / "vendor"), "--cache", str(cache)],
        dep,
        env=env,
        check=True,
    )
    run_command(
        [
            "npm",
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--cache",
            str(cache),
            "./vendor/leftpad-local-1.0.0.tgz",
        ],
        repo,
        env=env,
        check=True,
        timeout_s=300,
    )
    run_command(["git", "rm", "-rq", "--cached", "--ignore-unmatch", "node_modules"], repo, check=True)
    commit_all(repo, "add leftpad-local")
    import shutil

    shutil.rmtree(repo / "node_modules")  # a fresh clone of the repository has none either
    return NodeProject(repo, cache)
