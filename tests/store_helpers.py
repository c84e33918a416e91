"""What the store tests share: a minimal run record to hang events, steps, fences and requests on."""

from __future__ import annotations

from orchestrator.store import Store


def make_run(store: Store, run_id: str = "r1") -> None:
    store.create_run(
        run_id=run_id,
        repo="/tmp",
        task="t",
        workflow_name="w",
        workflow={},
        base="HEAD",
        branch=f"b/{run_id}",
    )
