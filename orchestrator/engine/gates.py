"""Running gates: setup, then each gate, in a tree whose code is the code under test; and the same
gates once on the base, in a checkout of its own, to know what failed before any change.

`TreeGates` runs a workflow's `setup:` and gates in one tree (the run's repository, or the base
checkout). `BaseRun` makes the base checkout (a shared clone of the run's first commit under the run
folder: it never sees the agents' edits) and runs the gates there on a thread, in parallel with the
first agent step where the machine has more than one core (else only when a gate fails and the
comparison needs it). `RunGates` is what the engine calls for a gate step.
"""

from __future__ import annotations

import os
import shutil
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
    ENVIRONMENT_CAUSES,
    Cause,
    Comparison,
    GateSide,
    compare_with_base,
    failing_tests,
    likely_cause,
)
from orchestrator.engine.prompts import GateFailure
from orchestrator.engine.setup_steps import SetupCommand, manifests_fingerprint, plan_setup, tool_missing
from orchestrator.engine.workflow import GateStep, SetupStep, Workflow, resolve_gate_argv
from orchestrator.errors import AgentNotInstalled
from orchestrator.events import BaseGateFinished, Notice, RunEvent, SetupFinished
from orchestrator.proc import ProcSpec, SubprocessCommunicator, child_env, run_command
from orchestrator.workspace.git import git_environment
from orchestrator.workspace.sandbox import Sandbox

log = structlog.get_logger(__name__)

GATE_TAIL_CHARS = 4_000
# How long the base run waits for the run's first agent to start before it starts anyway (BaseRun).
HEAD_START_MAX_S = 5.0
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


def base_side(event: BaseGateFinished) -> GateSide:
    return GateSide(event.passed, event.exit_code, event.cause or "unknown", frozenset(event.failures))  # type: ignore[arg-type]


class BaseRun:
    """The gates once on the base, in a checkout of their own under the run folder."""

    def __init__(
        self,
        *,
        source: Path,
        commit: str,
        ctx: TreeContext,
        workflow: Workflow,
        run_id: str,
        publish: Callable[[RunEvent], None],
        known: Mapping[int, BaseGateFinished] | None = None,
        head_start: threading.Event | None = None,
    ) -> None:
        self.source = source
        # Set once the run's first agent process exists: the base run (a clone, a checkout, the gates,
        # all beside the agent) waits for it, so that its processes do not compete with the agent's
        # start for the CPU; at most HEAD_START_MAX_S (the agent may wait for a slot).
        self.head_start = head_start
        self.commit = commit
        self.ctx = ctx
        self.gates = [(i, s) for i, s in enumerate(workflow.steps) if isinstance(s, GateStep)]
        self.setup = workflow.setup_steps
        self.run_id = run_id
        self.publish = publish
        self.results: dict[int, BaseGateFinished] = dict(known or {})
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self.duration_s: float | None = None

    @property
    def complete(self) -> bool:
        return all(index in self.results for index, _ in self.gates)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self.complete:
                return
            self._thread = threading.Thread(target=self._main, name=f"base-gates-{self.run_id}", daemon=True)
            self._thread.start()

    def result(self, index: int) -> BaseGateFinished | None:
        """The base result of gate `index`, starting the base run if it has not started, and waiting
        for it. None when the base run could not run that gate (cancelled, or no checkout)."""
        if index not in self.results:
            self._no_head_start()  # a gate waits for this result: no reason to wait any more
            self.start()
            self.join()
        return self.results.get(index)

    def join(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.join()

    def stop(self) -> None:
        self.ctx.cancel.set()
        self._no_head_start()
        self.join()

    def _no_head_start(self) -> None:
        if self.head_start is not None:
            self.head_start.set()

    def _main(self) -> None:
        if self.head_start is not None:
            self.head_start.wait(HEAD_START_MAX_S)
        started = time.monotonic()
        try:
            if self.ctx.cancel.is_set():
                return
            self._checkout()
            tree_gates = TreeGates(self.ctx, self.setup, "base", self.run_id, self.publish)
            done: dict[tuple[str, float], GateOutcome] = {}  # a gate listed twice runs once on the base
            for index, gate in self.gates:
                if self.ctx.cancel.is_set():
                    break
                if index in self.results:
                    continue
                key = (gate.run.strip(), gate.timeout_s)
                outcome = done.get(key) or tree_gates.run(gate)
                if outcome.cancelled:
                    break
                done[key] = outcome
                event = BaseGateFinished(
                    run_id=self.run_id,
                    gate_index=index,
                    command=outcome.command,
                    passed=outcome.passed,
                    exit_code=outcome.exit_code,
                    duration_s=round(outcome.duration_s, 3),
                    cause=outcome.cause.kind if outcome.cause else "",
                    cause_text=outcome.cause.text if outcome.cause else "",
                    failures=sorted(outcome.failures),
                    output_tail=outcome.output,
                )
                self.results[index] = event
                self.publish(event)
        except Exception as exc:  # noqa: BLE001 - the base run informs; it must never end the run
            self.error = str(exc)
            log.warning("base_run_failed", run_id=self.run_id, error=str(exc))
            self.publish(
                Notice(
                    run_id=self.run_id, level="warning", text=f"the gates could not run on the base: {exc}"
                )
            )
        finally:
            self.duration_s = time.monotonic() - started
            # The checkout (with its node_modules or virtualenv) goes; its results are in the log.
            shutil.rmtree(self.ctx.tree, ignore_errors=True)

    def _checkout(self) -> None:
        tree = self.ctx.tree
        shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        env = git_environment(self.ctx.parent_env)
        steps = (
            ["git", "clone", "--quiet", "--shared", "--no-checkout", str(self.source), str(tree)],
            ["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", self.commit],
        )
        for argv in steps:
            cwd = tree if argv[1] != "clone" else tree.parent
            result = run_command(argv, cwd, env=env, timeout_s=300)
            if not result.ok:
                raise RuntimeError(
                    f"`{' '.join(argv[:3])}` failed: {(result.stderr or result.stdout).strip()[-300:]}"
                )


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


def base_gates_enabled(workflow: Workflow, option: bool | None) -> bool:
    """The base run is on unless the run (--no-base-gates) or the workflow (base_gates: false) turns
    it off; it is pointless for a workflow that never edits (the run's tree is the base)."""
    wanted = workflow.base_gates if option is None else option
    return wanted and workflow.edits and bool(workflow.gates)


def parallel_allowed() -> bool:
    return (os.cpu_count() or 1) >= 2


class RunGates:
    """The gate steps of one run: the run tree's setup and gates, and the base run beside them."""

    def __init__(self, *, run_tree: TreeGates, base: BaseRun | None) -> None:
        self.run_tree = run_tree
        self.base = base

    def start(self) -> None:
        """At the start of the run: the base run starts now, beside the first agent step, when the
        machine has the cores for it; otherwise it waits until a failing gate needs it."""
        if self.base is not None and parallel_allowed():
            self.base.start()

    def finish(self, *, cancelled: bool) -> None:
        if self.base is None:
            return
        if cancelled:
            self.base.stop()
        else:
            self.base.join()

    def run_gate(self, index: int, gate: GateStep, head: str) -> GateRecord:
        outcome = self.run_tree.run(gate)
        notes = list(outcome.notes)
        if outcome.passed is not False or outcome.cancelled:
            return GateRecord(GateResult(outcome.passed, head), outcome, None, None, notes)
        base = self.base.result(index) if self.base is not None else None
        comparison = compare_with_base(outcome.side(), base_side(base) if base is not None else None)
        if outcome.misconfigured:
            fatal = outcome.output
            result = GateResult(False, head, None, blocks=True, fatal=fatal)
            return GateRecord(result, outcome, comparison, base, notes)
        if comparison.note:
            notes.append(f"`{outcome.command}`: {comparison.note}")
        cause = outcome.cause
        if comparison.same_as_base and cause is not None and cause.kind in ENVIRONMENT_CAUSES:
            fatal = (
                f"`{outcome.command}` cannot run here, before any change either: {cause.text}. Make it "
                "run on your base first (a `setup:` step, an installed tool), then start the run again"
            )
            return GateRecord(
                GateResult(False, head, None, blocks=True, fatal=fatal), outcome, comparison, base, notes
            )
        failure = None
        if comparison.blocks:
            output = outcome.output
            if comparison.versus == "worse" and comparison.new_failures:
                output = f"[new since the base: {', '.join(comparison.new_failures[:10])}]\n{output}"
            elif comparison.versus == "same_cause":
                output = f"[it failed the same way before any change]\n{output}"
            failure = GateFailure(
                name=gate.label, command=outcome.command, exit_code=outcome.exit_code, output_tail=output
            )
        result = GateResult(False, head, failure, blocks=comparison.blocks)
        return GateRecord(result, outcome, comparison, base, notes)


def build_run_gates(
    *,
    workflow: Workflow,
    run_id: str,
    run_tree: Path,
    first_commit: str,
    user_checkout: Path,
    run_dir: Path,
    state_home: Path,
    env: Mapping[str, str],
    guard_env: Mapping[str, str],
    sandbox: Sandbox | None = None,
    base_option: bool | None,
    known_base: Sequence[BaseGateFinished],
    publish: Callable[[RunEvent], None],
    cancel: threading.Event,
    head_start: threading.Event | None = None,
) -> RunGates:
    """The run's gates: setup and gates in `run_tree`, and (when on) the base run beside them, in
    <run dir>/base-tree, a checkout of `first_commit` (the tree before any agent's change)."""
    cache_dir = state_home / "cache"
    ctx = TreeContext(
        tree=run_tree,
        parent_env=env,
        extra_env=guard_env,
        tmp_dir=run_dir / "tmp",
        cache_dir=cache_dir,
        shim_dir=run_dir / "gate-python" / "run",
        user_checkout=user_checkout,
        cancel=cancel,
        sandbox=sandbox,
    )
    tree_gates = TreeGates(ctx, workflow.setup_steps, "run", run_id, publish)
    base = None
    if base_gates_enabled(workflow, base_option):
        base_ctx = TreeContext(
            tree=run_dir / "base-tree",
            parent_env=env,
            extra_env={},
            tmp_dir=run_dir / "tmp" / "base",
            cache_dir=cache_dir,
            shim_dir=run_dir / "gate-python" / "base",
            user_checkout=user_checkout,
            cancel=threading.Event(),
            sandbox=sandbox,
        )
        base = BaseRun(
            source=run_tree,
            commit=first_commit,
            ctx=base_ctx,
            workflow=workflow,
            run_id=run_id,
            publish=publish,
            known={event.gate_index: event for event in known_base},
            head_start=head_start,
        )
    return RunGates(run_tree=tree_gates, base=base)
