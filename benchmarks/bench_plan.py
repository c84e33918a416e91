"""A plan of independent subtasks run at once against the same subtasks one after another.

    python -m benchmarks.bench_plan [--subtasks 4] [--step-s 5] [--rounds 3]

Each round, on fresh temporary repositories, `RunService` runs [task: plan (fake); task: implement,
for_each: subtask; merge: subtasks; gate] where the plan has --subtasks independent subtasks and each
subtask's agent step takes --step-s seconds (a scripted `sleep`), twice: with `limits.concurrency` equal
to the number of subtasks and with 1 (everything else the same: each subtask's own repository, commit
and merge). The medians and their ratio are printed; the issue asks for <= 0.45 with 4 x 5 s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from benchmarks.parallel_compare import compare, timed_run
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
    return timed_run(root, repo, scenario, workflow, "write the parts")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subtasks", type=int, default=4)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    compare("subtasks", args.subtasks, args.step_s, args.rounds, one_run)


if __name__ == "__main__":
    main()
