"""Wake-ups for the bridge when the store's files change, from whichever process wrote them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class _StoreChanged(FileSystemEventHandler):
    def __init__(self, names: frozenset[str], wake: Callable[[], None]) -> None:
        self.names = names
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if Path(str(event.src_path)).name in self.names:
            self.wake()


class StoreWatcher:
    """Calls `wake` when the SQLite file or its write-ahead log changes (every commit writes the log)."""

    def __init__(self, db_path: Path, wake: Callable[[], None]) -> None:
        names = frozenset({db_path.name, f"{db_path.name}-wal"})
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(_StoreChanged(names, wake), str(db_path.parent), recursive=False)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5)
