"""An agent's own git commands in the run's worktree cannot write the user's stash, tags or branches."""

from __future__ import annotations

import os

import pytest

from orchestrator.proc import child_env, run_command
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.workspace import RunWorkspace

IDENTITY = {
    "GIT_AUTHOR_NAME": "Agent",
    "GIT_AUTHOR_EMAIL": "agent@example.org",
    "GIT_COMMITTER_NAME": "Agent",
    "GIT_COMMITTER_EMAIL": "agent@example.org",
}


@pytest.fixture
def ws(repo, state, git, write):
    write(repo / "stashed.txt", "the user's stash\n")
    git(repo, "add", "stashed.txt")
    git(repo, "stash", "push", "-q")
    return RunWorkspace.create(repo, "g1", state_home=state)


def agent_git(ws: RunWorkspace, *args: str):
    """git as an agent runs it: plain git, the agent's environment, in the worktree."""
    env = child_env(os.environ, {**ws.agent_env(), **IDENTITY})
    return run_command(["git", *args], ws.worktree, env=env)


def test_stash_tag_and_other_branches_are_refused(repo, ws, write):
    before = snapshot_checkout(repo)
    write(ws.worktree / "README.md", "agent edit\n")
    stash = agent_git(ws, "stash", "push")
    assert not stash.ok and "refused to update refs/stash" in stash.stderr
    assert (ws.worktree / "README.md").read_text() == "agent edit\n"  # the edit is not lost
    for args in (["tag", "v1"], ["checkout", "-b", "agent-branch"], ["branch", "other"]):
        result = agent_git(ws, *args)
        assert not result.ok and "refused to update" in result.stderr, args
    result = agent_git(ws, "update-ref", "refs/heads/main", "HEAD")
    assert not result.ok
    after = snapshot_checkout(repo)
    assert after == before, before.differences(after)


def test_the_run_branch_and_worktree_private_refs_still_work(repo, ws, git, write):
    write(ws.worktree / "a.txt", "a\n")
    assert agent_git(ws, "add", "a.txt").ok
    assert agent_git(ws, "commit", "-q", "-m", "agent commit").ok
    assert git(repo, "log", "-1", "--format=%s", "orchestrator/g1") == "agent commit"
    assert agent_git(ws, "reset", "-q", "--hard", "HEAD~1").ok  # ORIG_HEAD, HEAD, the branch
    assert agent_git(ws, "checkout", "-q", "--detach").ok
    assert agent_git(ws, "checkout", "-q", "orchestrator/g1").ok
    assert agent_git(ws, "update-ref", "refs/worktree/mine", "HEAD").ok


def test_the_repositorys_own_hooks_still_run_for_agent_commits(repo, ws, write, tmp_path):
    marker = tmp_path / "pre-commit-ran"
    write(repo / ".git" / "hooks" / "pre-commit", f"#!/bin/sh\necho ran > '{marker}'\n").chmod(0o755)
    write(repo / ".git" / "hooks" / "commit-msg", '#!/bin/sh\ngrep -q ticket "$1"\n').chmod(0o755)
    write(ws.worktree / "b.txt", "b\n")
    agent_git(ws, "add", "b.txt")
    refused = agent_git(ws, "commit", "-q", "-m", "no reference")
    assert not refused.ok and marker.read_text() == "ran\n"
    assert agent_git(ws, "commit", "-q", "-m", "ticket 42").ok


def test_a_relative_core_hooks_path_is_followed(repo, ws, git, write, tmp_path):
    marker = tmp_path / "tracked-hook-ran"
    git(repo, "config", "core.hooksPath", ".githooks")
    write(ws.worktree / ".githooks" / "pre-commit", f"#!/bin/sh\ntouch '{marker}'\n").chmod(0o755)
    write(ws.worktree / "c.txt", "c\n")
    agent_git(ws, "add", "-A")
    assert agent_git(ws, "commit", "-q", "-m", "c").ok and marker.exists()


def test_the_repositorys_own_reference_transaction_hook_is_chained(repo, ws, write, tmp_path):
    log = tmp_path / "refs.log"
    write(repo / ".git" / "hooks" / "reference-transaction", f"#!/bin/sh\ncat >> '{log}'\n").chmod(0o755)
    write(ws.worktree / "d.txt", "d\n")
    agent_git(ws, "add", "d.txt")
    assert agent_git(ws, "commit", "-q", "-m", "d").ok
    assert "refs/heads/orchestrator/g1" in log.read_text()


def test_our_own_commands_are_not_guarded(ws, write):
    write(ws.worktree / "e.txt", "e\n")
    ws.agent_env()
    assert ws.commit_step(step_id="s1", agent="claude").changed
    assert ws.rollback(ws.base).startswith("refs/orchestrator/backups/g1/")
