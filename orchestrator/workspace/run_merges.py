"""Merging into a run and out of it, and moving it back: a subtask's commits merged in without a
work tree (`git merge-tree`), a merge left in the work tree for an agent to resolve, a rollback to an
earlier commit of the run (what it removes kept under a backup ref), and the merge into the user's
branch the user asks for (merge.py)."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.errors import GitError
from orchestrator.workspace import trees
from orchestrator.workspace.merge import MergeResult, merge_run
from orchestrator.workspace.run_state import WorkspaceState


class WorkspaceMerges(WorkspaceState):
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
