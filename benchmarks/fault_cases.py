"""The fault cases of issue 8, measured as a user meets them: one row per case with what the issue saw
first ("before") and, measured now, the exit code, the time, the peak RSS of the orchestrator's process
tree, what was left running 5 s after it ended, what it wrote to the user's checkout and where a planted
secret turned up.

    python -m benchmarks.fault_cases              # every case (about 4 minutes)
    python -m benchmarks.fault_cases sigterm 400  # the cases whose name contains "sigterm" or "400"
    python -m benchmarks.fault_cases --list       # the case names

Run it as root for the store cases on a full or read-only disk (a small tmpfs is mounted for each). It
uses the stand-ins of orchestrator.testing.standins and the `python -m orchestrator` of this interpreter,
so it measures whichever checkout's virtualenv runs it. How each figure is taken: benchmarks/fault_harness.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks.fault_harness import (
    KEY_SHAPED,
    Case,
    Row,
    error_line,
    measure,
    new_case,
    row,
    run_status,
)
from orchestrator.testing.standins import is_alive

HANG = """
import time
record(); escapee(); daemon()
print('{"type": "message", "text": "working"}', flush=True)
time.sleep(300)
"""
STUBBORN = (
    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    + HANG
)
EXIT_LEAVING = """
import time
record(); escapee(); daemon(); time.sleep(0.5)
print('{"type": "result", "text": "done", "success": true}', flush=True)
"""
HUGE_LINE = """
chunk = b"x" * (1 << 20)
out = sys.stdout.buffer
out.write(b'{"type": "message", "text": "')
for _ in range(400):
    out.write(chunk)
out.write(b'"}\\n{"type": "result", "text": "done", "success": true}\\n')
"""
FLOOD = """
block = (b"y" * 1023 + b"\\n") * 1024
for _ in range(1024):  # 1 GiB
    sys.stdout.buffer.write(block)
sys.stdout.buffer.write(b'{"type": "result", "text": "done", "success": true}\\n')
"""
KILLED = "import os\nrecord()\nos.kill(os.getpid(), 9)\n"
SECRETS = """
import json, os
given = os.environ["FAKE_SERVICE_TOKEN"]
print(json.dumps({"type": "message", "text": f"I was given {given} and found %s"}), flush=True)
print(f"debug: token {given}", file=sys.stderr, flush=True)
if WRITE:
    open("config.txt", "w").write(f"token = {given}\\n")
else:
    open("app.py", "a").write("# changed\\n")
print(json.dumps({"type": "result", "text": f"done with {given}", "success": True}), flush=True)
"""
RECORD_ONLY = 'record()\nprint(\'{"type": "result", "text": "ran", "success": true}\', flush=True)\n'


# 1. Signals


def _signal(sig: int, stubborn: bool = False, second: bool = False) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        c.config({"command": str(c.project.standin(STUBBORN if stubborn else HANG))})
        c.start_checks()

        sent: list[float] = []

        def during(pid: int) -> float:
            c.project.wait_for_pids(3)
            os.kill(pid, sig)
            sent.append(time.monotonic())
            if second:
                time.sleep(0.3)
                os.kill(pid, sig)
            return sent[0]

        m = measure(c, c.project.run_argv(), limit_s=60, during=during)
        took = f"{m.since_signal:.1f} s after the signal" if m.since_signal is not None else ""
        gone = _all_gone(c, sent[0]) if sent else "?"
        return row(c, m, f"run {run_status(c)}; the stand-in's 3 processes all gone {gone}", took)

    return case


def _all_gone(c: Case, since: float) -> str:
    """How long after `since` the last process the stand-in recorded ended (looked at every 20 ms)."""
    while time.monotonic() - since < 15:
        if not any(is_alive(p) for p in c.project.recorded_pids()):
            return f"by {time.monotonic() - since:.1f} s after the signal"
        time.sleep(0.02)
    return "NOT within 15 s"


def _sigkill_everything(c: Case) -> Row:
    c.config({"command": str(c.project.standin(STUBBORN))})
    c.start_checks()
    recorded: list[int] = []

    def during(pid: int) -> float:
        recorded.extend(c.project.wait_for_pids(3))
        time.sleep(1.5)
        ours = [p for p in _descendants(pid) if p not in recorded]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in ours:
                os.kill(pid, sig)
        return time.monotonic()

    measure(c, c.project.run_argv(), limit_s=60, during=during)
    time.sleep(1)
    before = sum(1 for p in recorded if Path(f"/proc/{p}").exists())
    listed = measure(c, [sys.executable, "-m", "orchestrator", "runs", "list", "--all"], limit_s=30)
    said = "said so" if "left by run" in listed.stderr else "said nothing"
    return row(
        c,
        listed,
        f"{before} of {len(recorded)} alive after the kill; the next command {said}; run {run_status(c)}",
        took=f"`runs list` {listed.seconds:.1f} s",
    )


def _descendants(root: int) -> list[int]:
    tree: list[int] = []
    frontier = [root]
    while frontier:
        found: list[int] = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid in frontier and int(entry) not in tree:
                    found.append(int(entry))
        tree += found
        frontier = found
    return [root, *tree]


# 2. Escaped grandchildren, and 9: a CLI killed by a signal


def _agent_case(body: str, limit_s: float, **agent: object) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        c.config({"command": str(c.project.standin(body)), **agent})
        c.start_checks()
        m = measure(c, c.project.run_agent_argv("--json"), limit_s=limit_s)
        try:
            message = json.loads(m.stdout)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error_line(m.stderr)
        return row(c, m, message[:110])

    return case


# 3. Secrets


def _secrets(write: bool) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        body = f"WRITE = {write}\n" + SECRETS.replace("%s", KEY_SHAPED)
        standin = c.project.standin(body)
        c.given.append(standin)  # it holds the key-shaped value it prints
        c.config({"command": str(standin)})
        c.start_checks()
        m = measure(c, [*c.project.run_argv(), "--report", str(c.tmp / "report.json")], limit_s=60)
        return row(c, m, f"run {run_status(c)}; " + error_line(m.stderr, "config.txt" if write else "given"))

    return case


# 4. Repository configuration


def _untrusted(trusted: bool) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        standin = c.project.standin(RECORD_ONLY)
        c.project.env["USER_SECRET_VAR"] = "the-users-own-secret-value"
        c.secrets.append("the-users-own-secret-value")
        agent = {"command": str(standin), "env": {"TAKEN": "${USER_SECRET_VAR}"}}
        config = {"agents": {"fake": agent}, "fallback_order": ["fake"], "sandbox": "off"}
        (c.repo / ".orchestrator.yaml").write_text(yaml.safe_dump(config))
        git = [*("git", "-c", "user.name=u", "-c", "user.email=u@example.com")]
        c.project.call([*git, "add", ".orchestrator.yaml"])
        c.project.call([*git, "commit", "-qm", "the repository's own config"])
        if trusted:
            c.project.call([sys.executable, "-m", "orchestrator", "trust"])
        c.start_checks()
        argv = [sys.executable, "-m", "orchestrator", "run", "a task", "--workflow", str(c.project.workflow)]
        m = measure(c, argv, limit_s=30)
        ran = "the repository's command ran" if c.project.recorded_pids() else "its command never ran"
        return row(c, m, f"{ran}; " + error_line(m.stderr, "trust"))

    return case


# 5. The ref guard

NO_HOOKS = "git -c core.hooksPath=/dev/null"
CLEARED = "env -u GIT_CONFIG_COUNT -u GIT_CONFIG_KEY_0 -u GIT_CONFIG_VALUE_0 -u GIT_CONFIG_PARAMETERS git"
IDENTITY = "-c user.name=agent -c user.email=agent@example.org"


def _hostile(commands: list[str], sandbox: str) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        shell = "\n".join(
            f'( {x.format(repo=c.repo)} ) >/dev/null 2>&1; echo "$?" >> "$TMPDIR/hostile.log"'
            for x in commands
        )
        c.config(
            {"env": c.scenario([{"shell": shell + "\necho work > work.txt"}, {"text": "done"}])},
            sandbox=sandbox,
        )
        c.start_checks()
        m = measure(c, [*c.project.run_argv(), "--json"], limit_s=60)
        try:
            notes = [n for n in json.loads(m.stdout)["notes"] if "changed" in n]
        except (ValueError, KeyError):
            notes = []
        logs = list((c.state / "runs").glob("*/agents/fake/tmp/hostile.log"))
        codes = ",".join(logs[0].read_text().split()) if logs else "?"
        said = notes[0][:90] if notes else "no warning"
        return row(c, m, f"run {run_status(c)}; the agent's commands exited {codes}; {said}")

    return case


# 6. Bounds


def _huge_line(communicator: str) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        c.config(
            {"command": str(c.project.standin(HUGE_LINE)), "communicator": communicator, "timeout_s": 600}
        )
        c.start_checks()
        m = measure(c, c.project.run_agent_argv("--transcript", str(c.tmp / "t.jsonl")), limit_s=300)
        return row(c, m, f"transcript {_mb(c.tmp.glob('t.jsonl*'))}")

    return case


def _flood(c: Case) -> Row:
    c.config({"command": str(c.project.standin(FLOOD)), "timeout_s": 600})
    c.start_checks()
    m = measure(c, [*c.project.run_argv(), "--json"], limit_s=300)
    runs = c.state / "runs"
    return row(
        c, m, f"run {run_status(c)}; transcripts on disk {_mb(runs.rglob('*.jsonl'), runs.rglob('*.stderr'))}"
    )


def _mb(*groups: object) -> str:
    total = sum(p.stat().st_size for g in groups for p in g)  # type: ignore[attr-defined]
    return f"{total / 1024 / 1024:.1f} MB"


def _config(kind: str) -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        c.config({"command": str(c.project.standin(RECORD_ONLY))})
        if kind == "FIFO":
            os.mkfifo(c.tmp / "fifo.yaml")
            target = str(c.tmp / "fifo.yaml")
        elif kind == "2 MB":
            (c.tmp / "big.yaml").write_text("# filler\n" * 240_000)
            target = str(c.tmp / "big.yaml")
        else:
            target = kind
        c.start_checks()
        argv = [*c.project.run_argv()[:-2], "--config", target]
        m = measure(c, argv, limit_s=20)
        return row(c, m, error_line(m.stderr, "error"))

    return case


Entry = tuple[str, str, Callable[[Case], Row]]  # name, before (the words), the case

CASES: list[Entry] = [
    ("SIGINT to run", "(Ctrl-C: clean cancel, exit 130)", _signal(signal.SIGINT)),
    ("SIGTERM to run", "exit 143, agent's children left running", _signal(signal.SIGTERM)),
    ("SIGHUP to run", "agent's children left running", _signal(signal.SIGHUP)),
    (
        "second Ctrl-C (CLI deaf to SIGINT/SIGTERM)",
        "agent's children left running",
        _signal(signal.SIGINT, True, True),
    ),
    ("SIGKILL to run", "agent's children left running", _signal(signal.SIGKILL, stubborn=True)),
    (
        "SIGKILL to run and all its helpers, then `runs list`",
        "left running; resume does not clean up",
        _sigkill_everything,
    ),
    (
        "5 s wall limit, setsid grandchild holds stdout",
        "took 45 s (until the grandchild exited)",
        _agent_case(HANG, 60, timeout_s=5),
    ),
    (
        "CLI exits, setsid grandchild holds stdout",
        "step waited for the grandchild",
        _agent_case(EXIT_LEAVING, 60),
    ),
    ("CLI killed by SIGKILL: the message", "`exited with None`", _agent_case(KILLED, 60)),
    (
        "secrets printed (console, transcripts, store)",
        "unmasked everywhere; non-key shapes in state.db",
        _secrets(False),
    ),
    ("secret written into a file by the agent", "committed on the branch", _secrets(True)),
    ("committed .orchestrator.yaml with command + ${VAR}", "obeyed without asking", _untrusted(False)),
    ("the same after `orchestrator trust`", "-", _untrusted(True)),
    (
        "agent's git, hooks off / GIT_CONFIG_* removed, moves main",
        "user's main moved; run approved, no note",
        _hostile(
            [
                f"{NO_HOOKS} {IDENTITY} commit -q --allow-empty -m agent",
                f"{NO_HOOKS} update-ref refs/heads/main HEAD",
                f"{CLEARED} update-ref refs/heads/main HEAD",
                f"{NO_HOOKS} tag -f v1 HEAD",
                f"{NO_HOOKS} {IDENTITY} stash push -q --include-untracked",
            ],
            "off",
        ),
    ),
    (
        "agent's git --git-dir=<user's repo>, no sandbox",
        "moved silently",
        _hostile([f"{NO_HOOKS} --git-dir={{repo}}/.git update-ref refs/heads/feature HEAD"], "off"),
    ),
    (
        "the same, and a write into the checkout, sandbox bwrap",
        "moved silently",
        _hostile(
            [
                f"{NO_HOOKS} --git-dir={{repo}}/.git update-ref refs/heads/feature HEAD",
                "echo agent > {repo}/written-by-agent.txt",
            ],
            "bwrap",
        ),
    ),
    ("400 MB line (pipes)", "820 MB before the 1 MB cut", _huge_line("subprocess")),
    ("400 MB line (pty)", "820 MB before the 1 MB cut", _huge_line("pty")),
    ("1 GiB of output, run transcripts", "954 MB on disk (no cap)", _flood),
    ("--config /dev/zero", "grows without limit", _config("/dev/zero")),
    ("--config FIFO (nobody writes)", "(blocks)", _config("FIFO")),
    ("--config of 2 MB", "(read whole)", _config("2 MB")),
]


def all_cases() -> list[Entry]:
    from benchmarks.fault_cases_more import MORE_CASES

    return [*CASES, *MORE_CASES]


def main(args: list[str]) -> None:
    cases = all_cases()
    if args == ["--list"]:
        print("\n".join(name for name, _, _ in cases))
        return
    print(
        "| case | before (issue 8) | exit | time | peak RSS (tree / largest process) "
        "| left 5 s later | written to the user's repo | secrets found | what it said |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, before, fn in cases:
        if args and not any(s.lower() in name.lower() for s in args):
            continue
        with tempfile.TemporaryDirectory(prefix="fault-case-") as tmp:
            case = new_case(Path(tmp))
            try:
                r = fn(case)
            except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
                r = Row(code="-", time="-", note=f"BENCHMARK ERROR {type(exc).__name__}: {exc}"[:200])
            finally:
                case.left(0)
                case.cleanup()
        cells = [name, before, r.code, r.time, r.rss, r.left, r.written, r.leaks, r.note.replace("|", "/")]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
