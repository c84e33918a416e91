"""Where the orchestrator keeps its state: run repositories and run directories, outside any user checkout.

    <state home>/repos/<run-id>/       the run's own repository (on branch orchestrator/<run-id>)
    <state home>/runs/<run-id>/        the run directory: tmp/, agents/, transcripts, report files

The state home is $ORCHESTRATOR_HOME, else $XDG_STATE_HOME/ai-agents-orchestrator, else
~/.local/state/ai-agents-orchestrator. Every function takes the environment as an argument and only
reads it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import UsageError

APP_NAME = "ai-agents-orchestrator"

# A run id becomes part of a branch name, ref names and folder names: keep it to a safe alphabet.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def state_home(env: Mapping[str, str]) -> Path:
    """The folder holding run repositories and run directories (not created here)."""
    explicit = env.get("ORCHESTRATOR_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = env.get("XDG_STATE_HOME")
    if xdg:
        return (Path(xdg).expanduser() / APP_NAME).resolve()
    home = env.get("HOME")
    base = Path(home) if home else Path.home()
    return (base / ".local" / "state" / APP_NAME).resolve()


def _source_checkout_root() -> Path | None:
    """The project's own checkout, when the package runs from one (not from an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    if f'name = "{APP_NAME}"' in text and (root / "workspace").is_dir():
        return root
    return None


def default_workspace_dir(env: Mapping[str, str]) -> Path:
    """Where new repositories go for work started outside any repo: the project's top-level
    workspace/ folder in a source checkout, else <state home>/workspace."""
    root = _source_checkout_root()
    if root is not None:
        return root / "workspace"
    return state_home(env) / "workspace"


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time (UTC, to the second) and unique: e.g. 20261121-061502-a1b2c3."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def validate_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise UsageError(
            f"invalid run id {run_id!r}",
            hint="a run id is letters, digits, '-' and '_' (like 20261121-061502-a1b2c3)",
        )
    return run_id


@dataclass(frozen=True)
class RunPaths:
    """The folders of one run. Nothing is created until `ensure()`."""

    state_home: Path
    run_id: str

    @property
    def worktree(self) -> Path:
        """The run repository's work tree (the name is kept from when it was a linked worktree)."""
        return self.state_home / "repos" / self.run_id

    @property
    def run_dir(self) -> Path:
        return self.state_home / "runs" / self.run_id

    @property
    def tmp_dir(self) -> Path:
        """The run's TMPDIR (agents' temporary files, our temporary index files)."""
        return self.run_dir / "tmp"

    def ensure(self) -> RunPaths:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.worktree.parent.mkdir(parents=True, exist_ok=True)
        return self


def run_paths(state: Path, run_id: str) -> RunPaths:
    return RunPaths(state_home=state.expanduser().resolve(), run_id=validate_run_id(run_id))
