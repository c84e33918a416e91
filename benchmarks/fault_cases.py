"""The process and size fault cases of issue 8, measured as a user sees them: one row per case with the
time, the exit code, the orchestrator's peak RSS and what was left running 5 s after it ended.

    python benchmarks/fault_cases.py            # every case
    python benchmarks/fault_cases.py sigterm    # the cases whose name contains "sigterm"

Uses the stand-ins of orchestrator.testing.standins and the `python -m orchestrator` of this interpreter,
so the same file measures any checkout (run it with that checkout's virtualenv).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.testing.standins import FaultProject, end_recorded, fault_project, is_alive

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
line = b"y" * 999 + b"\\n"
for _ in range(300 * 1024):  # 300 MB
    sys.stdout.buffer.write(line)
sys.stdout.buffer.write(b'{"type": "result", "text": "done", "success": true}\\n')
"""
KILLED = "import os\nrecord()\nos.kill(os.getpid(), 9)\n"

# Runs argv with a time limit, then prints the peak RSS (KiB) of its largest process.
WRAPPER = (
    "import resource,subprocess,sys\n"
    "p = subprocess.Popen(sys.argv[2:], start_new_session=True)\n"
    "try:\n    rc = p.wait(timeout=float(sys.argv[1]))\n"
    "except subprocess.TimeoutExpired:\n    import os, signal\n    os.killpg(p.pid, signal.SIGKILL); p.wait(); rc = 'timeout'\n"
    "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc, file=sys.stderr)\n"
)

Row = tuple[str, str, str, str, str]


def _popen(project: FaultProject, argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=project.repo,
        env=project.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _left(project: FaultProject) -> str:
    deadline = time.monotonic() + 5
    alive = [p for p in project.recorded_pids() if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if is_alive(p)]
    return f"{len(alive)} of {len(project.recorded_pids())}"


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    try:
        code: str = str(proc.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        code = f"still running after {timeout:g} s"
    return code, time.monotonic() - start


def _signal_case(sig: int, stubborn: bool = False, second: bool = False) -> Callable[[FaultProject], Row]:
    def case(project: FaultProject) -> Row:
        project.configure(project.standin(STUBBORN if stubborn else HANG))
        proc = _popen(project, project.run_argv())
        project.wait_for_pids(3)
        os.kill(proc.pid, sig)
        if second:
            time.sleep(0.3)
            os.kill(proc.pid, sig)
        code, took = _wait(proc, 30)
        left = _left(project)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return "", code, f"{took:.1f} s after the signal", "", left

    return case


def _sigkill_all(project: FaultProject) -> Row:
    project.configure(project.standin(STUBBORN))
    proc = _popen(project, project.run_argv())
    recorded = project.wait_for_pids(3)
    time.sleep(1.5)
    tree = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True)
    ours = [proc.pid, *(int(p) for p in tree.stdout.split())]
    ours = [p for p in ours if p not in recorded]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in ours:
            os.kill(pid, sig)
    proc.wait()
    time.sleep(1)
    before = sum(is_alive(p) for p in recorded)
    start = time.monotonic()
    listed = project.call([sys.executable, "-m", "orchestrator", "runs", "list", "--all"])
    took = time.monotonic() - start
    said = "says so" if "left by run" in listed.stderr else "says nothing"
    return (
        "",
        str(listed.returncode),
        f"`runs list` {took:.1f} s, {said}",
        "",
        f"{before} alive -> {_left(project)}",
    )


def _wall_limit(project: FaultProject) -> Row:
    project.configure(project.standin(HANG), timeout_s=5)
    proc = _popen(project, project.run_agent_argv("--json"))
    code, took = _wait(proc, 90)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return "", code, f"{took:.1f} s (limit 5 s)", "", _left(project)


def _exit_leaving(project: FaultProject) -> Row:
    project.configure(project.standin(EXIT_LEAVING))
    proc = _popen(project, project.run_agent_argv("--json"))
    code, took = _wait(proc, 60)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return "", code, f"{took:.1f} s", "", _left(project)


def _measured(project: FaultProject, argv: list[str], limit_s: float) -> tuple[str, float, str]:
    start = time.monotonic()
    done = project.call([sys.executable, "-c", WRAPPER, str(limit_s), *argv], timeout_s=limit_s + 30)
    took = time.monotonic() - start
    line = next((x for x in done.stderr.splitlines() if x.startswith("maxrss_kb ")), "maxrss_kb 0 ?")
    _, kb, code = line.split()
    return code, took, f"{int(kb) / 1024:.0f} MB"


def _huge_line(communicator: str) -> Callable[[FaultProject], Row]:
    def case(project: FaultProject) -> Row:
        project.configure(project.standin(HUGE_LINE), communicator=communicator, timeout_s=600)
        t = project.tmp / "t.jsonl"
        code, took, rss = _measured(project, project.run_agent_argv("--transcript", str(t)), 300)
        return "", code, f"{took:.1f} s", rss, ""

    return case


def _flood(project: FaultProject) -> Row:
    project.configure(project.standin(FLOOD), timeout_s=600)
    t = project.tmp / "t.jsonl"
    code, took, rss = _measured(project, project.run_agent_argv("--transcript", str(t)), 300)
    size = sum(f.stat().st_size for f in t.parent.glob("t.jsonl*")) / 1024 / 1024
    return "", code, f"{took:.1f} s, {size:.0f} MB on disk", rss, ""


def _config(path: str) -> Callable[[FaultProject], Row]:
    def case(project: FaultProject) -> Row:
        project.configure(project.standin("print('never run')"))
        if path == "FIFO":
            os.mkfifo(project.tmp / "fifo.yaml")
            target = str(project.tmp / "fifo.yaml")
        else:
            target = path
        argv = [*project.run_argv()[:-2], "--config", target]
        code, took, rss = _measured(project, argv, 20)
        return "", code, f"{took:.1f} s", rss, ""

    return case


def _killed(project: FaultProject) -> Row:
    project.configure(project.standin(KILLED))
    done = project.call(project.run_agent_argv("--json"), timeout_s=60)
    import json

    try:
        message = json.loads(done.stdout)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = done.stderr[-100:]
    return "", str(done.returncode), message, "", ""


CASES: dict[str, Callable[[FaultProject], Row]] = {
    "SIGINT to run": _signal_case(signal.SIGINT),
    "SIGTERM to run": _signal_case(signal.SIGTERM),
    "SIGHUP to run": _signal_case(signal.SIGHUP),
    "second Ctrl-C (CLI deaf to SIGINT/SIGTERM)": _signal_case(signal.SIGINT, stubborn=True, second=True),
    "SIGKILL to run": _signal_case(signal.SIGKILL, stubborn=True),
    "SIGKILL to run and all its helpers, then runs list": _sigkill_all,
    "5 s wall limit, grandchild holds stdout": _wall_limit,
    "CLI exits, grandchild holds stdout": _exit_leaving,
    "400 MB line (pipes)": _huge_line("subprocess"),
    "400 MB line (pty)": _huge_line("pty"),
    "300 MB of output, transcript": _flood,
    "--config /dev/zero": _config("/dev/zero"),
    "--config FIFO": _config("FIFO"),
    "CLI killed by SIGKILL: the message": _killed,
}


def main(selected: list[str]) -> None:
    print("| case | exit code | time | peak RSS | left alive 5 s later |")
    print("|---|---|---|---|---|")
    for name, case in CASES.items():
        if selected and not any(s.lower() in name.lower() for s in selected):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            project = fault_project(Path(tmp))
            try:
                _, code, took, rss, left = case(project)
            finally:
                end_recorded(project)
            print(f"| {name} | {code} | {took} | {rss} | {left} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
