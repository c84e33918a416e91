"""One contract, both communicators (as pre-commit tests cmd_output_b and cmd_output_p alike)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import AgentNotInstalled
from orchestrator.proc import (
    MARKER_PARENT,
    ProcSpec,
    PtyCommunicator,
    SubprocessCommunicator,
    child_env,
    leftover_processes,
    processes_with_marker,
    run_command,
)

COMMUNICATORS = [SubprocessCommunicator(), PtyCommunicator()]
PY = sys.executable


def spec(code: str, tmp_path: Path, **kw) -> ProcSpec:
    return ProcSpec(argv=[PY, "-c", code], cwd=tmp_path, env=child_env(os.environ), **kw)


def collect(communicator, s: ProcSpec, cancel=None):
    lines: list[tuple[str, str, float]] = []
    result = communicator.run(s, lambda stream, line: lines.append((stream, line, time.monotonic())), cancel)
    return result, lines


@pytest.fixture(params=COMMUNICATORS, ids=lambda c: c.name)
def comm(request):
    return request.param


def test_streams_lines_as_they_arrive(comm, tmp_path):
    code = "import time,sys\nfor i in range(3):\n print(f'line{i}', flush=True); time.sleep(0.3)"
    result, lines = collect(comm, spec(code, tmp_path))
    assert [line for _, line, _ in lines] == ["line0", "line1", "line2"]
    # The first line arrived long before the last (0.6 s of sleeps between them, only longer on a
    # loaded machine): streaming, not buffering, which would deliver all three at once.
    assert lines[-1][2] - lines[0][2] > 0.45
    assert result.exit_code == 0 and result.first_output_s is not None
    assert result.first_output_s < result.duration_s - 0.45


def test_on_started_is_called_once_when_the_process_exists_before_its_output(comm, tmp_path):
    seen: list[tuple[str, float]] = []
    s = spec(
        "print('hello', flush=True)", tmp_path, on_started=lambda: seen.append(("started", time.monotonic()))
    )
    result = comm.run(s, lambda stream, line: seen.append((line, time.monotonic())), None)
    assert result.exit_code == 0
    assert [what for what, _ in seen] == ["started", "hello"]


def test_exit_code_and_tail(comm, tmp_path):
    result, _ = collect(comm, spec("import sys; print('bye'); sys.exit(7)", tmp_path))
    assert result.exit_code == 7
    assert "bye" in result.tail


def test_wall_clock_limit_kills_process_group_with_grandchildren(comm, tmp_path):
    marker = tmp_path / "grandchild.pid"
    code = (
        "import subprocess,sys,time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "while True:\n print('tick', flush=True); time.sleep(0.2)"
    )
    start = time.monotonic()
    result, _ = collect(comm, spec(code, tmp_path, wall_timeout_s=1.0))
    assert result.timed_out and not result.idle
    assert time.monotonic() - start < 6
    grandchild = int(marker.read_text())
    assert not Path(f"/proc/{grandchild}").exists() or _is_zombie(grandchild)


def test_idle_limit(comm, tmp_path):
    start = time.monotonic()
    result, lines = collect(
        comm, spec("print('hi', flush=True); import time; time.sleep(60)", tmp_path, idle_timeout_s=0.8)
    )
    assert result.idle and not result.timed_out
    # What it said before the limit; what it says while being stopped (a traceback here) comes after.
    assert [line for _, line, _ in lines][0] == "hi"
    assert time.monotonic() - start < 5


def test_kill_ladder_reaches_sigkill_for_a_child_ignoring_signals(comm, tmp_path):
    code = (
        "import signal,time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn', flush=True); time.sleep(60)"
    )
    start = time.monotonic()
    result, _ = collect(comm, spec(code, tmp_path, wall_timeout_s=0.5))
    assert result.timed_out
    assert result.signal == signal.SIGKILL or result.exit_code is None
    assert time.monotonic() - start < 8


def test_cancel(comm, tmp_path):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result, _ = collect(comm, spec("import time; time.sleep(60)", tmp_path), cancel)
    assert result.cancelled


def test_missing_executable_is_typed_with_hint(comm, tmp_path):
    s = ProcSpec(argv=["no-such-cli-xyz"], cwd=tmp_path, env=child_env(os.environ), install_hint="npm i it")
    with pytest.raises(AgentNotInstalled) as info:
        comm.run(s, lambda *_: None)
    assert info.value.hint == "npm i it"
    assert info.value.exit_code == 1


def test_environment_is_explicit(comm, tmp_path):
    parent = {
        "PATH": os.environ["PATH"],
        "HOME": "/tmp",
        "ANTHROPIC_API_KEY": "sk-should-not-leak",
        "GITHUB_TOKEN": "ghp_nope",
    }
    env = child_env(parent, {"MY_AGENT_VAR": "yes"}, tmpdir=tmp_path / "tmp")
    code = "import os,json; print(json.dumps(dict(os.environ)))"
    _, lines = collect(comm, ProcSpec(argv=[PY, "-c", code], cwd=tmp_path, env=env))
    import json

    seen = json.loads("".join(line for _, line, _ in lines))
    assert "ANTHROPIC_API_KEY" not in seen and "GITHUB_TOKEN" not in seen
    assert seen["MY_AGENT_VAR"] == "yes"
    assert seen["TMPDIR"] == str(tmp_path / "tmp") and (tmp_path / "tmp").is_dir()
    assert seen[MARKER_PARENT] == str(os.getpid())


def test_stdin_is_dev_null_unless_fed(tmp_path):
    # Pipes: with no prompt on stdin, a read returns EOF at once instead of hanging (codex exec trap).
    comm = SubprocessCommunicator()
    result, lines = collect(
        comm, spec("import sys; print(repr(sys.stdin.read()))", tmp_path, wall_timeout_s=5)
    )
    assert [line for _, line, _ in lines] == ["''"] and not result.timed_out
    result, lines = collect(
        comm,
        spec("import sys; print(sys.stdin.read().upper())", tmp_path, stdin="prompt text", wall_timeout_s=5),
    )
    assert [line for _, line, _ in lines] == ["PROMPT TEXT"]


def test_pty_is_a_terminal_and_pipes_are_not(tmp_path):
    code = "import sys; print(sys.stdout.isatty())"
    _, pty_lines = collect(PtyCommunicator(), spec(code, tmp_path))
    _, pipe_lines = collect(SubprocessCommunicator(), spec(code, tmp_path))
    assert [line for _, line, _ in pty_lines] == ["True"]
    assert [line for _, line, _ in pipe_lines] == ["False"]


def test_pty_detects_a_dialog_it_cannot_answer(tmp_path):
    code = "import sys,time; sys.stdout.write('Do you trust the files in this folder? (y/n) '); sys.stdout.flush(); time.sleep(60)"
    start = time.monotonic()
    result, _ = collect(
        PtyCommunicator(), spec(code, tmp_path, fail_patterns=[(r"trust the files", "folder trust dialog")])
    )
    assert result.blocked_by == "folder trust dialog"
    assert time.monotonic() - start < 5


def test_streams_are_separate_on_pipes(tmp_path):
    _, lines = collect(
        SubprocessCommunicator(), spec("import sys; print('out'); print('err', file=sys.stderr)", tmp_path)
    )
    assert ("stdout", "out") in [(s, line) for s, line, _ in lines]
    assert ("stderr", "err") in [(s, line) for s, line, _ in lines]


def test_tail_is_bounded(tmp_path):
    code = "for i in range(5000): print('x' * 100)"
    result, lines = collect(SubprocessCommunicator(), spec(code, tmp_path, tail_bytes=2000))
    assert len(lines) == 5000
    assert len(result.tail) <= 2000


def test_leftover_exits_with_parent_group_after_normal_exit(tmp_path):
    # The leader exits at once, leaving a background child in its group: we end it.
    code = "import subprocess,sys; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); print('leader done')"
    collect(SubprocessCommunicator(), spec(code, tmp_path))
    assert leftover_processes() == []


def test_a_child_that_leaves_the_group_is_still_ended(tmp_path):
    code = (
        "import subprocess,sys\n"
        "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)'], start_new_session=True)\n"
        "print('leader done')"
    )
    collect(SubprocessCommunicator(), spec(code, tmp_path))
    assert leftover_processes() == []


def test_run_command(tmp_path):
    ok = run_command([PY, "-c", "print('hi')"], tmp_path)
    assert ok.ok and ok.stdout.strip() == "hi"
    slow = run_command([PY, "-c", "import time; time.sleep(30)"], tmp_path, timeout_s=0.5)
    assert slow.timed_out and not slow.ok
    assert processes_with_marker(MARKER_PARENT, str(os.getpid())) == []


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


# --- the whole tree ends, whatever it does and however we end ---------------------------------------

# Writes its own pid, then starts a grandchild with no environment in a session of its own (holding
# stdout) and a double-forked daemon; each records its pid in PIDS.
ESCAPING = r"""
import os, subprocess, sys, time
PIDS = sys.argv[1]
def record():
    with open(PIDS, "a") as fh:
        fh.write(f"{os.getpid()}\n")
if len(sys.argv) > 2 and sys.argv[2] == "sleep":
    record(); time.sleep(120)
elif len(sys.argv) > 2 and sys.argv[2] == "daemon":
    if os.fork() == 0:
        os.setsid(); record(); time.sleep(120)
    os._exit(0)
else:
    record()
    subprocess.Popen(["/usr/bin/env", "-i", "/usr/bin/setsid", sys.executable, __file__, PIDS, "sleep"])
    subprocess.Popen(["/usr/bin/env", "-i", sys.executable, __file__, PIDS, "daemon"])
    while len(open(PIDS).read().split()) < 3:
        time.sleep(0.05)
    print("spawned", flush=True)
    if os.environ.get("HANG"):
        time.sleep(120)
"""


def _escaping(tmp_path: Path, hang: bool = False) -> tuple[list[str], Path, dict[str, str]]:
    script = tmp_path / "escaping.py"
    script.write_text(ESCAPING)
    pids = tmp_path / "pids"
    env = child_env(os.environ, {"HANG": "1"} if hang else {})
    return [PY, str(script), str(pids)], pids, env


def _alive(pids_file: Path, within_s: float = 5.0) -> list[int]:
    pids = [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []
    deadline = time.monotonic() + within_s
    alive = [p for p in pids if not _is_zombie(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not _is_zombie(p)]
    return alive


def test_escaped_grandchildren_end_with_the_step(comm, tmp_path):
    argv, pids, env = _escaping(tmp_path)
    start = time.monotonic()
    result, lines = collect(comm, ProcSpec(argv=argv, cwd=tmp_path, env=env, wall_timeout_s=60))
    assert "spawned" in [line for _, line, _ in lines]
    assert result.exit_code == 0 and not result.timed_out
    # The grandchild holds stdout open, but the step ends when its CLI does.
    assert time.monotonic() - start < 10
    assert len(pids.read_text().split()) == 3
    assert _alive(pids) == []


def test_wall_clock_limit_holds_while_a_grandchild_holds_the_pipes(comm, tmp_path):
    argv, pids, env = _escaping(tmp_path, hang=True)
    start = time.monotonic()
    result, _ = collect(comm, ProcSpec(argv=argv, cwd=tmp_path, env=env, wall_timeout_s=2))
    assert result.timed_out
    assert time.monotonic() - start < 2 + 5
    assert _alive(pids) == []


# Runs one step through a communicator in a process of its own: the "orchestrator" the test kills.
ORCHESTRATOR = r"""
import os, sys
from pathlib import Path
from orchestrator.proc import ProcSpec, PtyCommunicator, SubprocessCommunicator, child_env, run_command
kind, argv = sys.argv[1], sys.argv[2:]
if kind == "run_command":
    run_command(argv, Path.cwd(), env=child_env(os.environ), timeout_s=120)
else:
    comm = PtyCommunicator() if kind == "pty" else SubprocessCommunicator()
    comm.run(ProcSpec(argv=argv, cwd=Path.cwd(), env=child_env(os.environ, {"HANG": "1"})), lambda *_: None)
"""


@pytest.mark.parametrize("kind", ["subprocess", "pty", "run_command"])
def test_everything_ends_when_the_orchestrator_is_sigkilled(kind, tmp_path):
    import subprocess

    argv, pids, _ = _escaping(tmp_path, hang=True)
    orchestrator = subprocess.Popen(  # a stand-in orchestrator process, killed like a crash would
        [PY, "-c", ORCHESTRATOR, kind, *argv],
        cwd=tmp_path,
        env=child_env(os.environ, {"HANG": "1", MARKER_PARENT: str(os.getpid())}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while (not pids.exists() or len(pids.read_text().split()) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    orchestrator.kill()
    orchestrator.wait()
    if kind == "run_command":
        # Only the command itself is ended by the guardian (its group); it did not leave its group here,
        # but the grandchildren did: a plain command is not contained (contain=True is).
        first = int(pids.read_text().split()[0])
        assert _alive_pid(first) is False
        for pid in pids.read_text().split()[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    else:
        assert _alive(pids) == []


def _alive_pid(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not _is_zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _is_zombie(pid)


def test_run_command_contain_ends_what_a_command_leaves_behind(tmp_path):
    argv, pids, env = _escaping(tmp_path)
    result = run_command(argv, tmp_path, env=env, timeout_s=60, contain=True)
    assert result.ok and "spawned" in result.stdout
    assert _alive(pids) == []
    assert run_command(argv, tmp_path, env=env, timeout_s=60, contain=True).returncode == 0


def test_a_signal_that_ends_the_cli_is_reported(comm, tmp_path):
    result, _ = collect(comm, spec("import os; os.kill(os.getpid(), 9)", tmp_path))
    assert result.exit_code is None and result.signal == signal.SIGKILL


def test_a_runaway_line_is_cut_while_it_is_read(comm, tmp_path):
    import resource

    code = (
        "import sys\nc = b'x' * (1 << 20)\nfor _ in range(200): sys.stdout.buffer.write(c)\nprint('\\nend')"
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result, lines = collect(comm, spec(code, tmp_path, wall_timeout_s=120))
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.exit_code == 0
    first = lines[0][1]
    assert len(first) <= 1_000_000 + 40 and first.endswith("[line cut by orchestrator]")
    assert lines[-1][1] == "end"
    assert grew_mb < 50, grew_mb  # a 200 MB line; reading it whole would take 200 MB at least


def test_a_prompt_the_cli_never_reads_does_not_hang_the_step(tmp_path):
    # More than a pipe holds (64 KiB), to a CLI that never reads stdin: the limit still holds.
    s = spec("import time; time.sleep(60)", tmp_path, stdin="x" * 1_000_000, wall_timeout_s=1)
    start = time.monotonic()
    result, _ = collect(SubprocessCommunicator(), s)
    assert result.timed_out and time.monotonic() - start < 1 + 5


def test_a_command_that_cannot_be_executed_is_not_installed(comm, tmp_path):
    script = tmp_path / "bad"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(AgentNotInstalled, match="could not be started"):
        comm.run(ProcSpec(argv=[str(script)], cwd=tmp_path, env=child_env(os.environ)), lambda *_: None)


def test_the_pid_is_the_clis_own(comm, tmp_path):
    result, lines = collect(
        comm, spec("import os, time; print(os.getpid(), flush=True); time.sleep(0.5)", tmp_path)
    )
    assert result.pid == int(lines[0][1])


def test_run_command_ends_a_daemon_that_left_its_group_and_kept_the_marker(tmp_path):
    # A daemon (fork, setsid) with our environment: outside the command's group, found by its
    # marker. It is born after the command starts, so the scan of the processes born meanwhile
    # (kill_marked's `older`) must still see it.
    script = tmp_path / "daemon.py"
    pids = tmp_path / "pids"
    script.write_text(
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    null = os.open(os.devnull, os.O_RDWR)\n"
        "    for fd in (0, 1, 2):\n"
        "        os.dup2(null, fd)\n"
        f"    open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "    time.sleep(120)\n"
        "    os._exit(0)\n"
        f"while not os.path.exists({str(pids)!r}):\n"
        "    time.sleep(0.01)\n"
    )
    result = run_command([PY, str(script)], tmp_path, timeout_s=60)
    assert result.ok, result.stderr
    assert pids.read_text().split(), "the daemon never started"
    assert _alive(pids) == []
