"""What a run's repository costs at run start, on a repository of many files.

    python benchmarks/bench_run_start.py                  # 10,000 files, 5 rounds
    python benchmarks/bench_run_start.py --files 2000 --rounds 3

Each round times, on the same repository:
- **RunWorkspace.create**: what `orchestrator run` does before its first step (backup refs, the
  snapshot of the user's uncommitted work, the run's repository and its checkout);
- **worktree**: the linked-worktree design this project used before (the same refs, then
  `git worktree add -b orchestrator/<id> <folder> HEAD`), run as plain git commands.

The medians and their ratio are printed. Rounds alternate which goes first.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.workspace import RunWorkspace
from orchestrator.workspace.git import Git


def make_repo(path: Path, files: int) -> Path:
    path.mkdir(parents=True)
    git = Git(path)
    git.run("init", "-q", "--initial-branch=main")
    for n in range(files):
        folder = path / f"pkg{n // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{n % 100:02d}.py").write_text(f"VALUE = {n}\n" + "# filler line\n" * 20)
    git.run("add", "-A")
    git.run("commit", "-q", "-m", "many files")
    return path


def time_create(repo: Path, state: Path, run_id: str) -> float:
    started = time.perf_counter()
    RunWorkspace.create(repo, run_id, state_home=state)
    return time.perf_counter() - started


def time_worktree(repo: Path, state: Path, run_id: str) -> float:
    """The old design's start: two refs, the status snapshot, then a linked worktree."""
    git = Git(repo)
    started = time.perf_counter()
    head = git.out("rev-parse", "HEAD")
    zero = "0" * len(head)
    git.run("update-ref", f"refs/bench/runs/{run_id}/base", head, zero)
    git.run("update-ref", f"refs/bench/backups/{run_id}/start", head, zero)
    git.run("status", "--porcelain")  # stands in for the snapshot of uncommitted work
    folder = state / "worktrees" / run_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    git.run("worktree", "add", "-q", "--no-track", "-b", f"bench/{run_id}", str(folder), head)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-run-start-"))
    try:
        repo = make_repo(root / "repo", args.files)
        state = root / "state"
        time_create(repo, state, "warmup-a")
        time_worktree(repo, state, "warmup-b")
        created: list[float] = []
        worktree: list[float] = []
        for n in range(args.rounds):
            pair = [
                lambda n=n: created.append(time_create(repo, state, f"c{n}")),
                lambda n=n: worktree.append(time_worktree(repo, state, f"w{n}")),
            ]
            for job in pair if n % 2 == 0 else reversed(pair):
                job()
        new, old = statistics.median(created), statistics.median(worktree)
        print(f"repository: {args.files} files, {args.rounds} rounds")
        print(
            f"RunWorkspace.create   median {new * 1000:8.1f} ms   ({', '.join(f'{t * 1000:.0f}' for t in created)})"
        )
        print(
            f"git worktree add      median {old * 1000:8.1f} ms   ({', '.join(f'{t * 1000:.0f}' for t in worktree)})"
        )
        print(f"ratio (create / worktree): {new / old:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
