"""pydantic's plugin loader, made ready without importlib.metadata when no plugin is installed.

The first time pydantic builds a validator it looks for plugins (entry points of the group `pydantic`,
such as logfire's) through `importlib.metadata.entry_points`. Importing importlib.metadata (with the
email parser, zipfile and importlib.resources it brings) costs some 15 to 25 ms at every start of the
orchestrator, on the way to a run's first agent, to find in the common case that there are none.

Here pydantic's loader module is imported while `importlib.metadata` is a stand-in whose
`entry_points` answers the question the cheap way: it reads the `entry_points.txt` of the
distributions on sys.path itself, and only when one of them declares a `pydantic` group, or when
sys.path or sys.meta_path holds anything it does not read (a zip file, an egg, a finder of its own
that lists distributions), it asks the real importlib.metadata, imported then. So the plugins pydantic
finds are the same; PYDANTIC_DISABLE_PLUGINS is still read by pydantic itself. The stand-in leaves
sys.modules at once: any other `import importlib.metadata` gets the real module.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from importlib.machinery import PathFinder
from typing import Any

_INFO_SUFFIXES = (".dist-info", ".egg-info")


def _may_declare(group: str) -> bool:
    """False only when no distribution importlib.metadata would find declares the entry point group."""
    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return True  # a finder of its own lists distributions: only importlib.metadata knows them
    header = f"[{group}]"
    for entry in sys.path:
        root = entry or "."  # importlib.metadata reads "" as the current directory too
        if root.lower().endswith(".egg"):
            return True
        try:
            names = os.listdir(root)
        except NotADirectoryError:
            return True  # a zip file on sys.path may hold distributions
        except OSError:
            continue  # missing: nothing there for importlib.metadata either
        for name in names:
            if not name.lower().endswith(_INFO_SUFFIXES):
                continue
            try:
                with open(os.path.join(root, name, "entry_points.txt"), encoding="utf-8") as fh:
                    if any(line.strip() == header for line in fh):
                        return True
            except (NotADirectoryError, FileNotFoundError):
                continue  # an egg-info file, or a distribution without entry points
            except (OSError, UnicodeDecodeError):
                return True
    return False


def entry_points(**params: Any) -> Any:
    """importlib.metadata.entry_points, for the one call pydantic's loader makes (`group=...`)."""
    group = params.get("group")
    if set(params) == {"group"} and isinstance(group, str) and not _may_declare(group):
        return ()
    return importlib.import_module("importlib.metadata").entry_points(**params)


class _MetadataStandIn(types.ModuleType):
    """Stands for importlib.metadata while pydantic's loader imports it; the real one for any other name."""

    entry_points = staticmethod(entry_points)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system asking (a package's __path__): not the real module's
            raise AttributeError(name)
        if sys.modules.get("importlib.metadata") is self:
            del sys.modules["importlib.metadata"]
        return getattr(importlib.import_module("importlib.metadata"), name)


def _prepare() -> None:
    if "pydantic.plugin._loader" in sys.modules or "importlib.metadata" in sys.modules:
        return  # loaded already, or importlib.metadata is there anyway: nothing to save
    sys.modules["importlib.metadata"] = _MetadataStandIn("importlib.metadata")
    try:
        importlib.import_module("pydantic.plugin._loader")
    finally:
        if isinstance(sys.modules.get("importlib.metadata"), _MetadataStandIn):
            del sys.modules["importlib.metadata"]


_prepare()
