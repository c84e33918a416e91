"""Attempts (best of N): each agent of `attempts:` does the task at once, in a run repository of its own on
branch `orchestrator/<run-id>-<member>`; each attempt runs the workflow's gates; with `review` in
`select:` each gets one read-only review by a CLI that wrote none of them where possible; selection.py
ranks them and the winner's commits become the run branch. The others stay on their branches (and
under refs/orchestrator/runs/<run-id>-<member>/), so no commit of any attempt is lost.

Resume: a finished attempt (its sub-step completed in the store) is not run again; an unfinished one
starts over from the run's tip, what it had left kept under its backup refs.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.engine.rate_limits import call_with_rate_limit_retries
from orchestrator.engine.run_gates import build_run_gates
from orchestrator.engine.run_state import Cancelled, step_id_for, usage_of
from orchestrator.engine.scheduler import Task, run_group
from orchestrator.engine.selection import AttemptResult, rank_attempts
from orchestrator.engine.steps import StepAt
from orchestrator.engine.steps.attempt_review import review_attempts
from orchestrator.engine.workflow import AttemptsStep, GateStep
from orchestrator.errors import RunNotFound
from orchestrator.events import Notice
from orchestrator.store import COMPLETED_STEP_STATUSES, StepRecord, StepStatus, TokenUsage
from orchestrator.workspace.run_records import branch_name, member_run_id
from orchestrator.workspace.run_workspace import RunWorkspace

if TYPE_CHECKING:
    from orchestrator.engine.runner import RunEngine


@dataclass(frozen=True)
class AttemptOutcome:
    """One attempt, as the store keeps it (sub-step detail "attempt") and the report shows it."""

    name: str
    agent: str
    step_id: str
    branch: str
    completed: bool = False
    commit: str | None = None
    files: tuple[str, ...] = ()
    diff_lines: int | None = None
    gates_passed: int = 0
    gates_total: int = 0
    gates: tuple[dict[str, Any], ...] = ()
    cost_usd: float | None = None
    error: str | None = None
    reviewer: str | None = None
    review_verdict: str | None = None
    review_score: float | None = None

    def result(self) -> AttemptResult:
        return AttemptResult(
            name=self.name,
            completed=self.completed,
            gates_passed=self.gates_passed,
            gates_total=self.gates_total,
            review_score=self.review_score,
            diff_lines=self.diff_lines,
            cost_usd=self.cost_usd,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = list(self.files)
        data["gates"] = list(self.gates)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptOutcome:
        fields = {**data, "files": tuple(data.get("files", ())), "gates": tuple(data.get("gates", ()))}
        return cls(**fields)


class AttemptsKind:
    def run(self, engine: RunEngine, at: StepAt, follow_up: str | None) -> None:
        step = at.step
        assert isinstance(step, AttemptsStep)
        parent_id = step_id_for(at.iteration, at.index, step)
        base = engine.head()
        prompt = engine.prompt(step.task, step.description, at.iteration, follow_up)
        engine.begin_step(parent_id, at, step.attempts[0], step.task)
        members = list(zip(step.names, step.attempts, strict=True))
        group = [
            Task(name, functools.partial(_attempt, engine, at, parent_id, name, agent, base, prompt))
            for name, agent in members
        ]
        outcomes = run_group(
            group, max_workers=engine.run_slots.concurrency, cancel=engine.cancel, name="attempt"
        )
        results: list[AttemptOutcome] = []
        for name, agent in members:
            outcome = outcomes[name]
            if outcome.value is not None:
                results.append(outcome.value)
            else:
                error = (
                    "not started"
                    if not outcome.started
                    else f"{type(outcome.error).__name__}: {outcome.error}"
                )
                results.append(_failed(engine, at, parent_id, name, agent, error))
        if engine.cancel.is_set():
            engine.end_step(
                parent_id, step.attempts[0], "cancelled", error_kind="other", error_message="cancelled"
            )
            raise Cancelled
        if "review" in step.select:
            results = review_attempts(engine, at, results, base)
        ranking = rank_attempts([r.result() for r in results], step.select)
        winner = next((r for r in results if ranking.winner and r.name == ranking.winner.name), None)
        engine.state.attempts_total = len(results)
        engine.state.attempts_passed = sum(
            1 for r in results if r.completed and r.gates_passed == r.gates_total
        )
        detail: dict[str, Any] = {
            "attempts": [r.to_json() for r in results],
            "select": list(step.select),
            "ranking": [a.name for a in ranking.order],
            "explain": ranking.explain(),
            "notes": [ranking.explain().splitlines()[0]],
        }
        if winner is None or winner.commit is None:
            detail["winner"] = None
            engine.end_step(
                parent_id,
                step.attempts[0],
                "skipped" if step.optional else "failed",
                error_kind="other",
                error_message=ranking.explain(),
                detail=detail,
            )
            engine.state.steps_run += 1
            if not step.optional:
                engine.state.failed_step = f"{parent_id}: {ranking.explain()}"
            return
        detail["winner"] = winner.name
        engine.ws.advance_to(winner.commit)
        engine.moved()
        if engine.state.verdict is not None:
            engine.state.verdict_head = None  # the verdict no longer describes the tree
        engine.bus.publish(
            Notice(run_id=engine.run_id, level="info", text=f"{parent_id}: {ranking.explain()}")
        )
        engine.end_step(
            parent_id,
            winner.agent,
            "succeeded",
            commit=winner.commit,
            files=list(winner.files),
            detail=detail,
        )
        engine.state.steps_run += 1

    def replay(self, engine: RunEngine, at: StepAt, record: StepRecord) -> None:
        attempts = [AttemptOutcome.from_json(a) for a in record.detail.get("attempts", [])]
        engine.state.attempts_total = len(attempts) or None
        engine.state.attempts_passed = sum(
            1 for a in attempts if a.completed and a.gates_passed == a.gates_total
        )
        if record.commit and engine.state.verdict is not None:
            engine.state.verdict_head = None
        if not record.detail.get("winner") and at.step.optional is False:
            engine.state.failed_step = f"{record.step_id}: {record.error_message or 'no attempt chosen'}"


def _attempt(
    engine: RunEngine, at: StepAt, parent_id: str, name: str, agent: str, base: str, prompt: str
) -> AttemptOutcome:
    step = at.step
    assert isinstance(step, AttemptsStep)
    step_id = f"{parent_id}-{name}"
    known = engine.store.step(engine.run_id, step_id)
    if known is not None and known.status in COMPLETED_STEP_STATUSES and "attempt" in known.detail:
        return AttemptOutcome.from_json(known.detail["attempt"])  # resume: done before
    child = member_run_id(engine.run_id, name, at.iteration)
    outcome = AttemptOutcome(name=name, agent=agent, step_id=step_id, branch=branch_name(child))
    engine.store.start_step(
        engine.run_id, step_id, iteration=at.iteration, index=at.index, agent=agent, task=step.task
    )
    if not engine.readiness.of(agent).ready:
        reason = engine.readiness.of(agent).reason
        return _end_attempt(engine, outcome, TokenUsage(), error=f"{agent} is not ready ({reason})")
    ws = _member_workspace(engine, child, base)
    given_up: list[Any] = []
    result = call_with_rate_limit_retries(
        functools.partial(
            engine.call_agent,
            agent,
            step.task,
            step_id,
            prompt,
            read_only=False,
            timeout_s=step.timeout_s,
            model=step.model,
            cwd=ws.worktree,
            instance=name,
        ),
        policy=engine.settings.agent(agent).retry,
        others_ready=lambda: False,  # an attempt is its agent's: no other CLI takes it
        cancel=engine.cancel,
        failed=given_up.append,
        label=f"{step_id} ({name})",
    )
    usage = functools.reduce(lambda a, b: a + usage_of(b), given_up, usage_of(result))
    if not result.success:
        ws.reset_to(base)  # what it left is kept under the attempt's backup refs
        return _end_attempt(
            engine, outcome, usage, error=f"{result.summary.error_kind}: {result.summary.error_message}"
        )
    if engine.withhold_leaks(step_id, base, ws) is not None:
        return _end_attempt(engine, outcome, usage, error="secret_leak: the change held a secret; withheld")
    subject = f"{step.task} by {agent} (run {engine.run_id}, {step_id})"
    made = ws.commit_step(step_id=step_id, agent=agent, task=step.task, message=subject, step_start=base)
    if not made.changed or made.sha is None:
        return _end_attempt(engine, outcome, usage, error="no files changed", completed=True, diff_lines=0)
    diff = ws.diff(since=base, max_bytes=10**8, committed_only=True)
    lines = sum(
        1 for line in diff.text.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )
    gates = _attempt_gates(engine, ws, child, made.sha)
    outcome = AttemptOutcome(
        **{
            **asdict(outcome),
            "commit": made.sha,
            "files": tuple(made.files),
            "diff_lines": lines,
            "gates": tuple(gates),
            "gates_total": sum(1 for g in gates if g["passed"] is not None),
            "gates_passed": sum(1 for g in gates if g["passed"] is True),
        }
    )
    return _end_attempt(engine, outcome, usage, completed=True, diff_lines=lines)


def _member_workspace(engine: RunEngine, child: str, base: str) -> RunWorkspace:
    """The attempt's repository, from the run's tip: made, or (on resume) opened and reset to it."""
    try:
        ws = RunWorkspace.open(engine.ws.repo, child, engine.state_home, environ=engine.env)
    except RunNotFound:
        return RunWorkspace.create(
            engine.ws.repo, child, base=base, state_home=engine.state_home, environ=engine.env
        )
    ws.reset_to(ws.first)  # resume: the attempt starts over; what it left is kept under its backups
    return ws


def _attempt_gates(engine: RunEngine, ws: RunWorkspace, child: str, head: str) -> list[dict[str, Any]]:
    """The workflow's gates on the attempt's tree (no base run: ranking needs no comparison)."""
    gates = build_run_gates(
        workflow=engine.workflow,
        run_id=engine.run_id,
        run_tree=ws.worktree,
        first_commit=ws.first,
        user_checkout=engine.ws.repo,
        run_dir=ws.paths.run_dir,
        state_home=engine.state_home,
        env=engine.env,
        guard_env=engine.guard_env(),
        sandbox=engine.sandbox,
        base_option=False,
        known_base=[],
        publish=engine.bus.publish,
        cancel=engine.cancel,
    )
    found: list[dict[str, Any]] = []
    gates.start()
    try:
        for index, gate in enumerate(engine.workflow.steps):
            if isinstance(gate, GateStep) and not gate.optional:
                record = gates.run_gate(index, gate, head)
                outcome = record.outcome
                found.append({"name": gate.label, "passed": outcome.passed, "exit_code": outcome.exit_code})
                ws.discard_uncommitted(step_start=head)
    finally:
        gates.finish(cancelled=engine.cancel.is_set())
    return found


def _end_attempt(
    engine: RunEngine,
    outcome: AttemptOutcome,
    usage: TokenUsage,
    *,
    error: str | None = None,
    completed: bool = False,
    diff_lines: int | None = None,
) -> AttemptOutcome:
    final = AttemptOutcome(
        **{
            **asdict(outcome),
            "completed": completed,
            "error": error,
            "cost_usd": usage.cost_usd,
            "diff_lines": diff_lines if diff_lines is not None else outcome.diff_lines,
        }
    )
    status: StepStatus = "succeeded" if completed else "failed"
    engine.end_step(
        outcome.step_id,
        outcome.agent,
        status,
        commit=final.commit,
        files=list(final.files),
        usage=usage,
        error_kind=None if completed else "other",
        error_message=None if completed else error,
        detail={"attempt": final.to_json(), "notes": [error] if error else []},
    )
    return final


def _failed(
    engine: RunEngine, at: StepAt, parent_id: str, name: str, agent: str, error: str
) -> AttemptOutcome:
    child = member_run_id(engine.run_id, name, at.iteration)
    outcome = AttemptOutcome(name=name, agent=agent, step_id=f"{parent_id}-{name}", branch=branch_name(child))
    engine.bus.publish(
        Notice(run_id=engine.run_id, level="error", text=f"{parent_id}: attempt {name}: {error}")
    )
    return AttemptOutcome(**{**asdict(outcome), "error": error})
