"""A hostile agent's git cannot reach the user's checkout through the run's repository, with no sandbox.

The agent works in a repository of its own (a clone sharing the user's objects), so its git, with hooks
off, the environment cleared or its config rewritten, changes that repository only; our own commands
check it before use, so a rewritten `.git` cannot turn them onto the user's repository either. What an
agent does to the user's repository by its path is stopped only by the sandbox (test_sandbox.py);
without one it is reported, naming the ref.
"""

from __future__ import annotations

import pytest

from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.testing.hostile_agent import IDENTITY, discard, make_user_repo, run_hostile
from orchestrator.workspace.git import Git

NO_HOOKS = "git -c core.hooksPath=/dev/null"
CLEARED = "env -u GIT_CONFIG_COUNT -u GIT_CONFIG_KEY_0 -u GIT_CONFIG_VALUE_0 -u GIT_CONFIG_PARAMETERS git"

# Through the agent's own repository: each must leave the user's checkout byte-identical.
THROUGH_ITS_OWN_REPOSITORY = {
    "update-ref with hooks off": [
        f"{NO_HOOKS} update-ref refs/heads/main HEAD",
        f"{NO_HOOKS} update-ref refs/heads/feature HEAD",
    ],
    "update-ref with git's config variables removed": [
        f"{CLEARED} update-ref refs/heads/main HEAD",
        f"{CLEARED} update-ref -d refs/tags/v1",
    ],
    "stash": [
        "echo agent-edit >> README.md",
        f"{NO_HOOKS} {IDENTITY} stash push -q -m agent",
        f"{NO_HOOKS} {IDENTITY} stash push -q --include-untracked",
    ],
    "tags and branches": [
        f"{NO_HOOKS} tag -f v1 HEAD",
        f"{NO_HOOKS} tag agent-tag",
        f"{NO_HOOKS} branch -f feature HEAD",
        f"{NO_HOOKS} {IDENTITY} checkout -q -B main",
        f"{NO_HOOKS} {IDENTITY} commit -q --allow-empty -m 'on main'",
    ],
    "reset and symbolic-ref": [
        f"{NO_HOOKS} branch feature",
        f"{NO_HOOKS} symbolic-ref HEAD refs/heads/feature",
        f"{NO_HOOKS} reset -q --hard",
        f"{NO_HOOKS} update-ref refs/stash HEAD",
    ],
}


@pytest.mark.parametrize("case", sorted(THROUGH_ITS_OWN_REPOSITORY))
def test_the_agents_git_changes_only_its_own_repository(tmp_path, case):
    repo = make_user_repo(tmp_path / "repo")
    before = snapshot_checkout(repo)
    run = run_hostile(
        tmp_path, repo, [*THROUGH_ITS_OWN_REPOSITORY[case], "echo work > work.txt"], sandbox="off"
    )
    after = snapshot_checkout(repo)
    assert after == before, before.differences(after)
    assert run.result.returncode == 0, run.result.stderr
    assert run.report["status"] == "approved"
    assert [code for _, code in run.log] == [0] * len(run.log)  # every command worked, in its repository
    assert not [note for note in run.report["notes"] if "changed during this step" in note]
    # The step's work was committed on the run branch, brought into the user's repository.
    branch = run.report["branch"]
    assert Git(repo).out("show", f"{branch}:work.txt") == "work"
    assert discard(run, repo).ok
    assert not (run.state / "repos" / run.run_id).exists()
    assert snapshot_checkout(repo) == before


TAMPERING = {
    # Each would point our own commands (reset --hard, clean, update-ref) at the user's repository.
    "core.worktree set to the user's checkout": ["git config core.worktree {repo}"],
    "a commondir naming the user's .git": ["echo {repo}/.git > .git/commondir"],
    ".git replaced by a gitfile": ["mv .git .git-agent", "printf 'gitdir: {repo}/.git\\n' > .git"],
    "reflogs linked to the user's": ["rm -rf .git/logs", "ln -s {repo}/.git/logs .git/logs"],
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_a_tampered_run_repository_is_refused_not_followed(tmp_path, case):
    repo = make_user_repo(tmp_path / "repo")
    before = snapshot_checkout(repo)
    commands = [command.format(repo=repo) for command in TAMPERING[case]]
    run = run_hostile(tmp_path, repo, ["echo work > work.txt", *commands], sandbox="off")
    after = snapshot_checkout(repo)
    assert after == before, before.differences(after)
    if case == "core.worktree set to the user's checkout":
        # Our config is restored before our own commands run; the step is committed as usual.
        assert run.result.returncode == 0, run.result.stderr
        assert any("git config was changed by an agent" in note for note in run.report["notes"])
        assert Git(repo).out("show", f"{run.report['branch']}:work.txt") == "work"
    else:
        assert run.result.returncode == 1, run.result.stderr
        assert run.report["status"] == "failed"
        [step] = run.report["steps"]
        assert step["status"] == "failed" and step["commit"] is None
        assert "run's repository" in step["error"]["message"] or ".git" in step["error"]["message"]
    assert discard(run, repo).ok
    assert snapshot_checkout(repo) == before


BY_PATH = {
    "git push to the user's repository": [
        "{git} {identity} commit -q --allow-empty -m pushed",
        "{git} push -q {repo} HEAD:refs/heads/feature",
    ],
    "git --git-dir of the user's repository": ["{git} --git-dir={repo}/.git update-ref -d refs/tags/v1"],
}


@pytest.mark.parametrize("case", sorted(BY_PATH))
def test_without_a_sandbox_a_change_to_the_users_refs_by_path_is_reported(tmp_path, case):
    repo = make_user_repo(tmp_path / "repo")
    commands = [c.format(git=NO_HOOKS, identity=IDENTITY, repo=repo) for c in BY_PATH[case]]
    run = run_hostile(tmp_path, repo, commands, sandbox="off")
    assert run.result.returncode == 0, run.result.stderr
    # Nothing in the agent's own repository can stop this without a sandbox; the run says so.
    warnings = [note for note in run.report["notes"] if "changed during this step" in note]
    ref = "refs/heads/feature" if "push" in case else "refs/tags/v1"
    assert warnings and ref in warnings[0], run.report["notes"]
    assert ref in run.result.stderr  # on the console too
