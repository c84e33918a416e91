"""The event vocabulary, and the per-run event bus.

Adapters turn each CLI's own output into AgentEvents; the engine adds RunEvents. Everything downstream
(store, console, dashboard, metrics) reads only these, never raw CLI output.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from orchestrator.errors import AgentErrorKind

ToolAction = Literal["file_edit", "file_read", "command_run", "search", "other"]
ToolStatus = Literal["started", "succeeded", "failed", "refused"]


class _Event(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    ts: float = Field(default_factory=time.time)


# --- what an agent (a CLI) says -------------------------------------------------------------------


class SessionStarted(_Event):
    """The CLI announced its session (thread) id and model, before any work."""

    type: Literal["session"] = "session"
    session_id: str | None = None
    model: str | None = None


class AssistantMessage(_Event):
    type: Literal["message"] = "message"
    text: str


class ToolUse(_Event):
    """A tool call the agent made. `call_id` ties a start to its completion."""

    type: Literal["tool_use"] = "tool_use"
    call_id: str | None = None
    tool: str
    action: ToolAction = "other"
    status: ToolStatus = "started"
    path: str | None = None
    command: str | None = None
    detail: str | None = None


class Usage(_Event):
    """Tokens (and cost in USD when known) for one model call or the whole step, per `scope`."""

    type: Literal["usage"] = "usage"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    model: str | None = None
    # "total" replaces what came before for this step; "delta" adds to it.
    scope: Literal["total", "delta"] = "total"


class AgentErrorEvent(_Event):
    type: Literal["error"] = "error"
    kind: AgentErrorKind
    message: str
    retry_after_s: float | None = None  # a rate limit's retry-after, when the CLI said it


class Result(_Event):
    type: Literal["result"] = "result"
    final_text: str = ""
    session_id: str | None = None
    success: bool


AgentEvent = Annotated[
    SessionStarted | AssistantMessage | ToolUse | Usage | AgentErrorEvent | Result,
    Field(discriminator="type"),
]

# --- what the engine says about a run --------------------------------------------------------------


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    run_id: str
    task: str
    workflow: str
    branch: str
    base: str


class StepStarted(_Event):
    type: Literal["step_started"] = "step_started"
    run_id: str
    step_id: str
    agent: str
    task: str
    iteration: int


class StepFinished(_Event):
    type: Literal["step_finished"] = "step_finished"
    run_id: str
    step_id: str
    agent: str
    status: str
    commit: str | None = None
    files_changed: list[str] = Field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None  # the AgentErrorKind (or "gate") when the step did not succeed


class GateFinished(_Event):
    type: Literal["gate_finished"] = "gate_finished"
    run_id: str
    step_id: str
    command: str
    passed: bool
    exit_code: int | None = None
    output_tail: str = ""
    # How a failure compares with the same gate on the base (engine.gate_results.Versus): "" when it
    # passed or there was no base run; "as_on_base" failures do not count against approval.
    versus_base: str = ""
    cause: str = ""
    cause_text: str = ""
    gate_index: int | None = None


class SetupFinished(_Event):
    """A `setup:` command ran (or could not) in the run's repository (`where` "run") or in the base
    checkout ("base"). `ok` None: there was nothing to run, or its tool is not installed (`note`)."""

    type: Literal["setup_finished"] = "setup_finished"
    run_id: str
    where: Literal["run", "base"] = "run"
    command: str
    ok: bool | None
    exit_code: int | None = None
    duration_s: float = 0.0
    output_tail: str = ""
    note: str = ""


class BaseGateFinished(_Event):
    """A gate ran once on the base (before any agent's change), in a checkout of its own.
    `gate_index` is the gate's index in the workflow's steps; `cause` says why it failed (a kind from
    engine.gate_results.CAUSES, and one line for people)."""

    type: Literal["base_gate_finished"] = "base_gate_finished"
    run_id: str
    gate_index: int
    command: str
    passed: bool | None  # None: skipped (`run: auto` found no tests)
    exit_code: int | None = None
    duration_s: float = 0.0
    cause: str = ""
    cause_text: str = ""
    failures: list[str] = Field(default_factory=list)  # failing test names found in the output
    output_tail: str = ""


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    run_id: str
    status: str
    stop_reason: str
    branch: str


class FollowUp(_Event):
    """A follow-up on a run: `text` drives the implement step of `iteration` (the first one it adds),
    and the run may go on to `max_iterations`. Kept in the event log, the one source of truth, so
    whichever process or cluster worker resumes the run finds it (engine/follow_ups.py)."""

    type: Literal["follow_up"] = "follow_up"
    run_id: str
    text: str
    iteration: int
    max_iterations: int
    source: str = ""  # who asked: "the shell", "the dashboard", ...


class AgentActivity(_Event):
    """An agent event, tagged with the run and step it belongs to (what the bus carries)."""

    type: Literal["agent"] = "agent"
    run_id: str
    step_id: str
    agent: str
    event: AgentEvent


class Notice(_Event):
    """A line for people: fallbacks taken, retries, warnings."""

    type: Literal["notice"] = "notice"
    run_id: str | None = None
    level: Literal["info", "warning", "error"] = "info"
    text: str
    # For metrics and logs, when the notice is one of these: "fallback" (`agent` was replaced;
    # `reason`: its error kind, or "not_ready") or "retry" (`reason`: what was retried).
    kind: Literal["fallback", "retry"] | None = None
    agent: str | None = None
    reason: str | None = None


RunEvent = Annotated[
    RunStarted
    | StepStarted
    | StepFinished
    | GateFinished
    | SetupFinished
    | BaseGateFinished
    | RunFinished
    | FollowUp
    | AgentActivity
    | Notice,
    Field(discriminator="type"),
]

agent_event_adapter: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent, config=ConfigDict(defer_build=True))
run_event_adapter: TypeAdapter[RunEvent] = TypeAdapter(RunEvent, config=ConfigDict(defer_build=True))

Subscriber = Callable[[RunEvent], None]


class EventBus:
    """Fan-out of a run's events. Keeps a bounded history so a late subscriber replays, then follows.

    Subscribers are called synchronously in publish order; one that raises is dropped, so a broken
    renderer can never stop a run. `transform` (the run's secret masking) is applied to each event
    before it is kept or handed to anyone.
    """

    def __init__(
        self, history: int = 5000, *, transform: Callable[[RunEvent], RunEvent] | None = None
    ) -> None:
        self._transform = transform
        self._lock = threading.Lock()
        self._history: deque[RunEvent] = deque(maxlen=history)
        self._subscribers: list[Subscriber] = []

    def publish(self, event: RunEvent) -> None:
        if self._transform is not None:
            event = self._transform(event)
        with self._lock:
            self._history.append(event)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - a subscriber's fault must not end the run
                self.unsubscribe(subscriber)

    def subscribe(self, subscriber: Subscriber, *, replay: bool = True) -> Callable[[], None]:
        with self._lock:
            backlog = list(self._history) if replay else []
            self._subscribers.append(subscriber)
        for event in backlog:
            subscriber(event)
        return lambda: self.unsubscribe(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def history(self) -> Iterator[RunEvent]:
        with self._lock:
            return iter(list(self._history))
