"""Finding the repository a run works on, and the runs a repository holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.workspace.git import Git, find_repo_root, init_repo


def list_run_ids(repo: Path, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Ids of the runs made in this repository (discarded ones included), oldest id first."""
    user = Git(repo_root(repo, environ), environ=environ)
    out = user.out("for-each-ref", "--format=%(refname)", "refs/orchestrator/runs/")
    ids = {line.split("/")[3] for line in out.splitlines() if line.count("/") >= 4}
    return sorted(ids)


def resolve_repo(
    cwd: Path,
    *,
    repo: Path | None = None,
    workspace_dir: Path,
    new_name: str,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Which repository a run works on: `repo` if given (it must be one); else the repository holding
    `cwd`; outside any repository, a new one at `workspace_dir/new_name`, so that work is versioned too."""
    if repo is not None:
        return repo_root(repo, environ)
    found = find_repo_root(cwd, environ=environ)
    if found is not None:
        return found
    return init_repo(workspace_dir / new_name, environ=environ)


def repo_root(repo: Path, environ: Mapping[str, str] | None) -> Path:
    root = find_repo_root(Path(repo), environ=environ)
    if root is None:
        raise UsageError(
            f"{repo} is not inside a git repository", hint="pass --repo PATH to a git repository"
        )
    return root


def run_repo_root(repo: Path, environ: Mapping[str, str] | None) -> Path:
    """The repository a run's refs live in: a work tree's top, or a bare repository itself (a cluster
    worker's mirror of the user's repository, orchestrator/cluster/mirror.py, which has no checkout).
    Runs are only ever started by the user in a checkout (engine/inputs.py refuses a bare one)."""
    root = find_repo_root(Path(repo), environ=environ)
    if root is not None:
        return root
    bare = bare_git_dir(Path(repo), environ)
    if bare is not None:
        return bare
    return repo_root(repo, environ)  # the usual error


def bare_git_dir(path: Path, environ: Mapping[str, str] | None) -> Path | None:
    """`path` itself when it is a bare repository, else None."""
    if not path.is_dir():
        return None
    result = Git(path, environ=environ).run(
        "rev-parse", "--is-bare-repository", "--absolute-git-dir", check=False
    )
    lines = result.stdout.split("\n")
    if not result.ok or len(lines) < 2 or lines[0] != "true":
        return None
    git_dir = Path(lines[1]).resolve()
    return git_dir if git_dir == path.resolve() else None


def check_outside(worktree: Path, root: Path) -> None:
    """A run repository inside the user's checkout would show up there as untracked files (and the
    sandbox could not keep the checkout read-only)."""
    if worktree.resolve().is_relative_to(root.resolve()):
        raise UsageError(
            f"the run's repository {worktree} would be inside the repository {root}",
            hint="set ORCHESTRATOR_HOME to a folder outside the repository",
        )
