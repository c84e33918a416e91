"""The run's own repository: a clone of the user's that borrows their objects, outside their checkout.

    <state home>/repos/<run-id>/        work tree, on branch orchestrator/<run-id>
    <state home>/repos/<run-id>/.git/   its own refs, index, HEAD, stash, config and new objects;
                                        objects/info/alternates names the user's object store

Nothing in it is shared with the user's repository but read access to their objects, which git never
writes through an alternate (objects are immutable, and `git gc`/`prune` in a repository only ever
delete that repository's own objects). So whatever an agent's git does here, with any flags, hooks or
environment, it changes this repository only. The orchestrator brings the run's commits into the user's
repository itself, by fetching them (`fetch_commit`).

An agent can rewrite anything in this folder, `.git` included. Our own git commands here run with an
explicit --git-dir/--work-tree and only after `verify_run_repo` found a plain repository: `.git` a real
folder, no `commondir`/`gitdir` redirection to another repository, no symbolic links in the metadata we
write through, and our own config (restored if changed: filters, `core.worktree`, includes and the like
would otherwise make our commands run code or write elsewhere).

The config keeps automatic gc off (`gc.auto=0`): a run repository lives for one run, and a repack in it
would only copy objects the user's repository already holds. Objects are not marked precious: an agent's
own `git gc` may drop this repository's unreachable objects, which are never needed (every commit of the
run is fetched into the user's repository when it is made).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import GitError
from orchestrator.workspace.git import Git

if TYPE_CHECKING:
    from orchestrator.workspace.run_locate import RepoLocation

CONFIG_COPY = "run-repo.gitconfig"  # in the run directory: the config we wrote, to restore it from

# Of the user's repository's own config, what the run's repository takes over: who commits, and where
# the project's hooks are (so its pre-commit checks still apply to the agents' own commits).
_COPIED_KEYS = ("user.name", "user.email", "core.hooksPath")


class RunRepoTampered(GitError):
    """The run's repository was changed so that our git commands would reach outside it."""


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def config_text(*, object_format: str, copied: dict[str, str]) -> str:
    """The run repository's whole config file (pure)."""
    version = "1" if object_format != "sha1" else "0"
    sections: dict[str, list[str]] = {
        "core": [
            f"repositoryformatversion = {version}",
            "filemode = true",
            "bare = false",
            "logallrefupdates = true",
        ],
        "gc": ["auto = 0"],
        "maintenance": ["auto = false"],
    }
    if object_format != "sha1":
        sections["extensions"] = [f"objectformat = {object_format}"]
    for key, value in copied.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {_quote(value)}")
    lines: list[str] = []
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines += [f"\t{entry}" for entry in entries]
    return "\n".join(lines) + "\n"


def copied_config(user: Git) -> dict[str, str]:
    """The values of the user's repository config (its own file, `--local`) the run repository takes
    over. One `git config` for all scopes: the user's identity (any scope) is noted on `user` on the way,
    so the identity look-up for the commands that write needs no process of its own."""
    result = user.run(
        "config", "--show-scope", "--get-regexp", r"^(user\.(name|email)|core\.hookspath)$", check=False
    )
    found: dict[str, str] = {}
    identity: set[str] = set()
    for line in result.stdout.splitlines():
        scope, _, entry = line.partition("\t")
        key, _, value = entry.partition(" ")
        if scope == "command":  # our own `-c core.hooksPath=/dev/null`, not the user's
            continue
        if key.lower() in ("user.name", "user.email"):
            identity.add(key.lower())
        if scope != "local":
            continue
        for wanted in _COPIED_KEYS:
            if key.lower() == wanted.lower():
                found[wanted] = value
    user.note_identity(identity)
    return found


def _user_settings(
    user: Git, location: RepoLocation | None, copied: dict[str, str] | None
) -> tuple[Path, str, dict[str, str]]:
    """The user's object store, object format, and the config values the run repository copies (each
    read unless the caller has it)."""
    if location is not None:
        common, object_format = str(location.common_dir), location.object_format
    else:
        common, object_format = user.out(
            "rev-parse", "--path-format=absolute", "--git-common-dir", "--show-object-format"
        ).splitlines()
    found = dict(copied_config(user) if copied is None else copied)
    if "core.hooksPath" not in found:
        # The user's own hooks folder, so that the project's hooks keep running for agents' commits.
        found["core.hooksPath"] = str(Path(common) / "hooks")
    return Path(common), object_format, found


def create_run_repo(
    user: Git,
    path: Path,
    *,
    branch: str,
    start: str,
    config_copy: Path,
    location: RepoLocation | None = None,
    copied: dict[str, str] | None = None,
) -> Git:
    """A new run repository at `path` on `branch` at commit `start` (a commit of the user's), checked
    out. `location` (of the user's repository) and `copied` (copied_config's): when the caller has them."""
    common, object_format, copied = _user_settings(user, location, copied)
    path.mkdir(parents=True, exist_ok=True)
    git_dir = path / ".git"
    init = user.at(path)
    init.run(
        "init",
        "-q",
        "--template=",  # no sample hooks
        f"--object-format={object_format}",
        f"--initial-branch={branch}",
        str(path),
    )
    (git_dir / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (git_dir / "objects" / "info" / "alternates").write_text(str(common / "objects") + "\n")
    exclude = common / "info" / "exclude"  # the user's own ignore rules apply to the run as well
    (git_dir / "info").mkdir(exist_ok=True)
    if exclude.is_file():
        shutil.copyfile(exclude, git_dir / "info" / "exclude")
    text = config_text(object_format=object_format, copied=copied)
    (git_dir / "config").write_text(text)
    config_copy.parent.mkdir(parents=True, exist_ok=True)
    config_copy.write_text(text)
    git = run_repo_git(user, path)
    # HEAD names the unborn branch: the reset creates it at `start` (its reflog says why) and checks
    # it out, in one process.
    git.run("reset", "-q", "--hard", start, env={"GIT_REFLOG_ACTION": "orchestrator: run start"})
    return git


def run_repo_git(user: Git, path: Path) -> Git:
    """git for the run repository at `path`: explicit git dir and work tree, no repository discovery."""
    user.identity_args()  # looked up in the user's repository, once, and shared
    return user.at(path, location=(f"--git-dir={path / '.git'}", f"--work-tree={path}"))


def verify_run_repo(path: Path, config_copy: Path) -> bool:
    """Check the run repository before our own commands use it; restore our config if it was changed
    (returns True when it was). Raises RunRepoTampered when it no longer is a plain repository."""
    git_dir = path / ".git"
    info = os.lstat(git_dir)
    if not stat.S_ISDIR(info.st_mode):
        raise RunRepoTampered(
            f"{git_dir} is no longer a folder (an agent replaced it); the run's repository cannot be used",
            hint="discard the run, or look at what the agent did there first",
        )
    for name in ("commondir", "gitdir"):
        if os.path.lexists(git_dir / name):
            raise RunRepoTampered(
                f"{git_dir / name} appeared: it would make git use another repository's refs",
                hint="discard the run, or look at what the agent did there first",
            )
    for folder, dirs, files in os.walk(git_dir):
        if Path(folder) == git_dir and "objects" in dirs:
            dirs.remove("objects")  # object files are only ever read or created, never written through
        for name in (*dirs, *files):
            if os.path.islink(os.path.join(folder, name)):
                raise RunRepoTampered(
                    f"{os.path.join(folder, name)} is a symbolic link; git would write through it",
                    hint="discard the run, or look at what the agent did there first",
                )
    if os.path.islink(git_dir / "objects"):
        raise RunRepoTampered(
            f"{git_dir / 'objects'} is a symbolic link",
            hint="discard the run, or look at what the agent did there",
        )
    expected = config_copy.read_bytes() if config_copy.is_file() else None
    config = git_dir / "config"
    if expected is None:
        return False
    try:
        current = config.read_bytes()
    except OSError:
        current = None
    if current == expected:
        return False
    with open(config, "wb") as fh:  # `config` is not a link (checked above)
        fh.write(expected)
    return True


def fetch_commit(user: Git, path: Path, sha: str) -> None:
    """Copy `sha` and what it needs into the user's repository (no ref, no FETCH_HEAD, no tags)."""
    if user.succeeds("cat-file", "-e", f"{sha}^{{commit}}"):
        return
    # upload-pack runs in the run repository; the variable lets it serve a commit no ref names.
    allow_any = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "uploadpack.allowAnySHA1InWant",
        "GIT_CONFIG_VALUE_0": "true",
    }
    user.run(
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-recurse-submodules",
        "--no-auto-gc",
        "--no-write-commit-graph",
        str(path / ".git"),
        sha,
        env=allow_any,
    )
    if not user.succeeds("cat-file", "-e", f"{sha}^{{commit}}"):
        raise GitError(f"fetching {sha[:12]} from the run's repository {path} did not bring it")


def remove_run_repo(path: Path) -> None:
    """Delete the run repository's folder, whatever permissions an agent left on it."""
    if not os.path.lexists(path):
        return

    def make_writable(func: Callable[..., object], name: str, _exc: object) -> None:
        parent = os.path.dirname(name)
        os.chmod(parent, stat.S_IRWXU)
        if not os.path.islink(name) and os.path.isdir(name):
            os.chmod(name, stat.S_IRWXU)
        func(name)

    if os.path.islink(path):
        os.unlink(path)
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:  # pragma: no cover - Python 3.11
        shutil.rmtree(path, onerror=make_writable)
