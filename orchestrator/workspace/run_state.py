"""The state a run's workspace keeps in step: the run repository (its branch, work tree and HEAD) and
the run's refs in the user's repository (its tip, the run branch, the backups), and the moves between
them every operation of RunWorkspace (run_workspace.py) is made of: publish a commit, keep one under a
backup ref, put the work tree exactly at a commit, make the run repository again.

See run_workspace.py for the refs written and the promises kept (nothing removed without a backup).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import GitError, RunNotFound, UsageError
from orchestrator.workspace import trees
from orchestrator.workspace.git import Git
from orchestrator.workspace.merge import checked_out_in
from orchestrator.workspace.paths import RunPaths
from orchestrator.workspace.run_locate import check_outside
from orchestrator.workspace.run_records import backup_prefix, branch_name, tip_ref
from orchestrator.workspace.run_repo import (
    CONFIG_COPY,
    create_run_repo,
    fetch_commit,
    remove_run_repo,
    run_repo_git,
    verify_run_repo,
)


@dataclass
class WorkspaceState:
    repo: Path  # the top of the user's work tree (or a cluster worker's bare mirror)
    run_id: str
    paths: RunPaths
    base: str  # the commit the run branched from
    first: str  # the run's first commit: base, or the commit of the user's uncommitted changes
    environ: Mapping[str, str] | None = None
    # What the caller should tell the user (e.g. the run branch was left where the user put it).
    notes: list[str] = field(default_factory=list, compare=False)
    # The "user repository" is a cluster worker's own bare mirror (cluster/mirror.py): no user has
    # it, so there are no user's refs to watch around a step and no checkout of the run branch.
    worker_mirror: bool = field(default=False, compare=False)
    # Set by whoever has just found the run repository clean at the run's tip (or put it there), so
    # the engine's resume need not ask git again (cluster/mirror.py's open_run_workspace).
    at_tip_checked: bool = field(default=False, compare=False)
    _user_git: Git | None = field(default=None, init=False, repr=False, compare=False)
    _wt_git: Git | None = field(default=None, init=False, repr=False, compare=False)
    _common_dir: Path | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def branch(self) -> str:
        return branch_name(self.run_id)

    @property
    def worktree(self) -> Path:
        """The run repository's work tree: where agents and gates run."""
        return self.paths.worktree

    def has_worktree(self) -> bool:
        return (self.worktree / ".git").exists()

    def head(self) -> str:
        """The run's latest commit (its record in the user's repository, which no agent can write)."""
        user = self._user()
        sha = user.rev_parse(tip_ref(self.run_id)) or user.rev_parse(f"refs/heads/{self.branch}")
        if sha is None:
            raise RunNotFound(f"the branch {self.branch} no longer exists")
        return sha

    def backups(self) -> dict[str, str]:
        """Backup ref name -> commit, for this run."""
        out = self._user().out(
            "for-each-ref", "--format=%(refname) %(objectname)", backup_prefix(self.run_id)
        )
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def reset_to(self, sha: str) -> str | None:
        """Resume from `sha` (usually the last commit): the work tree back to it, untracked files
        removed. Whatever is dropped (a killed step's partial edits, later commits) is kept under a
        backup ref, whose name is returned (None when nothing was dropped)."""
        self._clear_stale_locks()
        self.ensure_worktree()
        target = self._user().commit_of(sha)
        self._check_on_branch(target)
        kept = None
        if self._worktree_dirty() or self._clone_tip() != target:
            kept = self._keep_worktree_state("reset", message=f"State before a reset in run {self.run_id}")
        self._clean(target)
        self._publish(target)
        return kept

    def advance_to(self, sha: str) -> None:
        """Move the run forward to `sha`, a descendant of its tip made in another repository of the
        run (the winner of a best of N, whose commits are in the user's repository already)."""
        user = self._user()
        target = user.commit_of(sha)
        if not user.is_ancestor(self.head(), target):
            raise GitError(f"{target[:12]} does not follow the run's tip {self.head()[:12]}")
        self.ensure_worktree()
        self._clean(target)
        self._publish(target)

    def ensure_worktree(self) -> None:
        """Make the run repository again from the run's tip if its folder was removed (resume after
        clean-up)."""
        if self.has_worktree():
            return
        check_outside(self.worktree, self.repo)
        remove_run_repo(self.worktree)  # a folder without .git holds nothing of the run's
        self._wt_git = create_run_repo(
            self._user(), self.worktree, branch=self.branch, start=self.head(), config_copy=self._config_copy
        )

    @property
    def _config_copy(self) -> Path:
        return self.paths.run_dir / CONFIG_COPY

    def _user(self) -> Git:
        if self._user_git is None:
            self._user_git = Git(self.repo, environ=self.environ)
        return self._user_git

    def _wt(self) -> Git:
        """git in the run repository, after checking it is still a plain repository of its own."""
        if not self.has_worktree():
            raise UsageError(
                f"the repository of run {self.run_id} ({self.worktree}) is gone",
                hint="resume the run (it is made again from the branch), or discard it",
            )
        if verify_run_repo(self.worktree, self._config_copy):
            self.notes.append("the run repository's git config was changed by an agent; it was restored")
        if self._wt_git is None:
            self._wt_git = run_repo_git(self._user(), self.worktree)
        return self._wt_git

    def _clone_tip(self) -> str | None:
        """The commit the run repository's branch names (an agent may have moved or deleted it)."""
        return self._wt().rev_parse(f"refs/heads/{self.branch}^{{commit}}")

    def _current_tree(self) -> tuple[Git, str]:
        """The run's current content: the work tree's (uncommitted work included), or the tip's."""
        if self.has_worktree():
            wt = self._wt()
            return wt, trees.work_tree_tree(wt, self.paths.tmp_dir)
        return self._user(), trees.tree_of(self._user(), self.head())

    def _clean_at(self, target: str) -> bool:
        """One `git status`: the work tree has nothing uncommitted, its HEAD is on the run branch, and
        that branch is at `target` (the common case after a read-only step or a gate)."""
        out = self._wt().out(
            "status", "--porcelain=v2", "--branch", "--untracked-files=all", "--ignore-submodules=none"
        )
        oid = head = None
        for line in out.splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split(" ", 2)[2]
            elif line.startswith("# branch.head "):
                head = line.split(" ", 2)[2]
            elif not line.startswith("#"):
                return False
        return oid == target and head == self.branch

    def _worktree_dirty(self) -> bool:
        wt = self._wt()
        return trees.work_tree_tree(wt, self.paths.tmp_dir) != trees.tree_of(
            wt, self._clone_tip() or self.head()
        )

    def _check_on_branch(self, target: str) -> None:
        user = self._user()
        if not (user.is_ancestor(self.base, target) and user.is_ancestor(target, self.head())):
            raise UsageError(
                f"{target[:12]} is not a commit of run {self.run_id}",
                hint=f"pick one from `orchestrator runs log {self.run_id}`",
            )

    def _move_clone_branch(self, new: str) -> None:
        """The run repository's branch to `new` (only we write it between steps: no compare-and-swap)."""
        self._wt().run(
            "update-ref", "-m", f"orchestrator run {self.run_id}", f"refs/heads/{self.branch}", new
        )

    def _publish(self, new: str, *, old: str | None = None) -> None:
        """Bring `new` into the user's repository as the run's tip, and move the run branch there too,
        unless the user has it checked out or moved it (then it is left alone, and a note says so).
        `old`: the run's tip as the caller has just read it (else it is read here)."""
        user = self._user()
        old = old or self.head()
        ref = f"refs/heads/{self.branch}"
        if self.has_worktree():
            fetch_commit(user, self.worktree, new)
        message = f"orchestrator run {self.run_id}"
        if new != old and self.worker_mirror:
            # No checkout of the run branch to look for: the tip and the branch move in one
            # transaction when the branch is where the run left it (else as below, one by one).
            both = f"update {tip_ref(self.run_id)} {new} {old}\nupdate {ref} {new} {old}\n"
            if user.run("update-ref", "-m", message, "--stdin", input=both, check=False).ok:
                return
        if new != old:
            user.run("update-ref", "-m", message, tip_ref(self.run_id), new, old)
        branch = user.rev_parse(ref)
        if branch == new:
            return
        where = checked_out_in(user, ref) if branch == old and not self.worker_mirror else None
        if branch == old and where is None:
            user.run("update-ref", "-m", message, ref, new, old)
            return
        why = (
            f"it is checked out in {where}"
            if where is not None
            else "it was moved or deleted outside the run"
        )
        self.notes.append(
            f"the branch {self.branch} was left as it is ({why}); the run is at {new[:12]} "
            f"(git checkout {new[:12]}, or git branch -f {self.branch} {new[:12]})"
        )

    def _attach_head(self, expected: str) -> None:
        """Make the work tree's HEAD the run branch again if an agent switched or detached it."""
        wt = self._wt()
        current = wt.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
        if current != f"refs/heads/{self.branch}":
            wt.run("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
            wt.run("reset", "-q", expected)  # the index follows; the files are left as they are

    def _clean(self, target: str) -> None:
        """The work tree exactly at `target`: HEAD on the branch, files reset, untracked files removed."""
        wt = self._wt()
        self._move_clone_branch(target)
        wt.run("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        wt.run("reset", "-q", "--hard", target)
        wt.run("clean", "-fdq")

    def _keep(self, kind: str, sha: str, *, from_run_repo: bool = True) -> str:
        """Point a new backups/<run>/<kind>[-<n>] ref in the user's repository at `sha` (brought there
        from the run repository first); never overwrites one."""
        user = self._user()
        if from_run_repo and self.has_worktree():
            fetch_commit(user, self.worktree, sha)
        existing = set(self.backups())
        zero = "0" * len(sha)
        for n in range(1, 10_000):
            suffix = "" if kind == "discarded" and n == 1 else f"-{n}"
            name = f"{backup_prefix(self.run_id)}{kind}{suffix}"
            if name in existing:
                continue
            result = user.run("update-ref", name, sha, zero, check=False)
            if result.ok:
                return name
            if user.rev_parse(name) is None:  # not taken meanwhile: a real failure
                raise GitError(f"could not keep {sha[:12]} under {name}: {result.stderr.strip()}")
        raise GitError(f"too many {kind} backups in run {self.run_id}")

    def _keep_worktree_state(self, kind: str, *, message: str) -> str:
        """Keep the run repository's branch tip plus, when the work tree holds uncommitted work, a
        commit of it on top."""
        wt = self._wt()
        tip = self._clone_tip() or self.head()
        tree = trees.work_tree_tree(wt, self.paths.tmp_dir)
        sha = tip
        if tree != trees.tree_of(wt, tip):
            trailer_values = {"Orchestrator-Run": self.run_id, "Orchestrator-Step": kind}
            sha = trees.commit_tree(wt, tree, [tip], trees.commit_message(message, trailer_values))
        return self._keep(kind, sha)

    def _remove_worktree_folder(self) -> None:
        remove_run_repo(self.worktree)
        self._wt_git = None

    def _clear_stale_locks(self) -> None:
        """Remove lock files of this run that a killed process left behind. Only the owner of a run
        (the process resuming it) calls this."""
        if self._common_dir is None:  # the user's repository's git folder: the same for its life
            self._common_dir = Path(
                self._user().out("rev-parse", "--path-format=absolute", "--git-common-dir")
            )
        common = self._common_dir
        candidates = [common / "refs" / "heads" / f"{self.branch}.lock"]
        run_git = self.worktree / ".git"
        if run_git.is_dir() and not run_git.is_symlink():
            candidates += [
                run_git / "index.lock",
                run_git / "HEAD.lock",
                run_git / "packed-refs.lock",
                run_git / "refs" / "heads" / f"{self.branch}.lock",
            ]
        for folder in (
            common / "refs/orchestrator/backups" / self.run_id,
            common / "refs/orchestrator/runs" / self.run_id,
        ):
            if folder.is_dir():
                candidates += list(folder.glob("*.lock"))
        for lock in candidates:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def create_refs(git: Git, refs: Mapping[str, str]) -> None:
    """Create each ref (name -> object id) in one transaction: all or none, and none that exists."""
    git.run("update-ref", "--stdin", input="".join(f"create {ref} {sha}\n" for ref, sha in refs.items()))


def read_refs(git: Git, names: list[str]) -> dict[str, str]:
    """The object id of each of these refs that exists (one git process for all of them)."""
    out = git.out("for-each-ref", "--format=%(refname) %(objectname)", *names)
    found = dict(line.split(" ", 1) for line in out.splitlines() if line.strip())
    return {name: found[name] for name in names if name in found}
