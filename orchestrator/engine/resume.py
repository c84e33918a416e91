"""Resume and follow-ups: what a run's earlier steps left in the store, read back into its state
(follow_ups.py says where a follow-up starts)."""

from __future__ import annotations

from orchestrator.engine.gates import GateResult
from orchestrator.engine.review import Finding, ReviewVerdict
from orchestrator.engine.run_state import RunState
from orchestrator.secrets import SecretMasker
from orchestrator.store import StepRecord, Store
from orchestrator.workspace.paths import RunPaths
from orchestrator.workspace.run_workspace import RunWorkspace


class ResumeState:
    store: Store
    run_id: str
    ws: RunWorkspace
    paths: RunPaths
    state: RunState
    masker: SecretMasker

    def head(self) -> str:
        raise NotImplementedError  # AgentCalls'

    def take_verdict(self, verdict: ReviewVerdict, head: str, iteration: int | None = None) -> None:
        raise NotImplementedError  # AgentCalls'

    def head_at(self, record: StepRecord) -> str:
        """The run's commit when a (read-only) step ran: the last commit made by an earlier step."""
        last = None
        for other in self.store.steps(self.run_id):
            if other.step_id == record.step_id:
                break
            if other.commit:
                last = other.commit
        return last or self.ws.first

    def restore_latest(self, *, before_iteration: int) -> None:
        """For a follow-up: the last review's findings and the gates' latest results, from the steps of
        the iterations before it (its own are replayed by the walk)."""
        head = self.head()
        for record in self.store.steps(self.run_id):
            if record.iteration >= before_iteration:
                continue
            if "verdict" in record.detail:
                verdict = ReviewVerdict(
                    verdict=record.detail["verdict"],
                    findings=[Finding.model_validate(f) for f in record.detail.get("findings", [])],
                )
                self.take_verdict(verdict, self.head_at(record))
            gate = record.detail.get("gate")
            if isinstance(gate, dict) and "passed" in gate:
                self.state.gates[record.index] = GateResult(
                    passed=gate["passed"], head=gate.get("head", head), blocks=bool(gate.get("blocks", True))
                )
