"""The adapter Protocol, and what every adapter shares.

An adapter knows one CLI: how to call it (`build_command`, pure), how to read its output (`parse_line`,
pure), how to judge the finished process (`finish`, pure), and whether it can run here
(`availability`). It never spawns anything itself: orchestrator/proc.py does that.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestrator.adapters.pins import PINNED
from orchestrator.adapters.versions import VersionCache
from orchestrator.events import AgentErrorEvent, AgentEvent, Result, ToolUse, Usage
from orchestrator.proc_tree import signal_name


class PermissionMode(enum.StrEnum):
    """What the agent may do, mapped by each adapter onto its CLI's own flags."""

    EDIT = "edit"  # edit files inside the run's directory; the default for implementers
    READ_ONLY = "read_only"  # reviewers: no edits, no writing commands
    BYPASS = "bypass"  # everything, only when the user asks for it


@dataclass(frozen=True)
class AgentRequest:
    """One headless step for one agent."""

    prompt: str
    cwd: Path
    # A directory of the run's own, for files the CLI needs beside it (settings, usage reports) and
    # for its TMPDIR. Never inside `cwd`, so it never shows up in the diff.
    run_dir: Path
    permission: PermissionMode = PermissionMode.EDIT
    resume_session: str | None = None
    model: str | None = None
    extra_args: tuple[str, ...] = ()
    # The agent's configured variables, already resolved (`${VAR}` expanded). Only these, plus the
    # allowlist in proc.py, reach the child.
    env: Mapping[str, str] = field(default_factory=dict)
    command: str | None = None  # the executable, from config; else the adapter finds it


@dataclass(frozen=True)
class Command:
    """What to spawn. Built purely; resolved to a process only in proc.py."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the allowlist
    stdin: str | None = None  # text fed on stdin; None means /dev/null
    # Files to write before the spawn (absolute path -> text), e.g. a settings file in run_dir.
    setup_files: Mapping[Path, str] = field(default_factory=dict)
    # Files whose text `finish` needs after the process ends (e.g. a usage report).
    collect_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ProcessOutcome:
    """How the process ended, as proc.py saw it."""

    exit_code: int | None  # None when killed by a signal
    timed_out: bool = False  # the wall-clock limit ended it
    idle: bool = False  # the idle limit ended it
    cancelled: bool = False
    duration_s: float = 0.0
    output_tail: str = ""  # last lines of stdout and stderr together, for errors that are only text
    wall_limit_s: float | None = None
    idle_limit_s: float | None = None
    signal: int | None = None  # the signal that ended it, when one did

    @property
    def ended(self) -> str:
        """How it ended, for messages: "exited with 3", "was killed by SIGKILL (signal 9)"."""
        if self.exit_code is None and self.signal is not None:
            return f"was killed by {signal_name(self.signal)}"
        return f"exited with {self.exit_code}"


@dataclass(frozen=True)
class Availability:
    agent: str
    installed: bool
    path: str | None
    version: str | None
    tested_version: str | None
    version_tested: bool
    auth_configured: bool
    auth_source: str | None  # which credential the CLI will use, e.g. "ANTHROPIC_API_KEY"
    ready: bool
    reason: str  # why not ready, or "ready"
    fix: str | None = None  # what to do about it

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "installed": self.installed,
            "path": self.path,
            "version": self.version,
            "tested_version": self.tested_version,
            "version_tested": self.version_tested,
            "auth_configured": self.auth_configured,
            "auth_source": self.auth_source,
            "ready": self.ready,
            "reason": self.reason,
            "fix": self.fix,
        }


@runtime_checkable
class Adapter(Protocol):
    name: str
    # The vendor's own credential/endpoint variables this CLI may inherit from the user's environment
    # (unless the agent's config says `inherit_credentials: false`). No other agent ever gets them.
    credential_vars: tuple[str, ...]
    # True when a resumed session reports the whole session's tokens, not this step's (codex exec resume):
    # the step runner then subtracts what the session had reported before.
    usage_accumulates_over_session: bool

    def build_command(self, request: AgentRequest) -> Command: ...

    def parse_line(self, line: str) -> list[AgentEvent]: ...

    def finish(
        self,
        outcome: ProcessOutcome,
        events: Sequence[AgentEvent],
        collected: Mapping[Path, str],
    ) -> list[AgentEvent]:
        """Events the end of the process adds: usage from a report file, the typed error a
        non-JSON failure stands for, a missing result. Pure."""
        ...

    def availability(
        self,
        env: Mapping[str, str],
        command: str | None = None,
        *,
        args: Sequence[str] = (),
        model: str | None = None,
        versions: VersionCache | None = None,
    ) -> Availability:
        """Installed? Which version? Which credentials, judged as the CLI itself would with this
        environment and the agent's configured `args` and `model`? `versions` remembers versions."""
        ...


def credential_vars_for(adapter: Adapter, parent: Mapping[str, str], args: Sequence[str]) -> tuple[str, ...]:
    """The variables an agent may inherit: the adapter's fixed list, plus those its CLI's own
    configuration names (a Codex model provider's `env_key`), so the key its set-up needs reaches it."""
    configured = getattr(adapter, "configured_credential_vars", None)
    extra: tuple[str, ...] = tuple(configured(parent, args)) if callable(configured) else ()
    return tuple(dict.fromkeys((*adapter.credential_vars, *extra)))


# --- helpers every adapter uses ---------------------------------------------------------------------


def load_json_line(line: str) -> dict[str, Any] | None:
    """The JSON object on a line, or None for anything else (noise, banners, partial lines)."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def cli_cache_bin_dir(env: Mapping[str, str]) -> Path:
    """Where `orchestrator install-clis` puts the pinned CLIs (node_modules/.bin)."""
    base = env.get("ORCHESTRATOR_CLI_DIR")
    if base:
        return Path(base) / "node_modules" / ".bin"
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(cache) / "ai-agents-orchestrator" / "clis" / "node_modules" / ".bin"


def resolve_executable(name: str, env: Mapping[str, str], command: str | None = None) -> str | None:
    """The configured command, else the CLI on PATH, else the pinned one in our cache folder."""
    if command:
        if os.sep in command:
            return command if os.access(command, os.X_OK) else None
        return shutil.which(command, path=env.get("PATH"))
    found = shutil.which(name, path=env.get("PATH"))
    if found:
        return found
    cached = cli_cache_bin_dir(env) / name
    return str(cached) if os.access(cached, os.X_OK) else None


def install_hint(agent: str) -> str:
    pin = PINNED.get(agent)
    if pin is None:
        return "check the agent's `command` in your configuration"
    return (
        f"run `orchestrator install-clis {agent}` (npm install {pin.package}@{pin.version}), "
        f"or set agents.{agent}.command in your configuration"
    )


_VERSION = re.compile(r"\d+\.\d+\.\d+")


def parse_version(text: str) -> str | None:
    match = _VERSION.search(text)
    return match.group(0) if match else None


# Dollars per million tokens (input, output, cached input), for CLIs that report tokens but no cost.
# Unknown models have no price: cost stays None rather than a guess.
PRICING_PER_MTOK: dict[str, tuple[float, float, float]] = {
    "gpt-5": (1.25, 10.0, 0.125),
    "gpt-5-codex": (1.25, 10.0, 0.125),
    "gpt-5-mini": (0.25, 2.0, 0.025),
    "gpt-4.1": (2.0, 8.0, 0.5),
    "gemini-2.5-pro": (1.25, 10.0, 0.31),
    "gemini-2.5-flash": (0.30, 2.5, 0.075),
    "claude-sonnet-4-5": (3.0, 15.0, 0.30),
    "claude-opus-4-1": (15.0, 75.0, 1.5),
    # The scripted model server's models, so that budgets are testable with no account.
    "scripted-model": (1.0, 2.0, 0.1),
}


def price_usd(
    model: str | None, input_tokens: int, output_tokens: int, cached_tokens: int = 0
) -> float | None:
    if model is None or model not in PRICING_PER_MTOK:
        return None
    p_in, p_out, p_cached = PRICING_PER_MTOK[model]
    uncached = max(input_tokens - cached_tokens, 0)
    return (uncached * p_in + output_tokens * p_out + cached_tokens * p_cached) / 1_000_000


def limit_error(outcome: ProcessOutcome) -> AgentErrorEvent | None:
    """The error our own limits stand for, if one ended the process."""
    if outcome.idle:
        return AgentErrorEvent(
            kind="idle", message=f"no output for {outcome.idle_limit_s or '?'} s; the agent was stopped"
        )
    if outcome.timed_out:
        return AgentErrorEvent(
            kind="timeout",
            message=f"the step ran past its {outcome.wall_limit_s or '?'} s limit and was stopped",
        )
    if outcome.cancelled:
        return AgentErrorEvent(kind="other", message="the step was cancelled")
    return None


@dataclass(frozen=True)
class StepSummary:
    """What one agent step came to, judged from events and exit status, never from exit code alone."""

    success: bool
    final_text: str
    session_id: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float | None
    error_kind: str | None
    error_message: str | None
    files_touched: tuple[str, ...]
    retry_after_s: float | None = None  # a rate limit's retry-after, when known


def summarize(events: Sequence[AgentEvent], outcome: ProcessOutcome) -> StepSummary:
    """Success needs a successful result event, a zero exit, and no error event (refusals included)."""
    result: Result | None = None
    errors: list[AgentErrorEvent] = []
    totals = [0, 0, 0]
    cost: float | None = None
    delta_cost: float | None = None
    delta = [0, 0, 0]
    session_id: str | None = None
    touched: list[str] = []
    for event in events:
        if isinstance(event, Result):
            result = event
            session_id = event.session_id or session_id
        elif isinstance(event, AgentErrorEvent):
            errors.append(event)
        elif isinstance(event, Usage):
            if event.scope == "total":
                totals = [event.input_tokens, event.output_tokens, event.cached_tokens]
                cost = event.cost_usd
                delta, delta_cost = [0, 0, 0], None
            else:
                delta = [
                    delta[0] + event.input_tokens,
                    delta[1] + event.output_tokens,
                    delta[2] + event.cached_tokens,
                ]
                if event.cost_usd is not None:
                    delta_cost = (delta_cost or 0.0) + event.cost_usd
        elif isinstance(event, ToolUse) and event.action == "file_edit" and event.path:
            # Only edits that completed: a started edit may still be refused or fail.
            if event.status == "succeeded" and event.path not in touched:
                touched.append(event.path)
        session_id = getattr(event, "session_id", None) or session_id
    if cost is not None or delta_cost is not None:
        cost = (cost or 0.0) + (delta_cost or 0.0)
    exit_ok = outcome.exit_code == 0 and not (outcome.timed_out or outcome.idle or outcome.cancelled)
    success = bool(result and result.success and exit_ok and not errors)
    first_error = errors[0] if errors else None
    kind: str | None = first_error.kind if first_error else None
    message: str | None = first_error.message if first_error else None
    if not success and first_error is None:
        if result is None:
            kind, message = "crashed", f"the agent {outcome.ended} and gave no result"
        elif not result.success:
            kind, message = "other", result.final_text or "the agent reported failure"
        else:
            kind, message = "crashed", f"the agent reported success but {outcome.ended}"
    return StepSummary(
        success=success,
        final_text=result.final_text if result else "",
        session_id=session_id,
        input_tokens=totals[0] + delta[0],
        output_tokens=totals[1] + delta[1],
        cached_tokens=totals[2] + delta[2],
        cost_usd=cost,
        error_kind=kind,
        error_message=message,
        files_touched=tuple(touched),
        retry_after_s=_retry_after(first_error) if kind == "rate_limit" else None,
    )


_RETRY_AFTER = re.compile(
    r"(?i)(?:retry[- ]after[\"':= ]*|try again in |retry in |retrying in )(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?)?\b"
)


def retry_after_from_text(text: str) -> float | None:
    """A retry-after a CLI put into its error text ("retry-after: 12", "try again in 20s"), in seconds."""
    match = _RETRY_AFTER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value / 1000 if (match.group(2) or "").lower() == "ms" else value


def _retry_after(error: AgentErrorEvent | None) -> float | None:
    if error is None:
        return None
    return error.retry_after_s if error.retry_after_s is not None else retry_after_from_text(error.message)


def probe_availability(
    agent: str,
    env: Mapping[str, str],
    command: str | None,
    *,
    auth_source: str | None,
    missing_auth: tuple[str, str],
    auth_problem: tuple[str, str] | None = None,
    version_env: Mapping[str, str] | None = None,
    timeout_s: float = 20.0,
    versions: VersionCache | None = None,
) -> Availability:
    """What every adapter's `availability` says: installed (where), which version (`--version`, run in
    the child's environment, or remembered in `versions` for this very file), whether that is the
    pinned version, whether auth is configured. `missing_auth` is the adapter's own (reason, fix) for a
    CLI that has no credentials; `auth_problem` replaces it when a set-up was found that cannot work."""
    pin = PINNED[agent]
    path = resolve_executable(pin.binary, env, command)
    version: str | None = None
    fix: str | None
    if path is None:
        reason, fix = (
            f"{agent} is not installed (`{command or pin.binary}` was not found)",
            install_hint(agent),
        )
    else:
        version = versions.get(path) if versions is not None else None
        failure = ""
        if version is None:
            version, failure = _ask_version(path, {**env, **(version_env or {})}, timeout_s)
            if version is not None and versions is not None:
                versions.put(path, version)
        if version is None:
            reason, fix = f"`{path} --version` failed: {failure}", install_hint(agent)
        elif auth_source is None:
            reason, fix = auth_problem or missing_auth
        elif version != pin.version:
            reason = f"ready, but version {version} is untested (tested: {pin.version})"
            fix = f"tested with {pin.version}: {install_hint(agent)}"
        else:
            reason, fix = "ready", None
    return Availability(
        agent=agent,
        installed=path is not None,
        path=path,
        version=version,
        tested_version=pin.version,
        version_tested=version == pin.version,
        auth_configured=auth_source is not None,
        auth_source=auth_source,
        ready=version is not None and auth_source is not None,
        reason=reason,
        fix=fix,
    )


def _ask_version(path: str, env: Mapping[str, str], timeout_s: float) -> tuple[str | None, str]:
    from orchestrator.proc import run_command  # spawning is proc's job; the pure parts need none of it

    try:
        probe = run_command([path, "--version"], Path(path).parent, env=env, timeout_s=timeout_s)
    except OSError as exc:
        return None, str(exc)
    version = parse_version(probe.stdout) if probe.ok else None
    failure = "timed out" if probe.timed_out else (probe.stderr or probe.stdout).strip()[-300:] or "no output"
    return version, failure
