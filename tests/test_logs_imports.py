"""What starting the orchestrator imports for logging: structlog without the modules it would import
for nothing (rich's console, traceback and pretty-printer, asyncio), and still working in full (its async log
methods find the real asyncio). A fresh interpreter each: this process has imported everything."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from orchestrator.proc import child_env, run_command

PROBE = """
import json, sys
import orchestrator.logs as logs
import orchestrator.engine.service, orchestrator.cli.run_cmd
loaded = {name: name in sys.modules for name in ("asyncio", "rich.console", "rich.traceback", "rich.pretty", "tenacity", "importlib.metadata")}
logs.configure_logging("info", json=True)
import structlog, asyncio
async def main():
    await structlog.get_logger("probe").ainfo("from a coroutine", where="loop")
asyncio.run(main())
import structlog.stdlib
print(json.dumps({"loaded": loaded, "real": sys.modules["asyncio"] is asyncio and asyncio.get_running_loop is structlog.stdlib.asyncio.get_running_loop}))
"""


def test_starting_imports_neither_asyncio_nor_riches_tracebacks_and_async_logging_works(tmp_path: Path):
    root = Path(__file__).resolve().parents[1]
    env = child_env(os.environ, {"PYTHONPATH": str(root), "ORCHESTRATOR_HOME": str(tmp_path)})
    result = run_command([sys.executable, "-c", PROBE], tmp_path, env=env, timeout_s=60)
    assert result.ok, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == {
        "asyncio": False,
        "rich.console": False,
        "rich.traceback": False,
        "rich.pretty": False,
        "tenacity": False,
        "importlib.metadata": False,
    }
    assert report["real"] is True
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["event"] == "from a coroutine" and line["where"] == "loop"
