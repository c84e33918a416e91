"""Where `orchestrator run` spends its time before the first CLI starts: a bootstrap that runs the
orchestrator in this interpreter and notes, on stderr, each moment with its wall time and this process's
CPU time since the interpreter started.

    python benchmarks/readiness_trace.py -m orchestrator run ...   (what bench_readiness.py --trace runs)

Lines start with `TRACE <wall s> <cpu s>`: the imports `run` needs (done here first, as the command would
do them), then every process started (its argv and the orchestrator functions that asked for it).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

_T0 = time.time()
_CPU0 = 0.0  # process_time() counts from the interpreter's start


def _note(what: str) -> None:
    print(f"TRACE {time.time() - _T0:.3f} {time.process_time() - _CPU0:.3f} {what}", file=sys.stderr)


def _install() -> None:
    import subprocess
    import traceback

    original = subprocess.Popen.__init__

    def traced(self: Any, args: Any, *rest: Any, **kw: Any) -> None:
        frames = [
            f
            for f in traceback.extract_stack()[:-1]
            if "/orchestrator/" in f.filename
            and not f.filename.endswith("/proc.py")
            and not (f.filename.endswith("workspace/git.py") and f.name in ("run", "attempt", "out"))
        ]
        callers = [f"{f.filename.rsplit('/orchestrator/', 1)[-1]}:{f.name}" for f in frames][-2:]
        argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
        shown = [a for a in argv if not a.startswith("-") and "=" not in a][:4]
        _note(f"spawn {' '.join(os.path.basename(a) for a in shown)[:70]} <- {' < '.join(reversed(callers))}")
        original(self, args, *rest, **kw)

    subprocess.Popen.__init__ = traced  # type: ignore[method-assign]


def main() -> None:
    global _CPU0
    _CPU0 = 0.0
    _note("interpreter up")
    _install()
    import gc

    gc.disable()  # as the console scripts import (orchestrator/cli/entry.py)
    import orchestrator.cli.main
    import orchestrator.logs  # noqa: F401 - what the command imports before it runs

    _note("imported orchestrator.cli.main, orchestrator.logs")
    import orchestrator.cli.run_cmd  # noqa: F401

    gc.freeze()
    gc.enable()
    _note("imported orchestrator.cli.run_cmd (config, engine, workspace, store)")
    args = sys.argv[1:]
    if args[:2] == ["-m", "orchestrator"]:
        args = args[2:]
    orchestrator.cli.main.main(args)


if __name__ == "__main__":
    main()
