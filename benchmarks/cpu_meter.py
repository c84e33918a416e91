"""CPU seconds from /proc (Linux): of a process tree, of this process's reaped children, of the machine.

A process tree's CPU is the sum, over the process and its live descendants, of their own time and of
the time of the children they reaped (utime + stime + cutime + cstime): a process that ended is in its
reaper's cutime, a live one only in its own line, so nothing is counted twice. The cluster's processes
all run under subreaper supervisors (orchestrator/proc.py), so what a worker spawns is reaped inside
its tree.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.testing.cluster import child_pids

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _times(pid: int, which: tuple[int, ...]) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    return sum(int(fields[i]) for i in which) * TICK_S


def _own_and_reaped(pid: int) -> float:
    """utime + stime + cutime + cstime of one process (0 when it is gone)."""
    return _times(pid, (11, 12, 13, 14))


def own_cpu(pid: int) -> float:
    """CPU seconds of the process itself (its threads), without anything it started."""
    return _times(pid, (11, 12))


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by `pid` and everything below it (ended or running)."""
    total, pending, seen = 0.0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _own_and_reaped(current)
        pending += child_pids(current)
    return total


def reaped_children_cpu() -> float:
    """CPU seconds of this process's children that ended and were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    """CPU seconds the whole machine has spent not idle (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest and guest_nice (8, 9) are already inside user and nice.
    return (sum(values[:8]) - idle) * TICK_S


@dataclass
class CpuSample:
    trees: dict[str, float]
    submitters: float  # this process's reaped children: the `run --cluster` processes that ended
    machine: float


def sample(trees: Mapping[str, Iterable[int]], own: Mapping[str, Iterable[int]] = {}) -> CpuSample:
    """Now: each named group of process trees (and of processes alone: `own`), the reaped children,
    the machine."""
    return CpuSample(
        trees={name: sum(tree_cpu(pid) for pid in pids) for name, pids in trees.items()}
        | {name: sum(own_cpu(pid) for pid in pids) for name, pids in own.items()},
        submitters=reaped_children_cpu(),
        machine=machine_busy(),
    )


@dataclass
class CpuDelta:
    trees: dict[str, float] = field(default_factory=dict)
    submitters: float = 0.0
    machine: float = 0.0

    @classmethod
    def between(cls, before: CpuSample, after: CpuSample) -> CpuDelta:
        return cls(
            trees={name: after.trees[name] - before.trees.get(name, 0.0) for name in after.trees},
            submitters=after.submitters - before.submitters,
            machine=after.machine - before.machine,
        )

    def line(self, steps: int, wall_s: float) -> str:
        """CPU per step of each group, and how busy the machine was (of all its cores)."""
        ours = sum(v for k, v in self.trees.items() if not k.endswith(" alone")) + self.submitters
        parts = [f"{name} {seconds / steps * 1000:.0f}" for name, seconds in self.trees.items()]
        parts.append(f"submitters {self.submitters / steps * 1000:.0f}")
        cores = os.cpu_count() or 1
        return (
            f"CPU ms per step: {', '.join(parts)}; all ours {ours / steps * 1000:.0f} "
            f"(machine busy {self.machine:.1f} of {wall_s * cores:.1f} CPU-s, "
            f"{100 * self.machine / max(wall_s * cores, 1e-9):.0f}%; not ours {self.machine - ours:.1f} CPU-s)"
        )
