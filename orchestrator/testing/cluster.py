"""Helpers for the cluster's tests and benchmarks: a cluster configuration, `orchestrator worker` and
`orchestrator run --cluster` processes (started through orchestrator.proc), and waiting on a run.

    config = write_cluster_config(tmp_path / "config.yaml", temporal=temporal_server.address,
                                  database=postgres_url, extra={"agents": {...}, "workflow": ...})
    env = cluster_env(tmp_path, "w1")                 # a state home of its own: another "machine"
    worker = start_worker(config, env, cwd=repo, name="w1", agents=("fake",))
    ...
    worker.kill()                                     # SIGKILL, as a machine that dies
    worker.stop()                                     # SIGTERM: a graceful shutdown; returns its result
    record = wait_for_run(postgres_url, run_id, {"approved"})

Every process is a child of this one, under a supervisor of its own: whatever happens to it, nothing it
started outlives the test.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import ProcResult, ProcSpec, SubprocessCommunicator, child_env, run_command
from orchestrator.store import RunRecord, Store

APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'  # a review that approves


def make_repo(path: Path) -> Path:
    """A git repository at `path` (made) with one commit on main: app.py's greet()."""
    path.mkdir(parents=True)
    run_command(["git", "init", "-q", "-b", "main"], path, check=True)
    (path / "app.py").write_text("def greet():\n    return 'hi'\n")
    run_command(["git", "add", "-A"], path, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "initial"], path, check=True
    )
    return path


def write_cluster_config(
    path: Path,
    *,
    temporal: str,
    database: str,
    heartbeat_timeout_s: float = 30.0,
    task_queue_prefix: str = "orchestrator",
    keep_finished_runs_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A configuration file for cluster mode (`cluster:` plus whatever `extra` adds); returns `path`."""
    data: dict[str, Any] = dict(extra or {})
    data["cluster"] = {
        "temporal": temporal,
        "database": database,
        "heartbeat_timeout_s": heartbeat_timeout_s,
        "task_queue_prefix": task_queue_prefix,
    }
    if keep_finished_runs_s is not None:
        data["cluster"]["keep_finished_runs_s"] = keep_finished_runs_s
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cluster_env(root: Path, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment with a home and a state home of its own under root/name (one "machine")."""
    home = root / name / "home"
    return child_env(
        os.environ,
        {
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "ORCHESTRATOR_HOME": str(root / name / "state"),
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            **(extra or {}),
        },
    )


class OrchestratorProcess:
    """`python -m orchestrator ARGS` in a thread of ours, its output lines collected as they come."""

    def __init__(
        self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float = 600
    ) -> None:
        self.lines: list[str] = []
        self.stderr: list[str] = []  # the lines of stderr alone (what the console renderer writes)
        self.cancel = threading.Event()
        self.result: ProcResult | None = None
        argv = [sys.executable, "-m", "orchestrator", *args]
        self.argv = argv
        spec = ProcSpec(argv=argv, cwd=cwd, env=dict(env), wall_timeout_s=timeout_s)

        def work() -> None:
            self.result = SubprocessCommunicator().run(spec, self._line, self.cancel)

        self.thread = threading.Thread(target=work, name="orchestrator-process", daemon=True)
        self.thread.start()

    def _line(self, stream: str, line: str) -> None:
        self.lines.append(line)
        if stream == "stderr":
            self.stderr.append(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 60) -> str:
        """The first output line holding `text` (AssertionError with the output when none comes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r}; output so far:\n{self.output}")

    def join(self, timeout_s: float = 600) -> ProcResult:
        self.thread.join(timeout_s)
        if self.result is None:
            raise AssertionError(f"still running after {timeout_s:g} s; output so far:\n{self.output}")
        return self.result

    def cli_pid(self, timeout_s: float = 30) -> int:
        """The orchestrator process's own pid (below its supervisor, a child of ours)."""
        deadline = time.monotonic() + timeout_s
        wanted = "\0".join(self.argv).encode()
        while time.monotonic() < deadline:
            for pid in _children_of_children(os.getpid()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        if fh.read().rstrip(b"\0") == wanted:
                            return pid
                except OSError:
                    continue
            time.sleep(0.05)
        raise AssertionError(f"no process {' '.join(self.argv)}")

    def interrupt(self) -> None:
        """Ctrl-C (SIGINT to the orchestrator process, as a terminal sends it)."""
        os.kill(self.cli_pid(), signal.SIGINT)

    def stop(self, timeout_s: float = 60) -> ProcResult | None:
        """Ends it through proc's kill ladder (SIGINT first) and waits."""
        self.cancel.set()
        self.thread.join(timeout_s)
        return self.result


class WorkerProcess(OrchestratorProcess):
    """An `orchestrator worker`; `pid` is the worker's own (read from its ready line)."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], name: str) -> None:
        super().__init__(args, cwd=cwd, env=env, timeout_s=3600)
        self.name = name
        self.pid: int | None = None

    def wait_ready(self, timeout_s: float = 60) -> WorkerProcess:
        line = self.wait_for(f"worker {self.name} (pid ", timeout_s)
        self.pid = int(line.split("(pid ", 1)[1].split(")", 1)[0])
        return self

    def kill(self) -> None:
        """SIGKILL, as when its machine dies; waits until its supervisor has ended what it left."""
        assert self.pid is not None, "wait_ready() first"
        os.kill(self.pid, signal.SIGKILL)
        self.thread.join(30)

    def stop(self, timeout_s: float = 60) -> ProcResult | None:
        """SIGTERM (a graceful shutdown), then proc's kill ladder if it does not end in time."""
        if self.pid is not None and self.thread.is_alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.thread.join(timeout_s)
        return super().stop(timeout_s)


def _children_of_children(pid: int) -> list[int]:
    """The children of `pid`'s children (a spawn's command, below its supervisor)."""
    found: list[int] = []
    for child in child_pids(pid):
        found += child_pids(child)
    return found


def child_pids(pid: int) -> list[int]:
    """The children of `pid`, every thread's (from /proc)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found  # it has ended meanwhile: no children
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def processes_running(needle: str, *, under: Path | None = None) -> list[int]:
    """Pids of live processes whose command line holds `needle` (e.g. "fake_agent"); with `under`,
    only those working in that folder or below it (a test's own: other tests on the machine run
    workers and agents of their own)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()[0]
            cwd = Path(os.readlink(entry / "cwd")) if under is not None else None
        except OSError:
            continue
        if needle not in cmdline or state in (b"Z", b"X"):
            continue
        if under is None or (cwd is not None and cwd.is_relative_to(under.resolve())):
            found.append(int(entry.name))
    return found


def processes_below(needle: str, ancestor: int | None = None) -> list[int]:
    """`processes_running(needle)` below `ancestor` (default: this process): a test's own, while other
    tests on the machine run theirs."""
    root = os.getpid() if ancestor is None else ancestor

    def parent(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            return 0

    mine = []
    for pid in processes_running(needle):
        up = parent(pid)
        while up > 1 and up != root:
            up = parent(up)
        if up == root:
            mine.append(pid)
    return mine


def wait_for_processes(needle: str, *, running: bool, timeout_s: float = 30) -> list[int]:
    """Our processes matching `needle` once some run (`running`) or once none is left, or as they
    are at the deadline."""
    deadline = time.monotonic() + timeout_s
    while bool(processes_below(needle)) != running and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_below(needle)


def start_worker(
    config: Path,
    env: Mapping[str, str],
    *,
    cwd: Path,
    name: str,
    agents: Iterable[str] = ("fake",),
    concurrency: int = 2,
    wait: bool = True,
    extra_args: Sequence[str] = (),
) -> WorkerProcess:
    """`orchestrator worker --name NAME --agents ... --concurrency N --config CONFIG`, ready unless
    `wait=False` (for workers expected to fail at start); `extra_args` (e.g. --sweep-every 1) follow."""
    args = ["worker", "--name", name, "--concurrency", str(concurrency), "--config", str(config)]
    args += list(extra_args)
    names = list(agents)
    if names:
        args += ["--agents", ",".join(names)]
    worker = WorkerProcess(args, cwd=cwd, env=env, name=name)
    return worker.wait_ready() if wait else worker


def submit_run(
    config: Path, env: Mapping[str, str], task: str, *, cwd: Path, extra: Sequence[str] = ("--json",)
) -> OrchestratorProcess:
    """`orchestrator run --cluster TASK --config CONFIG --json` (`extra` replaces `--json`) in a process
    of its own."""
    return OrchestratorProcess(["run", "--cluster", task, "--config", str(config), *extra], cwd=cwd, env=env)


def wait_for_run(
    database: str, run_id: str, statuses: Iterable[str] | None = None, *, timeout_s: float = 120
) -> RunRecord:
    """The run once its status is one of `statuses` (default: any finished one)."""
    wanted = set(statuses) if statuses is not None else None
    deadline = time.monotonic() + timeout_s
    with Store(database) as store:
        while True:
            record = store.get_run(run_id)
            if (wanted is None and record.finished) or (wanted is not None and record.status in wanted):
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is still {record.status} after {timeout_s:g} s")
            time.sleep(0.1)


def wait_for_step(database: str, run_id: str, statuses: Iterable[str], *, timeout_s: float = 120) -> str:
    """The id of the run's first step whose status is one of `statuses`, once there is one."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout_s
    with Store(database) as store:
        while True:
            for step in store.steps(run_id):
                if step.status in wanted:
                    return step.step_id
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} has no step in {sorted(wanted)} after {timeout_s:g} s")
            time.sleep(0.05)


def newest_run_id(database: str, timeout_s: float = 60) -> str:
    """The id of the newest run in the store, once there is one."""
    deadline = time.monotonic() + timeout_s
    with Store(database) as store:
        while True:
            runs = store.list_runs(limit=1)
            if runs:
                return runs[0].id
            if time.monotonic() > deadline:
                raise AssertionError("no run was created")
            time.sleep(0.05)
