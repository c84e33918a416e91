"""Checks on what a user asks a run to start from, made before anything is created.

Each turns a bad input into a usage error (exit 2) that says what was wrong and what to do, instead of a
git failure, a crash or a run that works on nothing: an empty task, a task file that cannot be read, a
base that names no commit, a bare repository. `submodule_changes` finds what `--include-uncommitted`
cannot carry (changes inside submodules), so the run can say so.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.workspace.git import Git
from orchestrator.workspace.run_locate import RepoLocation
from orchestrator.workspace.run_start import StartPoint, read_start

# A task is a prompt: a few KiB usually, a pasted spec at most. Past this it is a mistake (a binary, a
# log), and every step's prompt would carry it.
MAX_TASK_BYTES = 1024 * 1024


def check_task(task: str) -> str:
    if not task.strip():
        raise UsageError(
            "the task is empty",
            hint='say what to do: orchestrator run "add a --verbose flag", or --task-file FILE',
        )
    if "\0" in task:
        raise UsageError("the task holds NUL bytes (is it a binary file?)", hint="give a text task")
    return task


def read_task_file(name: str) -> str:
    """The task from a file, or from stdin for `-`. UTF-8 text, at most MAX_TASK_BYTES."""
    where = "stdin" if name == "-" else name
    try:
        if name == "-":
            raw = sys.stdin.buffer.read(MAX_TASK_BYTES + 1)
        else:
            path = Path(name).expanduser()
            if not path.is_file():
                raise UsageError(f"the task file {name} does not exist or is not a file")
            with path.open("rb") as fh:
                raw = fh.read(MAX_TASK_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the task from {where}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TASK_BYTES:
        raise UsageError(
            f"the task from {where} is over {MAX_TASK_BYTES // 1024} KiB",
            hint="shorten it: point the agents at files in the repository instead of pasting them",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the task from {where} is not UTF-8 text") from None
    return check_task(text)


def check_not_bare(
    path: Path, environ: Mapping[str, str] | None, *, location: RepoLocation | None = None
) -> None:
    """A bare repository has no checkout to branch from: say so (git's own words would mislead).
    `location`: what locate_repo found for `path`, when the caller asked already."""
    if location is not None and location.path == path:
        bare = location.bare
    elif not path.is_dir():
        return
    else:
        result = Git(path, environ=environ).run("rev-parse", "--is-bare-repository", check=False)
        bare = result.ok and result.stdout.strip() == "true"
    if bare:
        raise UsageError(
            f"{path} is a bare repository (it has no work tree for a run to start from)",
            hint=f"clone it (git clone {path} DIR) and run there, or pass --repo with a checkout",
        )


def check_base(
    root: Path, base: str, environ: Mapping[str, str] | None, *, run_id: str | None = None
) -> StartPoint:
    """What the run starts from (see workspace.run_start), once the base is known to name a commit.
    With `run_id`, the start also says whether the run's names are free (RunWorkspace.create checks)."""
    git = Git(root, environ=environ)
    start = read_start(git, base, run_id)
    if start.base_sha is None:
        branches = git.run(
            "for-each-ref", "--count=5", "--format=%(refname:short)", "refs/heads/", check=False
        )
        known = ", ".join(branches.stdout.split()) if branches.ok else ""
        raise UsageError(
            f"--base {base!r} does not name a commit in {root}",
            hint="give a branch, tag or commit" + (f" (branches here: {known})" if known else ""),
        )
    return start


@dataclass(frozen=True)
class SubmoduleChange:
    path: str
    new_commit: bool  # the submodule's checked-out commit differs from the recorded one
    inside: bool  # changed or untracked files inside the submodule


def parse_submodule_status(porcelain_v2: str) -> list[SubmoduleChange]:
    """Submodules with changes, from `git status --porcelain=v2` (pure). A changed entry's <sub> field
    is `S<c><m><u>`: commit changed, tracked changes, untracked files (`.` when not)."""
    found: list[SubmoduleChange] = []
    for line in porcelain_v2.splitlines():
        fields = line.split(" ")
        if fields[0] == "1" and len(fields) >= 9:
            sub, path = fields[2], " ".join(fields[8:])
        elif fields[0] == "2" and len(fields) >= 10:
            sub, path = fields[2], " ".join(fields[9:]).split("\t")[0]
        else:
            continue
        if sub.startswith("S") and len(sub) == 4 and sub != "S...":
            found.append(SubmoduleChange(path=path, new_commit=sub[1] == "C", inside=sub[2:] != ".."))
    return found


def submodule_changes(root: Path, environ: Mapping[str, str] | None) -> list[SubmoduleChange]:
    result = Git(root, environ=environ).run(
        "status", "--porcelain=v2", "--ignore-submodules=none", "--untracked-files=no", check=False
    )
    return parse_submodule_status(result.stdout) if result.ok else []


def describe_submodule_change(change: SubmoduleChange) -> str:
    if change.inside:
        return (
            f"--include-uncommitted cannot carry the changes inside submodule {change.path}: the run "
            "starts without them (commit them in the submodule, and its new commit here, to include them)"
        )
    return (
        f"submodule {change.path} is at a new commit: the run records that commit, but its checkout "
        "does not hold the submodule's files"
    )
