"""Diff text for prompts, cut to a size budget (pure: no git here)."""

from __future__ import annotations

from dataclasses import dataclass, field

_FILE_HEADER = "diff --git "


@dataclass(frozen=True)
class DiffText:
    """A unified diff, possibly cut. `files` lists every changed path, shown or not; `cut_files` those
    whose diff was left out or shortened to stay within the budget."""

    text: str
    files: list[str]
    truncated: bool = False
    cut_files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.files)


def split_file_diffs(text: str) -> list[str]:
    """One chunk per `diff --git` section (the text before the first one, if any, is its own chunk)."""
    chunks: list[str] = []
    start = 0
    position = text.find(_FILE_HEADER)
    while position != -1:
        if position == 0 or text[position - 1] == "\n":
            if position > start:
                chunks.append(text[start:position])
            start = position
        position = text.find(_FILE_HEADER, position + 1)
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def _chunk_path(chunk: str) -> str:
    """The path a `diff --git a/X b/X` section is about (its b/ side, or a/ when deleted)."""
    first = chunk.split("\n", 1)[0]
    for line in chunk.split("\n")[1:6]:
        if line.startswith("+++ b/"):
            return line[len("+++ b/") :]
        if line.startswith("--- a/"):
            fallback = line[len("--- a/") :]
            if "+++ /dev/null" in chunk:
                return fallback
    _, _, rest = first.partition(" b/")
    return rest or first[len(_FILE_HEADER) :]


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut_to(text: str, budget: int) -> str:
    """The longest prefix of `text` within `budget` UTF-8 bytes, ending at a line end when possible."""
    raw = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    newline = raw.rfind("\n")
    return raw[: newline + 1] if newline > 0 else raw


def truncate_diff(text: str, files: list[str], max_bytes: int) -> DiffText:
    """Keep whole file sections in order while they fit; shorten the first that does not (if a useful
    part of it fits), list the rest in a closing note. The note counts towards the budget."""
    if _size(text) <= max_bytes:
        return DiffText(text=text, files=files)
    kept: list[str] = []
    cut: list[str] = []
    used = 0
    reserve = 200  # room for the note's first line; names are added only while they fit
    for chunk in split_file_diffs(text):
        size = _size(chunk)
        if not cut and used + size <= max_bytes - reserve:
            kept.append(chunk)
            used += size
            continue
        path = _chunk_path(chunk)
        room = max_bytes - reserve - used
        if not cut and room >= 400:  # a shortened section is worth showing only if its start fits
            part = _cut_to(chunk, room - 60)
            kept.append(part + f"[... rest of the diff of {path} cut ...]\n")
            used += _size(kept[-1])
        cut.append(path)
    note = f"[diff cut to about {max_bytes} bytes; not shown in full: {len(cut)} file(s):"
    names: list[str] = []
    for path in cut:
        if used + _size(note) + _size(" ".join([*names, path])) + 2 > max_bytes:
            names.append("...")
            break
        names.append(path)
    note = note + " " + " ".join(names) + "]\n"
    body = "".join(kept)
    if body and not body.endswith("\n"):
        body += "\n"
    return DiffText(text=body + note, files=files, truncated=True, cut_files=cut)
