"""Running gates in one tree: setup, then each gate, in a tree whose code is the code under test
(`TreeGates`: the run's repository, or the base checkout), and what a gate's result is (`GateResult`,
`GateRecord`). A run's gates, with the same gates once on the base beside them, are run_gates.py."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from orchestrator.engine.gate_env import (
    check_node_links,
    check_python_imports,
    gate_environment,
    own_packages,
)
from orchestrator.engine.gate_results import (
    Cause,
    Comparison,
    GateSide,
    failing_tests,
    likely_cause,
)
from orchestrator.engine.prompts import GateFailure
from orchestrator.engine.setup_steps import SetupCommand, manifests_fingerprint, plan_setup, tool_missing
from orchestrator.engine.workflow import GateStep, SetupStep, resolve_gate_argv
from orchestrator.errors import AgentNotInstalled
from orchestrator.events import BaseGateFinished, Notice, RunEvent, SetupFinished
from orchestrator.proc import ProcSpec, SubprocessCommunicator, child_env, run_command
from orchestrator.workspace.git import git_environment
from orchestrator.workspace.sandbox import Sandbox

log = structlog.get_logger(__name__)

GATE_TAIL_CHARS = 4_000
_OUTPUT_BYTES = 256_000  # kept of a command's output, to find failing tests and causes in it
Where = Literal["run", "base"]


@dataclass(frozen=True)
class CommandRun:
    ok: bool
    exit_code: int | None
    output: str
    duration_s: float
    timed_out: bool = False
    cancelled: bool = False
    missing: str | None = None  # the program is not installed: what was said


def run_in_tree(
    argv: Sequence[str], tree: Path, env: Mapping[str, str], timeout_s: float, cancel: threading.Event
) -> CommandRun:
    """One command in `tree`, without a shell, under a wall-clock limit, ended when `cancel` is set."""
    spec = ProcSpec(argv=list(argv), cwd=tree, env=env, wall_timeout_s=timeout_s, tail_bytes=_OUTPUT_BYTES)
    started = time.monotonic()
    try:
        result = SubprocessCommunicator().run(spec, lambda _stream, _line: None, cancel)
    except AgentNotInstalled as exc:
        return CommandRun(False, None, exc.message, time.monotonic() - started, missing=exc.message)
    output = result.tail
    if result.timed_out:
        output += f"\n[stopped: it ran past its {timeout_s:g} s limit]"
    ok = result.exit_code == 0 and not result.ended_by_us
    return CommandRun(
        ok,
        result.exit_code,
        output,
        result.duration_s,
        timed_out=result.timed_out,
        cancelled=result.cancelled,
    )


@dataclass(frozen=True)
class GateOutcome:
    """A gate's result in one tree."""

    passed: bool | None  # None: skipped
    command: str
    exit_code: int | None = None
    output: str = ""  # the end of it (GATE_TAIL_CHARS)
    cause: Cause | None = None
    failures: frozenset[str] = frozenset()
    misconfigured: bool = False
    cancelled: bool = False
    duration_s: float = 0.0
    notes: tuple[str, ...] = ()

    def side(self) -> GateSide:
        return GateSide(
            self.passed, self.exit_code, self.cause.kind if self.cause else "unknown", self.failures
        )


@dataclass
class TreeContext:
    """A tree the gates run in, and what its commands get."""

    tree: Path
    parent_env: Mapping[str, str]
    extra_env: Mapping[str, str]  # on top of the allowlist (the run's git guard, ...)
    tmp_dir: Path
    cache_dir: Path  # <state home>/cache: shared by every run
    shim_dir: Path  # where the sitecustomize shim goes when the roots need it
    user_checkout: Path | None
    cancel: threading.Event
    sandbox: Sandbox | None = None  # setup and gates run the agents' code: sandboxed like them

    def wrap(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """`argv` in the sandbox, when one is on: it may write only this tree, the shared caches and
        its TMPDIR."""
        if self.sandbox is None:
            return list(argv)
        self.cache_dir.mkdir(parents=True, exist_ok=True)  # a folder must exist to be bound writable
        return self.sandbox.wrap(argv, cwd=self.tree, writable=(self.tree, self.cache_dir), env=env)


class TreeGates:
    """`setup:` and the gates in one tree. Setup runs before the first gate, and again whenever the
    files that decide it (package.json, lockfiles, pyproject.toml) change."""

    def __init__(
        self,
        ctx: TreeContext,
        setup: tuple[SetupStep, ...],
        where: Where,
        run_id: str,
        publish: Callable[[RunEvent], None],
    ) -> None:
        self.ctx = ctx
        self.setup = setup
        self.where = where
        self.run_id = run_id
        self.publish = publish
        self._fingerprint: str | None = None
        self.setup_problem = ""  # the last setup's failure, for the failing gates' output

    def env(self) -> dict[str, str]:
        base = child_env(self.ctx.parent_env, {"PYTHONDONTWRITEBYTECODE": "1", **self.ctx.extra_env})
        extra = gate_environment(self.ctx.tree, base.get("PATH", os.defpath))
        return child_env(self.ctx.parent_env, {**base, **extra}, tmpdir=self.ctx.tmp_dir)

    def ensure_setup(self) -> None:
        if not self.setup:
            return
        fingerprint = manifests_fingerprint(self.ctx.tree)
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        commands, notes = plan_setup(self.setup, self.ctx.tree, self.ctx.cache_dir)
        for note in notes:
            self.publish(
                SetupFinished(run_id=self.run_id, where=self.where, command="auto", ok=None, note=note)
            )
        problems = [problem for command in commands if (problem := self._one_setup(command))]
        self.setup_problem = "\n\n".join(problems)
        if self.where == "run":
            exclude_setup_products(self.ctx.tree, self.ctx.parent_env)

    def _one_setup(self, command: SetupCommand) -> str:
        env = {**self.env(), **command.env}
        missing = tool_missing(command, env.get("PATH", ""))
        if missing is not None:
            self.publish(
                SetupFinished(
                    run_id=self.run_id, where=self.where, command=command.display, ok=None, note=missing
                )
            )
            self.publish(Notice(run_id=self.run_id, level="warning", text=f"setup ({self.where}): {missing}"))
            return f"[setup] {missing}"
        done = run_in_tree(
            self.ctx.wrap(command.argv, env), self.ctx.tree, env, command.timeout_s, self.ctx.cancel
        )
        note = command.reason
        self.publish(
            SetupFinished(
                run_id=self.run_id,
                where=self.where,
                command=command.display,
                ok=done.ok,
                exit_code=done.exit_code,
                duration_s=round(done.duration_s, 3),
                output_tail=done.output[-GATE_TAIL_CHARS:],
                note=note,
            )
        )
        if done.ok:
            return ""
        return f"[setup] `{command.display}` failed (exit {done.exit_code}):\n{done.output[-1500:]}"

    def _relative(self, output: str) -> str:
        """The output with the tree's own path taken out, so that test names printed with absolute
        paths (node --test does) compare between the base checkout and the run's repository."""
        for prefix in {str(self.ctx.tree.resolve()), str(self.ctx.tree)}:
            output = output.replace(prefix + os.sep, "").replace(prefix, ".")
        return output

    def run(self, gate: GateStep) -> GateOutcome:
        argv = resolve_gate_argv(gate, self.ctx.tree)
        if argv is None:
            return GateOutcome(
                passed=None, command=gate.label, notes=("no test suite found for `run: auto`",)
            )
        command = " ".join(argv)
        self.ensure_setup()
        if self.ctx.cancel.is_set():
            return GateOutcome(passed=False, command=command, cancelled=True)
        env = self.env()
        notes: list[str] = []
        for check in (
            check_python_imports(argv, self.ctx.tree, env, self.ctx.shim_dir),
            check_node_links(self.ctx.tree, self.ctx.user_checkout),
        ):
            notes += check.notes
            if not check.ok:
                cause = Cause("misconfigured", check.message)
                return GateOutcome(
                    passed=False, command=command, output=check.message, cause=cause, misconfigured=True
                )
        done = run_in_tree(self.ctx.wrap(argv, env), self.ctx.tree, env, gate.timeout_s, self.ctx.cancel)
        if done.ok:
            return GateOutcome(
                passed=True, command=command, exit_code=0, output=done.output[-GATE_TAIL_CHARS:],
                duration_s=done.duration_s, notes=tuple(notes),
            )  # fmt: skip
        if done.missing is not None:
            cause = Cause("tool_missing", done.missing)
        else:
            cause = likely_cause(
                done.output,
                exit_code=done.exit_code,
                timed_out=done.timed_out,
                own_packages=own_packages(self.ctx.tree),
            )
        output = done.output
        if self.setup_problem:
            output = f"{self.setup_problem}\n\n[the gate]\n{output}"
        return GateOutcome(
            passed=False,
            command=command,
            exit_code=None if done.timed_out else done.exit_code,
            output=output[-GATE_TAIL_CHARS:],
            cause=cause,
            failures=failing_tests(self._relative(done.output)),
            cancelled=done.cancelled,
            duration_s=done.duration_s,
            notes=tuple(notes),
        )


# What setup makes in a tree. Ignored there, so that no commit, backup or clean after a gate takes them.
SETUP_PRODUCTS = ("node_modules/", ".venv/")


def exclude_setup_products(tree: Path, env: Mapping[str, str]) -> None:
    """List setup's products in the run repository's own info/exclude. Only when that file belongs to
    the run's repository (a clone of its own): a worktree's info/exclude is the user's, never written."""
    present = [name for name in SETUP_PRODUCTS if (tree / name.rstrip("/")).exists()]
    if not present:
        return
    found = run_command(["git", "rev-parse", "--git-path", "info/exclude"], tree, env=git_environment(env))
    if not found.ok:
        return
    exclude = (tree / found.stdout.strip()).resolve()
    if not exclude.is_relative_to(tree.resolve()):
        return
    text = exclude.read_text(encoding="utf-8") if exclude.is_file() else ""
    missing = [name for name in present if name not in text.splitlines()]
    if missing:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        prefix = "" if not text or text.endswith("\n") else "\n"
        note = "# added by ai-agents-orchestrator: made by setup, never committed\n"
        exclude.write_text(text + prefix + note + "".join(f"{name}\n" for name in missing), encoding="utf-8")


@dataclass
class GateResult:
    """A gate's latest result on the run's tree, as the stop rules and the prompts see it."""

    passed: bool | None  # None: skipped
    head: str
    failure: GateFailure | None = None  # what the agents get to fix (None when it does not block)
    blocks: bool = True  # a failure that counts against approval (False: it failed the same on the base)
    fatal: str | None = None  # a misconfigured gate: the run cannot go on

    @property
    def for_stop(self) -> bool | None:
        """The result the stop rules see: a failure that does not block counts as passing."""
        if self.passed is False and not self.blocks:
            return True
        return self.passed


@dataclass
class GateRecord:
    """What the engine records for a gate step."""

    result: GateResult
    outcome: GateOutcome
    comparison: Comparison | None
    base: BaseGateFinished | None
    notes: list[str] = field(default_factory=list)

    def detail(self) -> dict[str, Any]:
        comparison = self.comparison
        return {
            "command": self.outcome.command,
            "passed": self.outcome.passed,
            "exit_code": self.outcome.exit_code,
            "head": self.result.head,
            "output_tail": self.outcome.output,
            "blocks": self.result.blocks,
            "versus_base": comparison.versus if comparison else "",
            "cause": self.outcome.cause.kind if self.outcome.cause else "",
            "misconfigured": self.outcome.misconfigured,
            "fatal": self.result.fatal,
        }
