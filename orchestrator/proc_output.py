"""What proc.py's communicators do with output as it arrives: split it into lines, cut runaway lines
while they are read, keep a bounded tail, and watch the wall-clock and idle limits. Pure (no processes)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.proc import ProcResult, ProcSpec

LINE_CAP = 1_000_000  # bytes; a longer line is cut (and marked) so one runaway line cannot eat memory
CUT_MARK = b" [line cut by orchestrator]"
TAIL_LINES = 200
READ_SIZE = 65536


class LineSplitter:
    """Bytes in, complete lines out. A line longer than `cap` keeps its first `cap` bytes plus a mark,
    and the rest of it is dropped as it arrives: memory stays at `cap` whatever the line's length."""

    def __init__(self, cap: int = LINE_CAP) -> None:
        self.cap = cap
        self.buffer = bytearray()
        self.cut = False

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            if not self.cut:
                room = self.cap - len(self.buffer)
                if end - start > room:
                    self.buffer += chunk[start : start + room]
                    self.cut = True
                else:
                    self.buffer += chunk[start:end]
            if newline < 0:
                return lines
            lines.append(self._take())
            start = newline + 1

    def flush(self) -> bytes | None:
        """The last line, when the output did not end with a newline."""
        return self._take() if self.buffer or self.cut else None

    def partial(self, last: int = 4096) -> bytes:
        """The end of the line being read (a dialog waits on a line with no newline)."""
        return bytes(self.buffer[-last:])

    def _take(self) -> bytes:
        line = bytes(self.buffer) + (CUT_MARK if self.cut else b"")
        self.buffer.clear()
        self.cut = False
        return line


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


class Tail:
    def __init__(self, max_bytes: int) -> None:
        self._lines: deque[str] = deque(maxlen=TAIL_LINES)
        self._max = max_bytes

    def add(self, line: str) -> None:
        self._lines.append(line[-self._max :])

    def text(self) -> str:
        joined = "\n".join(self._lines)
        return joined[-self._max :]


class Watch:
    """The limits, checked from the loop that reads output."""

    def __init__(self, spec: ProcSpec, cancel: threading.Event | None) -> None:
        self.spec = spec
        self.cancel = cancel
        self.started = time.monotonic()
        self.last_output = self.started
        self.first_output: float | None = None

    def saw_output(self) -> None:
        now = time.monotonic()
        self.last_output = now
        if self.first_output is None:
            self.first_output = now - self.started

    def verdict(self) -> str | None:
        now = time.monotonic()
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.spec.wall_timeout_s is not None and now - self.started >= self.spec.wall_timeout_s:
            return "timed_out"
        if self.spec.idle_timeout_s is not None and now - self.last_output >= self.spec.idle_timeout_s:
            return "idle"
        return None


def apply_verdict(result: ProcResult, verdict: str | None) -> None:
    if verdict == "cancelled":
        result.cancelled = True
    elif verdict == "timed_out":
        result.timed_out = True
    elif verdict == "idle":
        result.idle = True
