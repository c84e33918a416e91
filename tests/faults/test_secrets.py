"""Secrets never leave: a stand-in for `claude` (agents.claude.command) that prints the secrets it was
given, writes them into files, commits them itself, and puts them in its error messages.

Each test runs `python -m orchestrator run` as a user does and then greps every artefact of the run for
the planted values: the whole state folder (state.db, its WAL, transcripts, report.json, run folders,
the run's worktree), the log file, the --report, --summary and --metrics-file outputs, the console's
stdout and stderr, and every ref's history in the user's repository (`git log --all -p`, `git grep` over
every ref). The one place a withheld change may stay is `<run dir>/withheld/`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.proc import CommandResult, child_env, run_command
from orchestrator.secrets import MASK

# Made up, never real. None is shaped like a known key format or named like a secret, except where said.
GIVEN_PLAIN = "zq8Xv-plain-value-3b7e1c9d"  # agents.claude.env under a name that says nothing
GIVEN_EXPANDED = "from-parent-var-77c2e0a1f4"  # agents.claude.env: ${MY_UPSTREAM}, from the user's env
CREDENTIAL = "anthropic-credential-5d1f0b8e2a"  # ANTHROPIC_API_KEY, inherited (a credential variable)
PLANTED = (GIVEN_PLAIN, GIVEN_EXPANDED, CREDENTIAL)

STANDIN = r'''#!PYTHON
"""A stand-in for claude: stream-json out, behaviour chosen by STANDIN_MODE."""
import json, os, subprocess, sys

if "--version" in sys.argv:
    if os.environ.get("STANDIN_MODE") == "version-error":
        print(f"cannot start: bad key {os.environ.get('ANTHROPIC_API_KEY')} / {os.environ.get('PLAIN_SETTING')}",
              file=sys.stderr)
        sys.exit(1)
    print("2.1.150 (Claude Code)")
    sys.exit(0)
prompt = sys.stdin.read()
secrets = [os.environ.get("PLAIN_SETTING", ""), os.environ.get("UPSTREAM", ""),
           os.environ.get("ANTHROPIC_API_KEY", "")]
mode = os.environ.get("STANDIN_MODE", "print")
read_only = "dontAsk" in sys.argv
joined = " ".join(secrets)

def out(obj):
    print(json.dumps(obj), flush=True)

out({"type": "system", "subtype": "init", "session_id": "sess-1", "model": "scripted-model"})
print(f"debug: using {joined}", file=sys.stderr, flush=True)
if mode == "error":
    message = f"Error: request failed with key {secrets[2]} ({secrets[0]}, {secrets[1]})"
    print(message, file=sys.stderr, flush=True)
    print(message, flush=True)
    sys.exit(1)
text = f"I was given {joined}."
marker = os.environ.get("STANDIN_MARKER", "")
if mode == "hang-once" and not os.path.exists(marker):
    with open("config.txt", "w") as fh:
        fh.write(f"key = {secrets[0]}\n")
    open(marker, "w").close()
    import time
    time.sleep(60)
if read_only and mode == "review-write":
    with open("notes.txt", "w") as fh:
        fh.write(f"reviewer saw {secrets[2]}\n")
if read_only:
    text += '\n```json\n{"verdict": "approve", "findings": [{"severity": "low", "file": "app.py", "message": "uses %s"}]}\n```' % secrets[0]
else:
    if mode in ("write", "commit"):
        with open("config.txt", "w") as fh:
            fh.write(f"key = {secrets[int(os.environ.get('STANDIN_WHICH', '0'))]}\n")
    else:
        with open("app.py", "a") as fh:
            fh.write("# changed\n")
    if mode == "commit":
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qm",
                        f"agent commit {secrets[0]}"], check=True)
        os.remove("config.txt")
out({"type": "assistant", "message": {"content": [{"type": "text", "text": text}], "usage": {}},
     "session_id": "sess-1"})
out({"type": "result", "subtype": "success", "is_error": False, "result": text, "session_id": "sess-1",
     "usage": {"input_tokens": 10, "output_tokens": 5}, "total_cost_usd": 0.001})
'''


class Project:
    """A user's repository, a stand-in claude, a config that gives it the planted secrets."""

    def __init__(self, tmp: Path, mode: str, which: int = 0) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.repo.mkdir()
        (self.repo / "app.py").write_text("def greet():\n    return 'hi'\n")
        for args in (
            ["init", "-q", "-b", "main"],
            ["add", "-A"],
            ["-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "initial"],
        ):
            run_command(["git", *args], self.repo, check=True)
        standin = tmp / "bin" / "claude-standin"
        standin.parent.mkdir()
        standin.write_text(STANDIN.replace("PYTHON", sys.executable, 1))
        standin.chmod(0o755)
        self.config = tmp / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "agents": {
                        "claude": {
                            "command": str(standin),
                            "env": {
                                "PLAIN_SETTING": GIVEN_PLAIN,
                                "UPSTREAM": "${MY_UPSTREAM}",
                                "STANDIN_MODE": mode,
                                "STANDIN_WHICH": str(which),
                                "STANDIN_MARKER": str(tmp / "hung-once"),
                            },
                        }
                    },
                    "fallback_order": ["claude"],
                    # hang-once marks its first start in a file outside the run, which the sandbox forbids.
                    **({"sandbox": "off"} if mode == "hang-once" else {}),
                }
            )
        )
        self.workflow = tmp / "workflow.yaml"
        self.workflow.write_text(
            yaml.safe_dump(
                {
                    "max_iterations": 1,
                    "steps": [
                        {"agent": "claude", "task": "implement"},
                        {"agent": "claude", "task": "review"},
                    ],
                }
            )
        )
        self.out = tmp / "out"
        self.state = tmp / "state"
        self.log_file = tmp / "logs" / "orchestrator.log"
        home = tmp / "home"
        self.env = child_env(
            os.environ,
            {
                "CI": "true",
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "ORCHESTRATOR_HOME": str(self.state),
                "ORCHESTRATOR_LOG_FILE": str(self.log_file),
                "ORCHESTRATOR_LOG_LEVEL": "debug",
                "MY_UPSTREAM": GIVEN_EXPANDED,
                "ANTHROPIC_API_KEY": CREDENTIAL,
            },
        )

    def run(self, timeout_s: float = 120) -> CommandResult:
        argv = [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "make greet() return Hello",
            "--workflow",
            str(self.workflow),
            "--config",
            str(self.config),
            "--report",
            str(self.out / "report.json"),
            "--summary",
            str(self.out / "summary.md"),
            "--metrics-file",
            str(self.out / "metrics.prom"),
        ]
        return run_command(argv, self.repo, env=self.env, timeout_s=timeout_s)

    def orchestrator(self, *args: str) -> CommandResult:
        return run_command(
            [sys.executable, "-m", "orchestrator", *args], self.repo, env=self.env, timeout_s=120
        )

    def git(self, *args: str) -> str:
        return run_command(["git", *args], self.repo, check=True).stdout

    def artefacts(self, result: CommandResult) -> dict[str, bytes]:
        """Every place the run wrote to, by a label: files (bytes), console, the repository's history."""
        found: dict[str, bytes] = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
        for folder in (self.state, self.out, self.log_file.parent):
            for path in folder.rglob("*"):
                if path.is_file() and "withheld" not in path.relative_to(folder).parts:
                    found[str(path)] = path.read_bytes()
        found["git log --all -p"] = self.git("log", "--all", "-p", "--text").encode()
        refs = self.git("for-each-ref", "--format=%(objectname)").split()
        for secret in PLANTED:
            grep = run_command(["git", "grep", "-I", "-a", "-F", secret, *refs], self.repo)
            found[f"git grep {secret}"] = grep.stdout.encode()
        return found

    def run_dirs(self) -> list[Path]:
        return sorted((self.state / "runs").iterdir())


def assert_nothing_leaked(project: Project, result: CommandResult) -> dict[str, bytes]:
    found = project.artefacts(result)
    assert any("state.db" in label for label in found), "the store was not among the artefacts"
    assert any(label.endswith(".jsonl") for label in found) and any(".stderr" in label for label in found)
    leaks = [
        f"{secret!r} in {label}"
        for label, data in found.items()
        for secret in PLANTED
        if secret.encode() in data
    ]
    assert leaks == []
    return found


def test_printed_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    project = Project(tmp_path, "print")
    result = project.run()
    assert result.returncode == 0, result.stderr[-3000:]
    found = assert_nothing_leaked(project, result)
    # The agent's words were kept, masked: the console showed them, the transcript holds them.
    assert f"I was given {MASK} {MASK} {MASK}" in result.stderr
    transcripts = [data for label, data in found.items() if label.endswith(".jsonl")]
    assert any(f"I was given {MASK}".encode() in data for data in transcripts)
    report = json.loads((project.out / "report.json").read_text())
    assert report["status"] == "approved"
    # The step was committed (its change held no secret).
    assert "# changed" in project.git("show", f"refs/heads/{report['branch']}:app.py")


@pytest.mark.parametrize("which", [0, 1, 2], ids=["agents-env", "expanded-var", "credential-var"])
def test_a_secret_written_into_a_file_is_never_committed(tmp_path: Path, which: int) -> None:
    project = Project(tmp_path, "write", which)
    result = project.run()
    assert result.returncode == 1, result.stderr[-3000:]
    assert "config.txt" in result.stderr and "secret" in result.stderr
    assert_nothing_leaked(project, result)
    # The change is kept only in the run's folder, owner-only.
    (run_dir,) = project.run_dirs()
    kept = run_dir / "withheld" / "i1-s1-implement" / "files" / "config.txt"
    assert PLANTED[which] in kept.read_text()
    assert kept.stat().st_mode & 0o077 == 0
    # The run's repository is back where the step started.
    report = json.loads((project.out / "report.json").read_text())
    assert project.git("rev-parse", f"refs/heads/{report['branch']}") == project.git("rev-parse", "main")
    step = report["steps"][0]
    assert step["status"] == "failed" and step["error"]["kind"] == "secret_leak"
    assert "config.txt" in step["error"]["message"]


def test_a_secret_the_agent_committed_itself_is_taken_back(tmp_path: Path) -> None:
    """The agent commits the key, then deletes the file: the tree is clean, its own commit is not."""
    project = Project(tmp_path, "commit")
    result = project.run()
    assert result.returncode == 1, result.stderr[-3000:]
    assert_nothing_leaked(project, result)
    (run_dir,) = project.run_dirs()
    assert GIVEN_PLAIN in (run_dir / "withheld" / "i1-s1-implement" / "agent-commits.patch").read_text()


def test_a_secret_in_an_error_message_is_masked(tmp_path: Path) -> None:
    project = Project(tmp_path, "error")
    result = project.run()
    assert result.returncode == 1, result.stderr[-3000:]
    assert_nothing_leaked(project, result)
    assert f"request failed with key {MASK}" in result.stderr


def test_a_secret_a_reviewer_writes_is_not_kept_under_a_backup_ref(tmp_path: Path) -> None:
    """A read-only step's edits are undone and kept under a backup ref, unless they hold a secret."""
    project = Project(tmp_path, "review-write")
    result = project.run()
    assert result.returncode == 1, result.stderr[-3000:]
    assert "notes.txt" in result.stderr
    assert_nothing_leaked(project, result)
    (run_dir,) = project.run_dirs()
    assert CREDENTIAL in (run_dir / "withheld" / "i1-s2-review" / "files" / "notes.txt").read_text()


def test_a_killed_steps_leftover_secret_is_not_kept_under_a_backup_ref(tmp_path: Path) -> None:
    """Resume keeps a killed step's partial edits under a backup ref, unless they hold a secret."""
    project = Project(tmp_path, "hang-once")
    stopped = project.run(timeout_s=8)
    assert stopped.timed_out
    (run_dir,) = project.run_dirs()
    resumed = project.orchestrator("runs", "resume", run_dir.name)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    both = CommandResult(
        argv=(), returncode=0, stdout=stopped.stdout + resumed.stdout, stderr=stopped.stderr + resumed.stderr
    )
    assert_nothing_leaked(project, both)
    # Withheld when the step was stopped (a clean cancel), or else when the run resumed ("interrupted").
    (kept,) = run_dir.glob("withheld/*/files/config.txt")
    assert GIVEN_PLAIN in kept.read_text()


def test_a_secret_in_a_version_probe_is_masked_by_agents(tmp_path: Path) -> None:
    project = Project(tmp_path, "version-error")
    table = project.orchestrator("agents", "--config", str(project.config))
    listed = project.orchestrator("agents", "--config", str(project.config), "--json")
    (claude,) = [row for row in json.loads(listed.stdout) if row["agent"] == "claude"]
    assert f"cannot start: bad key {MASK} / {MASK}" in claude["reason"]
    shown = table.stdout + table.stderr + listed.stdout + listed.stderr
    assert [s for s in PLANTED if s in shown] == []
