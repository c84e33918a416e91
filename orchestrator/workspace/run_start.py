"""What a run starts from, read from the user's repository in one git process (`git cat-file
--batch-check`): the commit the base names, the user's HEAD commit and its tree, and whether the run's
branch or tip ref is taken already.

`rev-parse -q --verify` answers one name per process; cat-file resolves each line of its input with
the same rules (`<rev>^{commit}`, `@{-1}`, `HEAD~2`, tags peeled) and says "missing" for a name that
resolves to nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.workspace.git import Git
from orchestrator.workspace.run_records import branch_name, tip_ref

_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class StartPoint:
    """The user's repository as a run found it. The refs to create come from here, so a check made on
    it (the base names a commit, the names are free) holds for what the run writes."""

    base: str  # the ref or revision the run branches from, as given (default HEAD)
    base_sha: str | None  # the commit it names; None when it names none
    head: str | None  # the user's HEAD commit; None in a repository without commits
    head_tree: str | None  # that commit's tree
    run_id: str | None = None
    names_taken: bool = False  # the run's branch or tip ref exists already


def resolve_names(git: Git, names: list[str]) -> list[str | None]:
    """The object id each name resolves to (None when it resolves to nothing), in one process."""
    if any("\n" in name or not name for name in names):  # cannot go on a line of their own
        return [git.rev_parse(name) if name else None for name in names]
    result = git.run("cat-file", "--batch-check=%(objectname)", input="".join(f"{n}\n" for n in names))
    lines = result.stdout.split("\n")
    found: list[str | None] = []
    for n in range(len(names)):
        line = lines[n] if n < len(lines) else ""
        found.append(line if _OBJECT_ID.fullmatch(line) else None)  # else "<name> missing"
    return found


def read_start(git: Git, base: str, run_id: str | None = None) -> StartPoint:
    """The start of a run on `base` in the repository `git` runs in. With `run_id`, whether its branch
    or tip ref exists already too."""
    names = ["HEAD^{commit}", "HEAD^{tree}", "HEAD^{commit}"]
    if base != "HEAD":
        names.append(f"{base}^{{commit}}")
    if run_id is not None:
        names += [f"refs/heads/{branch_name(run_id)}", tip_ref(run_id)]
    found = resolve_names(git, names)
    head, tree, head_again = found[0], found[1], found[2]
    if head != head_again:  # HEAD moved between the two lookups: its tree is asked again, by commit
        tree = git.rev_parse(f"{head}^{{tree}}") if head is not None else None
    base_sha = head if base == "HEAD" else found[3]
    taken = run_id is not None and any(sha is not None for sha in found[-2:])
    return StartPoint(base, base_sha, head, tree if head is not None else None, run_id, taken)
