"""One contract, both communicators (as pre-commit tests cmd_output_b and cmd_output_p alike)."""

from __future__ import annotations

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
    start = time.monotonic()
    result, lines = collect(comm, spec(code, tmp_path))
    assert [line for _, line, _ in lines] == ["line0", "line1", "line2"]
    # The first line arrived long before the process ended: streaming, not buffering.
    assert lines[0][2] - start < 0.5 < lines[-1][2] - start
    assert result.exit_code == 0 and result.first_output_s is not None and result.first_output_s < 0.5


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
