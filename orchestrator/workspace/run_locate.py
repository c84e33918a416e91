"""Finding the repository a run works on, and the runs a repository holds.

`locate_repo` asks git once about a folder (bare or not, the top of its work tree, the common git dir,
the index, the object format) so that `orchestrator run` does not start a git process per question:
the caller passes the `RepoLocation` on (settings, the input checks, the run's workspace).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.workspace.git import Git, find_repo_root, init_repo

# In this order: each prints one line; --show-toplevel last, as it fails outside a work tree (in a bare
# repository or inside .git) after the others have printed.
_LOCATE_ARGS = (
    "rev-parse",
    "--is-bare-repository",
    "--path-format=absolute",
    "--git-common-dir",
    "--git-path",
    "index",
    "--show-object-format",
    "--show-toplevel",
)


@dataclass(frozen=True)
class RepoLocation:
    """What git says about the repository holding `path` (one `git rev-parse`)."""

    path: Path  # the folder asked about
    bare: bool
    common_dir: Path  # the repository's git dir (a linked worktree's main one), absolute
    index: Path  # the index of the work tree holding `path`, absolute
    object_format: str  # sha1 or sha256
    toplevel: str | None  # the top of the work tree as git printed it; None when not in a work tree

    @property
    def top(self) -> Path | None:
        """The top of the work tree, resolved (what find_repo_root gives)."""
        return Path(self.toplevel).resolve() if self.toplevel else None

    def is_bare_repo_itself(self) -> bool:
        """`path` is a bare repository's own folder (what bare_git_dir tells with a process of its own)."""
        return self.bare and self.common_dir.resolve() == self.path.resolve()


def locate_repo(path: Path, *, environ: Mapping[str, str] | None = None) -> RepoLocation | None:
    """The repository holding `path`; None outside any repository (or when `path` is no folder)."""
    path = Path(path)
    if not path.is_dir():
        return None
    result = Git(path, environ=environ).run(*_LOCATE_ARGS, check=False)
    lines = result.stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    expected = 5 if result.ok else 4  # without a work tree, --show-toplevel prints nothing and fails
    if len(lines) != expected or lines[0] not in ("true", "false") or not lines[1] or not lines[2]:
        # Outside any repository nothing is printed; anything else (a path with a newline in it) is
        # asked again the long way.
        return None if not result.stdout.strip() else _located_slowly(path, environ)
    toplevel = lines[4] if result.ok and lines[4] else None
    return RepoLocation(path, lines[0] == "true", Path(lines[1]), Path(lines[2]), lines[3], toplevel)


def _located_slowly(path: Path, environ: Mapping[str, str] | None) -> RepoLocation:
    git = Git(path, environ=environ)
    bare = git.out("rev-parse", "--is-bare-repository") == "true"
    common = git.out("rev-parse", "--path-format=absolute", "--git-common-dir")
    index = git.out("rev-parse", "--path-format=absolute", "--git-path", "index")
    object_format = git.out("rev-parse", "--show-object-format")
    top = git.run("rev-parse", "--show-toplevel", check=False)
    toplevel = top.stdout.rstrip("\n") if top.ok and top.stdout.strip() else None
    return RepoLocation(path, bare, Path(common), Path(index), object_format, toplevel)


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
    location: RepoLocation | None = None,
) -> Path:
    """Which repository a run works on: `repo` if given (it must be one); else the repository holding
    `cwd`; outside any repository, a new one at `workspace_dir/new_name`, so that work is versioned too.

    `location`: what `locate_repo` found for `repo` (or `cwd`), when the caller asked already."""
    asked = repo if repo is not None else cwd
    if location is not None and location.path == Path(asked):
        top = location.top
        if top is None and repo is not None:
            raise _not_a_repo(repo)
        return top if top is not None else init_repo(workspace_dir / new_name, environ=environ)
    if repo is not None:
        return repo_root(repo, environ)
    found = find_repo_root(cwd, environ=environ)
    if found is not None:
        return found
    return init_repo(workspace_dir / new_name, environ=environ)


def repo_root(repo: Path, environ: Mapping[str, str] | None) -> Path:
    root = find_repo_root(Path(repo), environ=environ)
    if root is None:
        raise _not_a_repo(repo)
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


def _not_a_repo(repo: Path) -> UsageError:
    return UsageError(f"{repo} is not inside a git repository", hint="pass --repo PATH to a git repository")


def check_outside(worktree: Path, root: Path) -> None:
    """A run repository inside the user's checkout would show up there as untracked files (and the
    sandbox could not keep the checkout read-only)."""
    if worktree.resolve().is_relative_to(root.resolve()):
        raise UsageError(
            f"the run's repository {worktree} would be inside the repository {root}",
            hint="set ORCHESTRATOR_HOME to a folder outside the repository",
        )
