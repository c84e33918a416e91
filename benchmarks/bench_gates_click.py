"""pallets/click, installed editable, and an agent that breaks it: does the gate see the break, and what
do the base run and `setup:` add to a run? (issue 9)

    python benchmarks/bench_gates_click.py CLICK_CHECKOUT [--rounds 3] [--orchestrator BIN]
        [--variants full,no-base,...] [--with-uv]

CLICK_CHECKOUT is a git checkout of https://github.com/pallets/click (it is only read: the benchmark
clones it into a temporary folder). In that folder the benchmark makes the user's virtualenv, installs
the clone editable in it with pytest (`pip install -e CLONE pytest`, the usual set-up), and runs
`orchestrator run` from the clone with the virtualenv first on PATH, as a user who activated it. The fake
agent (orchestrator.adapters.fake_agent) plays the agent: it inserts `raise RuntimeError(...)` at the
top of src/click/core.py; the workflow is that implement step and a `run: auto` gate (`pytest -q`).

Variants (each run `--rounds` times; the median wall-clock time of `orchestrator run` is printed):
  full      the defaults: the base run beside the agent step, `setup: [run: auto]`
  no-base   --no-base-gates, `setup: []`: the gate alone (its import roots and check included)
  base      the base run, `setup: []`
  setup     --no-base-gates, `setup: [run: auto]` (click has a uv.lock: `uv sync --frozen`)
  before    the workflow and flags an orchestrator without this work understands (no `setup:` key):
            use it with --orchestrator pointing at an older installation to see the gate pass

--harmless makes the agent add a comment instead (the suite passes: the normal case), and
--agent-seconds S makes the agent step take S seconds, as a real one does (the base run overlaps it).

--with-uv installs uv into the user's virtualenv, so that `setup` really runs `uv sync --frozen` (it
downloads click's development dependencies into <state home>/cache/uv the first time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.proc import child_env, run_command

VARIANTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "full": ([], {}),
    "no-base": (["--no-base-gates"], {"setup": []}),
    "base": ([], {"setup": []}),
    "setup": (["--no-base-gates"], {}),
    "before": ([], {}),
}
RAISE = 'raise RuntimeError("broken by the agent")\n'


def sh(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 900) -> str:
    done = run_command(argv, cwd, env=env, timeout_s=timeout_s)
    if not done.ok:
        sys.exit(f"`{' '.join(argv[:4])}` failed:\n{(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


def prepare(checkout: Path, root: Path, with_uv: bool) -> tuple[Path, dict[str, str]]:
    env = child_env(os.environ)
    clone = root / "click"
    sh(["git", "clone", "--quiet", str(checkout), str(clone)], root, env)
    venv = root / "venv"
    sh([sys.executable, "-m", "venv", str(venv)], root, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    sh([*pip, "-e", str(clone), "pytest", *(["uv"] if with_uv else [])], root, env)
    where = sh([str(venv / "bin" / "python"), "-c", "import click; print(click.__file__)"], root, env).strip()
    print(f"user's virtualenv: {venv}; `import click` there gives {where}")
    user_env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
    }
    return clone, user_env


def one_run(
    orchestrator: str,
    clone: Path,
    env: dict[str, str],
    root: Path,
    variant: str,
    n: int,
    *,
    harmless: bool = False,
    agent_seconds: float = 0.0,
) -> dict[str, Any]:
    work = root / f"{variant}-{n}"
    work.mkdir()
    # At the top, after `from __future__ import annotations` (which must stay first: above it, the
    # break would be a SyntaxError rather than the RuntimeError the issue describes).
    lines = (clone / "src/click/core.py").read_text(encoding="utf-8").splitlines(keepends=True)
    anchor = next((line for line in lines if line.startswith("from __future__")), lines[0])
    new = anchor + RAISE if anchor.startswith("from __future__") else RAISE + anchor
    if harmless:  # a comment: the suite still passes
        new = anchor + "# a harmless comment\n"
    # A real agent's step takes a while; the base run overlaps it.
    wait: list[dict[str, Any]] = [{"hang": agent_seconds}] if agent_seconds > 0 else []
    turns = [
        *wait,
        {"edit_file": {"path": "src/click/core.py", "old": anchor, "new": new}},
        {"text": "Done: core.py changed."},
    ]
    (work / "scenario.yaml").write_text(yaml.safe_dump({"turns": turns}))
    flags, extra = VARIANTS[variant]
    workflow = {
        "description": "break click",
        "max_iterations": 1,
        **extra,
        "steps": [{"agent": "fake", "task": "implement"}, {"run": "auto", "name": "tests", "timeout_s": 900}],
    }
    (work / "wf.yaml").write_text(yaml.safe_dump(workflow))
    config = {
        "agents": {"fake": {"env": {"ORCHESTRATOR_FAKE_SCENARIO": str(work / "scenario.yaml")}}},
        "fallback_order": ["fake"],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run_env = {**env, "ORCHESTRATOR_HOME": str(root / "state")}  # shared: caches carry over between runs
    argv = [
        orchestrator,
        "run",
        "insert a RuntimeError at the top of core.py",
        "--workflow",
        str(work / "wf.yaml"),
        "--config",
        str(work / "config.yaml"),
        "--report",
        str(work / "report.json"),
        "--summary",
        str(work / "summary.md"),
        *flags,
    ]
    started = time.monotonic()
    done = run_command(argv, clone, env=run_env, timeout_s=3600)
    seconds = time.monotonic() - started
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").is_file() else {}
    return {
        "seconds": seconds,
        "exit": done.returncode,
        "report": report,
        "text": done.stdout,
        "summary": (work / "summary.md").read_text() if (work / "summary.md").is_file() else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    beside = Path(sys.executable).parent / "orchestrator"
    parser.add_argument(
        "--orchestrator", default=str(beside) if beside.exists() else shutil.which("orchestrator")
    )
    parser.add_argument("--variants", default="no-base,base,setup,full")
    parser.add_argument("--with-uv", action="store_true")
    parser.add_argument(
        "--harmless", action="store_true", help="the agent adds a comment instead of the raise"
    )
    parser.add_argument("--agent-seconds", type=float, default=0.0, help="how long the agent step takes")
    parser.add_argument("--show", action="store_true", help="print one run's text report and summary")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="bench-click-") as tmp:
        root = Path(tmp)
        clone, env = prepare(args.checkout.resolve(), root, args.with_uv)
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for n in range(args.rounds):
            for variant in variants if n % 2 == 0 else list(reversed(variants)):
                results[variant].append(
                    one_run(
                        args.orchestrator,
                        clone,
                        env,
                        root,
                        variant,
                        n,
                        harmless=args.harmless,
                        agent_seconds=args.agent_seconds,
                    )
                )
        print(f"\n{'variant':<9} {'median':>8} {'runs (s)':<24} exit  gate            base            setup")
        medians = {}
        for variant, runs in results.items():
            medians[variant] = statistics.median(r["seconds"] for r in runs)
            last = runs[-1]["report"]
            gates = last.get("gates") or [{}]
            gate = gates[0]
            base = gate.get("base") or {}
            gate_text = "passed" if gate.get("passed") else f"failed ({gate.get('cause', '?') or '?'})"
            base_text = (
                "-" if not base else ("passed" if base.get("passed") else f"failed ({base.get('cause')})")
            )
            setup = last.get("setup") or []
            setup_text = (
                ", ".join(
                    f"{s['where']}: {'ok' if s['ok'] else ('n/a' if s['ok'] is None else 'failed')} {s['duration_s']:.1f}s"
                    for s in setup
                )
                or "-"
            )
            times = " ".join(f"{r['seconds']:.1f}" for r in runs)
            exits = ",".join(str(r["exit"]) for r in runs)
            print(
                f"{variant:<9} {medians[variant]:>7.1f}s {times:<24} {exits:<5} {gate_text:<15} {base_text:<15} {setup_text}"
            )
            if base:
                print(f"{'':<9} base run's own gate time (last run): {base.get('duration_s', 0):.1f}s")
        if "no-base" in medians:
            for variant in ("base", "setup", "full"):
                if variant in medians:
                    print(
                        f"{variant} adds {medians[variant] - medians['no-base']:+.1f}s to a run (median vs no-base)"
                    )
        if args.show:
            for variant in variants:
                run = results[variant][-1]
                print(
                    f"\n--- {variant}: text report ---\n{run['text']}\n--- {variant}: summary ---\n{run['summary']}"
                )


if __name__ == "__main__":
    main()
