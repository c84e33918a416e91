"""Merging a run branch into the user's branch, only when that is safe.

Checked first, with nothing written: the merge is a fast-forward or merges cleanly (`git merge-tree
--write-tree`), and no path it changes holds the user's uncommitted work. Then:
- into the branch checked out in the user's checkout: a normal `git merge` there (the one write to the
  user's checkout this project ever makes, and only when the user asks for it);
- into a branch checked out nowhere: the branch ref is moved (a merge commit made without any checkout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.workspace import trees
from orchestrator.workspace.git import Git, git_version

# `git merge-tree --write-tree` (a merge computed without touching any checkout) needs git 2.38.
MERGE_TREE_MIN_VERSION = (2, 38)


class MergeRefused(UsageError):
    """The merge would overwrite the user's work or does not merge cleanly; nothing was written."""

    def __init__(self, message: str, *, hint: str, paths: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.paths = paths or []


@dataclass(frozen=True)
class MergeResult:
    target_branch: str
    run_branch: str
    before: str  # the target branch's commit before the merge
    after: str  # ... and after
    fast_forward: bool
    up_to_date: bool = False  # the run's commits were already in the target; nothing was done
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StatusEntry:
    code: str  # porcelain v1 XY
    path: str

    @property
    def staged(self) -> bool:
        return self.code[0] not in " ?!"


def parse_status(out: str) -> list[StatusEntry]:
    """`git status --porcelain=v1 -z` output; a rename yields both its new and old path."""
    entries: list[StatusEntry] = []
    fields = out.split("\0")
    i = 0
    while i < len(fields):
        item = fields[i]
        i += 1
        if len(item) < 4:
            continue
        code, path = item[:2], item[3:]
        entries.append(StatusEntry(code, path))
        if code[0] in "RC" or code[1] in "RC":
            if i < len(fields) and fields[i]:
                entries.append(StatusEntry(code, fields[i]))
            i += 1
    return entries


def overlapping(dirty: list[str], changed: list[str]) -> list[str]:
    """Dirty paths the merge would touch: the same path, or one inside the other (file vs folder)."""
    changed_set = set(changed)
    hits: list[str] = []
    for path in dirty:
        folder = path.rstrip("/")
        if (
            folder in changed_set
            or any(c.startswith(folder + "/") for c in changed)
            or any(folder.startswith(c + "/") for c in changed)
        ):
            hits.append(folder)
    return sorted(set(hits))


def checked_out_in(user: Git, ref: str) -> Path | None:
    """The worktree (the main one included) whose HEAD is on `ref`, if any."""
    out = user.out("worktree", "list", "--porcelain")
    current: Path | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree ") :])
        elif line == f"branch {ref}" and current is not None:
            return current.resolve()
    return None


def merge_run(user: Git, *, run_id: str, run_branch: str, target_branch: str | None) -> MergeResult:
    """Merge `run_branch` into `target_branch` (default: the branch checked out in `user.path`)."""
    run_ref = f"refs/heads/{run_branch}"
    if target_branch is None:
        current = user.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
        if not current:
            raise MergeRefused(
                "your checkout is not on a branch (detached HEAD)",
                hint=f"check out the branch to merge into, then merge again (or merge by hand: git merge {run_branch})",
            )
        target_ref = current
    else:
        target_ref = target_branch if target_branch.startswith("refs/") else f"refs/heads/{target_branch}"
    short = target_ref.removeprefix("refs/heads/")
    before = user.rev_parse(target_ref)
    if before is None:
        raise UsageError(f"there is no branch {short}", hint="name an existing branch to merge into")
    tip = user.commit_of(run_ref)

    if user.is_ancestor(tip, before):
        return MergeResult(short, run_branch, before, before, fast_forward=False, up_to_date=True)
    fast_forward = user.is_ancestor(before, tip)
    result_tree = (
        trees.tree_of(user, tip) if fast_forward else _clean_merge_tree(user, before, tip, run_branch)
    )
    files = trees.changed_paths(user, before, result_tree)

    where = checked_out_in(user, target_ref)
    if where is None:
        after = tip
        if not fast_forward:
            message = trees.commit_message(f"Merge run {run_id} ({run_branch}) into {short}", {})
            after = trees.commit_tree(user, result_tree, [before, tip], message)
        user.run("update-ref", "-m", f"orchestrator: merge run {run_id}", target_ref, after, before)
        return MergeResult(short, run_branch, before, after, fast_forward, files=files)
    if where != user.path.resolve():
        raise MergeRefused(
            f"{short} is checked out in another worktree, {where}",
            hint=f"merge from there: cd {where} && orchestrator runs merge {run_id}",
        )

    status = parse_status(
        user.out("status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none")
    )
    touched = overlapping([entry.path for entry in status], files)
    if touched:
        raise MergeRefused(
            f"the merge would overwrite your uncommitted changes to: {', '.join(touched[:20])}"
            + (" ..." if len(touched) > 20 else ""),
            hint="commit or stash your changes to those files (if the run started from them with "
            "--include-uncommitted, the run already has them), then merge again",
            paths=touched,
        )
    if not fast_forward and any(entry.staged for entry in status):
        raise MergeRefused(
            "you have staged changes, and git makes a merge commit only from a clean index",
            hint="commit or unstage them (git restore --staged PATH), then merge again",
            paths=[entry.path for entry in status if entry.staged],
        )
    if fast_forward:
        merged = user.run("merge", "--ff-only", "--no-edit", run_ref, check=False)
    else:
        merged = user.run(
            "merge", "--no-ff", "--no-edit", "-m", f"Merge run {run_id} ({run_branch})", run_ref, check=False
        )
    if not merged.ok:
        if user.rev_parse("MERGE_HEAD") is not None:
            user.run("merge", "--abort", check=False)  # back to where the user was
        raise MergeRefused(
            f"git merge failed: {(merged.stderr or merged.stdout).strip()[-1500:]}",
            hint=f"your checkout was left as it was; merge by hand: git merge {run_branch}",
        )
    after = user.commit_of("HEAD")
    return MergeResult(short, run_branch, before, after, fast_forward, files=files)


def _clean_merge_tree(user: Git, ours: str, theirs: str, run_branch: str) -> str:
    """The tree of a clean merge, computed without any checkout; MergeRefused on conflicts."""
    if git_version() < MERGE_TREE_MIN_VERSION:
        raise MergeRefused(
            f"the run branch and your branch have diverged, and git {'.'.join(map(str, git_version()))} "
            "cannot test a merge without touching your checkout",
            hint=f"merge by hand: git merge {run_branch} (or install git >= 2.38)",
        )
    result = user.run("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs, check=False)
    lines = result.stdout.splitlines()
    if result.returncode == 0 and lines:
        return lines[0].strip()
    conflicts = [line for line in lines[1:] if line.strip()]
    raise MergeRefused(
        "the run branch does not merge cleanly"
        + (
            f"; conflicts in: {', '.join(conflicts[:20])}"
            if conflicts
            else f": {result.stderr.strip()[-500:]}"
        ),
        hint=f"merge by hand and resolve the conflicts: git merge {run_branch}",
        paths=conflicts,
    )
