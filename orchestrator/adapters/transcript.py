"""A step's transcript on disk: the CLI's stdout lines in FILE (.jsonl), its stderr lines in FILE.stderr,
both together capped at `max_bytes` (`agents.<name>.transcript_max_bytes`, default 50 MB). Past the cap,
each file gets one marker line saying where and why it was cut, and later lines are counted, not kept:
a flood of output costs the cap, never the disk."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import IO, Literal


class Transcript:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.left = max_bytes
        self.dropped = 0
        self._out: IO[str] = path.open("w", encoding="utf-8")
        self._err: IO[str] = path.with_name(path.name + ".stderr").open("w", encoding="utf-8")

    @property
    def cut(self) -> bool:
        return self.dropped > 0

    def write(self, stream: Literal["stdout", "stderr"], line: str) -> None:
        size = len(line.encode("utf-8", errors="replace")) + 1
        if self.cut or size > self.left:
            if not self.cut:
                self._mark()
            self.dropped += size
            return
        self.left -= size
        (self._err if stream == "stderr" else self._out).write(line + "\n")

    def _mark(self) -> None:
        note = (
            f"transcript cut: this step's output passed transcript_max_bytes ({self.max_bytes} bytes); "
            "later lines were not kept"
        )
        self._out.write(json.dumps({"type": "orchestrator.transcript_cut", "note": note}) + "\n")
        self._err.write(f"[orchestrator] {note}\n")

    def close(self) -> None:
        for fh in (self._out, self._err):
            with contextlib.suppress(OSError):
                fh.close()
