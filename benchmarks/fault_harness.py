"""What benchmarks/fault_cases.py measures around one `python -m orchestrator ...` as a user runs it.

`measure()` starts the command in a session of its own and, until it ends, samples every 50 ms the summed
resident size of it and all its descendants (the orchestrator is a subreaper, so an escaped grandchild
stays among them until it ends); the peak of one process comes from `wait4`. Afterwards it looks for
what is left: any process other than this one whose command line or working folder lies in the case's
temporary folder, or whose pid a stand-in recorded, still alive 5 s after the command ended. What the
command wrote to the user's checkout is a `snapshot_checkout` difference; a leak is a planted secret
found in the console output, any file under the case's folder (the configs that hold it and the run's
`withheld/` folder aside, where a withheld change is kept on purpose) or any ref's history.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import run_command
from orchestrator.testing.checkout import CheckoutSnapshot, snapshot_checkout
from orchestrator.testing.fault_project import PLANTED_SECRET
from orchestrator.testing.standins import FaultProject, fault_project, is_alive

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
# Shaped like an Anthropic key but given to nobody: the masking of key shapes must catch it.
KEY_SHAPED = "sk-ant-api03-" + "Zq7" * 20


@dataclass
class Measured:
    code: str
    seconds: float
    tree_mb: float
    largest_mb: float
    stdout: str
    stderr: str
    since_signal: float | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Case:
    """A project for one case: the stand-in project of orchestrator.testing.standins, plus what this
    harness checks afterwards."""

    project: FaultProject
    secrets: list[str] = field(default_factory=lambda: [PLANTED_SECRET, KEY_SHAPED])
    outputs: list[str] = field(default_factory=list)
    given: list[Path] = field(default_factory=list)  # files the user wrote that hold a secret
    before: CheckoutSnapshot | None = None
    started_pids: set[int] = field(default_factory=set)
    mounts: list[Path] = field(default_factory=list)

    @property
    def tmp(self) -> Path:
        return self.project.tmp

    @property
    def repo(self) -> Path:
        return self.project.repo

    @property
    def state(self) -> Path:
        return Path(self.project.env["ORCHESTRATOR_HOME"])

    @property
    def home(self) -> Path:
        return Path(self.project.env["HOME"])

    def config(self, agent: dict[str, Any] | None = None, path: Path | None = None, **top: Any) -> Path:
        """The fake agent (stand-in or scenario) with the planted secret in its env; sandbox off unless
        `top` says otherwise (stand-ins record pids this harness looks up in /proc)."""
        agent = dict(agent or {})
        agent["env"] = {"FAKE_SERVICE_TOKEN": PLANTED_SECRET, **agent.get("env", {})}
        data = {"agents": {"fake": agent}, "fallback_order": ["fake"], "sandbox": "off", **top}
        target = path or self.project.config
        target.write_text(yaml.safe_dump(data))
        self.given.append(target)
        return target

    def scenario(self, turns: Sequence[dict[str, Any]], name: str = "scenario.yaml") -> dict[str, str]:
        path = self.tmp / name
        path.write_text(yaml.safe_dump({"turns": list(turns)}))
        return {"ORCHESTRATOR_FAKE_SCENARIO": str(path)}

    def tmpfs(self, size: str, name: str = "disk") -> Path:
        """A small tmpfs of its own (needs root), unmounted by cleanup()."""
        where = self.tmp / name
        where.mkdir()
        run_command(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            self.tmp,
            check=True,
        )
        self.mounts.append(where)
        return where

    def remount_read_only(self, where: Path) -> None:
        run_command(["mount", "-o", "remount,ro", str(where)], self.tmp, check=True)

    def cleanup(self) -> None:
        for where in reversed(self.mounts):
            if not run_command(["umount", str(where)], self.tmp).ok:
                run_command(["umount", "-l", str(where)], self.tmp)
        self.mounts.clear()

    def start_checks(self) -> None:
        self.before = snapshot_checkout(self.repo)

    def written(self) -> str:
        assert self.before is not None
        found = self.before.differences(snapshot_checkout(self.repo))
        return "nothing" if not found else f"{len(found)}: {found[0][:60]}"

    def leaks(self) -> str:
        places: list[str] = []
        for label, text in (("console", "".join(self.outputs)), ("refs", self._history())):
            places += [label for s in self.secrets if s in text]
        given = {p.resolve() for p in self.given}
        for path in _files(self.tmp):
            if path.resolve() in given or "withheld" in path.parts or self.repo / ".git" in path.parents:
                continue
            with contextlib.suppress(OSError):
                raw = path.read_bytes()
                places += [str(path.relative_to(self.tmp)) for s in self.secrets if s.encode() in raw]
        return "none" if not places else f"{len(places)}: {', '.join(sorted(set(places)))[:80]}"

    def _history(self) -> str:
        log = run_command(["git", "log", "--all", "-p", "--format=%H %B"], self.repo, env=self.project.env)
        return log.stdout

    def left(self, wait_s: float = 5.0) -> str:
        """Processes of this case still alive `wait_s` after the command ended; ends them afterwards."""
        deadline = time.monotonic() + wait_s
        alive = self._ours()
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = self._ours()
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return str(len(alive))

    def _ours(self) -> list[int]:
        root = str(self.tmp)
        found = {p for p in self.project.recorded_pids() if is_alive(p)}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
                if (root in cmdline or cwd.startswith(root)) and is_alive(int(entry.name)):
                    found.add(int(entry.name))
        return sorted(found)


def new_case(tmp: Path) -> Case:
    return Case(fault_project(tmp))


# Runs argv as its child and records the child's pid, then its exit code and peak RSS. A process of its
# own, small, because a child's ru_maxrss starts from its parent's size at the fork: forked from this
# benchmark (which grows as it reads transcripts), the figure would be this benchmark's size.
WRAPPER = """
import os, resource, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
with open(sys.argv[1] + ".pid.tmp", "w") as fh:
    fh.write(str(pid))
os.rename(sys.argv[1] + ".pid.tmp", sys.argv[1] + ".pid")
_, status = os.waitpid(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{os.waitstatus_to_exitcode(status)} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def measure(
    case: Case,
    argv: Sequence[str],
    *,
    limit_s: float,
    stdin: str | None = None,
    during: Callable[[int], float | None] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Measured:
    """Run argv (the user's environment, in the repository unless `cwd`), at most limit_s seconds;
    `during(pid)` is called once it runs (it may signal it) and returns when it signalled, if it did."""
    with tempfile.TemporaryDirectory(prefix="measure-") as raw:
        result_file = Path(raw) / "result"
        out_path, err_path = Path(raw) / "out", Path(raw) / "err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", WRAPPER, str(result_file), *argv],
                cwd=cwd or case.repo,
                env={**case.project.env, **(env or {})},
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        pid_file = result_file.with_name("result.pid")
        while not pid_file.exists() and proc.poll() is None:
            time.sleep(0.005)
        pid = int(pid_file.read_text()) if pid_file.exists() else proc.pid
        peak = _TreeSampler(pid)
        peak.start()
        if stdin is not None:
            assert proc.stdin is not None
            feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True)
            feeder.start()
        signalled = during(pid) if during is not None else None
        try:
            proc.wait(timeout=max(0.0, started + limit_s - time.monotonic()))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        ended = time.monotonic()
        seconds = ended - started
        peak.stop()
        code, largest_kb = _outcome(result_file, timed_out)
        result = Measured(
            code=code,
            seconds=seconds,
            tree_mb=peak.peak_kb / 1024,
            largest_mb=largest_kb / 1024,
            stdout=out_path.read_bytes().decode(errors="replace"),
            stderr=err_path.read_bytes().decode(errors="replace"),
            since_signal=None if signalled is None else ended - signalled,
        )
    case.outputs.append(result.output)
    return result


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(OSError):
        pipe.write(data)
        pipe.close()


def _outcome(result_file: Path, timed_out: bool) -> tuple[str, int]:
    """(exit code, or the signal's name, or "timeout"; peak RSS in KiB of its largest process)."""
    if timed_out or not result_file.exists():
        return "timeout", 0
    code, kb = (int(x) for x in result_file.read_text().split())
    return (signal.Signals(-code).name if code < 0 else str(code)), kb


class _TreeSampler(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kb = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.root))
            self._halt.wait(0.05)


def tree_rss_kb(root: int) -> int:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
                parents[int(entry)] = int(stat[1])
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    return total


def _files(folder: Path) -> Iterable[Path]:
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


@dataclass
class Row:
    code: str
    time: str
    rss: str = ""
    left: str = ""
    written: str = ""
    leaks: str = ""
    note: str = ""


def row(case: Case, m: Measured, note: str = "", took: str | None = None, left: bool = True) -> Row:
    return Row(
        code=m.code,
        time=took or f"{m.seconds:.1f} s",
        rss=f"{m.tree_mb:.0f} / {m.largest_mb:.0f} MB",
        left=case.left() if left else "",
        written=case.written(),
        leaks=case.leaks(),
        note=note,
    )


def run_status(case: Case) -> str:
    listed = case.project.call([sys.executable, "-m", "orchestrator", "runs", "list", "--json", "--all"])
    try:
        return ",".join(str(r["status"]) for r in json.loads(listed.stdout)) or "no run"
    except ValueError:
        return f"runs list: exit {listed.returncode}"


def error_line(text: str, *words: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    chosen = [line for line in lines if all(w in line for w in words)] or lines or ["(no output)"]
    return chosen[0][:110]
