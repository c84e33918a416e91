"""Bad or unusual inputs, each as a user gives it to `python -m orchestrator`: a clear usage error (exit 2)
before anything is created, or the run going on and saying what it could not do."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import yaml

from orchestrator.engine.inputs import SubmoduleChange, parse_submodule_status
from orchestrator.proc import CommandResult, child_env, run_command

WORKFLOW = {
    "max_iterations": 1,
    "steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
}
APPROVE = '```json\n{"verdict": "approve", "findings": []}\n```'


class User:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.repo.mkdir()
        (self.repo / "app.py").write_text("print('hi')\n")
        self.git("init", "-q", "-b", "main")
        self.commit()
        self.workflow = tmp / "workflow.yaml"
        self.workflow.write_text(yaml.safe_dump(WORKFLOW))
        self.state = tmp / "state"
        self.env = child_env(
            os.environ,
            {
                "CI": "true",
                "HOME": str(tmp / "home"),
                "XDG_CONFIG_HOME": str(tmp / "home" / ".config"),
                "ORCHESTRATOR_HOME": str(self.state),
            },
        )

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return run_command(["git", *args], cwd or self.repo, check=True).stdout

    def commit(self, cwd: Path | None = None) -> None:
        self.git("add", "-A", cwd=cwd)
        self.git("-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "c", cwd=cwd)

    def config(self, turns: list[dict[str, object]]) -> Path:
        scenario = self.tmp / f"scenario-{len(list(self.tmp.glob('scenario-*')))}.yaml"
        scenario.write_text(yaml.safe_dump({"turns": turns}))
        path = scenario.with_suffix(".config.yaml")
        path.write_text(
            yaml.safe_dump({"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}})
        )
        return path

    def orchestrator(
        self, *args: str, cwd: Path | None = None, stdin: str | None = None, timeout_s: float = 120
    ) -> CommandResult:
        return run_command(
            [sys.executable, "-m", "orchestrator", *args],
            cwd or self.repo,
            env=self.env,
            input=stdin,
            timeout_s=timeout_s,
        )

    def run(self, *args: str, **kw: object) -> CommandResult:
        return self.orchestrator("run", *args, "--workflow", str(self.workflow), **kw)  # type: ignore[arg-type]

    def run_branches(self) -> list[str]:
        return self.git("for-each-ref", "--format=%(refname)", "refs/heads/orchestrator/").split()

    def runs(self) -> list[dict[str, object]]:
        listed = self.orchestrator("runs", "list", "--all", "--json")
        return json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout.strip() else []


def test_a_base_that_names_no_commit_is_a_usage_error(tmp_path: Path) -> None:
    user = User(tmp_path)
    result = user.run("a task", "--base", "no-such-ref")
    assert result.returncode == 2, result.stderr
    assert "--base 'no-such-ref' does not name a commit" in result.stderr and "main" in result.stderr
    assert user.run_branches() == []


def test_an_empty_task_is_refused(tmp_path: Path) -> None:
    user = User(tmp_path)
    for task in ("", "   \n\t"):
        result = user.run(task)
        assert result.returncode == 2, result.stderr
        assert "the task is empty" in result.stderr
    (tmp_path / "blank.txt").write_text("\n\n")
    assert user.run("--task-file", str(tmp_path / "blank.txt")).returncode == 2
    assert user.run("--task-file", "-", stdin="").returncode == 2
    assert user.run_branches() == [] and user.runs() == []


def test_task_argument_and_file_are_one_or_the_other(tmp_path: Path) -> None:
    user = User(tmp_path)
    (tmp_path / "t.txt").write_text("do it\n")
    both = user.run("do it", "--task-file", str(tmp_path / "t.txt"))
    assert both.returncode == 2 and "not both" in both.stderr
    neither = user.run()
    assert neither.returncode == 2 and "no task given" in neither.stderr
    missing = user.run("--task-file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_task_over_128_kib_runs_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    """One argv string stops at 128 KiB (E2BIG): the task must reach the agent another way."""
    user = User(tmp_path)
    task = "Make it so.\n" + "".join(f"requirement {n}: keep line {n} as it is\n" for n in range(6000))
    assert len(task.encode()) > 200 * 1024
    (tmp_path / "task.md").write_text(task)
    from_file = user.run("--task-file", str(tmp_path / "task.md"), "--json")
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    assert json.loads(from_file.stdout)["status"] == "approved"
    from_stdin = user.run("--task-file", "-", "--json", stdin=task)
    assert from_stdin.returncode == 0, from_stdin.stderr[-2000:]
    summary = tmp_path / "summary.md"
    user.run("--task-file", str(tmp_path / "task.md"), "--summary", str(summary))
    assert "Make it so. requirement 0" in summary.read_text() and len(summary.read_text()) < 10_000
    stored = [r["task"] for r in user.runs()]
    assert stored == [task, task, task]
    # Past 1 MiB it is a mistake, said as one.
    (tmp_path / "huge.md").write_text("x" * (1024 * 1024 + 1))
    huge = user.run("--task-file", str(tmp_path / "huge.md"))
    assert huge.returncode == 2 and "over 1024 KiB" in huge.stderr


def test_a_bare_repository_is_named_as_such(tmp_path: Path) -> None:
    user = User(tmp_path)
    bare = tmp_path / "bare.git"
    run_command(["git", "init", "-q", "--bare", str(bare)], tmp_path, check=True)
    for args, cwd in ((("--repo", str(bare)), user.repo), ((), bare)):
        result = user.run("a task", *args, cwd=cwd)
        assert result.returncode == 2, result.stderr
        assert f"{bare} is a bare repository" in result.stderr and "git clone" in result.stderr
    assert user.runs() == []


def test_discard_refuses_a_run_whose_process_is_alive(tmp_path: Path) -> None:
    user = User(tmp_path)
    config = user.config(
        [
            {"kind": "hang", "seconds": 6},
            {"kind": "write_file", "path": "done.txt", "content": "done\n"},
            {"kind": "text", "text": "done"},
            {"kind": "text", "text": APPROVE, "times": "always"},
        ]
    )
    finished: list[CommandResult] = []
    runner = threading.Thread(target=lambda: finished.append(user.run("a task", "--config", str(config))))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (user.runs() and (user.state / "repos").is_dir()):
            time.sleep(0.2)
        (run,) = user.runs()
        assert run["status"] == "running"
        refused = user.orchestrator("runs", "discard", str(run["id"]))
        assert refused.returncode == 2, refused.stderr
        assert "is running (process" in refused.stderr and "stop it first" in refused.stderr
        assert Path(str(run["worktree"])).is_dir() and user.run_branches() != []
    finally:
        runner.join(timeout=120)
    assert finished and finished[0].returncode == 0, finished and finished[0].stderr[-2000:]
    discarded = user.orchestrator("runs", "discard", str(run["id"]))
    assert discarded.returncode == 0, discarded.stderr
    assert user.run_branches() == []


def test_resume_uses_the_config_the_run_was_started_with(tmp_path: Path) -> None:
    user = User(tmp_path)
    config = user.config(
        [
            {"kind": "hang", "seconds": 60},
            {"kind": "write_file", "path": "from-config.txt", "content": "the run's config\n"},
            {"kind": "text", "text": "done"},
            {"kind": "text", "text": APPROVE, "times": "always"},
        ]
    )
    # The first attempt is stopped from outside mid-step (as CI's timeout would).
    stopped = user.run("a task", "--config", str(config), timeout_s=8)
    assert stopped.timed_out
    (run,) = user.runs()
    resumed = user.orchestrator("runs", "resume", str(run["id"]), "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert user.git("show", f"{run['branch']}:from-config.txt") == "the run's config\n"
    # A remembered config that is gone is said so, with what to do.
    config.unlink()
    again = user.orchestrator("runs", "resume", str(run["id"]))
    assert again.returncode == 2 and "no longer exists" in again.stderr and "--config" in again.stderr


def test_include_uncommitted_warns_about_submodule_changes(tmp_path: Path) -> None:
    user = User(tmp_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "lib.py").write_text("x = 1\n")
    user.git("init", "-q", "-b", "main", cwd=lib)
    user.commit(cwd=lib)
    user.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    user.commit()
    (user.repo / "vendor" / "lib" / "lib.py").write_text("x = 2\n")  # a change inside the submodule
    (user.repo / "app.py").write_text("print('changed')\n")  # and one the run can carry
    result = user.run("a task", "--include-uncommitted")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot carry the changes inside submodule vendor/lib" in result.stderr


def test_submodule_status_parsing() -> None:
    status = "\n".join(
        [
            "1 .M S.M. 160000 160000 160000 aaa aaa vendor/lib",
            "1 .M SC.. 160000 160000 160000 aaa bbb vendor/moved",
            "1 .M N... 100644 100644 100644 aaa aaa app.py",
            "2 R. S..U 160000 160000 160000 aaa aaa R100 new name\told name",
            "? untracked.txt",
        ]
    )
    assert parse_submodule_status(status) == [
        SubmoduleChange("vendor/lib", new_commit=False, inside=True),
        SubmoduleChange("vendor/moved", new_commit=True, inside=False),
        SubmoduleChange("new name", new_commit=False, inside=True),
    ]
