"""`orchestrator run` as CI runs it: a child process with CI=true, no TTY and stdin from /dev/null.

Each test spawns `python -m orchestrator run ...` through orchestrator.proc.run_command (stdin is
/dev/null there: a prompt would read EOF, abort and exit 130, so the exit codes checked here also show
that nothing waited on stdin), against a real repository whose `origin` is a local bare remote.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.adapters import REAL_AGENTS, get_adapter
from orchestrator.cli.run_cmd import run as run_command_cli
from orchestrator.proc import CommandResult, child_env, run_command
from orchestrator.testing.checkout import DEFAULT_IGNORED_REFS, snapshot_checkout
from orchestrator.workspace.git import Git

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
CHANGES = (
    '```json\n{"verdict": "request_changes", "findings": [{"severity": "high", "file": "app.py", '
    '"line": 2, "message": "greet() must return Hello"}]}\n```'
)
# What the plain renderer prints: "[12:34:56] who: text".
TIMESTAMPED = re.compile(r"^\[\d\d:\d\d:\d\d\] [\w.-]+: ")
PROMPT_MARKERS = ("[y/N]", "[Y/n]", "(y/n)", "Press Enter")
# The run's own refs, and the remote-tracking ref that `git push` records for the pushed run branch.
CHECKOUT_IGNORED_REFS = (*DEFAULT_IGNORED_REFS, "refs/remotes/origin/orchestrator/")
GATE = "import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\n"


class CiProject:
    """A repository with a bare `origin`, a fake-agent configuration, a workflow and a CI environment."""

    def __init__(self, tmp: Path, turns: list[dict[str, object]]) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.repo.mkdir()
        (self.repo / "app.py").write_text("def greet():\n    return 'hi'\n")
        (self.repo / "check.py").write_text(GATE)
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "initial")
        self.remote = tmp / "remote.git"
        run_command(["git", "init", "-q", "--bare", str(self.remote)], tmp, check=True)
        self.git("remote", "add", "origin", str(self.remote))
        self.scenario = tmp / "scenario.yaml"
        self.scenario.write_text(yaml.safe_dump({"turns": turns}))
        self.config = tmp / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(self.scenario)}}},
                    "fallback_order": ["fake"],
                }
            )
        )
        self.workflow = tmp / "workflow.yaml"
        self.workflow.write_text(
            yaml.safe_dump(
                {
                    "max_iterations": 3,
                    "steps": [
                        {"agent": "fake", "task": "implement"},
                        {"run": f"{sys.executable} check.py", "name": "check"},
                        {"agent": "fake", "task": "review"},
                        {"agent": "fake", "task": "refine"},
                    ],
                }
            )
        )
        self.report = tmp / "out" / "report.json"
        self.summary = tmp / "out" / "summary.md"
        self.step_summary = tmp / "github-step-summary.md"
        self.step_summary.write_text("earlier step's summary\n")
        home = tmp / "home"
        self.env = child_env(
            os.environ,
            {
                "CI": "true",
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "ORCHESTRATOR_HOME": str(tmp / "state"),
                "GITHUB_STEP_SUMMARY": str(self.step_summary),
            },
        )

    def git(self, *args: str) -> str:
        return run_command(["git", *args], self.repo, check=True).stdout.strip()

    def run(self, *extra: str, config: Path | None = None, workflow: Path | None = None) -> CommandResult:
        argv = [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "make greet() return Hello",
            "--workflow",
            str(workflow or self.workflow),
            "--config",
            str(config or self.config),
            "--report",
            str(self.report),
            "--summary",
            str(self.summary),
            *extra,
        ]
        return run_command(argv, self.repo, env=self.env, timeout_s=120)

    def run_branches(self) -> list[str]:
        listed = self.git("for-each-ref", "--format=%(refname)", "refs/heads/orchestrator/")
        return listed.splitlines()

    def remote_sha(self, branch: str) -> str:
        result = run_command(
            ["git", "--git-dir", str(self.remote), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            self.tmp,
        )
        return result.stdout.strip()


def assert_plain_ci_output(result: CommandResult) -> None:
    """No escape codes anywhere, every progress line on stderr timestamped, no prompt shown."""
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no progress lines on stderr"
    untimed = [line for line in lines if not TIMESTAMPED.match(line)]
    assert untimed == [], f"lines without a timestamp on stderr: {untimed}"
    assert not any(marker in result.stdout + result.stderr for marker in PROMPT_MARKERS)
    assert "interrupted" not in result.stderr


@pytest.fixture
def approved(tmp_path):
    return CiProject(
        tmp_path,
        [
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hi'\n"}},
            {"text": "implemented"},
            {"text": CHANGES},  # review 1: the gate failed too
            {"edit_file": {"path": "app.py", "old": "'Hi'", "new": "'Hello'"}},
            {"text": "refined"},
            {"text": APPROVE},  # review 2
        ],
    )


def test_approved_run_pushes_the_branch_and_writes_report_and_summary(approved):
    before = snapshot_checkout(approved.repo, ignored_refs=CHECKOUT_IGNORED_REFS)
    result = approved.run("--push", "origin")
    assert result.returncode == 0, result.stderr
    assert_plain_ci_output(result)

    report = json.loads(approved.report.read_text())
    assert report["status"] == "approved" and report["stop_reason"] == "approved"
    assert report["iterations"] == 2 and report["task"] == "make greet() return Hello"
    assert report["workflow"] == "workflow" and Path(report["repo"]) == approved.repo.resolve()
    assert [(s["id"], s["agent"], s["status"]) for s in report["steps"]] == [
        ("i1-s1-implement", "fake", "succeeded"),
        ("i1-s2-gate", "gate", "failed"),
        ("i1-s3-review", "fake", "succeeded"),
        ("i1-s4-refine", "fake", "succeeded"),
        ("i2-s2-gate", "gate", "succeeded"),
        ("i2-s3-review", "fake", "succeeded"),
    ]
    assert report["findings"] == []
    assert [(g["command"], g["passed"]) for g in report["gates"]] == [(f"{sys.executable} check.py", True)]
    assert report["usage"]["input_tokens"] > 0 and report["usage"]["cost_usd"] > 0

    # The run branch arrived in the remote, at the commit of the last editing step.
    branch = report["branch"]
    assert branch == f"orchestrator/{report['run_id']}"
    head = approved.git("rev-parse", f"refs/heads/{branch}")
    assert approved.remote_sha(branch) == head
    assert head.startswith(report["steps"][3]["commit"])
    assert "return 'Hello'" in Git(approved.repo).out("show", f"{branch}:app.py")
    assert approved.remote_sha("main") == ""  # only the run branch is pushed
    assert f"pushed {branch} to origin" in result.stderr
    assert snapshot_checkout(approved.repo, ignored_refs=CHECKOUT_IGNORED_REFS) == before

    summary = approved.summary.read_text()
    assert summary.startswith(f"## Orchestrator run `{report['run_id']}`: approved\n")
    for expected in (
        "| Status | **approved** |",
        f"| Branch | `{branch}` (base `HEAD`) |",
        "| Task | make greet() return Hello |",
        "| i1-s4-refine | fake | refine | succeeded |",
        "| i2-s2-gate | gate | gate | succeeded |",
        "| fake | 4 |",  # agents table: four agent steps
        "### Findings (last review)\n\nNone.",
        # Base and final side by side: check.py fails before the change (greet() said 'hi').
        f"| `{sys.executable} check.py` | failed (exit 1) | passed | 0 |",
        "### Totals",
    ):
        assert expected in summary, expected
    assert "$" in summary.split("| Cost |")[1].splitlines()[0]
    # Appended to $GITHUB_STEP_SUMMARY, after what earlier steps wrote.
    assert approved.step_summary.read_text() == "earlier step's summary\n" + summary + "\n"

    # stdout carries the short human report (the progress went to stderr).
    assert result.stdout.startswith(f"run {report['run_id']}: approved")


def test_not_approved_run_exits_1_and_still_reports_and_pushes(tmp_path):
    # The reviewer repeats the same finding after the refine: the run stops with no progress.
    project = CiProject(
        tmp_path, [{"text": "tried"}, {"text": CHANGES}, {"text": "refine tried"}, {"text": CHANGES}]
    )
    result = project.run("--push", "origin")
    assert result.returncode == 1, result.stderr
    assert_plain_ci_output(result)
    report = json.loads(project.report.read_text())
    assert report["status"] == "not_approved" and report["stop_reason"] == "no_progress"
    assert [f["message"] for f in report["findings"]] == ["greet() must return Hello"]
    summary = project.summary.read_text()
    assert "| Status | **not_approved** |" in summary
    assert "- **high** `app.py:2`: greet() must return Hello" in summary
    assert "| `" + sys.executable + " check.py` | failed (exit 1) | **failed (exit 1)** | 1 |" in summary
    assert project.step_summary.read_text().endswith(summary + "\n")
    # Pushed anyway, so a person can look at what the agents did.
    assert project.remote_sha(report["branch"]) == project.git("rev-parse", f"refs/heads/{report['branch']}")


def test_configuration_error_exits_2_naming_file_and_key(tmp_path):
    project = CiProject(tmp_path, [{"text": "unused"}])
    bad = tmp_path / "bad-config.yaml"
    bad.write_text("agents:\n  fake:\n    timeout: 3\n")
    result = project.run("--push", "origin", config=bad)
    assert result.returncode == 2, result.stderr
    assert str(bad) in result.stderr and "agents.fake.timeout" in result.stderr
    assert "timeout_s" in result.stderr  # what is allowed
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    assert result.stdout == ""
    assert not project.report.exists() and not project.summary.exists()
    assert project.run_branches() == []
    assert project.step_summary.read_text() == "earlier step's summary\n"


def test_bad_workflow_exits_2_naming_file_and_key(tmp_path):
    project = CiProject(tmp_path, [{"text": "unused"}])
    bad = tmp_path / "bad-workflow.yaml"
    bad.write_text("steps:\n  - agent: fake\n    task: test\n")
    result = project.run(workflow=bad)
    assert result.returncode == 2, result.stderr
    assert str(bad) in result.stderr and "steps[0].task" in result.stderr and "implement" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.run_branches() == [] and not project.report.exists()

    missing = project.run(workflow=tmp_path / "no-such-workflow.yaml")
    assert missing.returncode == 2 and "no-such-workflow.yaml" in missing.stderr
    assert "hint:" in missing.stderr


def test_push_to_a_missing_remote_exits_2_with_a_hint_before_any_agent_runs(tmp_path):
    project = CiProject(tmp_path, [{"write_file": {"path": "a.txt", "content": "a"}}, {"text": "done"}])
    result = project.run("--push", "upstream")
    assert result.returncode == 2, result.stderr
    assert "upstream" in result.stderr and "hint:" in result.stderr and "git remote" in result.stderr
    assert "Traceback" not in result.stderr
    # Checked before the run started: no agent spent anything, no branch was made.
    assert project.run_branches() == [] and not project.report.exists()
    assert not project.scenario.with_name(project.scenario.name + ".state").exists()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "github-actions" / "orchestrator.yml"


def _example_steps() -> tuple[dict, list[dict]]:
    data = yaml.safe_load(EXAMPLE.read_text())
    return data, data["jobs"]["run"]["steps"]


def test_github_actions_example_runs_the_command_as_it_exists():
    data, steps = _example_steps()
    trigger = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    inputs = trigger["workflow_dispatch"]["inputs"]
    assert inputs["task"]["required"] is True and inputs["workflow"]["default"] == "default"
    assert data["permissions"] == {"contents": "write"}
    scripts = [step["run"] for step in steps if "run" in step]
    # Inputs and secrets reach scripts through env only: nothing is pasted into a shell script.
    assert all("${{" not in script for script in scripts)
    assert any("orchestrator install-clis" in script for script in scripts)
    # The repository's own configuration is trusted before the run (trust.py), in the run's state folder.
    (trust_step,) = [step for step in steps if step.get("run", "").strip() == "orchestrator trust"]
    assert trust_step["env"]["XDG_STATE_HOME"] == "${{ runner.temp }}/state"

    (run_step,) = [step for step in steps if "orchestrator run " in step.get("run", "")]
    argv = shlex.split(run_step["run"])
    assert argv[:3] == ["orchestrator", "run", "$TASK"]
    known = {opt for param in run_command_cli.params for opt in getattr(param, "opts", [])}
    flags = [arg for arg in argv if arg.startswith("--")]
    assert set(flags) <= known, set(flags) - known
    assert {"--workflow", "--report", "--summary", "--push"} <= set(flags)
    assert argv[argv.index("--push") + 1] == "origin"
    assert run_step["env"]["TASK"] == "${{ inputs.task }}"
    assert run_step["env"]["WORKFLOW"] == "${{ inputs.workflow }}"

    # Every secret passed is a variable some adapter reads, and each real CLI gets one.
    credential_vars = {agent: set(get_adapter(agent).credential_vars) for agent in REAL_AGENTS}
    secrets = {name for name, value in run_step["env"].items() if "secrets." in value}
    assert secrets and all(any(name in wanted for wanted in credential_vars.values()) for name in secrets)
    assert all(wanted & secrets for wanted in credential_vars.values())

    (upload,) = [step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"
    report_path = argv[argv.index("--report") + 1].replace("$RUNNER_TEMP", "${{ runner.temp }}")
    assert report_path in upload["with"]["path"]
    uses = {step.get("uses", "").split("@")[0] for step in steps}
    assert {"actions/checkout", "actions/setup-python", "actions/setup-node"} <= uses
