"""Diffs for the dashboard: the whole run's, or one step's commit; one file of it; which files to show
collapsed (generated, lockfiles, very large)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.workspace.diffs import split_file_diffs
from orchestrator.workspace.git import Git
from orchestrator.workspace.run_workspace import RunWorkspace

# Shown collapsed: nobody reviews these line by line (VK #1206: huge lockfiles made diffs unusable).
GENERATED = (
    "*.lock",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "poetry.lock",
    "uv.lock",
    "Cargo.lock",
    "go.sum",
    "*.min.js",
    "*.min.css",
    "*.map",
    "dist/*",
    "build/*",
    "vendor/*",
    "node_modules/*",
)
LARGE_LINES = 400  # changed lines above which a file is collapsed
MAX_BYTES = 10_000_000


def is_generated(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in GENERATED)


def _numstat(git: Git, old: str, new: str) -> list[dict[str, Any]]:
    rows = []
    for line in git.out("diff", "--numstat", "--no-renames", old, new).splitlines():
        added, removed, path = line.split("\t", 2)
        binary = added == "-"
        changed = 0 if binary else int(added) + int(removed)
        rows.append(
            {
                "path": path,
                "added": None if binary else int(added),
                "removed": None if binary else int(removed),
                "binary": binary,
                "generated": is_generated(path),
                "collapsed": binary or is_generated(path) or changed > LARGE_LINES,
            }
        )
    return rows


def _only(text: str, path: str) -> str:
    for chunk in split_file_diffs(text):
        if chunk.startswith(f"diff --git a/{path} b/{path}\n"):
            return chunk
    return ""


def run_diff(
    ws: RunWorkspace, repo: Path, *, step_commit: str | None, file: str | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The run's diff since its base (committed and not, as `runs diff` shows it), or one step commit's.
    Same keys as `runs diff --json`, plus per-file numbers and which files to show collapsed."""
    git = Git(repo, environ=environ)
    if step_commit is not None:
        parent = git.rev_parse(f"{step_commit}^") or git.out("hash-object", "-t", "tree", "/dev/null")
        args = [parent, step_commit]
        text = git.out(
            "diff", "--no-color", "--no-renames", "--no-ext-diff", *args, *(["--", file] if file else [])
        )
        stats = _numstat(git, *args)
        files = [row["path"] for row in stats]
        truncated = False
    else:
        diff = ws.diff(max_bytes=MAX_BYTES)
        text, files, truncated = diff.text, diff.files, diff.truncated
        stats = _numstat(git, ws.base, ws.head())
        if file is not None:
            text = _only(text, file)
    if file is not None and file not in files:
        raise UsageError(f"{file} is not changed in this diff", hint="the files list shows what is")
    return {"files": files, "diff": text, "truncated": truncated, "stats": stats}
