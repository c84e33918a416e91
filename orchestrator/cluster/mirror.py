"""Git across machines, the shared-path case only (a stand-in until the mirror of h13b lands with the
same names): the run's URL is the user repository's absolute path, reachable from every worker (the
same machine, or a shared filesystem), so that repository is itself the "mirror": the engine publishes
the run's refs straight into it (with compare-and-swap updates of the run's tip), and nothing needs to
be pushed or fetched. A remote URL is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.workspace.git import Git
from orchestrator.workspace.run_records import tip_ref
from orchestrator.workspace.run_workspace import RunWorkspace


class StaleLease(OrchestratorError):
    """A push whose lease no longer holds (another attempt moved the run branch)."""


@dataclass(frozen=True)
class RepoMirror:
    path: Path
    url: str
    env: Mapping[str, str]

    @classmethod
    def for_url(cls, url: str, *, state_home: Path, env: Mapping[str, str]) -> RepoMirror:
        path = Path(url)
        if not path.is_absolute() or "://" in url:
            raise UsageError(
                f"the run's repository {url!r} is not a path this worker can reach",
                hint="run from a repository on a path every worker shares (remote URLs need the git mirror)",
            )
        if not path.is_dir():
            raise UsageError(
                f"the run's repository {url} does not exist on this worker",
                hint="the repository must be on a path every worker shares (the same machine or a shared filesystem)",
            )
        return cls(path, url, env)

    def update(self) -> None:
        """Nothing to fetch: the repository is shared."""

    def push_run(self, run_id: str, *, expected: str | None) -> str:
        """The run's tip (already in the shared repository). The lease is the engine's own: each
        publish moves the tip with compare-and-swap from the commit it expects."""
        tip = Git(self.path, environ=self.env).rev_parse(tip_ref(run_id))
        if tip is None:
            raise StaleLease(f"run {run_id} has no tip in {self.path}")
        return tip


def open_run_workspace(
    mirror: RepoMirror, run_id: str, *, state_home: Path, env: Mapping[str, str]
) -> RunWorkspace:
    """This worker's view of the run: the shared repository's refs; the run repository under this
    worker's state home is (re)made from the tip by the resume path when absent."""
    return RunWorkspace.open(mirror.path, run_id, state_home, environ=env)


def publish_run_start(user_repo: Path, url: str, run_id: str, env: Mapping[str, str]) -> None:
    """The run's first refs are in the user's repository already: the URL is that repository."""
    if Path(url).resolve() != user_repo.resolve():
        raise UsageError(f"cannot publish run {run_id} to {url}: only a shared path is supported here")


def fetch_run_branch(user_repo: Path, url: str, run_id: str, env: Mapping[str, str]) -> str | None:
    """The run's tip in the user's repository (nothing to fetch when the URL is that repository)."""
    return Git(user_repo, environ=env).rev_parse(tip_ref(run_id))
