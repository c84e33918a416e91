"""The OS sandbox (bubblewrap): an agent, and a gate, may write only their run's repository, their TMPDIR
and the CLI's own state; the user's checkout, its .git and the orchestrator's state stay untouched.

Needs a working `bwrap` (scripts/setup.sh installs bubblewrap on the test machine); a machine without one
fails here rather than skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.testing.checkout import snapshot_checkout
from orchestrator.testing.hostile_agent import IDENTITY, discard, make_user_repo, run_hostile
from orchestrator.workspace.git import Git
from orchestrator.workspace.sandbox import (
    Sandbox,
    bwrap_argv,
    cli_protected_paths,
    cli_state_paths,
    resolve_sandbox,
)

NO_HOOKS = "git -c core.hooksPath=/dev/null"


@pytest.fixture(autouse=True)
def _bwrap_works():
    sandbox = resolve_sandbox("auto", os.environ)
    assert sandbox.on, f"these tests need bubblewrap: {sandbox.note}"


def attacks(repo: Path, state: Path) -> dict[str, str]:
    return {
        "write a file of the checkout": f"echo pwned > {repo}/README.md",
        "create a file in the checkout": f"touch {repo}/planted.txt",
        "delete a file of the checkout": f"rm {repo}/app.py",
        "write the user's ref by its path": f"git rev-parse HEAD > {repo}/.git/refs/heads/main",
        "git --git-dir of the user's repository": f"{NO_HOOKS} --git-dir={repo}/.git update-ref -d refs/tags/v1",
        "git push to the user's repository": f"{NO_HOOKS} push -q {repo} HEAD:refs/heads/feature",
        "git stash in the user's checkout": f"{NO_HOOKS} -C {repo} {IDENTITY} stash push -q",
        "write the user's index": f"cp /dev/null {repo}/.git/index",
        "write the orchestrator's store": f"touch {state}/state.db {state}/planted",
        "write the run's transcripts": f"touch {state}/runs/*/transcripts/planted",
        "write the user's home": "touch $HOME/planted",
    }


def test_the_agent_cannot_write_outside_its_repository_and_tmpdir(tmp_path):
    repo = make_user_repo(tmp_path / "repo")
    before = snapshot_checkout(repo)
    state = tmp_path / "state"
    tried = attacks(repo, state)
    commands = [
        f"{NO_HOOKS} {IDENTITY} commit -q --allow-empty -m mine",
        *tried.values(),
        f"{NO_HOOKS} -c core.hooksPath=/dev/null update-ref refs/heads/main HEAD",  # its own repository
        "echo work > work.txt",
        'echo scratch > "$TMPDIR/scratch.txt"',
    ]
    run = run_hostile(tmp_path, repo, commands, sandbox="bwrap")
    after = snapshot_checkout(repo)
    assert after == before, before.differences(after)
    for name, command in tried.items():
        assert run.exit_code_of(command) != 0, f"{name} succeeded in the sandbox"
    assert run.exit_code_of("echo work > work.txt") == 0
    assert run.exit_code_of("scratch.txt") == 0
    assert run.exit_code_of("update-ref refs/heads/main HEAD") == 0
    assert run.result.returncode == 0, run.result.stderr
    assert run.report["status"] == "approved"
    assert Git(repo).out("show", f"{run.report['branch']}:work.txt") == "work"
    assert not (tmp_path / "home" / "planted").exists() and not (state / "planted").exists()
    assert not list(state.glob("runs/*/transcripts/planted"))
    # With the sandbox on, nothing can have changed the user's refs: no warning.
    assert not [note for note in run.report["notes"] if "changed during this step" in note]
    assert discard(run, repo).ok
    assert not (state / "repos" / run.run_id).exists()


def test_a_gate_runs_in_the_sandbox_too(tmp_path):
    repo = make_user_repo(tmp_path / "repo")
    before = snapshot_checkout(repo)
    gate = f"echo built > build.out && echo pwned > {repo}/README.md"
    run = run_hostile(tmp_path, repo, ["echo work > work.txt"], sandbox="bwrap", gate=gate)
    assert snapshot_checkout(repo) == before
    assert run.result.returncode == 1, run.result.stderr  # the gate failed: it could not write there
    [gate_result] = run.report["gates"]
    assert not gate_result["passed"] and "Read-only file system" in gate_result["output_tail"]


def test_sandbox_bwrap_without_bwrap_is_a_usage_error_and_auto_is_off_with_a_reason(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty)}
    with pytest.raises(UsageError, match="bwrap is not installed") as caught:
        resolve_sandbox("bwrap", env)
    assert caught.value.exit_code == 2 and "apt-get install bubblewrap" in (caught.value.hint or "")
    auto = resolve_sandbox("auto", env)
    assert not auto.on and "bwrap is not installed" in auto.note
    assert not resolve_sandbox("off", os.environ).on


def test_a_bwrap_that_cannot_make_a_sandbox_is_not_used(tmp_path):
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    auto = resolve_sandbox("auto", {"PATH": str(fake.parent)})
    assert not auto.on and "Operation not permitted" in auto.note


# --- the argv, built without processes ----------------------------------------------------------


def test_bwrap_argv_binds_the_writable_places_outer_first_after_the_read_only_root():
    argv = bwrap_argv(
        ["claude", "-p"],
        bwrap="/usr/bin/bwrap",
        writable=[
            Path("/s/repos/r1"),
            Path("/s/runs/r1/agents/claude"),
            Path("/s/repos/r1/sub"),
            Path("/s/repos/r1"),
        ],
        cwd=Path("/s/repos/r1"),
    )
    assert argv[:2] == ["/usr/bin/bwrap", "--die-with-parent"]
    root = argv.index("--ro-bind")
    assert argv[root : root + 3] == ["--ro-bind", "/", "/"]
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind-try"]
    assert binds == ["/s/repos/r1", "/s/runs/r1/agents/claude"]  # no duplicates, nothing inside another
    assert min(i for i, arg in enumerate(argv) if arg == "--bind-try") > root
    assert "--unshare-net" not in argv  # the network is left as it is
    assert argv[-4:] == ["/s/repos/r1", "--", "claude", "-p"] and argv[-5] == "--chdir"


def test_wrap_leaves_a_program_that_cannot_be_found_alone(tmp_path):
    sandbox = Sandbox("bwrap", "/usr/bin/bwrap")
    env = {"PATH": str(tmp_path)}
    assert sandbox.wrap(["no-such-cli", "x"], cwd=tmp_path, writable=[tmp_path], env=env) == [
        "no-such-cli",
        "x",
    ]
    off = Sandbox("off")
    assert off.wrap(["/bin/sh"], cwd=tmp_path, writable=[tmp_path], env=env) == ["/bin/sh"]
    wrapped = sandbox.wrap(["/bin/sh"], cwd=tmp_path, writable=[tmp_path], env={**env, "TMPDIR": "/t/tmp"})
    assert wrapped[0] == "/usr/bin/bwrap" and "/t/tmp" in wrapped


def test_cli_state_paths_follow_each_clis_own_variables():
    home = {"HOME": "/h"}
    assert Path("/h/.claude") in cli_state_paths("claude", home)
    assert Path("/h/.claude.json") in cli_state_paths("claude", home)
    assert cli_state_paths("claude", {**home, "CLAUDE_CONFIG_DIR": "/c"})[0] == Path("/c")
    assert cli_state_paths("codex", {**home, "CODEX_HOME": "/x"}) == [Path("/x")]
    assert cli_state_paths("gemini", {**home, "GEMINI_CLI_HOME": "/g"}) == [Path("/g/.gemini")]
    assert cli_state_paths("copilot", home)[0] == Path("/h/.copilot")
    assert cli_state_paths(None, home) == []


def test_the_clis_command_bearing_config_stays_read_only_inside_its_writable_folder(tmp_path):
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    sandbox = Sandbox("bwrap", "/usr/bin/bwrap")
    argv = sandbox.wrap(
        ["/bin/sh"], cwd=tmp_path, writable=[tmp_path / "repo"], env={"HOME": str(home)}, agent="claude"
    )
    settings = str(home / ".claude" / "settings.json")
    assert (home / ".claude" / "settings.json").read_text() == "{}\n"  # made, so that it can be mounted
    writable = argv.index("--bind-try", argv.index(str(home / ".claude")) - 1)
    protected = argv.index(settings) - 1
    assert argv[protected] == "--ro-bind-try" and protected > writable
    assert cli_protected_paths("codex", {"HOME": "/h"}) == [Path("/h/.codex/config.toml")]
