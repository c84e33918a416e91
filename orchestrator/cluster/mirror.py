"""Git across machines: a worker's bare mirror of the run's repository, and the pushes and fetches
that carry a run's commits between the user's repository, the URL the workers reach, and the workers.

    <state home>/cluster/mirrors/<key>.git    one bare mirror per URL (a remote, or a shared path)
    <state home>/cluster/mirrors/<key>.lock   its flock: one git writer at a time on this machine

A worker's RunWorkspace uses the mirror as its "user repository" (the engine's ref publishing lands
there, never in anyone's checkout); after a step, `push_run` pushes the run's refs to the URL in one
atomic push with a lease on the run branch: the commit the step started from. An attempt that lost its
step to another worker (Temporal retried it meanwhile) finds the lease broken: nothing of its push
lands, its commits are kept on the URL under backups/<run-id>/stale-<sha> (so nothing is ever lost,
PEERS #4), and it gets StaleLease.

The run's refs (see workspace/run_workspace.py), for the run and for its group members (<run-id>-*):

    refs/heads/orchestrator/<run-id>            the run branch: pushed with the lease
    refs/orchestrator/runs/<run-id>/*           the run's record (tip, base, first): forced with it
    refs/orchestrator/backups/<run-id>/*        backups: created, never overwritten

`update()` fetches the URL's branches (the runs' bases), not the runs' own refs: those are fetched per
run by `update_run`, when a step of that run starts on this worker, so one run's fetch never moves
another run's refs under a step that is between publishing and pushing them.

The submitting side (`publish_run_start`, `fetch_run_branch`) only ever writes refs of the run in the
user's repository, never their checked-out branch, index or HEAD; both are no-ops when the URL is the
user's repository itself (same machine, or a shared file system). All git runs through
workspace/git.py (its fixed config turns hooks off, also for the receive-pack and upload-pack a push or
fetch to a local path starts), with the environment from its allowlist.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import GitError, OrchestratorError
from orchestrator.proc import CommandResult
from orchestrator.workspace.git import Git, git_error
from orchestrator.workspace.merge import checked_out_in
from orchestrator.workspace.run_records import backup_prefix, branch_name, meta_prefix, tip_ref
from orchestrator.workspace.run_workspace import RunWorkspace

MIRRORS = Path("cluster") / "mirrors"
# Fetches and pushes move whole repositories the first time: longer than git.py's default.
TRANSFER_TIMEOUT_S = 900.0
_SCP_LIKE = re.compile(r"^[^/:]+:")  # user@host:path, host:path (not C:\... on this platform)


class StaleLease(OrchestratorError):
    """A push of a run's refs whose lease no longer holds: the run branch on the URL is not at the
    commit this attempt started from (another attempt moved it). Nothing of the push landed."""


def mirror_key(url: str) -> str:
    """A folder name for the URL's mirror: readable (the repository's name) and unique (a digest)."""
    name = re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "repo"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:40].lstrip(".") or "repo"
    return f"{safe}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def local_path(url: str) -> Path | None:
    """The folder a URL names on this machine (a path or file://), None for a remote."""
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if "://" in url or _SCP_LIKE.match(url):
        return None
    return Path(url)


def is_user_repo(user_repo: Path, url: str, env: Mapping[str, str]) -> bool:
    """Whether `url` is the user's repository itself (then there is nothing to push or fetch)."""
    path = local_path(url)
    if path is None or not path.exists():
        return False
    if path.resolve() == Path(user_repo).resolve():
        return True
    mine, theirs = (
        Git(p, environ=env).run("rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
        for p in (Path(user_repo), path)
    )
    return (
        mine.ok and theirs.ok and Path(mine.stdout.strip()).resolve() == Path(theirs.stdout.strip()).resolve()
    )


def run_refspecs(run_id: str, *, branch: bool) -> list[str]:
    """The refspecs of a run's refs and its group members' (same names on both sides); backups are
    never overwritten."""
    # A refspec has one `*` (it matches across "/"): the run's own folder, then its members' folders.
    # The run's record is not forced: a `+` would override the lease on its tip (push_run); the lease
    # lets the tip move back (a rollback). Members' records are forced: only this attempt writes them.
    record, members = f"{meta_prefix(run_id)}*", f"{meta_prefix(run_id)[:-1]}-*"
    backups, member_backups = f"{backup_prefix(run_id)}*", f"{backup_prefix(run_id)[:-1]}-*"
    specs = [f"{record}:{record}", f"+{members}:{members}", f"{backups}:{backups}"]
    specs.append(f"{member_backups}:{member_backups}")
    if branch:
        ref = f"refs/heads/{branch_name(run_id)}"
        specs.append(f"{ref}:{ref}")
    return specs


@dataclass
class RepoMirror:
    path: Path
    url: str
    env: Mapping[str, str]

    @classmethod
    def for_url(cls, url: str, *, state_home: Path, env: Mapping[str, str]) -> RepoMirror:
        """This machine's mirror of `url` (made, empty, if absent; `update` fills it)."""
        folder = Path(state_home) / MIRRORS
        folder.mkdir(parents=True, exist_ok=True)
        mirror = cls(folder / f"{mirror_key(url)}.git", url, env)
        with mirror._locked():
            if not mirror.exists():
                Git(folder, environ=env).run("init", "-q", "--bare", "--template=", str(mirror.path))
        return mirror

    @functools.cached_property
    def git(self) -> Git:
        """git in the mirror, one for the mirror's life (its identity look-up made once)."""
        return Git(self.path, environ=self.env, timeout_s=TRANSFER_TIMEOUT_S)

    def exists(self) -> bool:
        return (self.path / "HEAD").is_file()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The mirror's flock, held while git writes to it (released if this process dies)."""
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _fetch(self, *refspecs: str) -> None:
        self.git.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-auto-gc",
            "--no-write-commit-graph",
            "--",
            self.url,
            *refspecs,
        )

    def update(self) -> None:
        """Fetch the URL's branches (what runs branch from), not the runs' own branches."""
        with self._locked():
            self._fetch("+refs/heads/*:refs/heads/*", "^refs/heads/orchestrator/*")

    def update_run(self, run_id: str) -> None:
        """Fetch one run's refs (its branch, record and backups, its members' too) as the URL has
        them: the mirror's own are replaced (a run's step starts from the URL's state)."""
        ref = f"refs/heads/{branch_name(run_id)}"
        specs = [s if s.startswith("+") else f"+{s}" for s in run_refspecs(run_id, branch=False)]
        with self._locked():
            self._fetch(*specs, f"+{ref}:{ref}", f"+{ref}-*:{ref}-*")

    def tip(self, run_id: str) -> str | None:
        """The run branch in the mirror."""
        return self.git.rev_parse(f"refs/heads/{branch_name(run_id)}")

    def remote_tip(self, run_id: str) -> str | None:
        """The run's tip on the URL, as its record has it (one round trip)."""
        ref = tip_ref(run_id)
        out = self.git.out("ls-remote", "--", self.url, ref)
        return next((line.split()[0] for line in out.splitlines() if line.endswith(f"\t{ref}")), None)

    def push_run(self, run_id: str, *, expected: str | None) -> str:
        """Push the run's refs to the URL in one atomic push, leased on the run's record (its tip
        ref, which only the orchestrator writes) and its branch being at `expected` (None: absent).
        Returns the commit pushed. When the lease fails, nothing of the push lands; the mirror's
        commits of the run are kept on the URL under backups/<run-id>/stale-<sha> and StaleLease is
        raised. A URL that is a user's repository where they checked the run branch out or moved it
        gets the record and backups only, the branch left as the user has it (as a local run does)."""
        record = tip_ref(run_id)
        branch = f"refs/heads/{branch_name(run_id)}"
        with self._locked():
            tip = self.git.rev_parse(record)
            if tip is None:
                raise GitError(f"run {run_id} has no record in the mirror {self.path}")
            result = self._push({record: expected, branch: expected}, run_refspecs(run_id, branch=True))
            rejected = _rejected(result.stdout)
            if (
                not result.ok
                and rejected
                and "atomic push" in rejected.get(record, "")
                and branch in rejected
            ):
                # Only the branch was refused: the user has it (checked out, or moved): leave it be.
                result = self._push({record: expected}, run_refspecs(run_id, branch=False))
                rejected = _rejected(result.stdout)
            if result.ok:
                return tip
            if not rejected:
                raise git_error(result, ("push", self.url))
            self._keep_stale(run_id, list(rejected))
        on_url = self.remote_tip(run_id)
        raise StaleLease(
            f"run {run_id}: the run on {self.url} is at {(on_url or 'nothing')[:12]}, not at "
            f"{(expected or 'nothing')[:12]} where this attempt started: another attempt moved it; "
            f"nothing was pushed (this attempt's commits are kept under {backup_prefix(run_id)}stale-*)",
            hint="another worker took the run's step over; nothing to do",
        )

    def _push(self, leases: Mapping[str, str | None], refspecs: list[str]) -> CommandResult:
        return self.git.run(
            "push",
            "--atomic",
            "--porcelain",
            "--no-verify",
            *(f"--force-with-lease={ref}:{sha or ''}" for ref, sha in leases.items()),
            "--",
            self.url,
            *refspecs,
            check=False,
        )

    def _keep_stale(self, run_id: str, rejected: list[str]) -> None:
        """Keep what a refused push would have moved: the run branch's tip and every rejected backup,
        each under backups/<run-id>/stale-<sha> (create-only: pushing it twice is harmless)."""
        shas = {self.git.rev_parse(f"refs/heads/{branch_name(run_id)}")}
        shas |= {
            self.git.rev_parse(name) for name in rejected if name.startswith("refs/orchestrator/backups/")
        }
        specs = []
        for sha in sorted(s for s in shas if s):
            name = f"{backup_prefix(run_id)}stale-{sha[:16]}"
            self.git.run("update-ref", name, sha, check=False)
            specs.append(f"{name}:{name}")
        if specs:
            self.git.run("push", "--porcelain", "--no-verify", "--", self.url, *specs)


def _rejected(porcelain: str) -> dict[str, str]:
    """The refs (on the URL) a `push --porcelain` refused, with why (lines "!<TAB>src:dst<TAB>why").
    A ref of an --atomic push refused only because another one was says "atomic push failed" (this
    side refused) or "atomic push failure" (the receiving side did)."""
    refs: dict[str, str] = {}
    for line in porcelain.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] == "!":
            refs[parts[1].split(":", 1)[-1]] = parts[2]
    return refs


def open_run_workspace(
    mirror: RepoMirror,
    run_id: str,
    *,
    state_home: Path,
    env: Mapping[str, str],
    kept: RunWorkspace | None = None,
) -> RunWorkspace:
    """This worker's RunWorkspace for the run, its "user repository" the mirror: the run's refs
    fetched from the URL first and the workspace opened (unless `kept`: the workspace of the run's
    previous step on this worker, which pushed the refs the mirror holds, so nothing is fetched or
    read again), then its run repository made if absent, or moved to the run branch's tip if it is
    elsewhere (the previous step ran on another worker, or this one was cut short), what it held kept
    under a backup ref first (`at_tip_checked` says when it is at the tip)."""
    if kept is not None and kept.repo == mirror.path:
        ws = kept
    else:
        mirror.update_run(run_id)
        ws = RunWorkspace.open(mirror.path, run_id, state_home, environ=env)
    # The mirror is this worker's, no user's: other steps here move its branches (update()), so
    # watching its refs around a step would only report those.
    ws.worker_mirror = True
    ws.at_tip_checked = False
    if not ws.has_worktree():
        ws.ensure_worktree()
        ws.at_tip_checked = True  # made at the tip
    elif ws.ready_at_head():
        ws.at_tip_checked = True
    elif not ws.has_uncommitted():
        kept_as = ws.reset_to(ws.head())  # behind (the last step ran elsewhere): only pushed commits
        ws.at_tip_checked = True
        if kept_as is not None:
            ws.notes.append(f"this worker's copy of the run was behind; kept under {kept_as}")
    # A copy with a cut-short attempt's edits is left as it is: the engine's resume
    # (RunService.execute_node) withholds what holds a given secret, keeps the rest under a backup ref
    # and resets, so no secret gets into a ref this worker pushes.
    return ws


def publish_run_start(user_repo: Path, url: str, run_id: str, env: Mapping[str, str]) -> None:
    """Submit side: the run's first refs (branch, record, backups: RunWorkspace.create made them in
    the user's repository) to the URL the workers fetch from, the branch leased on being absent (a
    run id is new). A no-op when the URL is the user's repository."""
    if is_user_repo(user_repo, url, env):
        return
    user = Git(Path(user_repo), environ=env, timeout_s=TRANSFER_TIMEOUT_S)
    ref = f"refs/heads/{branch_name(run_id)}"
    result = user.run(
        "push",
        "--atomic",
        "--porcelain",
        "--no-verify",
        f"--force-with-lease={ref}:",
        "--",
        url,
        *run_refspecs(run_id, branch=True),
        check=False,
    )
    if not result.ok:
        if _rejected(result.stdout):
            raise StaleLease(
                f"run {run_id} already has a branch on {url}; the run was not published",
                hint="start the run again (it gets a new id)",
            )
        raise git_error(result, ("push", url))


def fetch_run_branch(user_repo: Path, url: str, run_id: str, env: Mapping[str, str]) -> str | None:
    """Submit side: bring the run's refs from the URL into the user's repository and return the
    run's tip (None when the URL has no such run). Only the run's refs are written: its record and
    backups, and its branch only where the user left it (not checked out in any worktree, not moved
    by them); never their checkout, index or HEAD. When the URL is the user's repository, nothing is
    fetched and the tip is read."""
    user = Git(Path(user_repo), environ=env, timeout_s=TRANSFER_TIMEOUT_S)
    before = user.rev_parse(tip_ref(run_id))
    if not is_user_repo(user_repo, url, env):
        # The run branch is not fetched into refs/heads (git would refuse a checked-out one, and the
        # user may have moved it): the record's tip is (forced: the URL's record is the run's, a
        # rollback moves it back), and the branch follows below. Backups are only ever created.
        specs = run_refspecs(run_id, branch=False)
        user.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-auto-gc",
            "--no-write-commit-graph",
            "--",
            url,
            *(f"+{s}" if "/backups/" not in s and not s.startswith("+") else s for s in specs),
        )
    tip = user.rev_parse(tip_ref(run_id))
    if tip is None:
        return None
    ref = f"refs/heads/{branch_name(run_id)}"
    branch = user.rev_parse(ref)
    if branch is None or branch == tip or checked_out_in(user, ref) is not None:
        return tip  # deleted or checked out by the user: left alone, as a local run leaves it
    if branch == before or user.is_ancestor(branch, tip):
        # Where the run last left it (then it follows the run, back too after a rollback), or behind
        # it. A compare-and-swap on what was read: a move by the user meanwhile is not overwritten.
        user.run("update-ref", "-m", f"orchestrator run {run_id}", ref, tip, branch)
    return tip
