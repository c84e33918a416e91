"""A 429 lowers a CLI's concurrency for a while, for every process on the machine.

One small JSON file, <state home>/limits/throttle.json: {"claude": {"cap": 2, "until": 1767225600.0}}.
Writers take an flock on throttle.lock, read, change and replace the file atomically (write a temporary
file, then os.replace), so readers never see half a file and need no lock. Each 429 halves the CLI's
current cap (never below 1) and restarts the cool-down; when the cool-down has passed the configured
cap holds again, all at once (a CLI that is still limited answers 429 again and is halved again).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

DEFAULT_COOLDOWN_S = 300.0


class Throttle:
    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.path = directory / "throttle.json"
        self.clock = clock

    def cap(self, agent: str) -> int | None:
        """The lowered cap in force for `agent`, or None when it runs at its configured cap."""
        entry = self._read().get(agent)
        if entry is None or entry["until"] <= self.clock():
            return None
        return int(entry["cap"])

    def until(self, agent: str) -> float | None:
        entry = self._read().get(agent)
        return None if entry is None or entry["until"] <= self.clock() else float(entry["until"])

    def rate_limited(self, agent: str, *, configured_cap: int, cooldown_s: float = DEFAULT_COOLDOWN_S) -> int:
        """Record a 429 from `agent`: halve its cap in force and restart the cool-down. Returns the new cap."""
        with self._locked():
            state = self._read()
            now = self.clock()
            entry = state.get(agent)
            current = int(entry["cap"]) if entry and entry["until"] > now else configured_cap
            lowered = max(1, min(current, configured_cap) // 2)
            state[agent] = {"cap": lowered, "until": now + cooldown_s}
            # Expired entries are dropped so the file stays as small as the set of throttled CLIs.
            state = {k: v for k, v in state.items() if v["until"] > now}
            self._write(state)
            return lowered

    def clear(self, agent: str) -> None:
        with self._locked():
            state = self._read()
            if state.pop(agent, None) is not None:
                self._write(state)

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # no file yet, or (only if someone wrote it by hand) unreadable: no throttle
        if not isinstance(raw, dict):
            return {}
        return {
            str(agent): {"cap": float(entry["cap"]), "until": float(entry["until"])}
            for agent, entry in raw.items()
            if isinstance(entry, dict)
            and isinstance(entry.get("cap"), int | float)
            and isinstance(entry.get("until"), int | float)
        }

    def _write(self, state: dict[str, dict[str, float]]) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".throttle-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({k: {"cap": int(v["cap"]), "until": v["until"]} for k, v in state.items()}, handle)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "throttle.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
