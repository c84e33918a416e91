"""How long `orchestrator run` takes, with the real CLIs, from its start to the first CLI spawned.

    python benchmarks/bench_readiness.py                  # 5 warm rounds after one cold one
    python benchmarks/bench_readiness.py --source DIR     # the same with another checkout's code
    python benchmarks/bench_readiness.py --source OLD --source NEW --rounds 9   # compared, interleaved

Each of the four pinned CLIs (from `orchestrator install-clis`) is behind a two-line wrapper named as
`agents.<name>.command`: `--version` goes to the real CLI (what readiness runs); anything else prints the
time it was started on stderr and exits 1 (a step's spawn is all this measures; the run then fails at once).
Credentials are dummies, so every CLI is judged ready. Each round runs the default workflow on a fresh
repository with one state home for all rounds: the first round is "cold" (no CLI version known yet),
the others "warm". Printed: the cold time and the median, min and max of the warm ones.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.adapters.base import cli_cache_bin_dir
from orchestrator.proc import child_env, run_command

CLIS = ("claude", "codex", "gemini", "copilot")
DUMMY_CREDENTIALS = {
    "ANTHROPIC_API_KEY": "sk-ant-bench-dummy-0000000000",
    "CODEX_API_KEY": "sk-bench-dummy-0000000000",
    "GEMINI_API_KEY": "bench-dummy-0000000000",
    "COPILOT_GITHUB_TOKEN": "bench-dummy-0000000000",
}


def make_wrappers(folder: Path) -> dict[str, str]:
    real_bin = cli_cache_bin_dir(os.environ)
    commands: dict[str, str] = {}
    for name in CLIS:
        real = real_bin / name
        if not os.access(real, os.X_OK):
            sys.exit(f"{real} is missing: run `orchestrator install-clis` first")
        wrapper = folder / name
        wrapper.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "--version" ]; then exec {real} "$@"; fi\n'
            # Under the sandbox only the run's folders are writable: the time goes to stderr, which the
            # orchestrator shows in its "exited with 1" message.
            'echo "spawned-at $(date +%s.%N)" >&2\nexit 1\n'
        )
        wrapper.chmod(0o755)
        commands[name] = str(wrapper)
    return commands


def one_round(
    tmp: Path, index: int, env: dict[str, str], config: Path, python: list[str] | None = None
) -> float:
    repo = tmp / f"repo-{index}"
    repo.mkdir()
    (repo / "app.py").write_text("print('hi')\n")
    git_env = child_env(os.environ, {"GIT_CONFIG_NOSYSTEM": "1"})
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "init"],
    ):
        run_command(argv, repo, env=git_env, check=True)
    argv = [*(python or [sys.executable]), "-m", "orchestrator", "run", "--config", str(config)]
    argv += ["--max-iterations", "1"]
    started = time.time()
    result = run_command([*argv, "say hello"], repo, env=env, timeout_s=120)
    if python and python[-1] != sys.executable:
        (tmp / "stderr.txt").write_text(result.stderr)
    spawned = re.search(r"spawned-at (\d+\.\d+)", result.stderr)
    if spawned is None:
        sys.exit(f"no CLI was spawned (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return float(spawned.group(1)) - started


def import_time(tmp: Path, env: dict[str, str]) -> float:
    """A fresh interpreter importing what `run` imports before it does anything."""
    started = time.time()
    run_command([sys.executable, "-c", IMPORTS], tmp, env=env, timeout_s=60, check=True)
    return time.time() - started


# With the GC off, as the console scripts import (orchestrator/cli/entry.py).
IMPORTS = (
    "import gc; gc.disable(); "
    "import orchestrator.cli.main, orchestrator.cli.run_cmd, orchestrator.engine.service, "
    "orchestrator.logs, orchestrator.adapters.claude, orchestrator.adapters.codex, "
    "orchestrator.adapters.gemini, orchestrator.adapters.copilot"
)


TRACER = Path(__file__).with_name("readiness_trace.py")


def print_trace(stderr: str, total_s: float) -> None:
    """The traced round's moments up to the first CLI's start (the CLI's own wrapper notes that)."""
    print(f"traced round: first CLI spawned after {total_s:.3f} s (wall, cpu = this process's CPU time)")
    spawns = 0
    for line in stderr.splitlines():
        if not line.startswith("TRACE "):
            continue
        _, wall, cpu, what = line.split(" ", 3)
        spawns += what.startswith("spawn ")
        print(f"  {float(wall):6.3f} s  cpu {float(cpu):6.3f} s  {what[:150]}")
        if "run_agent_step" in what:  # the step's supervisor, which starts the CLI
            break
    print(f"  {total_s:6.3f} s  the CLI runs ({spawns} processes started before it, its supervisor included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="warm rounds after the cold one")
    parser.add_argument(
        "--source",
        type=Path,
        action="append",
        default=None,
        help="run this checkout's orchestrator (repeat to compare checkouts, rounds interleaved)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="one more warm round under cProfile")
    parser.add_argument("--importtime", type=Path, default=None, help="one more warm round's -X importtime")
    parser.add_argument(
        "--trace", action="store_true", help="one more warm round, traced: where the time goes"
    )
    args = parser.parse_args()
    sources: list[Path | None] = list(args.source or [None])
    with tempfile.TemporaryDirectory(prefix="bench-readiness-") as raw:
        tmp = Path(raw)
        (tmp / "bin").mkdir()
        commands = make_wrappers(tmp / "bin")
        config = tmp / "config.yaml"
        config.write_text(
            "agents:\n" + "".join(f"  {name}: {{command: {path}}}\n" for name, path in commands.items())
        )
        envs = []
        for n, source in enumerate(sources):
            extra = {
                **DUMMY_CREDENTIALS,
                "ORCHESTRATOR_HOME": str(tmp / f"state-{n}"),
                "XDG_CONFIG_HOME": str(tmp / "config"),
            }
            if source is not None:
                extra["PYTHONPATH"] = str(source.resolve())
            envs.append(child_env(os.environ, extra))
        cold = [one_round(tmp, 1000 * n, env, config) for n, env in enumerate(envs)]
        warm: list[list[float]] = [[] for _ in sources]
        imports: list[list[float]] = [[] for _ in sources]
        for i in range(1, args.rounds + 1):
            order = list(enumerate(envs)) if i % 2 else list(reversed(list(enumerate(envs))))
            for n, env in order:
                warm[n].append(one_round(tmp, 1000 * n + i, env, config))
                imports[n].append(import_time(tmp, env))
        if args.profile is not None:
            profiled = [sys.executable, "-m", "cProfile", "-o", str(args.profile.resolve())]
            one_round(tmp, 90, envs[-1], config, profiled)
        if args.importtime is not None:
            one_round(tmp, 91, envs[-1], config, [sys.executable, "-X", "importtime"])
            args.importtime.write_text((tmp / "stderr.txt").read_text())
        if args.trace:
            traced = one_round(tmp, 92, envs[-1], config, [sys.executable, str(TRACER)])
            print_trace((tmp / "stderr.txt").read_text(), traced)
    for n, source in enumerate(sources):
        print(f"code: {source or Path(__file__).resolve().parents[1]}")
        print(f"  run start -> first CLI spawned, cold (no version known): {cold[n]:.3f} s")
        print(
            f"  run start -> first CLI spawned, warm: median {statistics.median(warm[n]):.3f} s "
            f"(min {min(warm[n]):.3f}, max {max(warm[n]):.3f}, {len(warm[n])} rounds)"
        )
        print(
            f"  of which Python start-up and imports alone: median {statistics.median(imports[n]):.3f} s "
            f"(min {min(imports[n]):.3f})"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
