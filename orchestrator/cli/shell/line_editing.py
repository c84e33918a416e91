"""Line editing, history kept across sessions, and Tab completion, with the stdlib `readline`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

HISTORY_LENGTH = 1000


class LineEditor:
    """Loads the history file on start, appends each line as it is entered (so a killed shell loses
    nothing), and bounds the file's length on `close()`."""

    def __init__(self, history_file: Path, complete: Callable[[str, str], list[str]]) -> None:
        import readline  # imported here: only the interactive shell needs it

        self._readline = readline
        self.history_file = history_file
        self._complete = complete
        self._matches: list[str] = []
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history_file.touch(exist_ok=True)
        readline.set_history_length(HISTORY_LENGTH)
        readline.clear_history()
        with contextlib.suppress(OSError):
            readline.read_history_file(str(history_file))
        readline.set_completer_delims(" \t\n")
        readline.set_completer(self._completer)
        if "libedit" in (readline.__doc__ or ""):  # macOS's readline speaks another binding syntax
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")

    def remember(self, line: str) -> None:
        """`input()` put the line in the in-memory history; write it to the file now."""
        if line.strip():
            with contextlib.suppress(OSError):
                self._readline.append_history_file(1, str(self.history_file))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._readline.write_history_file(str(self.history_file))  # at most HISTORY_LENGTH lines
        self._readline.set_completer(None)

    def _completer(self, text: str, state: int) -> str | None:
        if state == 0:
            try:
                self._matches = self._complete(self._readline.get_line_buffer(), text)
            except Exception:  # noqa: BLE001 - a completion bug must never end the shell
                self._matches = []
        return self._matches[state] if state < len(self._matches) else None
