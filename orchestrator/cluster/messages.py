"""What the cluster's workflow and activities pass each other (Temporal's JSON converter takes these
dataclasses as they are), and the names they are registered under. Only the standard library: the
workflow imports this inside Temporal's deterministic sandbox."""

from __future__ import annotations

from dataclasses import dataclass

WORKFLOW_NAME = "OrchestratorRun"
RUN_STEP = "run_step"
END_RUN = "end_run"
# The error type of a step that must not be retried (the run's own fault, not the worker's).
USER_ERROR = "OrchestratorUserError"


@dataclass
class RunRequest:
    """A workflow's input: the run (its id is the workflow id) and where and how its steps run."""

    run_id: str
    step_queue: str  # <prefix>.agents.<a+b>: workers with every agent the run names
    end_queue: str  # <prefix>.workflows: every worker serves it
    heartbeat_timeout_s: float
    step_timeout_s: float


@dataclass
class StepRequest:
    run_id: str
    number: int  # the workflow's count of steps asked for (1, 2, ...), for logs


@dataclass
class StepOutcome:
    """What one `run_step` did: `finished` is False while the run goes on ("more")."""

    finished: bool
    status: str | None = None  # the run's status once finished
    reason: str | None = None
    exit_code: int | None = None
    worker: str = ""  # the worker that ran the step (its --name)


@dataclass
class EndRequest:
    """Ends a run that its steps could not end (a cancel between steps, a step that failed for good)."""

    run_id: str
    status: str  # "cancelled" or "failed"
    reason: str
    text: str
