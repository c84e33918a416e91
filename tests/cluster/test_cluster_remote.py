"""Cluster runs through a remote (`run --cluster --remote NAME|URL`, `cluster.remote`), for real: the
run's start pushed to a bare repository under the run's own refs, the workers fetching from it and
pushing the run branch to it, the branch fetched back into the user's repository at the end (`runs diff`
and `runs merge` read it there); the user's branches never pushed; a URL with a password refused with
nothing recorded; an unreachable remote refused before the run exists."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.cluster.mirror import mirror_key
from orchestrator.proc import run_command
from orchestrator.store import Store
from orchestrator.testing.cluster import cluster_env, newest_run_id, start_worker, submit_run
from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster_dashboard import serve

FIXED = {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n"}}

pytestmark = pytest.mark.slow

SECRET = "hunter2-secret-value"


def bare_remote(cluster: Cluster) -> Path:
    remote = cluster.tmp / "remote.git"
    run_command(["git", "init", "-q", "--bare", str(remote)], cluster.tmp, check=True)
    return remote


def refs_of(repo: Path) -> dict[str, str]:
    out = run_command(["git", "for-each-ref", "--format=%(refname) %(objectname)"], repo, check=True).stdout
    return dict(tuple(line.split(" ", 1)) for line in out.splitlines())


def test_a_run_through_a_named_remote_lands_there_and_is_fetched_back(cluster: Cluster) -> None:
    remote = bare_remote(cluster)
    cluster.cli_git("remote", "add", "shared", "../remote.git")  # relative: resolved to its absolute path
    cluster.cli_git("branch", "feature")
    user_branches = {r: s for r, s in refs_of(cluster.repo).items() if r.startswith("refs/heads/")}
    cluster.worker("w1")
    run = cluster.submit(extra=("--json", "--remote", "shared"))
    assert run.join(180).exit_code == 0, run.output
    run_id = newest_run_id(cluster.database)
    branch = f"refs/heads/orchestrator/{run_id}"
    with Store(cluster.database) as store:
        record = store.get_run(run_id)
    assert record.status == "approved"
    assert getattr(record.options, "repo_url", None) == str(remote)

    # The remote holds the run's refs only (none of the user's branches), the run branch at the
    # workers' last step, not at the start the submitter pushed.
    on_remote = refs_of(remote)
    assert set(on_remote) >= {branch, f"refs/orchestrator/runs/{run_id}/tip"}
    assert all(r == branch or r.startswith("refs/orchestrator/") for r in on_remote), on_remote
    assert on_remote[branch] != record.base_sha
    # The worker went through its mirror of the remote.
    mirrors = worker_mirrors(cluster, "w1")
    assert [m.name for m in mirrors] == [f"{mirror_key(str(remote))}.git"]

    # The user's repository: the run branch fetched back, their own branches as they were.
    mine = refs_of(cluster.repo)
    assert mine[branch] == on_remote[branch]
    assert {r: s for r, s in mine.items() if r.startswith("refs/heads/") and r != branch} == user_branches

    # `runs diff` and `runs merge` work from what was fetched.
    diff = cluster.cli("runs", "diff", run_id)
    assert diff.returncode == 0, diff.stderr
    assert "orchestrator-fake.txt" in diff.stdout
    merged = cluster.cli("runs", "merge", run_id, "--json")
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["fast_forward"] is True
    assert cluster.cli_git("rev-parse", "main").strip() == on_remote[branch]
    assert "refs/heads/main" not in refs_of(remote)  # merging is the user's: nothing pushed


def worker_mirrors(cluster: Cluster, worker: str) -> list[Path]:
    return sorted(p for p in (cluster.tmp / worker).rglob("cluster/mirrors/*.git") if p.is_dir())


def test_the_configured_remote_is_used_as_a_url(cluster: Cluster) -> None:
    remote = bare_remote(cluster)
    cluster.config.write_text(
        cluster.config.read_text().replace("cluster:\n", f"cluster:\n  remote: file://{remote}\n", 1)
    )
    cluster.worker("w1")
    run = cluster.submit()
    assert run.join(180).exit_code == 0, run.output
    run_id = newest_run_id(cluster.database)
    branch = f"refs/heads/orchestrator/{run_id}"
    assert refs_of(remote)[branch] == refs_of(cluster.repo)[branch]


def test_a_url_with_a_password_is_refused_and_recorded_nowhere(cluster: Cluster) -> None:
    result = cluster.cli("run", "--cluster", "--remote", f"https://me:{SECRET}@127.0.0.1:9/r.git", "a task")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "https://me:***@127.0.0.1:9/r.git" in result.stderr
    assert "credential helper" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert_no_run(cluster)
    for path in (cluster.tmp / "submitter").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_unreachable_remote_is_refused_before_the_run_exists(cluster: Cluster) -> None:
    missing = cluster.tmp / "nowhere.git"
    result = cluster.cli("run", "--cluster", "--remote", str(missing), "a task")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot reach the cluster's remote {missing}" in result.stderr
    assert_no_run(cluster)
    no_name = cluster.cli("run", "--cluster", "--remote", "upstream", "a task")
    assert no_name.returncode == 2 and "has no remote named 'upstream'" in no_name.stderr
    assert_no_run(cluster)


def test_remote_needs_the_cluster(cluster: Cluster) -> None:
    plain = cluster.tmp / "plain.yaml"
    plain.write_text("fallback_order: [fake]\n")
    argv = ["run", "--remote", "origin", "a task", "--config", str(plain)]
    result = run_command(
        [sys.executable, "-m", "orchestrator", *argv], cluster.repo, env=cluster.env, timeout_s=60
    )
    assert result.returncode == 2 and "needs --cluster" in result.stderr


def assert_no_run(cluster: Cluster) -> None:
    with Store(cluster.database) as store:
        assert store.list_runs() == []
    assert not [r for r in refs_of(cluster.repo) if "orchestrator" in r]


# A stand-in for ssh (GIT_SSH_VARIANT=simple: `ssh HOST COMMAND`): runs the command "on the host",
# here, each push a while late, as over a slow network.
FAKE_SSH = """#!/bin/sh
for last; do :; done
case "$last" in git-receive-pack*) sleep 1.5 ;; esac
exec sh -c "$last"
"""


def test_a_commit_made_by_the_runs_last_node_is_fetched_back_over_ssh(cluster: Cluster) -> None:
    """Through an ssh:// remote (ssh set up as the user's environment says), with slow pushes. The
    budget stops the run right after its implement step committed: RunFinished is in the store before
    the worker's push of that commit lands on the remote; what is fetched back is the pushed tip all
    the same."""
    remote = bare_remote(cluster)
    ssh = cluster.tmp / "fake-ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    via_ssh = {"GIT_SSH_COMMAND": str(ssh), "GIT_SSH_VARIANT": "simple"}
    scenario = cluster.tmp / "priced.yaml"
    scenario.write_text(yaml.safe_dump({"model": "gpt-5", "turns": [FIXED, {"text": "done"}]}))
    cluster.agent["env"] = {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}
    cluster.write_config()
    env = cluster_env(cluster.tmp, "w1", via_ssh)
    cluster.workers.append(start_worker(cluster.config, env, cwd=cluster.tmp, name="w1"))
    url = f"ssh://storage.example{remote}"
    extra = ("--json", "--remote", url, "--budget-usd", "0.000001")
    submitter_env = {**cluster.env, **via_ssh}
    run = submit_run(
        cluster.config, submitter_env, "make greet() return Hello", cwd=cluster.repo, extra=extra
    )
    cluster.processes.append(run)
    run.join(180)
    run_id = newest_run_id(cluster.database)
    branch = f"refs/heads/orchestrator/{run_id}"
    with Store(cluster.database) as store:
        record = store.get_run(run_id)
        assert [(s.step_id, s.status) for s in store.steps(run_id)] == [("i1-s1-implement", "succeeded")]
    assert (record.stop_reason, getattr(record.options, "repo_url", None)) == ("budget_exceeded", url)
    on_remote = refs_of(remote)
    assert on_remote[branch] != record.base_sha, run.output  # the step's commit was pushed
    assert refs_of(cluster.repo)[branch] == on_remote[branch], run.output


# For the submitter: its first fetch (the reachability check) goes through, every later one fails.
SSH_THEN_DOWN = """#!/bin/sh
mark="$1"
for last; do :; done
case "$last" in git-upload-pack*)
    if [ -e "$mark" ]; then echo "ssh: connect to host storage.example port 22: Connection refused" >&2; exit 255; fi
    touch "$mark" ;;
esac
exec sh -c "$last"
"""


def test_a_remote_gone_at_the_end_is_a_warning_and_the_result_stands(cluster: Cluster) -> None:
    remote = bare_remote(cluster)
    ssh, down = cluster.tmp / "fake-ssh", cluster.tmp / "ssh-then-down"
    ssh.write_text(FAKE_SSH.replace("sleep 1.5", ":"))
    down.write_text(SSH_THEN_DOWN)
    for script in (ssh, down):
        script.chmod(0o755)
    env = cluster_env(cluster.tmp, "w1", {"GIT_SSH_COMMAND": str(ssh), "GIT_SSH_VARIANT": "simple"})
    cluster.workers.append(start_worker(cluster.config, env, cwd=cluster.tmp, name="w1"))
    submitter_env = {
        **cluster.env,
        "GIT_SSH_COMMAND": f"{down} {cluster.tmp / 'fetched-once'}",
        "GIT_SSH_VARIANT": "simple",
    }
    url = f"ssh://storage.example{remote}"
    extra = ("--json", "--remote", url)
    run = submit_run(
        cluster.config, submitter_env, "make greet() return Hello", cwd=cluster.repo, extra=extra
    )
    cluster.processes.append(run)
    result = run.join(180)
    assert result.exit_code == 0, run.output  # approved: the run's own result
    run_id = newest_run_id(cluster.database)
    warning = next(line for line in run.stderr if "could not fetch the run branch" in line)
    assert url in warning and "Connection refused" in warning
    assert f"git fetch {url} refs/heads/orchestrator/{run_id}" in warning
    assert report_status(run.output) == "approved"
    assert f"refs/heads/orchestrator/{run_id}" in refs_of(remote)


def report_status(output: str) -> str:
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return str(json.loads("\n".join(lines[start:]))["status"])


def test_a_run_the_dashboard_starts_is_fetched_back_from_the_configured_remote(cluster: Cluster) -> None:
    remote = bare_remote(cluster)
    cluster.config.write_text(
        cluster.config.read_text().replace("cluster:\n", f"cluster:\n  remote: {remote}\n", 1)
    )
    cluster.worker("w1")
    server = serve(cluster)
    status, body, _ = server.request("POST", "/api/runs", {"task": "make greet() return Hello"})
    assert status == 202, body
    run_id = body["run_id"]
    assert server.wait_run(run_id, {"approved", "failed", "not_approved"})["status"] == "approved"
    branch = f"refs/heads/orchestrator/{run_id}"
    deadline = time.monotonic() + 60
    while refs_of(cluster.repo).get(branch) != refs_of(remote).get(branch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (
        refs_of(cluster.repo)[branch] == refs_of(remote)[branch] != refs_of(cluster.repo)["refs/heads/main"]
    )
