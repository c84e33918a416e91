"""The process that owns a run: a token that a later process given the same pid does not share."""

from __future__ import annotations

import os
from pathlib import Path

# The owner token of a run handed to the cluster (`run --cluster`): no process owns it, Temporal keeps it
# going (a worker that dies has its step retried elsewhere), so no process may mark it interrupted.
CLUSTER_OWNER = "cluster"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def process_token(pid: int) -> str | None:
    """A token for the live process `pid` that a later process given the same pid will not share:
    the boot id, the pid and the process's start time (in clock ticks since boot, from /proc/<pid>/stat).
    None when no such process is alive (zombies count as dead)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        # No procfs (not Linux): all we can know is whether the pid is in use.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"pid:{pid}"
    # The command name may hold spaces and parentheses; the fields after its last ")" are fixed:
    # state (3rd field of the file), ..., starttime (22nd).
    fields = raw.rsplit(b")", 1)[-1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return f"{_boot_id()}:{pid}:{fields[19].decode()}"


def owner_alive(pid: int | None, token: str | None) -> bool:
    if pid is None:
        return False
    current = process_token(pid)
    return current is not None and (token is None or current == token)


def owner_elsewhere(token: str | None) -> bool:
    """Whether `token` names a process of another boot: another machine sharing the store, or this
    one before a restart (the two cannot be told apart from the token)."""
    if token is None or token.count(":") != 2:
        return False
    boot = token.split(":", 1)[0]
    return bool(boot) and boot != _boot_id()
