"""Reading the small text files a user points us at (configuration, workflows), within bounds.

`--config /dev/zero` used to grow without limit, and a FIFO blocked for ever: now anything that is not a
regular file, or is over 1 MB, is refused with a ConfigError (exit 2) that names the file. The file is
opened without blocking (a FIFO would otherwise wait for a writer), checked on the open descriptor (no
race with a rename), and read no further than the limit even if it grows meanwhile.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024


def read_config_text(path: Path, *, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The text of a configuration or workflow file. `what` names it in errors ("configuration file")."""
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} ({exc.strerror or exc})", file=file) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
            raise ConfigError(
                f"the {what} is not a regular file (it is {kind})",
                file=file,
                hint="give the path of a YAML file",
            )
        if info.st_size > max_bytes:
            raise ConfigError(
                f"the {what} is larger than {max_bytes // 1024} KiB ({info.st_size} bytes)",
                file=file,
                hint="a configuration or workflow file is small YAML; check that this is the right file",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} ({exc.strerror or exc})", file=file) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(
            f"the {what} is larger than {max_bytes // 1024} KiB (it grew while read)", file=file
        )
    return data.decode("utf-8", errors="replace")


def load_yaml(text: str) -> Any:
    """yaml.safe_load, parsed by libyaml when PyYAML was built with it (0.3 ms against 2 ms for the
    config and workflow every run reads before its first agent). The same data: only the parser is C,
    the constructor and the resolver that turn its events into values are the same Python classes. On an
    error the text is parsed again by the Python loader, so that the error (and its message, with the
    snippet libyaml does not give) is the one the Python loader raises."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        return yaml.safe_load(text)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - CSafeLoader is the safe loader
    except yaml.YAMLError:
        return yaml.safe_load(text)
