"""A step whose changes hold a secret the run was given is never committed.

Before the engine commits a step, `check_step` reads what the step changed in the run's repository
(the files, by content and name, and the messages and patches of commits the agent made itself) and
looks for the run's given secrets there (`orchestrator.secrets.find_leaks`, pure). When one is found, the
change is copied to `<run dir>/withheld/<step>/` (the only place it is kept; owner-only permissions) and
the run's repository is put back to where the step started, so nothing of it reaches any ref.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.secrets import SecretLeak, find_leaks
from orchestrator.workspace.git import Git
from orchestrator.workspace.run_workspace import RunWorkspace

# Files bigger than this are scanned by their first bytes only (a secret in a 100 MB file is still a
# leak, but reading gigabytes would stall every step: agents do not write keys that deep).
SCAN_LIMIT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Withheld:
    leaks: list[SecretLeak]
    folder: Path  # where the step's change was kept

    def message(self) -> str:
        files = ", ".join(sorted({leak.path for leak in self.leaks}))
        sources = ", ".join(sorted({leak.source.split(":", 1)[-1] for leak in self.leaks}))
        return (
            f"the step's changes hold a secret the run was given ({sources}) in {files}; "
            f"nothing was committed, the change is kept only in {self.folder}"
        )


def _read(path: Path) -> bytes | None:
    try:
        if path.is_symlink():
            return os.readlink(path).encode("utf-8", "surrogateescape")
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            return fh.read(SCAN_LIMIT_BYTES)
    except OSError:
        return None


def step_changes(ws: RunWorkspace, step_start: str) -> tuple[dict[str, bytes | None], dict[str, str]]:
    """What a step would commit: changed paths with their content (None: deleted), and the text of the
    commits the agent made itself (messages and patches), by a label."""
    files = {path: _read(ws.worktree / path) for path in ws.changed_files(since=step_start)}
    texts: dict[str, str] = {}
    log = Git(ws.worktree, environ=ws.environ).run(
        "log", "-p", "--text", "--no-color", "--no-ext-diff", f"{step_start}..HEAD", check=False
    )
    if log.ok and log.stdout.strip():
        texts["the agent's own commits"] = log.stdout
    return files, texts


def check_step(
    ws: RunWorkspace, *, step_id: str, step_start: str, given: Mapping[str, str], run_dir: Path
) -> Withheld | None:
    """None when the step's changes hold no given secret; else the change is withheld (see module)."""
    if not given or not ws.has_worktree():
        return None
    files, texts = step_changes(ws, step_start)
    leaks = find_leaks(files, given, texts=texts)
    if not leaks:
        return None
    folder = _keep_aside(run_dir / "withheld" / step_id, files, texts)
    _reset(ws, step_start)
    return Withheld(leaks=leaks, folder=folder)


def _keep_aside(folder: Path, files: Mapping[str, bytes | None], texts: Mapping[str, str]) -> Path:
    base, n = folder, 1
    while folder.exists():  # an earlier withheld change of the same step (a resume) is kept too
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True, mode=0o700)
    with contextlib.suppress(OSError):
        folder.parent.chmod(0o700)
    deleted = []
    for path, content in files.items():
        if content is None:
            deleted.append(path)
            continue
        target = folder / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_bytes(content)
        target.chmod(0o600)
    for name, text in (("agent-commits.patch", texts.get("the agent's own commits")),):
        if text:
            (folder / name).write_text(text, encoding="utf-8")
            (folder / name).chmod(0o600)
    if deleted:
        (folder / "deleted.txt").write_text("\n".join(deleted) + "\n", encoding="utf-8")
    return folder


def _reset(ws: RunWorkspace, step_start: str) -> None:
    """The run's repository back at `step_start`: the branch (an agent may have committed), the files,
    untracked files. Not RunWorkspace.reset_to: that keeps what it drops under a backup ref."""
    git = Git(ws.worktree, environ=ws.environ)
    git.run("checkout", "-q", "-f", "-B", ws.branch, step_start)
    git.run("clean", "-ffdq")
    # What the agent committed must not stay in the run's repository either: its last message, its
    # reflog entries and its now unreachable objects go. (prune touches only this repository's own
    # objects; the user's, borrowed through alternates, are never pruned from here.)
    git_dir = Path(git.out("rev-parse", "--absolute-git-dir"))
    for name in ("COMMIT_EDITMSG", "ORIG_HEAD", "MERGE_MSG", "SQUASH_MSG"):
        (git_dir / name).unlink(missing_ok=True)
    git.run("reflog", "expire", "--expire=now", "--all")
    git.run("prune", "--expire=now")
