"""`orchestrator serve`: the web dashboard on 127.0.0.1, until Ctrl-C.

Light at import (click only): Flask and the app are imported when the command runs, so `--help`
stays fast (tests/cli/test_feel.py)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import config_option, repo_root_of, settings_for

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.ui.app import Dashboard

TOKEN_VAR = "ORCHESTRATOR_UI_TOKEN"
DEFAULT_PORT = 8765


def check_bind(host: str, env: Mapping[str, str]) -> None:
    """A dashboard reachable from other machines only with a token the user chose (not a fresh one
    printed to a terminal others may read back), and they must know it is reachable."""
    from orchestrator.errors import UsageError
    from orchestrator.ui.security import is_loopback

    if not is_loopback(host) and not env.get(TOKEN_VAR):
        raise UsageError(
            f"refusing to listen on {host}: the dashboard can start agents that edit your repositories",
            hint=f"set {TOKEN_VAR} to a long random secret to listen beyond this machine, or use --host 127.0.0.1",
        )


def _open_browser(url: str, env: Mapping[str, str]) -> None:
    from orchestrator.proc import run_command

    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(opener) is None or (
        sys.platform != "darwin" and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    ):
        return
    run_command([opener, url], Path.cwd(), timeout_s=10)


def serve_dashboard(
    *,
    settings: Settings,
    env: Mapping[str, str],
    repos: Sequence[Path],
    host: str,
    port: int,
    allowed_hosts: Sequence[str] = (),
    open_browser: bool = False,
    on_ready: Callable[[Dashboard], None] | None = None,
) -> None:
    """Builds the dashboard, prints its URL, serves until Ctrl-C or SIGTERM (then stops the runs it
    executes, each left resumable, and raises KeyboardInterrupt: exit 130)."""
    import secrets

    from orchestrator.store import Store, store_location
    from orchestrator.ui.app import create_dashboard
    from orchestrator.workspace.paths import state_home

    check_bind(host, env)
    token = env.get(TOKEN_VAR) or secrets.token_urlsafe(32)
    store = Store(store_location(settings.cluster.database, env, state_home(env)))
    extra_hosts = [*allowed_hosts, host] if host not in ("0.0.0.0", "::") else list(allowed_hosts)
    dashboard = create_dashboard(
        store=store, settings=settings, env=env, allowed_repos=repos, token=token, allowed_hosts=extra_hosts
    )
    server = dashboard.serve(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{server.server_port}/?token={token}"
    dashboard.start_background()

    def stop(signum: int, frame: FrameType | None) -> Any:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        click.echo(f"Dashboard: {url}")
        if repos:
            click.echo("runs may start in: " + ", ".join(str(r) for r in repos), err=True)
        else:
            click.echo("no repository to start runs in (pass --repo DIR); runs are shown read-only", err=True)
        click.echo("Ctrl-C to stop", err=True)
        sys.stdout.flush()
        if on_ready is not None:
            on_ready(dashboard)
        if open_browser:
            _open_browser(url, env)
        server.serve_forever()
        # Werkzeug's serve_forever ends quietly on the KeyboardInterrupt that Ctrl-C (and SIGTERM, by
        # `stop`) raise in it: nothing else ends it here, so stop as on Ctrl-C.
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        click.echo("stopping the dashboard (its runs stop and stay resumable)...", err=True)
        server.server_close()
        dashboard.stop()
        store.close()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="0: any free port."
)
@click.option(
    "--repo",
    "repos",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A repository the dashboard may start runs in (repeatable; default: the one here).",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    envvar="ORCHESTRATOR_UI_ALLOWED_HOSTS",
    help="Another host name the dashboard answers to (besides localhost, 127.0.0.1, [::1]); "
    "repeatable, or $ORCHESTRATOR_UI_ALLOWED_HOSTS (space-separated).",
)
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@config_option
def serve(
    host: str,
    port: int,
    repos: tuple[Path, ...],
    allowed_hosts: tuple[str, ...],
    no_open: bool,
    config_path: Path | None,
) -> None:
    """The web dashboard: every run live, started and steered from the browser. Prints its URL (with a
    fresh token unless $ORCHESTRATOR_UI_TOKEN is set) and serves until Ctrl-C."""
    check_bind(host, os.environ)
    cwd = Path.cwd()
    if repos:
        allowed = [repo_root_of(r) or r.resolve() for r in repos]
    else:
        here = repo_root_of(cwd)
        allowed = [here] if here is not None else []
    loaded = settings_for(config_path, allowed[0] if allowed else cwd)
    serve_dashboard(
        settings=loaded.settings,
        env=os.environ,
        repos=allowed,
        host=host,
        port=port,
        allowed_hosts=allowed_hosts,
        open_browser=not no_open,
    )
