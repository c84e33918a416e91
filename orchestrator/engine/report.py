"""The run report: what `--json` prints (report_render.py makes the short human report and the
Markdown summary for CI from it; report_groups.py its attempts, reviews and subtasks).

Built only from the store (`build_report`), so a report of a finished, interrupted or resumed run reads
the same whichever process asks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.engine.report_groups import attempts_of, reviews_of, subtasks_of
from orchestrator.engine.review import Finding
from orchestrator.errors import EXIT_INTERRUPTED, EXIT_NOT_APPROVED, EXIT_OK
from orchestrator.events import BaseGateFinished, GateFinished, Notice, SetupFinished
from orchestrator.store import RunStatus, StepRecord, StepStatus, Store, TokenUsage

# How much of a failing gate's output the text and Markdown reports show (the JSON keeps all of it).
GATE_TAIL_LINES = 20


class StepError(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    kind: str | None
    message: str


class StepReport(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    id: str
    agent: str
    task: str
    status: StepStatus
    commit: str | None
    files_changed: list[str]
    usage: TokenUsage
    error: StepError | None


class BaseGateReport(BaseModel):
    """A gate's result on the base, before any agent's change (in a checkout of its own)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    gate_index: int
    command: str
    passed: bool | None  # None: skipped
    exit_code: int | None
    duration_s: float
    cause: str  # engine.gate_results.CAUSES, "" when it passed
    cause_text: str
    failures: list[str]
    output_tail: str


class GateReport(BaseModel):
    """A gate's last result in the run, beside its result on the base."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    command: str
    passed: bool
    exit_code: int | None
    step_id: str
    output_tail: str
    cause: str = ""
    cause_text: str = ""
    # new | as_on_base | same_cause | worse | no_base ("" when it passed); only as_on_base (the same
    # named failures as on the base) does not count against approval
    versus_base: str = ""
    base: BaseGateReport | None = None


class SetupReport(BaseModel):
    """A `setup:` command: where it ran (the run's repository or the base checkout) and how."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    where: str
    command: str
    ok: bool | None  # None: nothing to run, or its tool is not installed (see note)
    exit_code: int | None
    duration_s: float
    note: str
    output_tail: str


class RunReport(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    run_id: str
    status: RunStatus
    stop_reason: str | None
    branch: str
    base: str
    iterations: int
    steps: list[StepReport]
    findings: list[Finding]  # the last review's
    gates: list[GateReport]
    usage: TokenUsage  # the run's totals
    task: str
    workflow: str
    repo: str
    duration_s: float
    notes: list[str]  # fallbacks taken, warnings, costs that could not be priced
    base_gates: list[BaseGateReport] = []  # every gate's result on the base (when the base run ran)
    setup: list[SetupReport] = []
    attempts: list[dict[str, Any]] = []  # best-of-N steps, attempts side by side (report_groups.py)
    reviews: list[dict[str, Any]] = []  # consensus reviews: each reviewer's verdict, the clusters
    subtasks: list[dict[str, Any]] = []  # for_each over a plan: the subtask graph and its state
    routing: list[dict[str, Any]] = []  # what `agent: auto` chose for each step, and why

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @property
    def exit_code(self) -> int:
        """0 only when approved; 130 when interrupted or cancelled; 1 otherwise."""
        if self.status == "approved":
            return EXIT_OK
        if self.status in ("interrupted", "cancelled"):
            return EXIT_INTERRUPTED
        return EXIT_NOT_APPROVED


# --- building ---------------------------------------------------------------------------------------


def _step_report(step: StepRecord) -> StepReport:
    error = None
    if step.error_message is not None or step.error_kind is not None:
        error = StepError(kind=step.error_kind, message=step.error_message or step.error_kind or "")
    return StepReport(
        id=step.step_id,
        agent=step.agent,
        task=step.task,
        status=step.status,
        commit=step.commit,
        files_changed=step.files_changed,
        usage=step.usage,
        error=error,
    )


def _last_findings(steps: Iterable[StepRecord]) -> list[Finding]:
    """The findings of the last step (in workflow order) that recorded any: the last review."""
    findings: list[Finding] = []
    for step in steps:
        if isinstance(step.detail.get("findings"), list):
            findings = [Finding.model_validate(item) for item in step.detail["findings"]]
    return findings


def _notes(steps: Iterable[StepRecord], notices: Iterable[Notice]) -> list[str]:
    notes: list[str] = []
    for step in steps:
        notes += [f"{step.step_id}: {note}" for note in step.detail.get("notes", []) if isinstance(note, str)]
        used = step.usage
        if used.cost_usd is None and (used.input_tokens or used.output_tokens):
            notes.append(
                f"{step.step_id}: the cost of {step.agent}'s tokens is unknown (no price for its model)"
            )
    notes += [notice.text for notice in notices if notice.level != "info"]
    # A note is often both in a step's detail and in the notice the engine published about it.
    return list(dict.fromkeys(notes))


def build_report(store: Store, run_id: str, *, now: float | None = None) -> RunReport:
    run = store.get_run(run_id)
    steps = store.steps(run_id)
    gates: dict[str, GateReport] = {}
    gate_index: dict[str, int] = {}
    base: dict[int, BaseGateReport] = {}
    setup: list[SetupReport] = []
    notices: list[Notice] = []
    types = ("gate_finished", "notice", "base_gate_finished", "setup_finished")
    for stored in store.events(run_id, types=types):
        event = stored.event
        if isinstance(event, GateFinished):
            # Later results replace earlier ones; the first run of a gate keeps its place in the list.
            gates[event.command] = GateReport(
                command=event.command,
                passed=event.passed,
                exit_code=event.exit_code,
                step_id=event.step_id,
                output_tail=event.output_tail,
                cause=event.cause,
                cause_text=event.cause_text,
                versus_base=event.versus_base,
            )
            if event.gate_index is not None:
                gate_index[event.command] = event.gate_index
        elif isinstance(event, BaseGateFinished):
            base[event.gate_index] = BaseGateReport(**event.model_dump(exclude={"type", "ts", "run_id"}))
        elif isinstance(event, SetupFinished):
            setup.append(SetupReport(**event.model_dump(exclude={"type", "ts", "run_id"})))
        elif isinstance(event, Notice):
            notices.append(event)
    with_base = [
        gate.model_copy(update={"base": base.get(gate_index[command])}) if command in gate_index else gate
        for command, gate in gates.items()
    ]
    end = run.finished_at if run.finished_at is not None else (now if now is not None else time.time())
    return RunReport(
        run_id=run.id,
        status=run.status,
        stop_reason=run.stop_reason,
        branch=run.branch,
        base=run.base,
        iterations=run.iterations,
        steps=[_step_report(step) for step in steps],
        findings=_last_findings(steps),
        gates=with_base,
        usage=store.usage_total(run_id),
        task=run.task,
        workflow=run.workflow_name,
        repo=run.repo,
        duration_s=round(max(end - run.created_at, 0.0), 3),
        notes=_notes(steps, notices),
        base_gates=[base[i] for i in sorted(base)],
        setup=setup,
        attempts=attempts_of(steps, run.workflow),
        reviews=reviews_of(steps, run.workflow),
        subtasks=subtasks_of(steps, run.workflow),
        routing=list(run.workflow.get("routing", [])),
    )
