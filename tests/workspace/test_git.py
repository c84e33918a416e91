from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import GitError
from orchestrator.workspace import git as git_module
from orchestrator.workspace.git import (
    FALLBACK_EMAIL,
    FALLBACK_NAME,
    Git,
    find_repo_root,
    git_environment,
    git_version,
    init_repo,
)


def bare_environ(tmp_path: Path) -> dict[str, str]:
    """An environment like a CI machine's: a HOME with no git identity."""
    home = tmp_path / "empty-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def test_without_a_configured_identity_commits_use_the_fallback(tmp_path):
    environ = bare_environ(tmp_path)
    path = init_repo(tmp_path / "w", environ=environ)
    g = Git(path, environ=environ)
    assert g.out("log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>|{FALLBACK_NAME} <{FALLBACK_EMAIL}>"
    )


def test_a_configured_identity_wins_over_the_fallback(tmp_path):
    environ = bare_environ(tmp_path)
    path = init_repo(tmp_path / "w", environ=environ)
    g = Git(path, environ=environ)
    g.run("config", "user.name", "Ada Lovelace")
    g.run("config", "user.email", "ada@example.org")
    g = Git(path, environ=environ)  # the identity is looked up once per instance
    g.run("commit", "-q", "--allow-empty", "-m", "mine")
    assert g.out("log", "-1", "--format=%an <%ae>") == "Ada Lovelace <ada@example.org>"


def test_reading_commands_run_without_the_identity_look_up(tmp_path, monkeypatch):
    environ = bare_environ(tmp_path)
    path = init_repo(tmp_path / "w", environ=environ)
    seen: list[list[str]] = []
    real = git_module.run_command

    def recording(argv, *args, **kwargs):
        seen.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(git_module, "run_command", recording)
    g = Git(path, environ=environ)
    assert g.rev_parse("HEAD") is not None
    g.out("status", "--porcelain")
    assert len(seen) == 2 and not any("user.name" in " ".join(argv) for argv in seen)
    g.run("commit", "-q", "--allow-empty", "-m", "after reads")  # a commit still looks it up, once
    g.run("commit", "-q", "--allow-empty", "-m", "again")
    assert [argv[:2] for argv in seen].count(["git", "config"]) == 1
    assert g.out("log", "-1", "--format=%an") == FALLBACK_NAME


def test_hooks_never_run_and_no_editor_opens(tmp_path, write, make_repo):
    path = make_repo(tmp_path / "r")
    hooks = path / ".git" / "hooks"
    for hook in ("pre-commit", "commit-msg", "post-commit"):
        write(hooks / hook, f"#!/bin/sh\ntouch '{tmp_path}/{hook}-ran'\nexit 1\n").chmod(0o755)
    g = Git(path)
    g.run("commit", "-q", "--allow-empty", "-m", "hooks off")
    g.run("commit", "-q", "--amend", "--allow-empty")  # would open an editor without GIT_EDITOR=true
    assert not list(tmp_path.glob("*-ran"))
    assert g.out("log", "-1", "--format=%s") == "hooks off"


def test_inherited_git_variables_cannot_redirect_git(tmp_path, make_repo):
    path = make_repo(tmp_path / "r")
    elsewhere = make_repo(tmp_path / "other")
    environ = {**os.environ, "GIT_DIR": str(elsewhere / ".git"), "GIT_INDEX_FILE": "/nonexistent"}
    env = git_environment(environ)
    assert "GIT_DIR" not in env and "GIT_INDEX_FILE" not in env
    assert env["GIT_OPTIONAL_LOCKS"] == "0" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert find_repo_root(path / "src", environ=environ) == path.resolve()


def test_failures_raise_git_error_with_gits_words(tmp_path, make_repo):
    path = make_repo(tmp_path / "r")
    with pytest.raises(GitError, match="no-such-ref"):
        Git(path).run("rev-parse", "--verify", "no-such-ref")
    assert not Git(path).run("rev-parse", "--verify", "no-such-ref", check=False).ok
    assert Git(path).rev_parse("no-such-ref") is None


def test_a_held_index_lock_is_waited_for(tmp_path, git, write, make_repo):
    path = make_repo(tmp_path / "r")
    lock = path / ".git" / "index.lock"
    lock.write_text("")
    releaser = threading.Timer(0.4, lock.unlink)
    releaser.start()
    started = time.monotonic()
    write(path / "README.md", "changed\n")
    Git(path).run("add", "README.md")
    releaser.join()
    assert time.monotonic() - started >= 0.3
    assert "README.md" in git(path, "diff", "--cached", "--name-only")


def test_a_lock_that_stays_fails_after_the_retries(tmp_path, make_repo):
    path = make_repo(tmp_path / "r")
    (path / ".git" / "index.lock").write_text("")
    g = Git(path)
    g.retry_delays_s = (0.05, 0.05)
    started = time.monotonic()
    with pytest.raises(GitError, match="index.lock"):
        g.run("add", "README.md")
    assert time.monotonic() - started < 3


def test_find_repo_root(tmp_path, make_repo):
    path = make_repo(tmp_path / "r")
    assert find_repo_root(path / "src") == path.resolve()
    assert find_repo_root(tmp_path) is None
    assert find_repo_root(tmp_path / "missing") is None
    assert find_repo_root(path / ".git") is None


def test_init_repo_makes_a_repository_with_a_commit_and_is_idempotent(tmp_path):
    target = tmp_path / "workspace" / "task-1"
    root = init_repo(target)
    assert root == target.resolve()
    g = Git(root)
    first = g.rev_parse("HEAD")
    assert first is not None
    assert g.out("branch", "--show-current") == "main"
    assert init_repo(target) == root
    assert g.rev_parse("HEAD") == first


def test_init_repo_inside_another_repository_makes_a_nested_one(tmp_path, make_repo):
    outer = make_repo(tmp_path / "outer")
    inner = init_repo(outer / "workspace" / "t")
    assert find_repo_root(inner) == inner
    assert Git(inner).rev_parse("HEAD") != Git(outer).rev_parse("HEAD")


def test_git_version_is_parsed():
    assert git_version() >= (2, 0)


def test_reading_status_never_rewrites_the_users_index(tmp_path, make_repo):
    path = make_repo(tmp_path / "r")
    index = path / ".git" / "index"
    readme = path / "README.md"
    stat = readme.stat()
    readme.write_text(readme.read_text())  # same bytes, new stat data: the index entry is stale
    os.utime(readme, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    before = index.read_bytes()
    Git(path).run("status", "--porcelain")
    assert index.read_bytes() == before
    # Plain git would have refreshed it (so the check above can fail).
    Git(path).run("status", "--porcelain", env={"GIT_OPTIONAL_LOCKS": "1"})
    assert index.read_bytes() != before


def test_git_reaches_ssh_remotes_as_the_user_set_them_up(tmp_path):
    environ = {**os.environ, "SSH_AUTH_SOCK": "/run/agent.sock", "GIT_SSH_COMMAND": "ssh -i k", "X": "1"}
    env = git_environment(environ)
    assert (env["SSH_AUTH_SOCK"], env["GIT_SSH_COMMAND"]) == ("/run/agent.sock", "ssh -i k")
    assert "X" not in env
