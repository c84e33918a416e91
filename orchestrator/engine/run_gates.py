"""A run's gates: the gate steps in the run's tree (gates.py's TreeGates), and the same gates once on
the base, in a checkout of its own, to know what failed before any change.

`BaseRun` makes the base checkout (a shared clone of the run's first commit under the run folder: it
never sees the agents' edits) and runs the gates there on a thread, in parallel with the first agent
step where the machine has more than one core (else only when a gate fails and the comparison needs
it); it starts once the run's first agent process exists. `RunGates` is what the engine calls for a
gate step.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from orchestrator.engine.gate_results import ENVIRONMENT_CAUSES, GateSide, compare_with_base
from orchestrator.engine.gates import GateOutcome, GateRecord, GateResult, TreeContext, TreeGates
from orchestrator.engine.prompts import GateFailure
from orchestrator.engine.workflow import GateStep, Workflow
from orchestrator.events import BaseGateFinished, Notice, RunEvent
from orchestrator.proc import run_command
from orchestrator.workspace.git import git_environment
from orchestrator.workspace.sandbox import Sandbox

log = structlog.get_logger(__name__)

# How long the base run waits for the run's first agent to start before it starts anyway (BaseRun).
HEAD_START_MAX_S = 5.0


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
