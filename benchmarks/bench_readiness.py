"""How long `orchestrator run` takes, with the real CLIs, from its start to the first CLI spawned.

    python benchmarks/bench_readiness.py                  # 5 warm rounds after one cold one
    python benchmarks/bench_readiness.py --source DIR     # the same with another checkout's code

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
    if python and "-X" in python:
        (tmp / "importtime.txt").write_text(result.stderr)
    spawned = re.search(r"spawned-at (\d+\.\d+)", result.stderr)
    if spawned is None:
        sys.exit(f"no CLI was spawned (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return float(spawned.group(1)) - started


def import_time(tmp: Path, env: dict[str, str]) -> float:
    """A fresh interpreter importing what `run` imports before it does anything."""
    started = time.time()
    run_command([sys.executable, "-c", IMPORTS], tmp, env=env, timeout_s=60, check=True)
    return time.time() - started


IMPORTS = (
    "import orchestrator.cli.main, orchestrator.cli.run_cmd, orchestrator.engine.service, "
    "orchestrator.logs, orchestrator.adapters.claude, orchestrator.adapters.codex, "
    "orchestrator.adapters.gemini, orchestrator.adapters.copilot"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="warm rounds after the cold one")
    parser.add_argument("--source", type=Path, default=None, help="run this checkout's orchestrator")
    parser.add_argument("--profile", type=Path, default=None, help="one more warm round under cProfile")
    parser.add_argument("--importtime", type=Path, default=None, help="one more warm round's -X importtime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-readiness-") as raw:
        tmp = Path(raw)
        (tmp / "bin").mkdir()
        commands = make_wrappers(tmp / "bin")
        config = tmp / "config.yaml"
        config.write_text(
            "agents:\n" + "".join(f"  {name}: {{command: {path}}}\n" for name, path in commands.items())
        )
        extra = {
            **DUMMY_CREDENTIALS,
            "ORCHESTRATOR_HOME": str(tmp / "state"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
        }
        if args.source is not None:
            extra["PYTHONPATH"] = str(args.source.resolve())
        env = child_env(os.environ, extra)
        cold = one_round(tmp, 0, env, config)
        warm = [one_round(tmp, i, env, config) for i in range(1, args.rounds + 1)]
        imports = [import_time(tmp, env) for _ in range(args.rounds)]
        if args.profile is not None:
            profiled = [sys.executable, "-m", "cProfile", "-o", str(args.profile.resolve())]
            one_round(tmp, 90, env, config, profiled)
        if args.importtime is not None:
            one_round(tmp, 91, env, config, [sys.executable, "-X", "importtime"])
            args.importtime.write_text((tmp / "importtime.txt").read_text())
    source = args.source or Path(__file__).resolve().parents[1]
    print(f"code: {source}")
    print(f"run start -> first CLI spawned, cold (no version known): {cold:.3f} s")
    print(
        f"run start -> first CLI spawned, warm: median {statistics.median(warm):.3f} s "
        f"(min {min(warm):.3f}, max {max(warm):.3f}, {len(warm)} rounds)"
    )
    print(f"of which Python start-up and imports alone: median {statistics.median(imports):.3f} s")


if __name__ == "__main__":
    main()
