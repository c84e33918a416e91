"""Best of 3 on seeded-bug repositories: does the selected attempt pass the hidden tests whenever any
attempt does? And what did each attempt cost?

    python benchmarks/bench_best_of_3.py [--repos 10]

Each repository has a bug in `calc.py` (`double(x)` returns x + 1) and a visible test, `check.py`, run
as the workflow's gate (`double(2) == 4`). Three scripted attempts (the fake agent, one scenario each)
answer differently per repository, by a fixed pattern: a real fix (`return x * 2`), a broken one (the
gate fails), or an overfit one that passes the visible test only (`if x == 2: return 4`), or nothing.
After the run the benchmark runs the hidden tests (double(0..9)) on the run branch and on each
attempt's branch, and counts the repositories where some attempt passes them but the selected one does
not. Printed: that count (the issue asks for 0), the selected attempt per repository, each attempt's
cost, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command

BUGGY = "def double(x):\n    return x + 1\n"
FIXES = {
    "fix": "def double(x):\n    return x * 2\n",
    "broken": "def double(x):\n    return x - 1\n",
    "overfit": "def double(x):\n    if x == 2:\n        return 4\n    return x + 1\n",
}
# Per repository, what each of the three attempts does (a fixed pattern: some fix, some break).
PATTERNS = [
    ("fix", "broken", "overfit"),
    ("broken", "fix", "broken"),
    ("overfit", "broken", "fix"),
    ("broken", "broken", "broken"),
    ("fix", "fix", "broken"),
    ("none", "overfit", "fix"),
    ("broken", "overfit", "overfit"),
    ("fix", "none", "none"),
    ("overfit", "fix", "fix"),
    ("broken", "broken", "fix"),
]
HIDDEN = "from calc import double\nassert all(double(x) == 2 * x for x in range(10))\n"


def hidden_passes(repo: Path, ref: str, scratch: Path) -> bool:
    source = run_command(["git", "show", f"{ref}:calc.py"], repo)
    if source.returncode != 0:
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "calc.py").write_text(source.stdout + "\n")
    return run_command([sys.executable, "-c", HIDDEN], scratch).returncode == 0


def one_repo(root: Path, pattern: tuple[str, str, str]) -> dict[str, object]:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "calc.py").write_text(BUGGY)
    (repo / "check.py").write_text(
        "import sys\nfrom calc import double\nsys.exit(0 if double(2) == 4 else 1)\n"
    )
    run_command(["git", "init", "-q", "-b", "main"], repo, check=True)
    run_command(["git", "add", "-A"], repo, check=True)
    run_command(
        ["git", "-c", "user.name=u", "-c", "user.email=u@u", "commit", "-qm", "start"], repo, check=True
    )
    scenario = root / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"turns": []}))
    names = ("fake", "fake-2", "fake-3")
    for name, kind in zip(names, pattern, strict=True):
        turns = [] if kind == "none" else [{"write_file": {"path": "calc.py", "content": FIXES[kind]}}]
        (root / f"scenario.{name}.yaml").write_text(yaml.safe_dump({"turns": [*turns, {"text": "done"}]}))
    workflow = root / "wf.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {
                "max_iterations": 1,
                "steps": [
                    {
                        "task": "implement",
                        "attempts": ["fake"] * 3,
                        "select": ["gates", "review", "smallest_diff", "cost"],
                    },
                    {"run": f"{sys.executable} check.py", "name": "visible test"},
                ],
            }
        )
    )
    data = {"agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(scenario)}}}}
    env = {**os.environ, "ORCHESTRATOR_HOME": str(root / "state")}
    service = RunService(settings=settings_from_data(data), env=env)
    try:
        record = service.create(RunSpec(task="double(x) must return 2 * x", cwd=repo, workflow=str(workflow)))
        report = json.loads(service.execute(record.id).to_json())
    finally:
        service.close()
    [group] = report["attempts"] or [{"winner": None, "attempts": []}]
    attempts = {a["name"]: a for a in group["attempts"]}
    any_hidden = any(
        a["commit"] and hidden_passes(repo, a["commit"], root / "scratch" / n) for n, a in attempts.items()
    )
    selected = group["winner"]
    selected_hidden = selected is not None and hidden_passes(repo, report["branch"], root / "scratch" / "run")
    return {
        "pattern": pattern,
        "selected": selected,
        "selected_kind": pattern[names.index(selected)] if selected else None,
        "any_passes_hidden": any_hidden,
        "selected_passes_hidden": selected_hidden,
        "costs": {n: a["cost_usd"] for n, a in attempts.items()},
        "status": report["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=10)
    args = parser.parse_args()
    missed = 0
    started = time.monotonic()
    for i in range(args.repos):
        pattern = PATTERNS[i % len(PATTERNS)]
        with tempfile.TemporaryDirectory(prefix="bench-best-of-3-") as tmp:
            row = one_repo(Path(tmp), pattern)
        bad = bool(row["any_passes_hidden"]) and not row["selected_passes_hidden"]
        missed += bad
        costs = ", ".join(f"{n} ${c:.5f}" if c is not None else f"{n} n/a" for n, c in row["costs"].items())  # type: ignore[union-attr]
        print(
            f"repo {i + 1:2}: {'/'.join(pattern):<24} selected {row['selected'] or '-':<7} ({row['selected_kind'] or '-'}); "
            f"hidden: any {row['any_passes_hidden']!s:<5} selected {row['selected_passes_hidden']!s:<5} "
            f"{'MISSED ' if bad else ''}run {row['status']}; cost {costs}",
            flush=True,
        )
    print(
        f"repositories where an attempt passed the hidden tests but the selected one did not: {missed} of {args.repos}"
    )
    print(f"wall time {time.monotonic() - started:.1f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
