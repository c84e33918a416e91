"""The audit trail: an append-only `audit.jsonl` under the state home, one JSON object a line.

What it holds, for whoever must answer "what ran, and what touched my repository":
- every agent command (`agent_command`): argv with secrets masked, cwd, the NAMES of the environment
  variables the process got (never their values), sandbox on or off, exit status, signal, duration;
- every write to the user's repository (`repo_write`): run branch created or fetched, merge, discard,
  rollback, with the ref and commit;
- every dashboard action (`record_action`): which action, on what, from which address.

Lines are only ever appended (O_APPEND, under an flock so concurrent processes never interleave) and the
file is rotated by size: `audit.jsonl` -> `audit.jsonl.1` -> ... -> `audit.jsonl.<backups>`, the oldest
dropped. Nothing here is read back by the product but `orchestrator audit`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.logs import SecretMasker

AUDIT_FILE = "audit.jsonl"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        masker: SecretMasker | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = Path(path)
        self._masker = masker or SecretMasker()
        self.max_bytes = max_bytes
        self.backups = max(backups, 1)

    @classmethod
    def for_state_home(cls, state_home: Path, **kwargs: Any) -> AuditLog:
        return cls(Path(state_home) / AUDIT_FILE, **kwargs)

    # --- writing ------------------------------------------------------------------------------------

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one entry (masked); returns what was written."""
        entry = self._masker.mask_value({"ts": round(time.time(), 3), "kind": kind, **fields})
        line = (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size + len(line) > self.max_bytes:
                    self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return dict(entry)

    def agent_command(
        self,
        *,
        argv: Sequence[str],
        cwd: Path | str,
        env_names: Sequence[str],
        exit_code: int | None,
        signal: int | None,
        duration_s: float,
        sandbox: bool | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
        agent: str | None = None,
        timed_out: bool = False,
        idle: bool = False,
        cancelled: bool = False,
    ) -> dict[str, Any]:
        """One agent process. `sandbox=None`: judged from the command (bubblewrap runs it or not)."""
        if sandbox is None:
            sandbox = bool(argv) and Path(argv[0]).name == "bwrap"
        return self.record(
            "agent_command",
            run_id=run_id,
            step_id=step_id,
            agent=agent,
            argv=list(argv),
            cwd=str(cwd),
            env_names=sorted(env_names),
            sandbox=sandbox,
            exit_code=exit_code,
            signal=signal,
            duration_s=round(duration_s, 3),
            timed_out=timed_out,
            idle=idle,
            cancelled=cancelled,
        )

    def repo_write(
        self,
        action: str,
        *,
        repo: Path | str,
        ref: str | None = None,
        commit: str | None = None,
        run_id: str | None = None,
        **detail: Any,
    ) -> dict[str, Any]:
        """A write to the user's repository: `action` is create_branch, fetch_branch, merge, discard,
        rollback."""
        return self.record(
            "repo_write", action=action, repo=str(repo), ref=ref, commit=commit, run_id=run_id, **detail
        )

    def dashboard_action(
        self, action: str, target: str, remote_addr: str | None, **detail: Any
    ) -> dict[str, Any]:
        return self.record(
            "dashboard_action", action=action, target=target, remote_addr=remote_addr, **detail
        )

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for n in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(
                    self.path.with_name(f"{self.path.name}.{n}"),
                    self.path.with_name(f"{self.path.name}.{n + 1}"),
                )
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A lock file beside the log, not the log itself: rotation renames the log.
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- reading ------------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """Oldest first: the rotated files, then the current one."""
        rotated = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.backups, 0, -1)]
        return [p for p in [*rotated, self.path] if p.is_file()]

    def entries(self, *, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first (only `run_id`'s when given). A torn or foreign line is skipped."""
        for path in self.files():
            with path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and (run_id is None or entry.get("run_id") == run_id):
                        yield entry


def run_masker(env: Mapping[str, str], agent_envs: Sequence[Mapping[str, str]] = ()) -> SecretMasker:
    """A masker for the environment's secret-named values and every value the configuration gives an
    agent in `agents.<name>.env` (whatever its name: a value put there is the user's to hide)."""
    given = {
        f"AGENT_ENV_{n}_{i}_SECRET": v for n, e in enumerate(agent_envs) for i, v in enumerate(e.values())
    }
    return SecretMasker({**env, **given})


def audit_log(env: Mapping[str, str], *, masker: SecretMasker | None = None) -> AuditLog:
    """The audit log of the state home `env` names (ORCHESTRATOR_HOME, XDG_STATE_HOME or HOME)."""
    from orchestrator.workspace.paths import state_home

    return AuditLog.for_state_home(state_home(env), masker=masker or SecretMasker(env))


def record_action(
    action: str,
    target: str,
    remote_addr: str | None,
    *,
    env: Mapping[str, str] | None = None,
    **detail: Any,
) -> dict[str, Any]:
    """For the dashboard: one action a user took (cancel, follow-up, merge, discard, ...), on what
    (a run id), from which address. `env` names the state home (default: os.environ, read only)."""
    return audit_log(os.environ if env is None else env).dashboard_action(
        action, target, remote_addr, **detail
    )


def audit_agent_step(
    audit: AuditLog, result: Any, *, run_id: str | None, step_id: str | None, sandbox: bool | None = None
) -> None:
    """The entry for one finished agent step (an adapters.runner.AgentStepResult): its command as run."""
    spec, proc = result.spec, result.process
    if spec is None:
        return
    audit.agent_command(
        argv=list(spec.argv),
        cwd=spec.cwd,
        env_names=list(spec.env),
        exit_code=None if proc is None else proc.exit_code,
        signal=None if proc is None else proc.signal,
        duration_s=result.duration_s,
        sandbox=sandbox,
        run_id=run_id,
        step_id=step_id,
        agent=result.agent,
        timed_out=bool(proc and proc.timed_out),
        idle=bool(proc and proc.idle),
        cancelled=bool(proc and proc.cancelled),
    )
