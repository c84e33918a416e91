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

from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import GitError, RunNotFound, UsageError
from orchestrator.workspace import trees
from orchestrator.workspace.diffs import DiffText, truncate_diff
from orchestrator.workspace.git import Git
from orchestrator.workspace.merge import checked_out_in
from orchestrator.workspace.paths import run_paths
from orchestrator.workspace.run_locate import (
    RepoLocation,
    check_outside,
    list_run_ids,
    locate_repo,
    repo_root,
    resolve_repo,
    run_repo_root,
)
from orchestrator.workspace.run_merges import WorkspaceMerges
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
    RunRepoTampered,
    copied_config,
    create_run_repo,
    fetch_commit,
    remove_run_repo,
)
from orchestrator.workspace.run_start import StartPoint, read_start
from orchestrator.workspace.run_state import create_refs, read_refs

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


def _branch_refs(run_id: str, branch: str) -> tuple[str, ...]:
    """The refs a new run starts at its first commit: its tip, its branch, the first commit's record."""
    return (tip_ref(run_id), f"refs/heads/{branch}", f"{meta_prefix(run_id)}first")


class RunWorkspace(WorkspaceMerges):
    """One run's workspace (fields and the moves it is made of: run_state.py; merges: run_merges.py)."""

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
        run_repo: bool = True,
    ) -> RunWorkspace:
        """Record the starting state, then make the run's repository on a new branch from `base`.

        `run_repo=False` (a cluster run: its workers make their own from the branch): the refs and the
        branch only, no repository on this machine, except when the user's uncommitted work is carried
        onto another base (that cherry-pick needs one; the caller removes it).

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
        create_refs(
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
            if not run_repo and not (carry and start_point == base_sha):
                create_refs(user, dict.fromkeys(_branch_refs(run_id, branch), start_point))
                return workspace
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
            create_refs(user, dict.fromkeys(_branch_refs(run_id, branch), workspace.first))
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
        refs = read_refs(user, [*names, tip_ref(run_id), f"refs/heads/{branch_name(run_id)}"])
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
        if step_start is not None and step_start != tip and not wt.is_ancestor(step_start, tip):
            parent = step_start
        wt.run("add", "-A", "--", ".")
        tree = wt.out("write-tree")
        since = step_start or parent
        moved = step_start is not None and parent != step_start
        if tree == trees.tree_of(wt, parent) and not moved:
            self._move_clone_branch(parent)
            self._attach_head(parent)
            self._publish(parent, old=published)
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
        self._publish(sha, old=published)
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

    def has_uncommitted(self) -> bool:
        """Whether the run repository holds changes its own HEAD does not (a cut-short attempt's)."""
        return self.has_worktree() and self._worktree_dirty()

    def ready_at_head(self) -> bool:
        """Whether the run repository is exactly at the run's tip (HEAD on the run branch, nothing
        uncommitted or untracked: one `git status`), with the lock files a killed process of the run
        left removed, as `reset_to` would leave it. Then a resumed step needs no reset (a reset is
        some fifteen git processes). Only the owner of the run (the process resuming it) calls this."""
        if not self.has_worktree():
            return False
        self._clear_stale_locks()
        return self._clean_at(self.head())

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
