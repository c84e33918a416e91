"""One run's git workspace: a repository of its own (run_repo.py) outside the user's checkout, on branch
`orchestrator/<run-id>`, whose commits the orchestrator brings into the user's repository after every
step.

The agents work in the run repository and can write nothing else through it. The user's checkout (files,
index, HEAD, stash, current branch) is never written, except by `merge_into`, which is a normal
`git merge` the user asked for. In the user's repository this module writes only these refs:

    refs/heads/orchestrator/<run-id>                 the run branch, moved after every step (not while
                                                     the user has it checked out or moved it themselves)
    refs/orchestrator/runs/<run-id>/tip              the run's latest commit (the run's own record)
    refs/orchestrator/runs/<run-id>/base             the commit the run branched from
    refs/orchestrator/runs/<run-id>/first            the run's first commit (base, or the uncommitted one)
    refs/orchestrator/backups/<run-id>/start         the user's HEAD when the run began
    refs/orchestrator/backups/<run-id>/uncommitted   the user's uncommitted changes then, if any
    refs/orchestrator/backups/<run-id>/<kind>-<n>    whatever rollback, reset, discard and undo removed

Nothing is ever deleted without first being kept reachable under a backup ref (PEERS #4). The user keeps
working meanwhile: nothing here undoes or waits for what they do in their checkout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import GitError, RunNotFound, UsageError
from orchestrator.workspace import trees
from orchestrator.workspace.diffs import DiffText, truncate_diff
from orchestrator.workspace.git import Git
from orchestrator.workspace.merge import MergeResult, checked_out_in, merge_run
from orchestrator.workspace.paths import RunPaths, run_paths
from orchestrator.workspace.run_locate import (
    RepoLocation,
    check_outside,
    list_run_ids,
    locate_repo,
    repo_root,
    resolve_repo,
    run_repo_root,
)
from orchestrator.workspace.run_records import (
    BRANCH_PREFIX,
    UNCOMMITTED_STEP,
    CommitInfo,
    StepCommit,
    UndoneEdits,
    WorkspaceConflict,
    backup_prefix,
    branch_name,
    meta_prefix,
    tip_ref,
)
from orchestrator.workspace.run_repo import (
    CONFIG_COPY,
    RunRepoTampered,
    copied_config,
    create_run_repo,
    fetch_commit,
    remove_run_repo,
    run_repo_git,
    verify_run_repo,
)
from orchestrator.workspace.run_start import StartPoint, read_start

__all__ = [
    "BRANCH_PREFIX",
    "CommitInfo",
    "RunWorkspace",
    "StepCommit",
    "UNCOMMITTED_STEP",
    "UndoneEdits",
    "WorkspaceConflict",
    "backup_prefix",
    "branch_name",
    "list_run_ids",
    "meta_prefix",
    "resolve_repo",
    "tip_ref",
]


@dataclass
class RunWorkspace:
    repo: Path  # the top of the user's work tree
    run_id: str
    paths: RunPaths
    base: str  # the commit the run branched from
    first: str  # the run's first commit: base, or the commit of the user's uncommitted changes
    environ: Mapping[str, str] | None = None
    # What the caller should tell the user (e.g. the run branch was left where the user put it).
    notes: list[str] = field(default_factory=list, compare=False)
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
        location: RepoLocation | None = None,
        start: StartPoint | None = None,
    ) -> RunWorkspace:
        """Record the starting state, then make the run's repository on a new branch from `base`.

        `repo` may be a bare repository (a cluster worker's mirror, where a group step's members are
        made): it has no checkout, so no uncommitted work, and the run "starts" at `base`.
        `location` (locate_repo's, for `repo`) and `start` (read_start's, for this run id and base):
        what the caller has read already; each is read here otherwise."""
        repo = Path(repo)
        if location is None or location.top is None or repo not in (location.path, location.top):
            location = locate_repo(repo, environ=environ)
        root = location.top if location is not None else None
        bare = location is not None and location.is_bare_repo_itself()
        if bare:
            assert location is not None
            root = location.common_dir.resolve()
        elif location is None or root is None:
            root = repo_root(repo, environ)  # the usage error, or a location git gives only this way
            location = None
        paths = run_paths(state_home, run_id)
        check_outside(paths.worktree, root)
        if paths.worktree.exists() and any(paths.worktree.iterdir()):
            raise UsageError(
                f"the run repository folder {paths.worktree} already exists and is not empty",
                hint="choose another run id, or remove that folder if it belongs to no run",
            )
        paths.ensure()
        user = Git(root, environ=environ)
        branch = branch_name(run_id)
        if start is None or start.run_id != run_id or start.base != base:
            start = read_start(user, base, run_id)
        if start.names_taken:
            raise UsageError(f"branch {branch} already exists", hint="choose another run id")
        user_head = start.base_sha if bare else start.head
        if user_head is None or (not bare and start.head_tree is None):
            raise UsageError(
                f"{root} has no commits yet", hint="make a first commit, then start the run again"
            )
        if start.base_sha is None:
            raise GitError(f"{base!r} does not name a commit in {root}")
        base_sha = start.base_sha
        zero = "0" * len(user_head)
        copied = copied_config(user)  # also notes the user's identity, which the ref updates need
        # One git process per group of refs (each group one transaction; `create` fails if it exists).
        _create_refs(
            user, {f"{meta_prefix(run_id)}base": base_sha, f"{backup_prefix(run_id)}start": user_head}
        )

        # The user's uncommitted work is kept whenever it exists, included in the run or not (a bare
        # repository has none).
        index = location.index if location is not None else None
        snapshot = start.head_tree if bare else trees.work_tree_tree(user, paths.tmp_dir, index=index)
        uncommitted: str | None = None
        if snapshot is not None and snapshot != start.head_tree:
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
            workspace._wt_git = create_run_repo(
                user,
                paths.worktree,
                branch=branch,
                start=start_point,
                config_copy=workspace._config_copy,
                location=location,
                copied=copied,
            )
            if carry and start_point == base_sha:
                assert uncommitted is not None
                workspace._carry_onto_base(uncommitted)
                # The commit carrying the uncommitted work onto the base (else the branch is still at
                # start_point, where create_run_repo has just put it).
                workspace.first = workspace._clone_tip() or start_point
            if workspace.first != start_point:
                fetch_commit(user, paths.worktree, workspace.first)
            first = workspace.first
            refs = (tip_ref(run_id), f"refs/heads/{branch}", f"{meta_prefix(run_id)}first")
            _create_refs(user, dict.fromkeys(refs, first))
        except BaseException:
            workspace._drop_fresh_run()
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
        self._move_clone_branch(sha)
        wt.run("reset", "-q")  # the index to the new commit; files already match

    def _drop_fresh_run(self) -> None:
        """Undo a `create` that failed midway: the run repository and the refs that hold no new work
        (the run's branch and metadata refs). The backups stay."""
        remove_run_repo(self.worktree)
        user = self._user()
        for ref in (
            f"refs/heads/{self.branch}",
            *(f"{meta_prefix(self.run_id)}{n}" for n in ("tip", "base", "first")),
        ):
            user.run("update-ref", "-d", ref, check=False)

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
        root = run_repo_root(repo, environ)
        paths = run_paths(state_home, run_id)
        user = Git(root, environ=environ)
        names = [f"{meta_prefix(run_id)}{n}" for n in ("base", "first")]
        refs = _read_refs(user, [*names, tip_ref(run_id), f"refs/heads/{branch_name(run_id)}"])
        base = refs.get(names[0])
        tip = refs.get(tip_ref(run_id)) or refs.get(f"refs/heads/{branch_name(run_id)}")
        if base is None or tip is None:
            raise RunNotFound(
                f"no run {run_id} in {root}",
                hint="`orchestrator runs` lists the runs; a discarded run is kept only under "
                f"{backup_prefix(run_id)}discarded",
            )
        first = refs.get(names[1]) or base
        workspace = cls(root, run_id, paths, base, first, environ)
        workspace._user_git = user
        return workspace

    # --- reading ----------------------------------------------------------------------------------

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

    def changed_files(self, since: str | None = None) -> list[str]:
        """Paths changed since `since` (default: the base), uncommitted and untracked changes included."""
        git, tree = self._current_tree()
        return trees.changed_paths(git, since or self.base, tree)

    def diff(
        self, since: str | None = None, max_bytes: int = 60_000, *, committed_only: bool = False
    ) -> DiffText:
        """The change since `since` (default: the base), committed and not (only committed with
        `committed_only`, which is cheaper: the engine commits or undoes after every step), cut to
        `max_bytes`."""
        old = since or self.base
        if committed_only:
            git, tree = self._user(), trees.tree_of(self._user(), self.head())
        else:
            git, tree = self._current_tree()
        files = trees.changed_paths(git, old, tree)
        text = trees.diff_text(git, old, tree)
        return truncate_diff(text, files, max_bytes)

    def log(self) -> list[CommitInfo]:
        """The run's commits after the base, oldest first."""
        fmt = "%x1e%H%x00%P%x00%s%x00%(trailers:unfold,only)%x00"
        out = self._user().out(
            "log",
            "--no-show-signature",
            "--reverse",
            "--no-renames",
            "--name-only",
            "-z",
            f"--format={fmt}",
            f"{self.base}..{self.head()}",
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
        """Environment entries for the agents' processes (and gates) in this run. None are needed any
        more: the run repository shares no refs with the user's, so there is nothing to guard."""
        return {}

    def user_refs(self) -> dict[str, str]:
        """The user's refs, HEAD and stash (not the orchestrator's own), to compare around a step."""
        user = self._user()
        out = user.out("for-each-ref", "--format=%(refname) %(objectname)")
        refs = {
            name: sha
            for name, _, sha in (line.partition(" ") for line in out.splitlines())
            if name and not name.startswith(("refs/orchestrator/", f"refs/heads/{BRANCH_PREFIX}"))
        }
        head = user.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip()
        refs["HEAD"] = head or (user.rev_parse("HEAD") or "")
        return refs

    def changed_user_refs(self, before: Mapping[str, str]) -> list[str]:
        """Names of the user's refs (and HEAD) that differ from `before` (a `user_refs()`)."""
        after = self.user_refs()
        return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))

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
        """Commit whatever the step left in the run repository, then bring the commit into the user's
        repository on the run branch.

        Pass `step_start` (the head before the step) so that commits the agent made itself are
        recorded as this step's, and a branch an agent moved backwards or away is put back on course
        (the run's history is kept; the work tree's content is what gets committed)."""
        wt = self._wt()
        published = self.head()
        tip = self._clone_tip() or published
        parent = tip
        if step_start is not None and not wt.is_ancestor(step_start, tip):
            parent = step_start
        wt.run("add", "-A", "--", ".")
        tree = wt.out("write-tree")
        since = step_start or parent
        moved = step_start is not None and parent != step_start
        if tree == trees.tree_of(wt, parent) and not moved:
            self._move_clone_branch(parent)
            self._attach_head(parent)
            self._publish(parent)
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
        self._move_clone_branch(sha)
        self._attach_head(sha)
        self._publish(sha)
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
        if tree == trees.tree_of(wt, target) and self._clone_tip() == target:
            self._clean(target)
            return UndoneEdits(diff="", files=[], backup_ref=None)
        diff = trees.diff_text(wt, target, tree, renames=False)
        files = trees.changed_paths(wt, target, tree)
        kept = self._keep_worktree_state("undone", message=f"Edits undone in run {self.run_id}")
        self._clean(target)
        self._publish(target)
        return UndoneEdits(diff=diff, files=files, backup_ref=kept)

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

    def merge_in(
        self, sha: str, *, subject: str, trailers: Mapping[str, str]
    ) -> tuple[str | None, list[str]]:
        """Merge `sha` (made in another repository of the run: a subtask's) into the run branch as a
        merge commit, computed without any work tree (`git merge-tree`). (the new tip, []) when it
        merges, or (None, the conflicted paths) when it does not; then nothing is changed."""
        user = self._user()
        head = self.head()
        target = user.commit_of(sha)
        if user.is_ancestor(target, head):
            return head, []
        if user.is_ancestor(head, target):
            self.advance_to(target)
            return target, []
        result = user.run(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", head, target, check=False
        )
        lines = [line for line in result.stdout.splitlines() if line]
        if result.returncode == 1:
            return None, sorted(set(lines[1:]))
        if not result.ok or not lines:
            raise GitError(f"git merge-tree failed: {(result.stderr or result.stdout).strip()[-500:]}")
        merged = trees.commit_tree(
            user, lines[0], [head, target], trees.commit_message(subject, dict(trailers))
        )
        self.advance_to(merged)
        return merged, []

    def start_merge(self, sha: str) -> list[str]:
        """Begin merging `sha` into this repository's branch in its work tree (`git merge --no-commit`),
        for an agent to resolve: the conflicted paths, their files holding both sides between markers
        ([] when it merged cleanly). `finish_merge` commits the result, `abort_merge` drops it."""
        wt = self._wt()
        self._clean(self._clone_tip() or self.head())
        wt.run("merge", "--no-ff", "--no-commit", "--no-edit", sha, check=False)
        out = wt.out("diff", "--name-only", "--diff-filter=U")
        return sorted(line for line in out.splitlines() if line)

    def finish_merge(self, sha: str, *, step_id: str, agent: str, message: str) -> str:
        """Commit the work tree as the merge of `sha` (started by `start_merge`), and publish it."""
        wt = self._wt()
        tip = self._clone_tip() or self.head()
        wt.run("add", "-A", "--", ".")
        tree = wt.out("write-tree")
        trailer_values = {
            "Orchestrator-Run": self.run_id,
            "Orchestrator-Step": step_id,
            "Orchestrator-Agent": agent,
            "Orchestrator-Task": "merge",
        }
        merged = trees.commit_tree(wt, tree, [tip, sha], trees.commit_message(message, trailer_values))
        wt.run("merge", "--quit", check=False)
        self._move_clone_branch(merged)
        self._attach_head(merged)
        self._clean(merged)
        self._publish(merged)
        return merged

    def abort_merge(self) -> None:
        """Drop a merge `start_merge` began (what the work tree held is kept under a backup ref)."""
        self._wt().run("merge", "--abort", check=False)
        self.reset_to(self._clone_tip() or self.head())

    def rollback(self, to_sha: str) -> str:
        """Move the run branch back to `to_sha` (a commit of the run, or the base). The removed
        commits, and any uncommitted work, stay reachable under the returned backup ref."""
        target = self._user().commit_of(to_sha)
        self._check_on_branch(target)
        if self.has_worktree():
            kept = self._keep_worktree_state(
                "rollback", message=f"State before a rollback in run {self.run_id}"
            )
            self._clean(target)
        else:
            kept = self._keep("rollback", self.head())
        self._publish(target)
        return kept

    def merge_into(self, target_branch: str | None = None) -> MergeResult:
        """Merge the run branch into `target_branch` (default: the user's current branch). Raises
        MergeRefused (exit 2) when it would overwrite uncommitted changes or does not merge cleanly."""
        return merge_run(
            self._user(), run_id=self.run_id, run_branch=self.branch, target_branch=target_branch
        )

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

    def sync_to_head(self) -> str | None:
        """Make the run repository match the run's tip in the user repository: made if absent, else
        moved there when it differs (its branch elsewhere, uncommitted files), what differed kept under
        a backup ref first (returned; None when nothing differed). A cluster worker calls this before
        a step, since the previous step may have run on another machine."""
        if not self.has_worktree():
            self.ensure_worktree()
            return None
        if self._clean_at(self.head()):
            return None
        return self.reset_to(self.head())

    def remove_worktree(self) -> str | None:
        """Remove the run repository's folder, keeping the branch. Uncommitted work is kept under a
        backup ref (returned)."""
        kept = None
        if self.has_worktree() and self._worktree_dirty():
            kept = self._keep_worktree_state(
                "worktree-removed",
                message=f"Uncommitted work when the repository of run {self.run_id} was removed",
            )
        self._remove_worktree_folder()
        return kept

    def discard(self) -> str:
        """Drop the run: its tip (with any uncommitted work on top) is kept under
        backups/<run>/discarded, then the run repository is removed and the branch deleted."""
        kept = None
        if self.has_worktree():
            try:
                kept = self._keep_worktree_state("discarded", message=f"Run {self.run_id} at discard")
            except RunRepoTampered as exc:  # its work tree is not trusted: the run's last commit is kept
                self.notes.append(f"{exc.message}; kept the run's last commit only")
        if kept is None:
            self._wt_git = None
            kept = self._keep("discarded", self.head(), from_run_repo=False)
        user = self._user()
        tip = self.head()
        if user.rev_parse(kept) is None or not user.is_ancestor(tip, kept):
            raise GitError(f"the backup {kept} does not hold {tip}; the run was not discarded")
        self._remove_worktree_folder()
        branch = user.rev_parse(f"refs/heads/{self.branch}")
        if branch == tip and checked_out_in(user, f"refs/heads/{self.branch}") is None:
            user.run("update-ref", "-d", f"refs/heads/{self.branch}", tip)
        elif branch is not None:
            self.notes.append(
                f"the branch {self.branch} was left as it is: it is checked out or was moved outside the run"
            )
        user.run("update-ref", "-d", tip_ref(self.run_id), tip)
        return kept

    # --- helpers ----------------------------------------------------------------------------------

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

    def _publish(self, new: str) -> None:
        """Bring `new` into the user's repository as the run's tip, and move the run branch there too,
        unless the user has it checked out or moved it (then it is left alone, and a note says so)."""
        user = self._user()
        old = self.head()
        ref = f"refs/heads/{self.branch}"
        if self.has_worktree():
            fetch_commit(user, self.worktree, new)
        if new != old:
            user.run("update-ref", "-m", f"orchestrator run {self.run_id}", tip_ref(self.run_id), new, old)
        branch = user.rev_parse(ref)
        if branch == new:
            return
        where = checked_out_in(user, ref) if branch == old else None
        if branch == old and where is None:
            user.run("update-ref", "-m", f"orchestrator run {self.run_id}", ref, new, old)
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
        user = self._user()
        common = Path(user.out("rev-parse", "--path-format=absolute", "--git-common-dir"))
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


def _create_refs(git: Git, refs: Mapping[str, str]) -> None:
    """Create each ref (name -> object id) in one transaction: all or none, and none that exists."""
    git.run("update-ref", "--stdin", input="".join(f"create {ref} {sha}\n" for ref, sha in refs.items()))


def _read_refs(git: Git, names: list[str]) -> dict[str, str]:
    """The object id of each of these refs that exists (one git process for all of them)."""
    out = git.out("for-each-ref", "--format=%(refname) %(objectname)", *names)
    found = dict(line.split(" ", 1) for line in out.splitlines() if line.strip())
    return {name: found[name] for name in names if name in found}
