"""The URL a cluster run's workers go through (`--remote NAME|URL`, `cluster.remote`): a remote's name
resolved to its URL, paths made absolute, credentials refused (and never repeated), an unreachable
remote a usage error; resolution alone is pure, the rest with real git."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cluster.remote import cluster_repo_url, refuse_credentials, resolve_remote
from orchestrator.errors import UsageError
from orchestrator.workspace.git import Git

ENV = dict(os.environ)
SECRET = "hunter2-secret"


def remotes(**urls: str):
    return lambda name: urls.get(name)


def test_a_remotes_name_is_resolved_to_its_url(tmp_path: Path):
    given = remotes(origin="git@github.com:o/r.git")
    assert resolve_remote("origin", remote_url=given, repo=tmp_path, cwd=tmp_path) == "git@github.com:o/r.git"


def test_a_remotes_relative_path_is_taken_from_the_repository_and_a_given_one_from_cwd(tmp_path: Path):
    repo, cwd = tmp_path / "repo", tmp_path / "elsewhere"
    given = remotes(shared="../shared.git", filed="file://../f.git")
    assert resolve_remote("shared", remote_url=given, repo=repo, cwd=cwd) == str(tmp_path / "shared.git")
    assert resolve_remote("filed", remote_url=given, repo=repo, cwd=cwd) == f"file://{tmp_path / 'f.git'}"
    assert resolve_remote("../x.git", remote_url=given, repo=repo, cwd=cwd) == str(tmp_path / "x.git")
    assert resolve_remote("/srv/r.git", remote_url=given, repo=repo, cwd=cwd) == "/srv/r.git"


def test_urls_are_kept_as_given(tmp_path: Path):
    for url in ("https://github.com/o/r.git", "ssh://git@h:22/r.git", "git@h:o/r.git", "file:///srv/r.git"):
        assert resolve_remote(url, remote_url=remotes(), repo=tmp_path, cwd=tmp_path) == url


def test_a_bare_word_that_is_no_remote_and_no_folder_is_refused(tmp_path: Path):
    with pytest.raises(UsageError, match="has no remote named 'upstream'") as info:
        resolve_remote("upstream", remote_url=remotes(origin="/x"), repo=tmp_path, cwd=tmp_path)
    assert "git remote -v" in (info.value.hint or "")
    (tmp_path / "upstream").mkdir()  # a folder of that name: a path
    got = resolve_remote("upstream", remote_url=remotes(), repo=tmp_path, cwd=tmp_path)
    assert got == str(tmp_path / "upstream")
    with pytest.raises(UsageError, match="empty"):
        resolve_remote(" ", remote_url=remotes(), repo=tmp_path, cwd=tmp_path)


def test_credentials_are_refused_with_the_url_masked():
    with pytest.raises(UsageError) as info:
        refuse_credentials(f"https://me:{SECRET}@git.example.com/r.git", what="the remote")
    assert SECRET not in str(info.value)
    assert "https://me:***@git.example.com/r.git" in info.value.message
    assert "credential helper" in (info.value.hint or "") and "SSH" in (info.value.hint or "")
    assert info.value.exit_code == 2
    refuse_credentials("https://me@git.example.com/r.git", what="the remote")  # no password: fine


# --- with real git -----------------------------------------------------------------------------------


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user"
    repo.mkdir()
    git = Git(repo)
    git.out("init", "-q", "--initial-branch=main")
    (repo / "a.txt").write_text("a\n")
    git.out("add", "-A")
    git.out("-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "initial")
    return repo


def test_a_named_remote_and_a_bare_repository_are_reached(tmp_path: Path):
    repo = make_repo(tmp_path)
    bare = tmp_path / "shared.git"
    Git(tmp_path).out("init", "-q", "--bare", str(bare))
    Git(repo).out("remote", "add", "cluster", "../shared.git")
    assert cluster_repo_url(repo, "cluster", cwd=repo, env=ENV) == str(bare)
    assert cluster_repo_url(repo, str(bare), cwd=repo, env=ENV) == str(bare)
    assert cluster_repo_url(repo, None, cwd=repo, env=ENV) == str(repo)  # a shared path, as before


def test_an_unreachable_remote_is_a_usage_error(tmp_path: Path):
    repo = make_repo(tmp_path)
    with pytest.raises(UsageError, match="cannot reach the cluster's remote") as info:
        cluster_repo_url(repo, str(tmp_path / "missing.git"), cwd=repo, env=ENV)
    assert str(tmp_path / "missing.git") in info.value.message
    assert info.value.exit_code == 2


def test_a_remote_whose_url_holds_a_password_is_refused(tmp_path: Path):
    repo = make_repo(tmp_path)
    Git(repo).out("remote", "add", "origin", f"https://me:{SECRET}@127.0.0.1:9/r.git")
    with pytest.raises(UsageError) as info:
        cluster_repo_url(repo, "origin", cwd=repo, env=ENV)
    assert "the URL of remote 'origin' (https://me:***@127.0.0.1:9/r.git)" in info.value.message
    assert SECRET not in str(info.value)
