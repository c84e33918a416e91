"""Best of 3 on seeded-bug repositories: does the selected attempt pass the hidden tests whenever any
attempt does? And what did each attempt cost?

    python benchmarks/bench_best_of_3.py [--repos 10]

Each repository has a bug in `calc.py` (`double(x)` returns x + 1) and a visible test, `check.py`, run
as the workflow's gate (`double(2) == 4`). The three attempts are the real Claude Code, Codex and Gemini
CLIs, each against a scripted model server of its own, answering differently per repository by a fixed
pattern: a real fix (`return x * 2`), a broken one (the gate fails), an overfit one that passes the
visible test only (`if x == 2: return 4`), or nothing. Each attempt is reviewed read-only by a CLI that
wrote none of them (the real Copilot CLI), whose scripted model answers by what the diff it is shown
holds (a `pick` turn): an attempt that special-cases the visible test, or returns x - 1, gets
request_changes, any other approve. It is reviewed like this because a reviewer is what tells the
overfit fix from the real one: on the gates and the diff size they tie.
After the run the benchmark runs the hidden tests (double(0..9)) on the run branch and on each
attempt's branch, and counts the repositories where some attempt passes them but the selected one does
not. Printed: that count (the issue asks for 0), the selected attempt per repository, each attempt's
review and cost, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import settings_from_data
from orchestrator.engine.service import RunService, RunSpec
from orchestrator.proc import run_command
from orchestrator.testing.model_server import ScriptedModelServer
from orchestrator.testing.pointing import agent_config
from orchestrator.testing.scenario import scenario_from_data

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
AUTHORS = ("claude", "codex", "gemini")
REVIEWER = "copilot"


def verdict(kind: str, message: str = "") -> dict[str, str]:
    findings = [{"severity": "high", "file": "calc.py", "message": message}] if message else []
    return {"text": "```json\n" + json.dumps({"verdict": kind, "findings": findings}) + "\n```"}


# The reviewer's model reads the diff it is shown (the review prompt holds it).
REVIEW = {
    "pick": {
        "cases": [
            {"contains": "if x == 2", **verdict("request_changes", "special-cases the test's input")},
            {"contains": "x - 1", **verdict("request_changes", "double(x) returns x - 1")},
        ],
        "otherwise": verdict("approve"),
    },
    "times": "always",
}
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
    scripts: dict[str, list[Any]] = {
        agent: ([] if kind == "none" else [{"write_file": {"path": "calc.py", "content": FIXES[kind]}}])
        + [{"text": "done"}]
        for agent, kind in zip(AUTHORS, pattern, strict=True)
    }
    scripts[REVIEWER] = [REVIEW]
    workflow = root / "wf.yaml"
    workflow.write_text(
        yaml.safe_dump(
            {
                "max_iterations": 1,
                "steps": [
                    {
                        "task": "implement",
                        "attempts": list(AUTHORS),
                        "select": ["gates", "review", "smallest_diff", "cost"],
                    },
                    {"run": f"{sys.executable} check.py", "name": "visible test"},
                ],
            }
        )
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
        "ORCHESTRATOR_HOME": str(root / "state"),
        "CI": "true",
    }
    if os.environ.get("ORCHESTRATOR_CLI_DIR"):
        env["ORCHESTRATOR_CLI_DIR"] = os.environ["ORCHESTRATOR_CLI_DIR"]
    servers = {
        agent: ScriptedModelServer(scenario_from_data({"name": agent, "turns": turns})).start()
        for agent, turns in scripts.items()
    }
    try:
        data = {"agents": {agent: agent_config(agent, server.url) for agent, server in servers.items()}}
        service = RunService(settings=settings_from_data(data, source="bench"), env=env)
        try:
            record = service.create(
                RunSpec(task="double(x) must return 2 * x", cwd=repo, repo=repo, workflow=str(workflow))
            )
            report = json.loads(service.execute(record.id).to_json())
        finally:
            service.close()
    finally:
        for server in servers.values():
            server.stop()
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
        "selected_kind": pattern[AUTHORS.index(selected)] if selected else None,
        "any_passes_hidden": any_hidden,
        "selected_passes_hidden": selected_hidden,
        "attempts": [
            {
                "name": n,
                "kind": pattern[AUTHORS.index(n)],
                "gates": f"{a['gates_passed']}/{a['gates_total']}",
                "review": f"{a['reviewer'] or '-'} {a['review_verdict'] or '-'}",
                "cost_usd": a["cost_usd"],
            }
            for n, a in attempts.items()
        ],
        "status": report["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=10)
    args = parser.parse_args()
    missed = 0
    costs: dict[str, list[float | None]] = {}
    started = time.monotonic()
    for i in range(args.repos):
        pattern = PATTERNS[i % len(PATTERNS)]
        with tempfile.TemporaryDirectory(prefix="bench-best-of-3-") as tmp:
            row = one_repo(Path(tmp), pattern)
        bad = bool(row["any_passes_hidden"]) and not row["selected_passes_hidden"]
        missed += bad
        print(
            f"repo {i + 1:2}: {'/'.join(pattern)}: selected {row['selected'] or '-'} "
            f"({row['selected_kind'] or '-'}); hidden tests: some attempt {row['any_passes_hidden']}, "
            f"selected {row['selected_passes_hidden']}; run {row['status']}{'  MISSED' if bad else ''}",
            flush=True,
        )
        for a in row["attempts"]:  # type: ignore[attr-defined]
            cost = "n/a" if a["cost_usd"] is None else f"${a['cost_usd']:.5f}"
            print(f"    {a['name']:<7} {a['kind']:<8} gates {a['gates']:<4} review {a['review']:<24} {cost}")
            costs.setdefault(a["name"], []).append(a["cost_usd"])
    print(
        f"repositories where an attempt passed the hidden tests but the selected one did not: {missed} of {args.repos}"
    )
    for name, spent in costs.items():
        known = [c for c in spent if c is not None]
        mean = f"${sum(known) / len(known):.5f}" if known else "n/a"
        print(f"{name}: {len(spent)} attempts, mean cost {mean} ({len(spent) - len(known)} without a cost)")
    print(f"wall time {time.monotonic() - started:.1f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
