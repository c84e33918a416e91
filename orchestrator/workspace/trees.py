"""Reading a work tree's full state (tracked, modified, staged and untracked files; not ignored ones) as a
git tree, without writing that work tree's index or files.

The trick: copy the work tree's index to a temporary file, point GIT_INDEX_FILE at the copy, `git add -A`
against it and `git write-tree`. Git writes only the copy (and new objects). Starting from a copy keeps
git's stat cache, so unchanged files are not hashed again.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from orchestrator.workspace.git import Git

TRAILER_KEYS = ("Orchestrator-Run", "Orchestrator-Step", "Orchestrator-Agent", "Orchestrator-Task")
_TRAILER_MAX = 200


def index_path(git: Git) -> Path:
    """The index file of the work tree `git` runs in (a linked worktree has its own)."""
    return git.path / git.out("rev-parse", "--git-path", "index")


def work_tree_tree(git: Git, tmp_dir: Path, *, index: Path | None = None) -> str:
    """The tree id of everything in the work tree at `git.path` that `git add -A` would take.
    `index`: that work tree's index file, when the caller knows it (else git is asked)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    temp_index = tmp_dir / f"index-{uuid.uuid4().hex}"
    source = index if index is not None else index_path(git)
    if source.is_file():
        # copy2 keeps the index's mtime, which git compares file mtimes against to catch a file changed
        # in the same second the index was written ("racily clean"); a fresh mtime would hide it.
        shutil.copy2(source, temp_index)
    env = {"GIT_INDEX_FILE": str(temp_index)}
    try:
        git.run("add", "-A", "--", ".", env=env)
        return git.out("write-tree", env=env)
    finally:
        for leftover in (temp_index, temp_index.with_name(temp_index.name + ".lock")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def tree_of(git: Git, rev: str) -> str:
    return git.out("rev-parse", f"{rev}^{{tree}}")


def one_line(value: str) -> str:
    """A trailer value: one line, bounded."""
    text = " ".join(value.split())
    return text if len(text) <= _TRAILER_MAX else text[: _TRAILER_MAX - 3] + "..."


def commit_message(message: str, trailers: Mapping[str, str]) -> str:
    """The message's first line as the subject, the rest as the body, then our trailers."""
    first, _, body = message.strip().partition("\n")
    lines = [one_line(first) or "orchestrator commit", ""]
    if body.strip():
        lines += [body.strip(), ""]
    lines += [f"{key}: {one_line(value)}" for key, value in trailers.items() if one_line(value)]
    return "\n".join(lines) + "\n"


def diff_text(git: Git, old: str, new: str, *, renames: bool = True) -> str:
    """The unified diff between two tree-ishes. Plumbing (`diff-tree`), on purpose: it reads no diff
    configuration of the user's (prefixes, external tools, textconv, colour), and porcelain `git diff`
    against a work tree rewrites that work tree's index even with GIT_OPTIONAL_LOCKS=0 (git 2.39)."""
    args = ["diff-tree", "-r", "-p", "--no-color"]
    if renames:
        args.append("-M")
    return git.run(*args, old, new).stdout


def commit_tree(git: Git, tree: str, parents: list[str], message: str) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return git.out(*args, "-F", "-", input=message)


def parse_trailers(text: str) -> dict[str, str]:
    """`Key: value` lines (as printed by %(trailers:unfold,only)) into a dict; the last one wins."""
    trailers: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            trailers[key.strip()] = value.strip()
    return trailers


def changed_paths(git: Git, old: str, new: str) -> list[str]:
    """Paths that differ between two tree-ishes (renames as a deletion plus an addition)."""
    out = git.run("diff-tree", "-r", "--name-only", "--no-renames", "-z", old, new).stdout
    return [path for path in out.split("\0") if path]
