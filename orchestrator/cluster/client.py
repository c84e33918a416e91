"""What both sides of the cluster need to talk to it: the check of the cluster's configuration and a
Temporal client. Apart from worker.py so that a submitting process (`run --cluster`, the shell, the
dashboard) does not import the worker's activities and engine set-up it never runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.config import Settings
from orchestrator.errors import UsageError
from orchestrator.store import DATABASE_URL_VAR

if TYPE_CHECKING:
    from temporalio.client import Client

CONNECT_TIMEOUT_S = 10.0


def check_cluster(settings: Settings, env: Mapping[str, str]) -> None:
    """Cluster mode needs a Temporal frontend and a shared PostgreSQL store."""
    cluster = settings.cluster
    if cluster.temporal is None:
        raise UsageError(
            "no Temporal server is configured",
            hint="set `cluster: {temporal: HOST:PORT, database: postgresql://...}` in your configuration",
        )
    if not (env.get(DATABASE_URL_VAR) or cluster.database):
        raise UsageError(
            "cluster mode needs the shared PostgreSQL store, and none is configured",
            hint=f"set `cluster: {{database: postgresql://...}}` (or ${DATABASE_URL_VAR})",
        )


async def connect(settings: Settings, identity: str | None = None) -> Client:
    """A Temporal client, or a clear UsageError when the server cannot be reached."""
    from temporalio.client import Client

    cluster = settings.cluster
    assert cluster.temporal is not None
    try:
        connecting = (
            Client.connect(cluster.temporal, namespace=cluster.namespace, identity=identity)
            if identity
            else Client.connect(cluster.temporal, namespace=cluster.namespace)
        )
        return await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - refused, unresolvable, timed out: all "unreachable"
        raise unreachable(cluster.temporal, exc) from exc


def unreachable(address: str, exc: BaseException) -> UsageError:
    """What a submitter or a worker says when the Temporal server at `address` does not answer."""
    return UsageError(
        f"cannot reach the Temporal server at {address}: {str(exc).strip() or type(exc).__name__}",
        hint="start it (or check cluster.temporal in your configuration and the network to it)",
    )
