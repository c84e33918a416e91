"""What a child process's environment holds (part of proc.py, which re-exports it): an allowlist of
ours, then what the caller adds. Pure: `os.environ` is read, never written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# What a child may inherit from our environment. Credentials are never on this list: an agent gets a
# key only when its configuration names it (`agents.<name>.env`).
ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "TZ",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ORCHESTRATOR_CLI_DIR",
)


def child_env(
    parent: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
    *,
    tmpdir: Path | None = None,
    allowlist: Sequence[str] = ENV_ALLOWLIST,
) -> dict[str, str]:
    """The complete environment for a child: allowlisted variables of `parent`, then `extra`.

    `parent` is read, never written (pass `os.environ`). TMPDIR points at the run's own folder."""
    env = {key: parent[key] for key in allowlist if key in parent}
    env.update(extra or {})
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return env
