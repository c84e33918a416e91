"""`orchestrator shell` in a real pseudo-terminal (pexpect), with the fake agent playing a scenario."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pexpect
import pytest
import yaml

from orchestrator.proc import leftover_processes
from orchestrator.store import Store
from orchestrator.testing.cluster import make_repo
from orchestrator.workspace.git import Git

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
PROMPT = r"orchestrator\[wf[^\]]*\]> "
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

pytestmark = pytest.mark.slow


class ShellHarness:
    def __init__(self, tmp_path: Path, turns: list) -> None:
        self.tmp = tmp_path
        self.repo = make_repo(tmp_path / "repo")
        self.state = tmp_path / "state"
        scenario = tmp_path / "scenario.yaml"
        scenario.write_text(yaml.safe_dump({"turns": turns}))
        self.workflow = tmp_path / "wf.yaml"
        self.workflow.write_text(
            yaml.safe_dump(
                {
                    "max_iterations": 2,
                    "steps": [{"agent": "fake", "task": "implement"}, {"agent": "fake", "task": "review"}],
                }
            )
        )
        self.config = tmp_path / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}},
                    "fallback_order": ["fake"],
                }
            )
        )
        self.children: list[pexpect.spawn] = []

    def spawn(self, **env_extra: str) -> pexpect.spawn:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.tmp / "home"),
            "ORCHESTRATOR_HOME": str(self.state),
            "XDG_CONFIG_HOME": str(self.tmp / "cfg"),
            "TERM": "dumb",
            "NO_COLOR": "1",
            "LANG": "C.UTF-8",
            # The shell and everything it starts carry this test's marker: the autouse fixture then
            # fails the test if any of them is left running.
            "ORCHESTRATOR_PARENT_PID": str(os.getpid()),
            **env_extra,
        }
        argv = ["-m", "orchestrator", "shell", "--repo", str(self.repo), "--config", str(self.config)]
        argv += ["--workflow", str(self.workflow)]
        child = pexpect.spawn(
            sys.executable,
            argv,
            cwd=str(self.repo),
            env=env,
            encoding="utf-8",
            timeout=30,
            dimensions=(50, 250),
        )
        self.children.append(child)
        return child

    def store(self) -> Store:
        return Store(self.state / "state.db")

    def close(self) -> None:
        for child in self.children:
            if child.isalive():
                child.terminate(force=True)
            child.close()


@pytest.fixture
def shell(tmp_path):
    made: list[ShellHarness] = []

    def make(turns: list) -> ShellHarness:
        made.append(ShellHarness(tmp_path, turns))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


def exit_status(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    return child.exitstatus


def test_task_follow_up_diff_undo_exit(shell):
    h = shell(
        [
            {"write_file": {"path": "a.txt", "content": "a\n"}},
            {"text": "implemented a"},
            {"text": APPROVE},
            {"write_file": {"path": "b.txt", "content": "b\n"}},
            {"text": "added b"},
            {"text": APPROVE},
        ]
    )
    child = h.spawn()
    child.expect(r"orchestrator\[wf\]> ")

    child.sendline("add a.txt")
    child.expect(r"i1-s1-implement · fake · [0-9.]+s · \d+ in / \d+ out · \$[0-9.]+ · editing a\.txt")
    child.expect(r"approved · branch (orchestrator/(\S+)) · 1 iteration · \$[0-9.]+\r\n")
    branch, run_id = child.match.group(1), child.match.group(2)
    short = run_id.split("-")[1] + "-" + run_id.split("-")[2][:4]
    child.expect(rf"orchestrator\[wf {short}\]> ")

    child.sendline("also add b.txt")
    child.expect(r"i2-s1-implement: implement by fake \(iteration 2\)")
    child.expect(rf"approved · branch {branch} · 2 iterations")
    child.expect(PROMPT)
    with h.store() as store:
        steps = {s.step_id: s for s in store.steps(run_id)}
    assert steps["i2-s1-implement"].session_id == steps["i1-s1-implement"].session_id  # resumed
    git = Git(h.repo)
    assert git.out("show", f"{branch}:b.txt") == "b"
    implement_1 = git.out("rev-parse", f"{branch}~1")

    child.sendline("/diff")
    child.expect(r"\+\+\+ b/a\.txt")
    child.expect(r"\+\+\+ b/b\.txt")
    child.expect(PROMPT)

    child.sendline("/undo")
    child.expect(r"undid i2-s1-implement by fake \(commit [0-9a-f]+: b\.txt\)")
    child.expect(r"kept at (refs/orchestrator/backups/\S+)\r\n")
    backup = child.match.group(1)
    child.expect(PROMPT)
    assert git.out("rev-parse", f"refs/heads/{branch}") == implement_1  # the branch moved back one commit
    undone = steps["i2-s1-implement"].commit
    assert git.run("merge-base", "--is-ancestor", undone, backup, check=False).ok  # kept, reachable
    child.sendline("/diff")
    child.expect(r"\+\+\+ b/a\.txt")
    child.expect(PROMPT)
    assert "b.txt" not in child.before

    child.sendline("/exit")
    assert exit_status(child) == 0


def test_ctrl_c_cancels_a_hung_step_and_the_shell_goes_on(shell):
    h = shell(
        [
            {"hang": None},
            {"write_file": {"path": "c.txt", "content": "c\n"}},
            {"text": "done"},
            {"text": APPROVE},
        ]
    )
    child = h.spawn()
    child.expect(PROMPT)
    child.sendline("do something slow")
    child.expect(r"i1-s1-implement: implement by fake")
    # Wait until the agent itself runs (the fake agent's process carries our marker).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [p for p in leftover_processes() if p != child.pid]:
        time.sleep(0.1)
    time.sleep(0.5)
    assert [p for p in leftover_processes() if p != child.pid], "the agent never started"

    start = time.monotonic()
    child.sendintr()
    child.expect(r"cancelling the current step")
    child.expect(r"cancelled · branch (orchestrator/\S+) · 1 iteration")
    branch = child.match.group(1)
    child.expect(r"your next message follows up on this run")
    child.expect(PROMPT)
    assert time.monotonic() - start < 8
    assert [p for p in leftover_processes() if p != child.pid] == []  # the step's processes are gone
    assert Git(h.repo).rev_parse(f"refs/heads/{branch}") is not None  # the branch survived

    child.sendline("/status")
    child.expect(r"run \S+: cancelled · branch " + re.escape(branch))
    child.expect(PROMPT)

    child.sendline("try again")  # a follow-up on the cancelled run, same branch
    child.expect(rf"approved · branch {re.escape(branch)} · 2 iterations")
    child.expect(PROMPT)
    assert Git(h.repo).out("show", f"{branch}:c.txt") == "c"

    child.sendeof()
    assert exit_status(child) == 0


def test_unknown_command_and_bad_arguments_say_what_is_valid(shell):
    h = shell([])
    child = h.spawn()
    child.expect(PROMPT)
    child.sendline("/frobnicate")
    child.expect(r"unknown command /frobnicate")
    child.expect(r"commands: /help, /new, /workflow, /agent, /agents, /status, /groups, /diff, /log, /undo")
    child.expect(PROMPT)
    child.sendline("/workflow no-such-workflow")
    child.expect(r"no workflow named 'no-such-workflow'")
    child.expect(r"choose one of: .*default")
    child.expect(PROMPT)
    child.sendline("/agent review")
    child.expect(r"/agent 'review' is not TASK=AGENT")
    child.expect(r"usage: /agent TASK=AGENT \(tasks: implement, review")
    child.expect(PROMPT)
    child.sendline("/diff")
    child.expect(r"there is no current run")
    child.expect(PROMPT)
    child.sendline("/exit")
    assert exit_status(child) == 0


def test_history_persists_across_sessions_and_ctrl_c_clears_the_line(shell):
    h = shell([])
    history = h.state / "shell_history"
    first = h.spawn()
    first.expect(PROMPT)
    first.send("half a thought")
    first.expect("half a thought")
    # CPython's readline notices a signal only while it waits for a key: let it get there (a person's
    # Ctrl-C comes long after the last key, too).
    time.sleep(0.3)
    first.sendintr()  # at the prompt: the line is dropped, nothing is sent
    first.expect(PROMPT)
    first.sendline("/status")
    first.expect(r"no run yet")
    first.expect(PROMPT)
    first.sendline("/help")
    first.expect(r"/undo\s+roll back the last editing step")
    first.expect(PROMPT)
    first.sendeof()
    assert exit_status(first) == 0
    assert history.read_text().splitlines() == ["/status", "/help"]

    second = h.spawn()
    second.expect(PROMPT)
    second.send("\x10\x10")  # Ctrl-P twice: two lines back in the previous session's history
    second.send("\r")
    second.expect(r"no run yet")  # /status ran again
    second.expect(PROMPT)
    second.sendline("/exit")
    assert exit_status(second) == 0
    assert history.read_text().splitlines() == ["/status", "/help", "/status", "/exit"]


def test_live_view_on_a_color_terminal_ends_with_the_summary_line(shell):
    h = shell([{"write_file": {"path": "a.txt", "content": "a\n"}}, {"text": "did a"}, {"text": APPROVE}])
    child = h.spawn(TERM="xterm-256color", NO_COLOR="")
    child.expect(PROMPT)
    child.sendline("add a.txt")
    child.expect(r"approved")
    child.expect(PROMPT)
    text = ANSI.sub("", child.before)
    assert re.search(r"· branch orchestrator/\S+ · 1 iteration · \$[0-9.]+", text)
    child.sendline("/exit")
    assert exit_status(child) == 0
