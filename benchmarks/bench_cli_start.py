"""How fast `orchestrator --help` answers, against a bare interpreter starting (the floor).

    python benchmarks/bench_cli_start.py [--rounds 15]

Prints the medians and their difference: what importing the CLI costs. The aim is a median under
0.3 s on a quiet machine. (Not a timed test: the machines the tests run on are shared and noisy;
tests/cli/test_feel.py checks what keeps it fast, that nothing heavy is imported.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from orchestrator.proc import child_env, run_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        env = child_env(os.environ, {"HOME": tmp, "CI": "true"})
        help_argv = [sys.executable, "-m", "orchestrator", "--help"]
        bare_argv = [sys.executable, "-c", "pass"]
        run_command(help_argv, cwd, env=env, timeout_s=60)  # warm: .pyc files written
        helps: list[float] = []
        bares: list[float] = []
        for _ in range(args.rounds):  # interleaved, so load changes hit both alike
            helps.append(run_command(help_argv, cwd, env=env, timeout_s=60).duration_s)
            bares.append(run_command(bare_argv, cwd, env=env, timeout_s=60).duration_s)
    help_s, bare_s = statistics.median(helps), statistics.median(bares)
    print(f"orchestrator --help: median {help_s:.3f} s over {args.rounds} (min {min(helps):.3f} s)")
    print(f"bare interpreter:    median {bare_s:.3f} s (min {min(bares):.3f} s)")
    print(
        f"the CLI's own cost:  {help_s - bare_s:.3f} s; ratio {help_s / bare_s:.2f}; load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
