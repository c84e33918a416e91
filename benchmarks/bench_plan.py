"""A plan of independent subtasks run at once against the same subtasks one after another.

    python benchmarks/bench_plan.py [--subtasks 4] [--step-s 5] [--rounds 3]

Each round, on fresh temporary repositories, `RunService` runs [task: plan (fake); task: implement,
for_each: subtask; merge: subtasks; gate] where the plan has --subtasks independent subtasks and each
subtask's agent step takes --step-s seconds (a scripted `sleep`), twice: with `limits.concurrency` equal
to the number of subtasks and with 1 (everything else the same: each subtask's own repository, commit
and merge). The medians and their ratio are printed; the issue asks for <= 0.45 with 4 x 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command


def one_run(root: Path, subtasks: int, step_s: float, concurrency: int) -> float:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# bench\n")
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "start"], repo, check=True
    )
    ids = [f"part{i}" for i in range(1, subtasks + 1)]
    plan = {
        "subtasks": [
            {"id": i, "prompt": f"write {i}.txt", "depends_on": [], "files": [f"{i}.txt"]} for i in ids
        ]
    }
    scenario = root / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": [{"text": "```json\n" + json.dumps(plan) + "\n```"}]}))
    for sid in ids:
        turns = [
            {"shell": f"sleep {step_s}"},
            {"write_file": {"path": f"{sid}.txt", "content": sid}},
            {"text": "ok"},
        ]
        (root / f"scenario.{sid}.yaml").write_text(yaml.safe_dump({"turns": turns}))
    check = f"import sys, pathlib; sys.exit(0 if len(list(pathlib.Path('.').glob('part*.txt'))) == {subtasks} else 1)"
    workflow = root / "wf.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {
                "max_iterations": 1,
                "limits": {"concurrency": concurrency},
                "steps": [
                    {"task": "plan", "agent": "fake"},
                    {"task": "implement", "for_each": "subtask", "agents": ["fake"]},
                    {"merge": "subtasks"},
                    {"run": f'{sys.executable} -c "{check}"', "name": "all parts"},
                ],
            }
        )
    )
    data = {"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}, "timeout_s": 600}}}
    env = {**os.environ, "ORCHESTRATOR_HOME": str(root / "state")}
    started = time.monotonic()
    service = RunService(settings=settings_from_data(data), env=env)
    try:
        record = service.create(RunSpec(task="write the parts", cwd=repo, workflow=str(workflow)))
        report = service.execute(record.id)
    finally:
        service.close()
    elapsed = time.monotonic() - started
    if report.status != "approved":
        raise SystemExit(f"the run was {report.status} ({report.stop_reason}), not approved")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subtasks", type=int, default=4)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    parallel: list[float] = []
    sequential: list[float] = []
    for round_index in range(args.rounds):
        order = [(args.subtasks, parallel), (1, sequential)]
        for concurrency, times in order if round_index % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
                times.append(one_run(Path(tmp), args.subtasks, args.step_s, concurrency))
        print(
            f"round {round_index + 1}: parallel {parallel[-1]:.2f} s, sequential {sequential[-1]:.2f} s",
            flush=True,
        )
    p, s = statistics.median(parallel), statistics.median(sequential)
    print(f"{args.subtasks} subtasks x {args.step_s:g} s: parallel {p:.2f} s, sequential {s:.2f} s (medians)")
    print(
        f"ratio parallel / sequential: {p / s:.2f}  (ideal {1 / args.subtasks:.2f}; the issue asks <= 0.45)"
    )
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
