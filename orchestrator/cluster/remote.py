"""The URL a cluster run's workers fetch its repository from and push its run branch to.

`run --cluster --remote NAME|URL`, else the configuration's `cluster.remote`, else the user's repository
path (a shared path: one machine, or a shared file system). NAME is a remote of the user's repository,
resolved to its URL once, when the run is created (workers on other machines know no such name); a URL
is any git URL, or a path to a bare repository (made absolute: a worker's working directory is not the
submitter's).

A URL that carries a credential (https://user:secret@host/..., a token as the user, ?access_token=) is
refused rather than stored masked: the URL is kept in the run's record, handed to every worker and
passed to git on each fetch and push, so a masked copy could not be used and an unmasked one would end
up in the store; a credential helper or SSH keeps the secret out of every record. The message shows the
URL masked (secrets.masked_url).

Everything here runs before the run is created, so that a wrong or unreachable remote is a usage error
(exit 2) with nothing left behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.cluster.mirror import local_path
from orchestrator.errors import UsageError
from orchestrator.secrets import mask_urls, masked_url, url_has_credentials
from orchestrator.workspace.git import Git

# Reaching a remote is one round trip; a remote that does not answer within this is as good as down
# (git's own prompts are off: GIT_TERMINAL_PROMPT=0 in workspace/git.py).
REACH_TIMEOUT_S = 60.0
# What `git remote add` accepts as a name, less "/" (a value with a slash is taken as a path).
_REMOTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def refuse_credentials(url: str, *, what: str) -> None:
    """A URL with a credential in it never goes further (see the module's docstring)."""
    if url_has_credentials(url):
        raise UsageError(
            f"{what} ({masked_url(url)}) has a password or token in it, which would be stored with the "
            "run and handed to every worker",
            hint="give the URL without it and let git find the credential: a credential helper "
            "(git config credential.helper) for https://, or an SSH URL (git@host:owner/repo.git)",
        )


def resolve_remote(value: str, *, remote_url: Callable[[str], str | None], repo: Path, cwd: Path) -> str:
    """The URL `value` names: a remote of the repository (`remote_url(name)`, None when it has no such
    remote) resolved to its URL, else `value` itself as a URL. Local paths come back absolute: a
    remote's relative path is relative to the repository, a given one to `cwd`. Pure but for
    `remote_url` (and a look at whether a bare word is a folder)."""
    if not value.strip():
        raise UsageError("--remote is empty", hint="give a remote's name (git remote -v) or a git URL")
    named = remote_url(value) if _REMOTE_NAME.fullmatch(value) else None
    if named is not None:
        url, base = named, repo
    elif _REMOTE_NAME.fullmatch(value) and not (cwd / value).exists():
        raise UsageError(
            f"{repo} has no remote named {value!r}",
            hint="name one that `git remote -v` lists, or give a git URL or a bare repository's path",
        )
    else:
        url, base = value, cwd
    path = local_path(url)
    if path is not None and not path.is_absolute():
        absolute = (base / path).resolve()
        return f"file://{absolute}" if url.startswith("file://") else str(absolute)
    return url


def check_reachable(url: str, *, repo: Path, env: Mapping[str, str]) -> None:
    """The remote answers git (one `ls-remote`), else a usage error with git's own words (masked)."""
    result = Git(repo, environ=env, timeout_s=REACH_TIMEOUT_S).run(
        "ls-remote", "--", url, "HEAD", check=False
    )
    if not result.ok:
        # git's first line says what went wrong; the rest is its boilerplate about access rights.
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        said = lines[0][:500] if lines else f"git exited with {result.returncode}"
        if result.timed_out:
            said = f"no answer in {REACH_TIMEOUT_S:g} s"
        raise UsageError(
            f"cannot reach the cluster's remote {masked_url(url)}: {mask_urls(said)}",
            hint="check the URL and that this machine may fetch from it (every worker must too); "
            "or leave --remote and cluster.remote out to use the repository's path",
        )


def cluster_repo_url(repo: Path, remote: str | None, *, cwd: Path, env: Mapping[str, str]) -> str:
    """The URL a new cluster run of `repo` goes through: `remote` (a name or a URL) resolved, checked
    for credentials and reached; without one, the repository's own path (a shared path)."""
    if remote is None:
        return str(repo)
    refuse_credentials(remote, what="the remote")
    git = Git(repo, environ=env)

    def remote_url(name: str) -> str | None:
        result = git.run("remote", "get-url", "--", name, check=False)
        return (result.stdout.strip() or None) if result.ok else None

    url = resolve_remote(remote, remote_url=remote_url, repo=repo, cwd=cwd)
    if url != remote:
        refuse_credentials(url, what=f"the URL of remote {remote!r}")
    check_reachable(url, repo=repo, env=env)
    return url
