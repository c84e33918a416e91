"""One error tree. Every error carries an exit code (see DESIGN.md) and says what to do next."""

from __future__ import annotations

from typing import ClassVar, Literal

# Exit codes, as fixed in DESIGN.md.
EXIT_OK = 0
EXIT_NOT_APPROVED = 1  # the run finished without approval, or a step failed
EXIT_USAGE = 2  # usage or configuration error
EXIT_INTERNAL = 3  # unexpected internal error (a crash log is written)
EXIT_INTERRUPTED = 130

AgentErrorKind = Literal[
    "auth", "rate_limit", "timeout", "idle", "refused", "crashed", "not_installed", "other"
]


class OrchestratorError(Exception):
    """Base of every error we raise on purpose. `hint` tells the user what to do."""

    exit_code: ClassVar[int] = EXIT_NOT_APPROVED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(OrchestratorError):
    """The command line was wrong."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration or workflow file is invalid: names the file, the key path and what is allowed."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: str | None = None,
        allowed: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = file or "configuration"
        if key_path:
            where = f"{where}: {key_path}"
        text = f"{where}: {message}"
        if allowed:
            text = f"{text} (allowed: {allowed})"
        super().__init__(text, hint=hint)
        self.file = file
        self.key_path = key_path
        self.allowed = allowed


class AgentError(OrchestratorError):
    """An agent step failed in a way we can name."""

    kind: ClassVar[AgentErrorKind] = "other"


class AgentNotInstalled(AgentError):
    kind = "not_installed"


class AgentNotAuthenticated(AgentError):
    kind = "auth"


class AgentRateLimited(AgentError):
    kind = "rate_limit"


class AgentTimedOut(AgentError):
    kind = "timeout"


class AgentIdle(AgentError):
    kind = "idle"


class AgentRefused(AgentError):
    kind = "refused"


class AgentCrashed(AgentError):
    kind = "crashed"


AGENT_ERRORS_BY_KIND: dict[str, type[AgentError]] = {
    cls.kind: cls
    for cls in (
        AgentError,
        AgentNotInstalled,
        AgentNotAuthenticated,
        AgentRateLimited,
        AgentTimedOut,
        AgentIdle,
        AgentRefused,
        AgentCrashed,
    )
}


class GitError(OrchestratorError):
    """A git operation failed; the message carries git's own words."""


class RunNotFound(UsageError):
    pass


StoreProblem = Literal["corrupt", "unreadable", "read_only", "disk_full", "busy"]


class StoreError(OrchestratorError):
    """The run store cannot be used (corrupt, unreadable, read-only, disk full, locked): not a bug
    of ours, so no crash log. `path` is the store's file; `problem` says which fault it is."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, path: str, problem: StoreProblem, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.problem = problem


class StaleFence(OrchestratorError):
    """A write for a run by a Store whose fencing token (Store.hold_fence) is no longer the run's
    newest: another attempt at the run's step (on another worker) took a newer token, so this one's
    late writes are refused. Not a fault of the store: the stale attempt simply stops."""

    def __init__(self, run_id: str, held: int, current: int) -> None:
        super().__init__(
            f"run {run_id}: this attempt's fencing token {held} is stale (the run's is now {current}); "
            "its write was refused",
            hint="another worker took the run's step over; nothing to do",
        )
        self.run_id = run_id
        self.held = held
        self.current = current


class RunStopped(OrchestratorError):
    """A run had to stop for a fault outside it (the disk filled up, the store failed); it is marked
    failed. Exit 1, like any failed run."""

    exit_code = EXIT_NOT_APPROVED


class InternalError(OrchestratorError):
    exit_code = EXIT_INTERNAL
