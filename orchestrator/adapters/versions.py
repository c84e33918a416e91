"""The CLIs' versions, remembered by executable: `--version` of a node CLI takes 0.1-1.3 s (gemini's
the most), and the answer only changes when the file does.

A version is kept under the executable's real path (symlinks resolved, so `node_modules/.bin/x` follows
its package) together with the file's size and mtime; a reinstalled or upgraded CLI has another size or
mtime and is asked again. The file is a small JSON object under the state home, written atomically;
a cache that cannot be read or written (read-only or full disk) only costs the probe.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

CACHE_FILE = "cli-versions.json"


def _identity(executable: str) -> tuple[str, int, int] | None:
    try:
        real = os.path.realpath(executable)
        stats = os.stat(real)
    except OSError:
        return None
    return real, stats.st_size, stats.st_mtime_ns


class VersionCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] | None = None

    def get(self, executable: str) -> str | None:
        identity = _identity(executable)
        if identity is None:
            return None
        real, size, mtime = identity
        with self._lock:
            entry = self._load().get(real)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime:
            version = entry.get("version")
            return version if isinstance(version, str) else None
        return None

    def put(self, executable: str, version: str) -> None:
        identity = _identity(executable)
        if identity is None:
            return
        real, size, mtime = identity
        with self._lock:
            entries = self._load()
            entries[real] = {"size": size, "mtime_ns": mtime, "version": version}
            self._save(entries)

    def _load(self) -> dict[str, dict[str, object]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                with contextlib.suppress(OSError, ValueError):
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(data, dict):
                        self._entries = {k: v for k, v in data.items() if isinstance(v, dict)}
        return self._entries

    def _save(self, entries: dict[str, dict[str, object]]) -> None:
        if self.path is None:
            return
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(temp, self.path)  # readers see the old file or the new one, never half of one
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink()
