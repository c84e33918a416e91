"""Faults in sizes: a runaway output line, a flood of output, configuration files that never end.

Memory is measured as a user would (the orchestrator's peak resident set size, from the kernel), disk by
the transcript files' sizes; each case also has a time bound and the exit code.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from orchestrator.testing.standins import RSS_WRAPPER, peak_rss_mb

MB = 1024 * 1024

# 400 MB on one line, written in 1 MB pieces (the stand-in itself stays small), then a final result.
HUGE_LINE = """
chunk = b"x" * (1 << 20)
out = sys.stdout.buffer
out.write(b'{"type": "message", "text": "')
for _ in range(400):
    out.write(chunk)
out.write(b'"}\\n')
out.write(b'{"type": "result", "text": "done", "success": true}\\n')
out.flush()
"""


@pytest.mark.parametrize("communicator", ["subprocess", "pty"])
def test_a_400_mb_line_is_cut_while_it_is_read(project, communicator):
    project.configure(project.standin(HUGE_LINE), communicator=communicator, timeout_s=240)
    transcript = project.tmp / "out" / "t.jsonl"
    start = time.monotonic()
    result = project.call(
        [
            sys.executable,
            "-c",
            RSS_WRAPPER,
            *project.run_agent_argv("--json", "--transcript", str(transcript)),
        ],
        timeout_s=300,
    )
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["final_text"] == "done"
    rss = peak_rss_mb(result.stderr)
    print(f"{communicator}: 400 MB line in {took:.1f} s, orchestrator peak RSS {rss:.0f} MB")
    assert rss < 200, rss
    lines = transcript.read_bytes().splitlines()
    assert len(lines[0]) < 2 * MB and lines[0].endswith(b"[line cut by orchestrator]")
    assert b'"type": "result"' in lines[-1]


FLOOD = """
line = b"y" * 999 + b"\\n"
for _ in range(30 * 1024):  # 30 MB on stdout, 30 MB on stderr
    sys.stdout.buffer.write(line)
    sys.stderr.buffer.write(line)
sys.stdout.buffer.write(b'{"type": "result", "text": "done", "success": true}\\n')
"""


def test_transcripts_are_capped_per_step_with_a_marker(project):
    cap = 4 * MB
    project.configure(project.standin(FLOOD), transcript_max_bytes=cap, timeout_s=240)
    transcript = project.tmp / "out" / "t.jsonl"
    result = project.call(project.run_agent_argv("--json", "--transcript", str(transcript)), timeout_s=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # The result still counts: the cap is on what is kept on disk, not on what is parsed.
    assert json.loads(result.stdout)["final_text"] == "done"
    stderr_file = transcript.with_name(transcript.name + ".stderr")
    total = transcript.stat().st_size + stderr_file.stat().st_size
    assert total <= cap + 4096, total
    kept = transcript.read_text() + stderr_file.read_text()
    assert "transcript cut" in kept and "transcript_max_bytes" in kept


def test_the_transcript_cap_defaults_to_50_mb():
    from orchestrator.config import AgentConfig

    assert AgentConfig().transcript_max_bytes == 50 * MB


def _config_cases(tmp):
    big = tmp / "big.yaml"
    big.write_text("# padding\n" * 110_000 + "fallback_order: [fake]\n")
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    folder = tmp / "folder.yaml"
    folder.mkdir()
    return {"dev-zero": "/dev/zero", "over-1mb": str(big), "fifo": str(fifo), "directory": str(folder)}


@pytest.mark.parametrize("case", ["dev-zero", "over-1mb", "fifo", "directory"])
@pytest.mark.parametrize("how", ["--config", "ORCHESTRATOR_CONFIG", "--workflow"])
def test_a_config_or_workflow_file_that_is_too_big_or_not_a_file_is_refused(project, case, how):
    path = _config_cases(project.tmp)[case]
    project.configure(project.standin("print('never run')"))
    env = dict(project.env)
    if how == "--config":
        argv = [*project.run_argv()[:-2], "--config", path]
    elif how == "ORCHESTRATOR_CONFIG":
        argv = [*project.run_argv()[:-2]]
        env["ORCHESTRATOR_CONFIG"] = path
    else:
        argv = [a if a != str(project.workflow) else path for a in project.run_argv()]
    before = project.snapshot()
    start = time.monotonic()
    from orchestrator.proc import run_command

    result = run_command(argv, project.repo, env=env, timeout_s=30)
    took = time.monotonic() - start
    assert not result.timed_out, f"still reading {path} after 30 s"
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert path in result.stderr
    assert any(w in result.stderr for w in ("not a regular file", "larger than", "is a directory")), (
        result.stderr
    )
    assert took < 10
    assert project.snapshot() == before
    assert not (project.tmp / "pids").exists()
