"""The gate: setup (when due), then the gate's command on the run's tree (gates.py). A failure is compared
with the same gate on the base, and only what the change caused is handed on to the agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.engine.gates import GateResult
from orchestrator.engine.prompts import GateFailure
from orchestrator.engine.run_state import Cancelled, step_id_for
from orchestrator.engine.steps import StepAt
from orchestrator.engine.workflow import GateStep
from orchestrator.events import GateFinished, StepStarted
from orchestrator.store import StepRecord

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


class GateKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        assert isinstance(at.step, GateStep)
        run_gate(engine, at.iteration, at.index, at.step)

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        step = at.step
        assert isinstance(step, GateStep)
        gate = record.detail.get("gate") or {}
        passed = gate.get("passed") if record.status == "succeeded" else None
        head = gate.get("head") or engine.head()
        failure = None
        if gate.get("passed") is False:
            failure = GateFailure(
                name=step.label,
                command=gate.get("command", ""),
                exit_code=gate.get("exit_code"),
                output_tail=gate.get("output_tail", ""),
            )
        blocks = bool(gate.get("blocks", True))
        engine.state.gates[at.index] = GateResult(
            passed=passed, head=head, failure=failure if blocks else None, blocks=blocks
        )
        if gate.get("fatal") and not step.optional:
            engine.state.failed_step = f"{record.step_id} (gate): {gate['fatal']}"


def run_gate(engine: RunEngine, iteration: int, index: int, gate: GateStep) -> None:
    step_id = step_id_for(iteration, index, gate)
    engine.store.start_step(
        engine.run_id, step_id, iteration=iteration, index=index, agent="gate", task="gate"
    )
    engine.bus.publish(
        StepStarted(run_id=engine.run_id, step_id=step_id, agent="gate", task="gate", iteration=iteration)
    )
    head = engine.head()
    engine.watch_user_refs()
    record = engine.run_gates().run_gate(index, gate, head)
    outcome = record.outcome
    if outcome.cancelled:
        engine.end_step(step_id, "gate", "cancelled", error_kind="other", error_message="cancelled")
        raise Cancelled
    if outcome.passed is None:
        engine.state.gates[index] = record.result
        engine.end_step(
            step_id, "gate", "skipped", detail={"notes": record.notes, "gate": {"command": gate.label}}
        )
        return
    # A gate checks the run; it does not change it. What it left behind (caches, build output not
    # covered by .gitignore) is removed, kept under a backup ref, and never reaches a later commit.
    left = engine.ws.discard_uncommitted(step_start=head)
    engine.moved()
    notes = record.notes + (
        [f"the gate left {', '.join(left.files[:10])}; removed (kept at {left.backup_ref})"] if left else []
    )
    engine.state.gates[index] = record.result
    passed = bool(outcome.passed)
    engine.bus.publish(
        GateFinished(
            run_id=engine.run_id,
            step_id=step_id,
            command=outcome.command,
            passed=passed,
            exit_code=outcome.exit_code,
            output_tail=outcome.output,
            versus_base=record.comparison.versus if record.comparison else "",
            cause=outcome.cause.kind if outcome.cause else "",
            cause_text=outcome.cause.text if outcome.cause else "",
            gate_index=index,
        )
    )
    error = None if passed else f"`{outcome.command}` failed (exit {outcome.exit_code})"
    if record.result.fatal:
        error = record.result.fatal
    engine.end_step(
        step_id,
        "gate",
        "succeeded" if passed else "failed",
        error_kind=None if passed else ("gate_misconfigured" if record.result.fatal else "gate"),
        error_message=error,
        detail={"gate": record.detail(), "notes": notes},
    )
    engine.state.steps_run += 1
    if record.result.fatal is not None and not gate.optional:
        engine.state.failed_step = f"{step_id} (gate): {record.result.fatal}"
