"""Retries of what is really transient, on purpose and never silently.

Three things are retried, each with tenacity and each reported: git's lock files held by another git
(index.lock, ref locks), the store's file locked beyond SQLite's busy_timeout while it is opened, and an
agent's 429 with a known retry-after when no other agent can take the step. Every retry is a warning log
line and, while a run is being executed, a notice of kind "retry" in the run's log (the engine listens with
`retries_reported_to`). Nothing else is retried.

The listener is a context variable: a run executing in one thread (the dashboard runs several) hears
only its own retries; a thread started elsewhere has none, and its retries are only logged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import structlog

log = structlog.get_logger(__name__)

RetryWhat = Literal["git_lock", "store_busy", "rate_limit"]


@dataclass(frozen=True)
class RetryNote:
    what: RetryWhat
    attempt: int  # the attempt that failed (1 = the first try)
    max_attempts: int
    wait_s: float  # how long we wait before the next one
    reason: str  # the failure's own words, shortened


RetryListener = Callable[[RetryNote], None]

_listener: contextvars.ContextVar[RetryListener | None] = contextvars.ContextVar(
    "orchestrator_retry_listener", default=None
)


def report_retry(note: RetryNote) -> None:
    """A retry is about to happen: log it, and tell the run listening in this context, if any."""
    log.warning(
        "retrying",
        what=note.what,
        attempt=note.attempt,
        max_attempts=note.max_attempts,
        wait_s=round(note.wait_s, 3),
        reason=note.reason,
    )
    listener = _listener.get()
    if listener is not None:
        listener(note)


@contextlib.contextmanager
def retries_reported_to(listener: RetryListener) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def short(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


_WHAT = {"git_lock": "git lock held", "store_busy": "store locked", "rate_limit": "rate limited"}


def retry_text(note: RetryNote) -> str:
    """e.g. "rate limited, try 2 of 3 in 1.0 s: i1-s1-implement (fake): API error 429: slow down"."""
    return (
        f"{_WHAT.get(note.what, note.what)}, try {note.attempt + 1} of {note.max_attempts} "
        f"in {note.wait_s:.1f} s: {note.reason}"
    )
