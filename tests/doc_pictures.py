"""Where tests put the pictures the docs show (docs/dashboard.png, docs/dashboard-cluster.png): into
docs/ only when asked with ORCHESTRATOR_UPDATE_DOCS=1, else among the test's own files, so that a test
run leaves the checkout as it found it (each run made a slightly different picture)."""

from __future__ import annotations

import os
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def doc_picture(name: str, tmp_path: Path) -> Path:
    """The path to write the picture `name` to."""
    if os.environ.get("ORCHESTRATOR_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS / name
    return tmp_path / name
