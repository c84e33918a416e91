"""Per-CLI concurrency across a whole cluster: MachineSlots (slots.py) with PostgreSQL advisory locks.

When the run store is a PostgreSQL database, every worker shares it, so a CLI's cap holds across the
cluster, not per machine. A slot is the session-level advisory lock (SLOT_SPACE ^ hash(agent), index),
held on a connection of its own: the server releases it when that connection closes, including when
its process dies (SIGKILL: the kernel closes the socket, the server sees it at once), as the flock
slots are released on one machine. Nothing to clean up, nothing stale.

Taking a slot, as on one machine: under the agent's mutex (the advisory lock (key, MUTEX_INDEX),
held for one query), count the agent's slot locks granted in this database (pg_locks), and take a
free index below the cap in force only when fewer than the cap are held. Every taker decides under
the mutex and holders only leave, so the number held never exceeds the cap in force when taking.
The 429 cool-down (throttle.py) stays per machine: a provider's rate limit is per account and key,
which is usually per machine.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.limits.slots import DEFAULT_AGENT_CAP, MAX_AGENT_CAP, MachineSlots, Slot
from orchestrator.limits.throttle import DEFAULT_COOLDOWN_S

SLOT_SPACE = 0x6F726368  # "orch": the high bits of every slot key, apart from the store's own lock
MUTEX_INDEX = 1_000_000  # the second key of an agent's mutex (slot indexes are below MAX_AGENT_CAP)
CONNECT_TIMEOUT_S = 10


def agent_key(agent: str) -> int:
    """The first key (a signed 32-bit int) of an agent's advisory locks."""
    digest = int.from_bytes(hashlib.sha256(f"orchestrator-slot:{agent}".encode()).digest()[:4], "big")
    key = digest ^ SLOT_SPACE
    return key - (1 << 32) if key >= 1 << 31 else key


@dataclass
class ClusterSlot(Slot):
    """A slot held by its own database session; released when that session ends."""

    _conn: Any = field(default=None, repr=False)

    @property
    def held(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()  # the session's end releases its advisory lock


class ClusterSlots(MachineSlots):
    """MachineSlots whose slots are advisory locks in the PostgreSQL database at `url`."""

    def __init__(
        self,
        url: str,
        state_home: Path,
        caps: Mapping[str, int] | None = None,
        *,
        default_cap: int = DEFAULT_AGENT_CAP,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(state_home, caps, default_cap=default_cap, cooldown_s=cooldown_s, clock=clock)
        self.url = url

    def _connect(self) -> Any:
        import psycopg  # the [cluster] extra: present wherever the store is PostgreSQL

        return psycopg.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="orchestrator-slot"
        )

    def try_acquire(self, agent: str) -> Slot | None:
        self._folder(agent)  # checks the name (and keeps the throttle's folder)
        key = agent_key(agent)
        conn = self._connect()
        try:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (key, MUTEX_INDEX))
            try:
                cap = self.cap(agent)
                held = _held(conn, key)
                index = None
                if len(held) < cap:
                    for candidate in range(cap):
                        if candidate in held:
                            continue
                        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, candidate)).fetchone()
                        if row is not None and row[0]:
                            index = candidate
                            break
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (key, MUTEX_INDEX))
        except BaseException:
            conn.close()
            raise
        if index is None:
            conn.close()
            return None
        return ClusterSlot(agent, index, None, cap=cap, others_held=len(held), _conn=conn)

    def held(self, agent: str) -> int:
        """How many slots of `agent` are held in the whole cluster right now."""
        self._folder(agent)
        with self._connect() as conn:
            return len(_held(conn, agent_key(agent)))


def _held(conn: Any, key: int) -> set[int]:
    """The slot indexes of the agent's key that some session holds in this database."""
    # The two-key form of an advisory lock shows as classid = key1, objid = key2, objsubid = 2
    # (both as oids: unsigned, hence the cast of a negative key).
    rows = conn.execute(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid::bigint = %s AND objid::bigint < %s",
        (key & 0xFFFFFFFF, MAX_AGENT_CAP),
    ).fetchall()
    return {int(row[0]) for row in rows}


def machine_slots_for(
    database_url: str | None, state_home: Path, caps: Mapping[str, int] | None = None
) -> MachineSlots:
    """The slots a run's agent steps take: cluster-wide when the store is a PostgreSQL database
    (its URL given), else this machine's (flock files under the state home)."""
    if database_url is None:
        return MachineSlots(state_home, caps)
    return ClusterSlots(database_url, state_home, caps)
