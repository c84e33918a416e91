"""What merging a run would do, read from git without writing anything: ahead/behind, the files, whether
it conflicts, and whether it would touch the user's uncommitted changes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.workspace.git import Git
from orchestrator.workspace.merge import overlapping, parse_status


def merge_preview(
    repo: Path, run_branch: str, target: str | None, *, environ: Mapping[str, str]
) -> dict[str, Any]:
    git = Git(repo, environ=environ)
    if target is None:
        current = git.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
        if not current:
            raise UsageError(
                "your checkout is not on a branch (detached HEAD)",
                hint=f"check out the branch to merge into, then merge again (or merge by hand: git merge {run_branch})",
            )
        target_ref = current
    else:
        target_ref = target if target.startswith("refs/") else f"refs/heads/{target}"
    short = target_ref.removeprefix("refs/heads/")
    before = git.rev_parse(target_ref)
    if before is None:
        raise UsageError(f"there is no branch {short}", hint="name an existing branch to merge into")
    tip = git.rev_parse(f"refs/heads/{run_branch}")
    if tip is None:
        raise UsageError(f"the branch {run_branch} no longer exists", hint="the run was discarded")
    counts = git.out("rev-list", "--left-right", "--count", f"{before}...{tip}").split()
    behind, ahead = int(counts[0]), int(counts[1])
    files = [f for f in git.out("diff", "--name-only", f"{before}...{tip}").splitlines() if f]
    conflicts: list[str] = []
    if ahead and behind:
        result = git.run(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", before, tip, check=False
        )
        if result.returncode == 1:
            conflicts = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    checked_out = git.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip() == target_ref
    dirty: list[str] = []
    if checked_out:
        status = parse_status(git.out("status", "--porcelain=v1", "-z", "--untracked-files=all"))
        dirty = overlapping([entry.path for entry in status], files)
    return {
        "target_branch": short,
        "run_branch": run_branch,
        "ahead": ahead,
        "behind": behind,
        "fast_forward": behind == 0 and ahead > 0,
        "up_to_date": ahead == 0,
        "files": files,
        "conflicts": conflicts,
        "overwrites_uncommitted": dirty,
        "can_merge": ahead > 0 and not conflicts and not dirty,
    }
