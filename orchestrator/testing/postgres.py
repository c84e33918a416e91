"""A throwaway PostgreSQL server for tests, from the machine's own binaries (Debian's `postgresql`
package: /usr/lib/postgresql/<version>/bin), and pytest fixtures around it.

The server lives in a temporary folder (initdb, then pg_ctl start), listens on no TCP port at all, only
on a unix socket in that folder (so any number of test sessions on one machine never collide on a
port), trusts local connections, and skips fsync (its data is thrown away). PostgreSQL refuses to run
as root: as root, every command runs as the `postgres` user through setpriv. `stop()` shuts it down
(fast mode), waits until the postmaster is gone and removes the folder: nothing is left behind.

    pytest_plugins = ["orchestrator.testing.postgres"]

    def test_x(postgres_url):          # a new, empty database for this test (dropped after it)
        with Store(postgres_url) as store: ...

    def test_y(store_location):        # runs twice: an SQLite file, then a PostgreSQL database
        with Store(store_location) as store: ...
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.proc import run_command

SUPERUSER = "orchestrator"
# Throwaway data: no fsync; enough connections for the concurrency tests' processes and threads.
SERVER_SETTINGS = (
    "listen_addresses = ''",
    "fsync = off",
    "synchronous_commit = off",
    "full_page_writes = off",
    "max_connections = 200",
    "shared_buffers = 32MB",
)
BACKENDS = ("sqlite", "postgresql")


class PostgresUnavailable(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """The newest installed server's bin folder ($ORCHESTRATOR_PG_BINDIR first)."""
    given = os.environ.get("ORCHESTRATOR_PG_BINDIR")
    candidates = [Path(given)] if given else []

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        if (
            (folder / "initdb").is_file()
            and (folder / "pg_ctl").is_file()
            and (folder / "postgres").is_file()
        ):
            return folder
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: install Debian's `postgresql` "
        "package (`scripts/setup.sh test` does), or set ORCHESTRATOR_PG_BINDIR"
    )


class PostgresServer:
    """One server in a temporary folder; `start()` it, `create_database()` per test, `stop()` it."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or postgres_bindir()
        self.as_root = os.geteuid() == 0
        self.user = _server_user() if self.as_root else None
        # As root the folder must be the server user's, in a folder that user can reach (/tmp).
        self.root = Path(tempfile.mkdtemp(prefix="orch-pg-", dir="/tmp" if self.as_root else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.postmaster_pid: int | None = None
        self.start_seconds: float | None = None
        self._names = itertools.count(1)
        self._admin: Any = None

    # --- the server ---------------------------------------------------------------------------------

    def _argv(self, tool: str, *args: str) -> list[str]:
        """The tool as the server's user, with an environment of its own: the server it starts must
        not carry the orchestrator's process markers (it outlives each test, on purpose)."""
        exe = str(self.bindir / tool)
        if self.user is not None:
            user = self.user
            return [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--init-groups",
                "--reset-env",
                exe,
                *args,
            ]
        return ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={self.root}", "LC_ALL=C", exe, *args]

    def _run(self, tool: str, *args: str, timeout_s: float = 60.0) -> None:
        result = run_command(self._argv(tool, *args), self.root, timeout_s=timeout_s)
        if not result.ok:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"{tool} failed ({result.returncode}): {result.stderr[-2000:]}\n{log}")

    def start(self) -> PostgresServer:
        started = time.monotonic()
        try:
            if self.user is not None:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            initdb = ("-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C")
            self._run("initdb", *initdb, "--no-sync", "--no-instructions")
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("\n".join((*SERVER_SETTINGS, f"unix_socket_directories = '{self.root}'", "")))
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
            self.postmaster_pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.root}"

    def stop(self) -> None:
        """Shuts the server down, waits for its postmaster to be gone, removes the folder."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
        pid = self.postmaster_pid
        if pid is not None:
            deadline = time.monotonic() + 10
            while process_running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if process_running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
                raise PostgresUnavailable(f"the test PostgreSQL server ({pid}) did not stop; killed it")
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases ----------------------------------------------------------------------------------

    def _admin_conn(self) -> Any:
        if self._admin is None:
            import psycopg

            self._admin = psycopg.connect(self.url(), autocommit=True)
        return self._admin

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"t{next(self._names)}_{uuid.uuid4().hex[:8]}"
        # FILE_COPY from template0: the fastest way for a small database (~30 ms here).
        self._admin_conn().execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self._admin_conn().execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    def databases(self) -> list[str]:
        rows = (
            self._admin_conn().execute("SELECT datname FROM pg_database WHERE NOT datistemplate").fetchall()
        )
        return sorted(row[0] for row in rows)


def _server_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable(
        "running as root, and there is no `postgres` (or `nobody`) user to run the server as"
    )


def process_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


# --- pytest fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, started when a test first asks for it."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test (its connections with it)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """ "sqlite" then "postgresql": a test asking for this (or for `store_location`) runs on both."""
    return str(request.param)


@pytest.fixture
def store_location(store_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, once per backend: an SQLite file's path, or a fresh database's URL."""
    if store_backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "state" / "state.db")


@pytest.fixture
def new_store_location(store_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """new_store_location() -> a location no store is at yet, of this test's backend, each call."""
    made: list[str] = []
    server: PostgresServer | None = (
        request.getfixturevalue("postgres_server") if store_backend == "postgresql" else None
    )
    counter = itertools.count(1)

    def new() -> str:
        if server is None:
            return str(tmp_path / f"store-{next(counter)}" / "state.db")
        url = server.create_database()
        made.append(url)
        return url

    yield new
    if server is not None:
        for url in made:
            server.drop_database(url)
