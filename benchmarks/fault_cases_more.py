"""The store, readiness and input cases of benchmarks/fault_cases.py (issue 8, cases 7 to 9)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from benchmarks.fault_harness import Case, Row, error_line, measure, row, run_status
from orchestrator.adapters.base import cli_cache_bin_dir
from orchestrator.proc import run_command

ORCH = [sys.executable, "-m", "orchestrator"]
APPROVE = '```json\n{"verdict": "approve", "findings": []}\n```'


def _run(c: Case, *extra: str, limit_s: float = 60, **kw: Any) -> Any:
    return measure(c, [*c.project.run_argv(), *extra], limit_s=limit_s, **kw)


# 7. Store faults


def _damaged(c: Case) -> Row:
    c.config()
    c.state.mkdir()
    (c.state / "state.db").write_bytes(b"this is not an SQLite database, it was damaged " * 100)
    c.start_checks()
    m = _run(c)
    repaired = c.project.call([*ORCH, "doctor", "--repair"])
    again = c.project.call([*ORCH, "runs", "list", "--all"])
    return row(
        c,
        m,
        f"{error_line(m.stderr, 'state.db')}; doctor --repair: exit {repaired.returncode}, then `runs list` {again.returncode}",
    )


def _folder_in_place(c: Case) -> Row:
    c.config()
    (c.state / "state.db").mkdir(parents=True)
    c.start_checks()
    m = _run(c)
    return row(c, m, error_line(m.stderr, "state.db"))


def _read_only(c: Case) -> Row:
    c.config()
    disk = c.tmpfs("8m")
    c.project.env["ORCHESTRATOR_HOME"] = str(disk / "state")
    c.project.call([*ORCH, "runs", "list", "--all"])  # makes the store
    c.remount_read_only(disk)
    c.start_checks()
    m = _run(c)
    return row(c, m, error_line(m.stderr, "read-only"))


def _full_before(c: Case) -> Row:
    c.config()
    disk = c.tmpfs("2m")
    c.project.env["ORCHESTRATOR_HOME"] = str(disk)
    c.project.call([*ORCH, "runs", "list", "--all"])
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    c.start_checks()
    m = _run(c)
    return row(c, m, error_line(m.stderr, "full"))


def _full_during(c: Case) -> Row:
    fill = "head -c 20000000 /dev/zero > big.bin; true"
    c.config({"env": c.scenario([{"shell": fill}, {"text": "done"}])})
    disk = c.tmpfs("6m")
    c.project.env["ORCHESTRATOR_HOME"] = str(disk)
    c.start_checks()
    m = _run(c)
    status = run_status(c)
    for big in disk.rglob("big.bin"):
        big.unlink()
    return row(c, m, f"run {status} (after space freed: {run_status(c)}); {error_line(m.stderr, 'full')}")


OPENER = """
import fcntl, sys
from pathlib import Path
from orchestrator.store import Store
ready, barrier, store = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
ready.write_text("")
with open(barrier) as fh:
    fcntl.flock(fh, fcntl.LOCK_SH)
Store(store).close()
"""


def _concurrent(c: Case) -> Row:
    """32 processes open a fresh store at the same instant, 10 times."""
    failures: list[str] = []
    started = time.monotonic()
    for round_ in range(10):
        home = c.tmp / f"round-{round_}"
        home.mkdir()
        barrier = home / "barrier"
        barrier.write_text("")
        with open(barrier) as gate:
            fcntl.flock(gate, fcntl.LOCK_EX)
            with ThreadPoolExecutor(max_workers=32) as pool:
                argv = [sys.executable, "-c", OPENER]
                futures = [
                    pool.submit(
                        run_command,
                        [*argv, str(home / f"ready-{i}"), str(barrier), str(home / "state.db")],
                        home,
                        env=c.project.env,
                        timeout_s=60,
                    )
                    for i in range(32)
                ]
                while len(list(home.glob("ready-*"))) < 32 and time.monotonic() - started < 300:
                    time.sleep(0.02)
                time.sleep(0.2)
                fcntl.flock(gate, fcntl.LOCK_UN)
                failures += [f.result().stderr.strip().splitlines()[-1] for f in futures if not f.result().ok]
    took = time.monotonic() - started
    return Row(
        code=f"{320 - len(failures)} of 320 exit 0",
        time=f"{took:.1f} s for 10 rounds",
        left=c.left(),
        note=failures[0][:100] if failures else "every process opened the store",
    )


def _crash_log(c: Case) -> Row:
    c.config()
    c.project.call([*ORCH, "runs", "list", "--all"])
    import sqlite3

    with sqlite3.connect(c.state / "state.db") as db:
        db.execute(
            "INSERT INTO runs (id, repo, task, workflow_name, workflow_json, base, branch, status,"
            " created_at, updated_at, options_json) VALUES ('r1', ?, 't', 'w', '{}', 'HEAD', 'b',"
            " 'approved', 1, 1, 'not json')",
            (str(c.repo),),
        )
    c.start_checks()
    m = measure(c, [*ORCH, "runs", "list", "--all"], limit_s=20)
    under_state = len(list((c.state / "crashes").glob("crash-*.log")))
    under_home = len(list(c.home.rglob("crash-*.log"))) if c.home.exists() else 0
    return row(c, m, f"crash logs: {under_state} under the state home, {under_home} under HOME")


# 8. Readiness


def _real(name: str) -> str:
    return str(cli_cache_bin_dir(os.environ) / name)


def _agents(c: Case, config: dict[str, Any], names: tuple[str, ...], **env: str) -> tuple[Row, str]:
    path = c.tmp / "agents.yaml"
    path.write_text(yaml.safe_dump(config))
    m = measure(c, [*ORCH, "agents", "--json", "--config", str(path)], limit_s=60, env=env)
    try:
        rows = {r["agent"]: r for r in json.loads(m.stdout)}
        said = "; ".join(
            f"{n}: "
            + (f"ready, {rows[n]['auth_source']}" if rows[n]["ready"] else f"NOT ready: {rows[n]['reason']}")
            for n in names
        )
    except (ValueError, KeyError):
        said = error_line(m.stderr)
    return row(c, m, said[:160]), said


def _codex_provider(c: Case) -> Row:
    (c.home / ".codex").mkdir(parents=True)
    (c.home / ".codex" / "config.toml").write_text(
        'model_provider = "azure"\n\n[model_providers.azure]\nname = "Azure"\n'
        'base_url = "https://example.openai.azure.com/openai"\nenv_key = "ZZ_GATEWAY_KEY"\nwire_api = "responses"\n'
    )
    c.secrets.append("gwKey-4d1f0b7e9a23c6d8")
    c.start_checks()
    config = {"agents": {"codex": {"command": _real("codex")}}}
    return _agents(c, config, ("codex",), ZZ_GATEWAY_KEY="gwKey-4d1f0b7e9a23c6d8")[0]


def _others(c: Case) -> Row:
    (c.home / ".claude").mkdir(parents=True)
    (c.home / ".claude" / "settings.json").write_text(json.dumps({"apiKeyHelper": "/usr/bin/get-key"}))
    c.start_checks()
    config = {"agents": {n: {"command": _real(n)} for n in ("claude", "gemini", "copilot")}}
    env = {
        "GOOGLE_GENAI_USE_VERTEXAI": "true",
        "GOOGLE_CLOUD_PROJECT": "proj",
        "GOOGLE_CLOUD_LOCATION": "us-central1",
        "COPILOT_PROVIDER_BASE_URL": "http://127.0.0.1:11434/v1",
        "COPILOT_MODEL": "qwen",
    }
    return _agents(c, config, ("claude", "gemini", "copilot"), **env)[0]


def _reviewer_is_author(c: Case) -> Row:
    workflow = c.tmp / "review.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {"steps": [{"agent": "fake", "task": "implement"}, {"agent": "codex", "task": "review"}]}
        )
    )
    config = c.config(fallback_order=["fake", "codex"])
    data = yaml.safe_load(config.read_text())
    data["agents"]["codex"] = {"command": _real("codex")}
    config.write_text(yaml.safe_dump(data))
    c.start_checks()
    argv = [*ORCH, "run", "a task", "--workflow", str(workflow), "--config", str(config)]
    m = measure(c, argv, limit_s=60)
    return row(c, m, error_line(m.stderr, "review"))


# 9. Inputs


def _plain(*extra: str, stdin: str | None = None, find: str = "error") -> Callable[[Case], Row]:
    def case(c: Case) -> Row:
        c.config()
        c.start_checks()
        argv = [
            *ORCH,
            "run",
            *extra,
            "--workflow",
            str(c.project.workflow),
            "--config",
            str(c.project.config),
        ]
        m = measure(c, argv, limit_s=60, stdin=stdin)
        return row(c, m, f"run {run_status(c)}; {error_line(m.stderr, find)}")

    return case


LONG_TASK = "Make it so.\n" + "".join(f"requirement {n}: keep line {n} as it is\n" for n in range(6000))


def _long_task(c: Case) -> Row:
    (c.tmp / "task.md").write_text(LONG_TASK)
    return _plain("--task-file", str(c.tmp / "task.md"), find="approved")(c)


def _bare(c: Case) -> Row:
    c.config()
    bare = c.tmp / "bare.git"
    run_command(["git", "init", "-q", "--bare", str(bare)], c.tmp, check=True)
    c.start_checks()
    m = measure(c, [*c.project.run_argv(), "--repo", str(bare)], limit_s=30)
    return row(c, m, error_line(m.stderr, "bare"))


def _discard_live(c: Case) -> Row:
    turns: list[dict[str, Any]] = [{"kind": "hang", "seconds": 8}, {"kind": "text", "text": "done"}]
    c.config({"env": c.scenario(turns)})
    c.start_checks()
    runner = subprocess.Popen(
        c.project.run_argv(),
        cwd=c.repo,
        env=c.project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (c.state / "repos").is_dir():
            time.sleep(0.2)
        time.sleep(0.5)
        run_id = json.loads(c.project.call([*ORCH, "runs", "list", "--json", "--all"]).stdout)[0]["id"]
        m = measure(c, [*ORCH, "runs", "discard", str(run_id)], limit_s=30)
    finally:
        runner.wait(timeout=120)
    return row(c, m, f"{error_line(m.stderr, 'running')}; the run then ended {run_status(c)}")


def _resume_config(c: Case) -> Row:
    turns: list[dict[str, Any]] = [
        {"kind": "hang", "seconds": 60},
        {"kind": "write_file", "path": "from-config.txt", "content": "the run's config\n"},
        {"kind": "text", "text": "done"},
    ]
    config = c.config({"env": c.scenario(turns)}, path=c.tmp / "elsewhere.yaml")
    argv = [*ORCH, "run", "a task", "--workflow", str(c.project.workflow), "--config", str(config)]
    stopped = subprocess.Popen(
        argv,
        cwd=c.repo,
        env=c.project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (c.state / "repos").is_dir():
        time.sleep(0.2)
    time.sleep(1)
    os.kill(stopped.pid, signal.SIGKILL)  # as `kill -9` or a lost machine would
    stopped.wait()
    run = json.loads(c.project.call([*ORCH, "runs", "list", "--json", "--all"]).stdout)[0]
    c.start_checks()
    m = measure(c, [*ORCH, "runs", "resume", str(run["id"])], limit_s=90)
    shown = c.project.call(["git", "show", f"{run['branch']}:from-config.txt"])
    took = (
        "the run's config was used" if shown.ok else f"the config was NOT used ({error_line(shown.stderr)})"
    )
    return row(c, m, f"run {run_status(c)}; {took}")


def _submodule(c: Case) -> Row:
    c.config()
    lib = c.tmp / "lib"
    lib.mkdir()
    (lib / "lib.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "c"]):
        run_command([*git, *args], lib, check=True)
    run_command(
        [*git, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib"],
        c.repo,
        check=True,
    )
    run_command([*git, "commit", "-qm", "sub"], c.repo, check=True)
    (c.repo / "vendor" / "lib" / "lib.py").write_text("x = 2\n")
    c.start_checks()
    m = _run(c, "--include-uncommitted")
    return row(c, m, error_line(m.stderr, "submodule"))


def _log_file(c: Case) -> Row:
    c.config()
    c.start_checks()
    log = c.tmp / "orchestrator.log"
    m = _run(c, env={"ORCHESTRATOR_LOG_FILE": str(log)})
    lines = log.read_text().splitlines() if log.exists() else []
    return row(c, m, f"run {run_status(c)}; the log file has {len(lines)} lines")


MORE_CASES: list[tuple[str, str, Callable[[Case], Row]]] = [
    ("store: damaged state.db", "exit 3, raw sqlite3 message", _damaged),
    ("store: state.db cannot be opened (a folder)", "exit 3, raw sqlite3 message", _folder_in_place),
    ("store: read-only state folder (tmpfs remounted ro)", "exit 3, raw sqlite3 message", _read_only),
    ("store: full disk before the run (2 MB tmpfs)", "exit 3, raw sqlite3 message", _full_before),
    ("store: disk fills during the step (6 MB tmpfs)", "exit 3; run left `running`", _full_during),
    ("store: 32 first uses at once x 10 rounds", "failed once: database is locked", _concurrent),
    ("store: a crash, ORCHESTRATOR_HOME set", "crash log under HOME", _crash_log),
    ("readiness: codex with its own model provider", "not ready: no credentials", _codex_provider),
    ("readiness: claude apiKeyHelper, gemini Vertex, copilot provider", "(not checked)", _others),
    (
        "readiness: the only fallback reviewer is the author",
        "review given to the author's CLI",
        _reviewer_is_author,
    ),
    ("input: --base no-such-ref", "exit 1", _plain("a task", "--base", "no-such-ref")),
    ("input: an empty task", "run and approved", _plain("   ")),
    ("input: a 200 KiB task from --task-file", "exit 3 (E2BIG), run left interrupted", _long_task),
    (
        "input: a 200 KiB task from stdin (--task-file -)",
        "(no way to give it)",
        _plain("--task-file", "-", stdin=LONG_TASK, find="approved"),
    ),
    ("input: `runs discard` under a live run", "removed the worktree under it", _discard_live),
    ("input: `runs resume` after SIGKILL, run had --config", "forgot the run's --config", _resume_config),
    ("input: a bare repository", "misleading message", _bare),
    ("input: --include-uncommitted with a submodule change", "dropped without a word", _submodule),
    ("input: ORCHESTRATOR_LOG_FILE", "never written to", _log_file),
]
