"""The console scripts' entry point (`orchestrator`, `orch`, `python -m orchestrator`): main() with the
command's modules imported first with the garbage collector off.

Importing what `orchestrator run` needs makes some 100 000 objects (pydantic models, click commands,
structlog), none of them garbage; the collector walks them again and again meanwhile (about 15% of the
import time). Off while importing, then those objects are moved out of its sight (`gc.freeze`) and it is
on again, as usual, for the command itself. Not in main(): tests call main() in-process, where freezing
their objects would only hide garbage from the collector.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any

from orchestrator.errors import EXIT_INTERRUPTED


def entry() -> Any:
    gc.disable()
    try:
        from orchestrator.cli import main as cli_main

        _import_command(cli_main.COMMANDS, sys.argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # as main() says it
        sys.exit(EXIT_INTERRUPTED)
    finally:
        gc.freeze()
        gc.enable()
    return cli_main.main()


def _import_command(commands: dict[str, tuple[str, str]], argv: list[str]) -> None:
    """The module of the command `argv` names (its first word that is one), and the logging set-up
    every command uses. Only an import ahead of time: a module that fails to import is left for main()
    to report as it always does."""
    name = next((word for word in argv if word in commands), None)
    if name is None:
        return
    try:
        importlib.import_module("orchestrator.logs")
        importlib.import_module(commands[name][0].partition(":")[0])
    except Exception:  # noqa: BLE001 - main() imports it again and reports the failure its own way
        return
