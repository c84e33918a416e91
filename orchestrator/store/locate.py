"""Which store a command uses: $ORCHESTRATOR_DATABASE_URL, else the configuration's
`cluster: {database: postgresql://...}`, else the SQLite file `state.db` in the state home."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.store.backend import is_postgres_url

DATABASE_URL_VAR = "ORCHESTRATOR_DATABASE_URL"
SQLITE_NAME = "state.db"


def store_location(configured: str | None, env: Mapping[str, str], state_home: Path) -> Path | str:
    """The store's location: a postgresql:// URL, or the SQLite file under `state_home`."""
    from_env = env.get(DATABASE_URL_VAR)
    url = from_env or configured
    if not url:
        return state_home / SQLITE_NAME
    if not is_postgres_url(url):
        where = f"${DATABASE_URL_VAR}" if from_env else "cluster.database"
        raise ConfigError(
            f"{where} must be a postgresql:// URL",
            key_path=None if from_env else "cluster.database",
            hint="postgresql://USER:PASSWORD@HOST:PORT/DATABASE; leave it out for the embedded SQLite store",
        )
    return url
