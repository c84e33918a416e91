"""Fixtures for the workspace tests: real repositories in temporary folders, real git."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.workspace.git import Git


def _git(path: Path, *args: str) -> str:
    """Run git as a test's "user" would (through the same wrapper); stdout without the last newline."""
    return Git(path).out(*args)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _make_repo(path: Path) -> Path:
    """A small repository: text, a binary file, an executable, a symlink, an ignored file."""
    path.mkdir(parents=True)
    _git(path, "init", "-q", "--initial-branch=main")
    _write(path / "README.md", "# demo\n")
    _write(path / "src" / "app.py", "def main():\n    return 1\n")
    _write(path / "src" / "util.py", "X = 1\n")
    _write(path / "data.bin", bytes(range(256)) * 4)
    _write(path / "run.sh", "#!/bin/sh\necho hi\n").chmod(0o755)
    os.symlink("src/app.py", path / "link.py")
    _write(path / ".gitignore", "*.log\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "initial")
    _write(path / "build.log", "ignored output\n")
    return path


def _dirty_everything(repo: Path) -> None:
    """Staged, unstaged, untracked and ignored changes in the user's checkout."""
    _write(repo / "src" / "util.py", "X = 2  # staged\n")
    _git(repo, "add", "src/util.py")
    _write(repo / "src" / "util.py", "X = 3  # staged, then edited again\n")
    _write(repo / "README.md", "# demo\nunstaged line\n")
    _write(repo / "notes" / "todo.txt", "untracked\n")
    _write(repo / "more.log", "ignored\n")


@pytest.fixture
def git():
    return _git


@pytest.fixture
def write():
    return _write


@pytest.fixture
def make_repo():
    return _make_repo


@pytest.fixture
def dirty_everything():
    return _dirty_everything


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _make_repo(tmp_path / "repo")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"
