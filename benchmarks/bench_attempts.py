"""Best of N at once against the same attempts one after another: what running them in parallel buys.

    python -m benchmarks.bench_attempts [--attempts 4] [--step-s 5] [--rounds 3]

Each round, on fresh temporary repositories, `RunService` runs the workflow
[task: implement, attempts: [fake x N], select: [gates, smallest_diff]; gate] where every attempt's agent
step takes --step-s seconds (a scripted `sleep` in its turn), twice: with `limits.concurrency: N` (the
attempts at once) and with `limits.concurrency: 1` (one after another, everything else the same). The
medians and their ratio (parallel / sequential) are printed; the issue asks for <= 0.45 with 4 x 5 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from benchmarks.parallel_compare import compare, timed_run
from orchestrator.proc import run_command


def one_run(root: Path, attempts: int, step_s: float, concurrency: int) -> float:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "app.py").write_text("def greet():\n    return 'hi'\n")
    (repo / "check.py").write_text("import sys; sys.exit(0 if 'Hello' in open('app.py').read() else 1)\n")
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "start"], repo, check=True
    )
    scenario = root / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": []}))
    names = ["fake", *(f"fake-{i}" for i in range(2, attempts + 1))]
    for i, name in enumerate(names):
        turns = [
            {"shell": f"sleep {step_s}"},
            {"write_file": {"path": "app.py", "content": "def greet():\n    return 'Hello'\n" + "#\n" * i}},
            {"text": "done"},
        ]
        (root / f"scenario.{name}.yaml").write_text(yaml.safe_dump({"turns": turns}))
    workflow = root / "wf.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {
                "max_iterations": 1,
                "limits": {"concurrency": concurrency},
                "steps": [
                    {
                        "task": "implement",
                        "attempts": ["fake"] * attempts,
                        "select": ["gates", "smallest_diff"],
                    },
                    {"run": f"{sys.executable} check.py", "name": "check"},
                ],
            }
        )
    )
    return timed_run(root, repo, scenario, workflow, "make greet() return Hello")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=4)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    compare("attempts", args.attempts, args.step_s, args.rounds, one_run)


if __name__ == "__main__":
    main()
