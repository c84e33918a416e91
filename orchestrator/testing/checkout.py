"""A comparable record of a user's checkout, so a test can assert it is byte-identical before and after.

    before = snapshot_checkout(repo)
    ... run the orchestrator ...
    assert snapshot_checkout(repo) == before, before.differences(snapshot_checkout(repo))

Recorded: every file, folder and symlink outside the top-level .git (untracked and ignored ones too) with
its mode, content digest, size and modification time; the index file's bytes; HEAD (symbolic and
resolved); the current branch; the stash list; and every ref except the orchestrator's own
(refs/orchestrator/* and the run branches refs/heads/orchestrator/*, which runs create on purpose).
Reading the checkout writes nothing: git runs with optional locks off.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.workspace.git import Git

DEFAULT_IGNORED_REFS: tuple[str, ...] = ("refs/orchestrator/", "refs/heads/orchestrator/")


@dataclass(frozen=True)
class EntryRecord:
    kind: str  # "file", "dir" or "symlink"
    mode: int
    digest: str  # sha256 of the bytes (file) or of the target (symlink); "" for a folder
    size: int
    mtime_ns: int | None  # None for folders, and when mtimes are not recorded


@dataclass(frozen=True)
class CheckoutSnapshot:
    root: Path = field(compare=False)
    entries: dict[str, EntryRecord]
    index_digest: str | None  # sha256 of the index file's bytes; None when there is no index
    head_symbolic: str | None  # e.g. refs/heads/main; None when detached
    head_commit: str | None  # None before the first commit
    branch: str  # `git branch --show-current` ("" when detached)
    stash: tuple[str, ...]
    refs: dict[str, str]

    def differences(self, other: CheckoutSnapshot) -> list[str]:
        """What differs, one line each (empty when equal), for assertion messages."""
        found: list[str] = []
        for name in sorted(set(self.entries) | set(other.entries)):
            mine, theirs = self.entries.get(name), other.entries.get(name)
            if mine != theirs:
                found.append(f"{name}: {mine} -> {theirs}")
        for label in ("index_digest", "head_symbolic", "head_commit", "branch", "stash"):
            if getattr(self, label) != getattr(other, label):
                found.append(f"{label}: {getattr(self, label)!r} -> {getattr(other, label)!r}")
        for ref in sorted(set(self.refs) | set(other.refs)):
            if self.refs.get(ref) != other.refs.get(ref):
                found.append(f"{ref}: {self.refs.get(ref)} -> {other.refs.get(ref)}")
        return found


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path, mtimes: bool) -> dict[str, EntryRecord]:
    entries: dict[str, EntryRecord] = {}
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as listing:
            for entry in listing:
                if folder == root and entry.name == ".git":
                    continue  # the repository itself (a folder, or a file in a linked worktree)
                path = Path(entry.path)
                name = path.relative_to(root).as_posix()
                info = entry.stat(follow_symlinks=False)
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISLNK(info.st_mode):
                    target = os.readlink(path)
                    sha = hashlib.sha256(target.encode("utf-8", "surrogateescape")).hexdigest()
                    entries[name] = EntryRecord("symlink", mode, sha, len(target), None)
                elif stat.S_ISDIR(info.st_mode):
                    entries[name] = EntryRecord("dir", mode, "", 0, None)
                    pending.append(path)
                else:
                    mtime = info.st_mtime_ns if mtimes else None
                    entries[name] = EntryRecord("file", mode, _digest(path), info.st_size, mtime)
    return entries


def snapshot_checkout(
    repo: Path, *, mtimes: bool = True, ignored_refs: Sequence[str] = DEFAULT_IGNORED_REFS
) -> CheckoutSnapshot:
    """Record the checkout whose work tree starts at `repo` (its top level)."""
    root = Path(repo).resolve()
    git = Git(root)
    index = root / git.out("rev-parse", "--git-path", "index")
    index_digest = _digest(index) if index.is_file() else None
    symbolic = git.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip() or None
    stash_out = git.run("stash", "list", "--format=%H", check=False).stdout
    refs_out = git.out("for-each-ref", "--format=%(refname) %(objectname)")
    refs = {}
    for line in refs_out.splitlines():
        name, _, sha = line.partition(" ")
        if name and not name.startswith(tuple(ignored_refs)):
            refs[name] = sha
    return CheckoutSnapshot(
        root=root,
        entries=_walk(root, mtimes),
        index_digest=index_digest,
        head_symbolic=symbolic,
        head_commit=git.rev_parse("HEAD"),
        branch=git.out("branch", "--show-current"),
        stash=tuple(stash_out.split()),
        refs=refs,
    )
