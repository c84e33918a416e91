"""What the orchestrator costs on top of the work it drives.

    python benchmarks/bench_iteration.py [--rounds N] [--profile FILE]

Each round, on fresh temporary repositories:

(a) `RunService` runs the workflow [fake implement, fake review, fake refine] with a scenario in which
    the review asks for changes once and approves the second time: implement, review, refine, review
    (an iteration and a half; four agent processes, two commits).
(b) A plain script does the same work with no orchestrator: the same fake-agent processes
    (`python -m orchestrator.adapters.fake_agent ...`, same scenario, same permissions and resumed
    sessions) spawned one after the other, the review's JSON verdict read, and `git add -A && git commit`
    after each editing step.

Rounds alternate (a) and (b) so that machine load falls on both alike; the medians and their ratio
(orchestrator / plain) are printed. `--profile FILE` also profiles one more orchestrated round with
cProfile and prints where its time went.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import child_env, run_command

TASK = "make greet() return Hello"
CHANGES = (
    '```json\n{"verdict": "request_changes", "findings": [{"severity": "high", "file": "app.py", '
    '"line": 2, "message": "greet() must return Hello"}]}\n```'
)
APPROVE = 'Looks good.\n```json\n{"verdict": "approve", "findings": []}\n```'
TURNS: list[dict[str, Any]] = [
    {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hi'\n"}},
    {"text": "implemented"},
    {"text": CHANGES},  # review 1
    {"edit_file": {"path": "app.py", "old": "'Hi'", "new": "'Hello'"}},
    {"text": "refined"},
    {"text": APPROVE},  # review 2
]
WORKFLOW = {
    "max_iterations": 3,
    "steps": [
        {"agent": "fake", "task": "implement"},
        {"agent": "fake", "task": "review"},
        {"agent": "fake", "task": "refine"},
    ],
}
EXPECTED_STEPS = ["i1-s1-implement", "i1-s2-review", "i1-s3-refine", "i2-s2-review"]
IDENTITY = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
VERDICT = re.compile(r"```json\s*(\{.*?\})\s*```", re.DOTALL)


def make_round(root: Path) -> tuple[Path, Path]:
    """A fresh repository and scenario (the fake agent keeps its place in a file beside the scenario)."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# sample\n")
    (repo / "app.py").write_text("def greet():\n    return 'hi'\n")
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(["git", *IDENTITY, "commit", "-qm", "initial"], repo, check=True)
    scenario = root / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": TURNS}))
    return repo, scenario


SETUP_TIMES: list[float] = []  # (a)'s share before the first step: the store, the worktree, the refs


def orchestrated(root: Path) -> float:
    """(a): the run service, from its construction to the finished report."""
    repo, scenario = make_round(root)
    workflow = root / "workflow.yaml"
    workflow.write_text(yaml.safe_dump(WORKFLOW))
    data = {
        "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}},
        "fallback_order": ["fake"],
    }
    env = {**os.environ, "ORCHESTRATOR_HOME": str(root / "state")}
    start = time.perf_counter()
    service = RunService(settings=settings_from_data(data), env=env)
    try:
        record = service.create(RunSpec(task=TASK, cwd=repo, workflow=str(workflow)))
        SETUP_TIMES.append(time.perf_counter() - start)
        report = service.execute(record.id)
    finally:
        service.close()
    elapsed = time.perf_counter() - start
    steps = [step.id for step in report.steps]
    if report.status != "approved" or steps != EXPECTED_STEPS:
        raise SystemExit(f"the orchestrated run went wrong: {report.status}, steps {steps}")
    return elapsed


def _fake_agent(
    repo: Path, env: dict[str, str], permission: str, prompt: str, resume: str | None
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "orchestrator.adapters.fake_agent", "--permission", permission]
    if resume:
        argv += ["--resume", resume]
    done = run_command([*argv, prompt], repo, env=env, timeout_s=120, check=True)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result = events[-1]
    assert result["type"] == "result" and result["success"], done.stdout
    return dict(result)


def _commit(repo: Path, message: str) -> None:
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(["git", *IDENTITY, "commit", "-qm", message], repo, check=True)


def _approves(text: str) -> bool:
    match = VERDICT.search(text)
    return match is not None and json.loads(match.group(1))["verdict"] == "approve"


def plain(root: Path) -> float:
    """(b): the same agent processes and commits from a plain script."""
    repo, scenario = make_round(root)
    env = child_env(os.environ, {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)})
    start = time.perf_counter()
    implemented = _fake_agent(repo, env, "edit", f"Implement: {TASK}", None)
    _commit(repo, "implement")
    review = _fake_agent(repo, env, "read_only", f"Review the diff for: {TASK}", None)
    if _approves(review["text"]):
        raise SystemExit("the plain run went wrong: the first review approved")
    _fake_agent(repo, env, "edit", f"Address the findings: {review['text']}", implemented["session_id"])
    _commit(repo, "refine")
    again = _fake_agent(repo, env, "read_only", f"Review the diff for: {TASK}", review["session_id"])
    elapsed = time.perf_counter() - start
    if not _approves(again["text"]):
        raise SystemExit("the plain run went wrong: the second review did not approve")
    log = run_command(["git", "log", "--format=%s"], repo, check=True).stdout.split()
    assert log == ["refine", "implement", "initial"], log
    return elapsed


def measure(rounds: int, workdir: Path) -> tuple[list[float], list[float]]:
    runs: dict[str, Callable[[Path], float]] = {"orchestrated": orchestrated, "plain": plain}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, fn in runs.items():  # warm-up: bytecode caches, git's and the kernel's caches
        fn(workdir / f"warmup-{name}")
    SETUP_TIMES.clear()
    for index in range(rounds):
        # Alternate which goes first, so neither always follows the other.
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(runs[name](workdir / f"{index}-{name}"))
    return times["orchestrated"], times["plain"]


def profile(workdir: Path, out: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    orchestrated(workdir / "profiled")
    profiler.disable()
    profiler.dump_stats(out)
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds of each (default 7)")
    parser.add_argument("--profile", type=Path, default=None, help="also profile one orchestrated round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-iteration-") as tmp:
        orch_times, plain_times = measure(args.rounds, Path(tmp))
        orch, base = statistics.median(orch_times), statistics.median(plain_times)
        print(f"rounds:        {args.rounds} of each, alternating, after one warm-up of each")
        print(f"orchestrator:  median {orch:.3f} s  ({', '.join(f'{t:.3f}' for t in orch_times)})")
        print(f"plain script:  median {base:.3f} s  ({', '.join(f'{t:.3f}' for t in plain_times)})")
        print(f"ratio:         {orch / base:.2f}  (orchestrator / plain; aim: 1.30 or less)")
        print(f"overhead:      {orch - base:.3f} s per run of four agent steps", end="")
        print(f" (of which {statistics.median(SETUP_TIMES):.3f} s before the first step)")
        if args.profile is not None:
            profile(Path(tmp), args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
