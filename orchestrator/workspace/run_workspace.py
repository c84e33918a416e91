"""One run's git workspace: a worktree outside the user's checkout, on branch `orchestrator/<run-id>`.

The user's checkout (files, index, HEAD, stash, current branch) is never written, except by
`merge_into`, which is a normal `git merge` the user asked for. Refs this module keeps:

    refs/heads/orchestrator/<run-id>                 the run branch (the worktree's HEAD)
    refs/orchestrator/runs/<run-id>/base             the commit the run branched from
    refs/orchestrator/runs/<run-id>/first            the run's first commit (base, or the uncommitted one)
    refs/orchestrator/backups/<run-id>/start         the user's HEAD when the run began
    refs/orchestrator/backups/<run-id>/uncommitted   the user's uncommitted changes then, if any
    refs/orchestrator/backups/<run-id>/<kind>-<n>    whatever rollback, reset, discard and undo removed

Nothing is ever deleted without first being kept reachable under a backup ref (PEERS #4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import GitError, RunNotFound, UsageError
from orchestrator.workspace import trees
from orchestrator.workspace.diffs import DiffText, truncate_diff
from orchestrator.workspace.git import Git, find_repo_root, init_repo
from orchestrator.workspace.guard import guard_env, install_guard, original_hooks_dir
from orchestrator.workspace.merge import MergeResult, merge_run
from orchestrator.workspace.paths import RunPaths, run_paths

BRANCH_PREFIX = "orchestrator/"
UNCOMMITTED_STEP = "uncommitted"


def branch_name(run_id: str) -> str:
    return f"{BRANCH_PREFIX}{run_id}"


def backup_prefix(run_id: str) -> str:
    return f"refs/orchestrator/backups/{run_id}/"


def meta_prefix(run_id: str) -> str:
    return f"refs/orchestrator/runs/{run_id}/"


@dataclass(frozen=True)
class StepCommit:
    """What committing a step did. `changed` False means the step changed nothing (and no commit)."""

    changed: bool
    sha: str | None
    files: list[str] = field(default_factory=list)
    step_id: str = ""
    agent: str = ""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: list[str]
    subject: str
    trailers: dict[str, str]
    files: list[str]

    @property
    def step_id(self) -> str | None:
        return self.trailers.get("Orchestrator-Step")

    @property
    def agent(self) -> str | None:
        return self.trailers.get("Orchestrator-Agent")


@dataclass(frozen=True)
class UndoneEdits:
    """Edits a read-only step made and that were undone. `backup_ref` keeps them reachable."""

    diff: str
    files: list[str]
    backup_ref: str | None

    def __bool__(self) -> bool:
        return bool(self.files)


class WorkspaceConflict(UsageError):
    """The user's uncommitted changes cannot be carried onto the requested base."""


@dataclass
class RunWorkspace:
    repo: Path  # the top of the user's work tree
    run_id: str
    paths: RunPaths
    base: str  # the commit the run branched from
    first: str  # the run's first commit: base, or the commit of the user's uncommitted changes
    environ: Mapping[str, str] | None = None
    _user_git: Git | None = field(default=None, init=False, repr=False, compare=False)
    _wt_git: Git | None = field(default=None, init=False, repr=False, compare=False)

    # --- creating and opening ---------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        repo: Path,
        run_id: str,
        *,
        base: str = "HEAD",
        include_uncommitted: bool = False,
        state_home: Path,
        environ: Mapping[str, str] | None = None,
    ) -> RunWorkspace:
        """Record the starting state, then add the run's worktree on a new branch from `base`."""
        root = _repo_root(repo, environ)
        paths = run_paths(state_home, run_id)
        _check_outside(paths.worktree, root)
        if paths.worktree.exists() and any(paths.worktree.iterdir()):
            raise UsageError(
                f"the worktree folder {paths.worktree} already exists and is not empty",
                hint="choose another run id, or remove that folder if it belongs to no run",
            )
        paths.ensure()
        user = Git(root, environ=environ)
        branch = branch_name(run_id)
        if user.rev_parse(f"refs/heads/{branch}") is not None:
            raise UsageError(f"branch {branch} already exists", hint="choose another run id")
        user_head = user.rev_parse("HEAD^{commit}")
        if user_head is None:
            raise UsageError(
                f"{root} has no commits yet", hint="make a first commit, then start the run again"
            )
        base_sha = user.commit_of(base)
        zero = "0" * len(user_head)
        user.run("update-ref", f"{meta_prefix(run_id)}base", base_sha, zero)
        user.run("update-ref", f"{backup_prefix(run_id)}start", user_head, zero)

        # The user's uncommitted work is kept whenever it exists, included in the run or not.
        snapshot = trees.work_tree_tree(user, paths.tmp_dir)
        uncommitted: str | None = None
        if snapshot != trees.tree_of(user, user_head):
            message = trees.commit_message(
                f"Uncommitted changes at the start of run {run_id}",
                {
                    "Orchestrator-Run": run_id,
                    "Orchestrator-Step": UNCOMMITTED_STEP,
                    "Orchestrator-Agent": "user",
                },
            )
            uncommitted = trees.commit_tree(user, snapshot, [user_head], message)
            user.run("update-ref", f"{backup_prefix(run_id)}uncommitted", uncommitted, zero)

        carry = include_uncommitted and uncommitted is not None
        start_point = uncommitted if carry and base_sha == user_head else base_sha
        assert start_point is not None
        workspace = cls(root, run_id, paths, base_sha, start_point, environ)
        workspace._user_git = user
        try:
            user.run("worktree", "add", "--no-track", "-b", branch, str(paths.worktree), start_point)
            if carry and start_point == base_sha:
                assert uncommitted is not None
                workspace._carry_onto_base(uncommitted)
            workspace.first = workspace.head()
            user.run("update-ref", f"{meta_prefix(run_id)}first", workspace.first, zero)
        except BaseException:
            workspace._drop_fresh_run(start_point)
            raise
        return workspace

    def _carry_onto_base(self, uncommitted: str) -> None:
        """Apply the user's uncommitted changes (made on their HEAD) onto a different base."""
        wt = self._wt()
        picked = wt.run("cherry-pick", "--no-commit", uncommitted, check=False)
        if not picked.ok:
            wt.run("cherry-pick", "--abort", check=False)
            raise WorkspaceConflict(
                f"your uncommitted changes do not apply cleanly on {self.base[:12]}: "
                f"{(picked.stderr or picked.stdout).strip()[-500:]}",
                hint="start the run from your current HEAD, or commit your changes first",
            )
        wt.run("cherry-pick", "--quit", check=False)
        message = wt.out("log", "-1", "--no-show-signature", "--format=%B", uncommitted)
        tree = trees.work_tree_tree(wt, self.paths.tmp_dir)
        sha = trees.commit_tree(wt, tree, [self.base], message + "\n")
        self._move_branch(sha, self.base)
        wt.run("reset", "-q")  # the worktree's index to the new commit; files already match

    def _drop_fresh_run(self, start_point: str) -> None:
        """Undo a `create` that failed midway. Only what holds no new work goes: the worktree, the
        branch while it still points at its start, the run's metadata refs. The backups stay."""
        user = self._user()
        user.run("worktree", "remove", "--force", "--force", str(self.paths.worktree), check=False)
        user.run("worktree", "prune", check=False)
        user.run("update-ref", "-d", f"refs/heads/{self.branch}", start_point, check=False)
        for name in ("base", "first"):
            user.run("update-ref", "-d", f"{meta_prefix(self.run_id)}{name}", check=False)

    @classmethod
    def open(
        cls,
        repo: Path,
        run_id: str,
        state_home: Path,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> RunWorkspace:
        """An existing run (to resume it, or read its diff and log). Writes nothing."""
        root = _repo_root(repo, environ)
        paths = run_paths(state_home, run_id)
        user = Git(root, environ=environ)
        base = user.rev_parse(f"{meta_prefix(run_id)}base")
        if base is None or user.rev_parse(f"refs/heads/{branch_name(run_id)}") is None:
            raise RunNotFound(
                f"no run {run_id} in {root}",
                hint="`orchestrator runs` lists the runs; a discarded run is kept only under "
                f"{backup_prefix(run_id)}discarded",
            )
        first = user.rev_parse(f"{meta_prefix(run_id)}first") or base
        workspace = cls(root, run_id, paths, base, first, environ)
        workspace._user_git = user
        return workspace

    # --- reading ----------------------------------------------------------------------------------

    @property
    def branch(self) -> str:
        return branch_name(self.run_id)

    @property
    def worktree(self) -> Path:
        return self.paths.worktree

    def has_worktree(self) -> bool:
        return (self.worktree / ".git").exists()

    def head(self) -> str:
        """The tip of the run branch."""
        sha = self._user().rev_parse(f"refs/heads/{self.branch}")
        if sha is None:
            raise RunNotFound(f"the branch {self.branch} no longer exists")
        return sha

    def changed_files(self, since: str | None = None) -> list[str]:
        """Paths changed since `since` (default: the base), uncommitted and untracked changes included."""
        return trees.changed_paths(self._user(), since or self.base, self._current_tree())

    def diff(self, since: str | None = None, max_bytes: int = 60_000, *, committed_only: bool = False) -> DiffText:
        """The change since `since` (default: the base), committed and not (only committed with
        `committed_only`, which is cheaper: the engine commits or undoes after every step), cut to
        `max_bytes`."""
        old = since or self.base
        tree = trees.tree_of(self._user(), self.head()) if committed_only else self._current_tree()
        files = trees.changed_paths(self._user(), old, tree)
        text = trees.diff_text(self._user(), old, tree)
        return truncate_diff(text, files, max_bytes)

    def log(self) -> list[CommitInfo]:
        """The run branch's commits after the base, oldest first."""
        fmt = "%x1e%H%x00%P%x00%s%x00%(trailers:unfold,only)%x00"
        out = self._user().out(
            "log",
            "--no-show-signature",
            "--reverse",
            "--no-renames",
            "--name-only",
            "-z",
            f"--format={fmt}",
            f"{self.base}..refs/heads/{self.branch}",
        )
        commits: list[CommitInfo] = []
        for record in out.split("\x1e"):
            if not record.strip("\0\n"):
                continue
            sha, parents, subject, trailer_text, *rest = record.split("\0")
            files = [name.strip("\n") for name in rest if name.strip("\n")]
            commits.append(
                CommitInfo(sha, parents.split(), subject, trees.parse_trailers(trailer_text), files)
            )
        return commits

    def commit_for_step(self, step_id: str) -> str | None:
        """The last commit recorded for a step (for `rollback --to STEP`)."""
        matches = [c.sha for c in self.log() if c.step_id == step_id]
        return matches[-1] if matches else None

    def backups(self) -> dict[str, str]:
        """Backup ref name -> commit, for this run."""
        out = self._user().out(
            "for-each-ref", "--format=%(refname) %(objectname)", backup_prefix(self.run_id)
        )
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def agent_env(self) -> dict[str, str]:
        """Environment entries for the agents' processes (and gates) in this run: their git may change
        only the run's branch, never the stash, tags or branches of the user's checkout (guard.py)."""
        hooks = install_guard(
            self.paths.run_dir / "git-hooks",
            branch_ref=f"refs/heads/{self.branch}",
            original=original_hooks_dir(self._user()),
        )
        return guard_env(hooks)

    # --- writing the run (never the user's checkout) ----------------------------------------------

    def commit_step(
        self,
        *,
        step_id: str,
        agent: str,
        task: str = "",
        message: str = "",
        step_start: str | None = None,
    ) -> StepCommit:
        """Commit whatever the step left in the worktree on the run branch.

        Pass `step_start` (the head before the step) so that commits the agent made itself are
        recorded as this step's, and a branch an agent moved backwards or away is put back on course
        (the run's history is kept; the worktree's content is what gets committed)."""
        wt = self._wt()
        tip = self.head()
        parent = tip
        if step_start is not None and not self._user().is_ancestor(step_start, tip):
            parent = step_start
        wt.run("add", "-A", "--", ".")
        tree = wt.out("write-tree")
        since = step_start or parent
        moved = step_start is not None and parent != step_start
        if tree == trees.tree_of(wt, parent) and not moved:
            self._attach_head(parent)
            return StepCommit(changed=False, sha=None, step_id=step_id, agent=agent)
        subject = message or f"{step_id}: {agent}"
        trailer_values = {
            "Orchestrator-Run": self.run_id,
            "Orchestrator-Step": step_id,
            "Orchestrator-Agent": agent,
            "Orchestrator-Task": task,
        }
        sha = trees.commit_tree(wt, tree, [parent], trees.commit_message(subject, trailer_values))
        if parent != tip:  # the agent moved the branch off the run's history: keep what it pointed at
            self._keep("agent-moved", tip)
        self._move_branch(sha, tip)
        self._attach_head(sha)
        files = trees.changed_paths(wt, since, sha)
        return StepCommit(changed=True, sha=sha, files=files, step_id=step_id, agent=agent)

    def discard_uncommitted(self, *, step_start: str | None = None) -> UndoneEdits:
        """Undo what a read-only step changed: uncommitted edits, untracked files, and (with
        `step_start`) commits it made. What is undone stays under backups/<run>/undone-<n>."""
        wt = self._wt()
        target = step_start or self.head()
        if self._clean_at(target):
            return UndoneEdits(diff="", files=[], backup_ref=None)
        tree = trees.work_tree_tree(wt, self.paths.tmp_dir)
        if tree == trees.tree_of(wt, target) and self.head() == target:
            self._clean(target)
            return UndoneEdits(diff="", files=[], backup_ref=None)
        diff = trees.diff_text(wt, target, tree, renames=False)
        files = trees.changed_paths(wt, target, tree)
        kept = self._keep_worktree_state("undone", message=f"Edits undone in run {self.run_id}")
        self._move_branch(target, self.head())
        self._clean(target)
        return UndoneEdits(diff=diff, files=files, backup_ref=kept)

    def reset_to(self, sha: str) -> str | None:
        """Resume from `sha` (usually the last commit): the worktree back to it, untracked files
        removed. Whatever is dropped (a killed step's partial edits, later commits) is kept under a
        backup ref, whose name is returned (None when nothing was dropped)."""
        self._clear_stale_locks()
        self.ensure_worktree()
        target = self._user().commit_of(sha)
        self._check_on_branch(target)
        kept = None
        if self._worktree_dirty() or self.head() != target:
            kept = self._keep_worktree_state("reset", message=f"State before a reset in run {self.run_id}")
        self._move_branch(target, self.head())
        self._clean(target)
        return kept

    def rollback(self, to_sha: str) -> str:
        """Move the run branch back to `to_sha` (a commit of the run, or the base). The removed
        commits, and any uncommitted work, stay reachable under the returned backup ref."""
        target = self._user().commit_of(to_sha)
        self._check_on_branch(target)
        if self.has_worktree():
            kept = self._keep_worktree_state(
                "rollback", message=f"State before a rollback in run {self.run_id}"
            )
            self._move_branch(target, self.head())
            self._clean(target)
        else:
            kept = self._keep("rollback", self.head())
            self._move_branch(target, self.head())
        return kept

    def merge_into(self, target_branch: str | None = None) -> MergeResult:
        """Merge the run branch into `target_branch` (default: the user's current branch). Raises
        MergeRefused (exit 2) when it would overwrite uncommitted changes or does not merge cleanly."""
        return merge_run(
            self._user(), run_id=self.run_id, run_branch=self.branch, target_branch=target_branch
        )

    def ensure_worktree(self) -> None:
        """Re-create the worktree from the branch if its folder was removed (resume after clean-up)."""
        if self.has_worktree():
            return
        user = self._user()
        user.run("worktree", "prune")
        _check_outside(self.worktree, self.repo)
        self.worktree.parent.mkdir(parents=True, exist_ok=True)
        user.run("worktree", "add", str(self.worktree), self.branch)

    def remove_worktree(self) -> str | None:
        """Remove the worktree folder, keeping the branch. Uncommitted work is kept under a backup ref
        (returned)."""
        kept = None
        if self.has_worktree() and self._worktree_dirty():
            kept = self._keep_worktree_state(
                "worktree-removed",
                message=f"Uncommitted work when the worktree of run {self.run_id} was removed",
            )
        self._remove_worktree_folder()
        return kept

    def discard(self) -> str:
        """Drop the run: its tip (with any uncommitted work on top) is kept under
        backups/<run>/discarded, then the worktree is removed and the branch deleted."""
        if self.has_worktree():
            kept = self._keep_worktree_state("discarded", message=f"Run {self.run_id} at discard")
        else:
            kept = self._keep("discarded", self.head())
        user = self._user()
        tip = self.head()
        if user.rev_parse(kept) is None or not user.is_ancestor(tip, kept):
            raise GitError(f"the backup {kept} does not hold {tip}; the run was not discarded")
        self._remove_worktree_folder()
        user.run("update-ref", "-d", f"refs/heads/{self.branch}", tip)
        return kept

    # --- helpers ----------------------------------------------------------------------------------

    def _user(self) -> Git:
        if self._user_git is None:
            self._user_git = Git(self.repo, environ=self.environ)
        return self._user_git

    def _wt(self) -> Git:
        if not self.has_worktree():
            raise UsageError(
                f"the worktree of run {self.run_id} ({self.worktree}) is gone",
                hint="resume the run (it is re-created from the branch), or discard it",
            )
        if self._wt_git is None:
            user = self._user()
            user.identity_args()  # looked up once, shared with the worktree's git
            self._wt_git = user.at(self.worktree)
        return self._wt_git

    def _current_tree(self) -> str:
        """The run's current content: the worktree's (uncommitted work included), or the branch tip's."""
        if self.has_worktree():
            return trees.work_tree_tree(self._wt(), self.paths.tmp_dir)
        return trees.tree_of(self._user(), self.head())

    def _clean_at(self, target: str) -> bool:
        """One `git status`: the worktree has nothing uncommitted, its HEAD is on the run branch, and
        that branch is at `target` (the common case after a read-only step or a gate)."""
        out = self._wt().out("status", "--porcelain=v2", "--branch", "--untracked-files=all", "--ignore-submodules=none")
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
        return trees.work_tree_tree(wt, self.paths.tmp_dir) != trees.tree_of(wt, self.head())

    def _check_on_branch(self, target: str) -> None:
        user = self._user()
        if not (user.is_ancestor(self.base, target) and user.is_ancestor(target, self.head())):
            raise UsageError(
                f"{target[:12]} is not a commit of run {self.run_id}",
                hint=f"pick one from `orchestrator runs log {self.run_id}`",
            )

    def _move_branch(self, new: str, old: str) -> None:
        self._user().run(
            "update-ref", "-m", f"orchestrator run {self.run_id}", f"refs/heads/{self.branch}", new, old
        )

    def _attach_head(self, expected: str) -> None:
        """Make the worktree's HEAD the run branch again if an agent switched or detached it."""
        wt = self._wt()
        current = wt.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
        if current != f"refs/heads/{self.branch}":
            wt.run("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
            wt.run("reset", "-q", expected)  # the index follows; the files are left as they are

    def _clean(self, target: str) -> None:
        """The worktree exactly at `target`: HEAD on the branch, files reset, untracked files removed."""
        wt = self._wt()
        wt.run("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        wt.run("reset", "-q", "--hard", target)
        wt.run("clean", "-fdq")

    def _keep(self, kind: str, sha: str) -> str:
        """Point a new backups/<run>/<kind>[-<n>] ref at `sha`; never overwrites one."""
        user = self._user()
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
        """Keep the branch tip plus, when the worktree holds uncommitted work, a commit of it on top."""
        wt = self._wt()
        tip = self.head()
        tree = trees.work_tree_tree(wt, self.paths.tmp_dir)
        sha = tip
        if tree != trees.tree_of(wt, tip):
            trailer_values = {"Orchestrator-Run": self.run_id, "Orchestrator-Step": kind}
            sha = trees.commit_tree(wt, tree, [tip], trees.commit_message(message, trailer_values))
        return self._keep(kind, sha)

    def _remove_worktree_folder(self) -> None:
        user = self._user()
        if self.worktree.exists():
            user.run("worktree", "remove", "--force", "--force", str(self.worktree))
        user.run("worktree", "prune")

    def _clear_stale_locks(self) -> None:
        """Remove lock files of this run that a killed process left behind. Only the owner of a run
        (the process resuming it) calls this."""
        user = self._user()
        common = self.repo / user.out("rev-parse", "--git-common-dir")
        candidates = [common / "refs" / "heads" / f"{self.branch}.lock"]
        if self.has_worktree():
            candidates.append(trees.index_path(self._wt()).with_name("index.lock"))
        for folder in (
            common / "refs/orchestrator/backups" / self.run_id,
            common / "refs/orchestrator/runs" / self.run_id,
        ):
            if folder.is_dir():
                candidates += list(folder.glob("*.lock"))
        for lock in candidates:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def list_run_ids(repo: Path, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Ids of the runs made in this repository (discarded ones included), oldest id first."""
    user = Git(_repo_root(repo, environ), environ=environ)
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
        return _repo_root(repo, environ)
    found = find_repo_root(cwd, environ=environ)
    if found is not None:
        return found
    return init_repo(workspace_dir / new_name, environ=environ)


def _repo_root(repo: Path, environ: Mapping[str, str] | None) -> Path:
    root = find_repo_root(Path(repo), environ=environ)
    if root is None:
        raise UsageError(
            f"{repo} is not inside a git repository", hint="pass --repo PATH to a git repository"
        )
    return root


def _check_outside(worktree: Path, root: Path) -> None:
    """A worktree inside the user's checkout would show up there as untracked files."""
    if worktree.resolve().is_relative_to(root.resolve()):
        raise UsageError(
            f"the run's worktree {worktree} would be inside the repository {root}",
            hint="set ORCHESTRATOR_HOME to a folder outside the repository",
        )
