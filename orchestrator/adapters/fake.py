"""The fake agent's adapter: drives orchestrator/adapters/fake_agent.py like any real CLI."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.adapters.base import (
    AgentRequest,
    Availability,
    Command,
    ProcessOutcome,
    limit_error,
    load_json_line,
    price_usd,
)
from orchestrator.events import (
    AgentErrorEvent,
    AgentEvent,
    AssistantMessage,
    Result,
    SessionStarted,
    ToolUse,
    Usage,
)


class FakeAdapter:
    name = "fake"
    credential_vars: tuple[str, ...] = ()
    usage_accumulates_over_session = False

    def build_command(self, request: AgentRequest) -> Command:
        argv = [request.command or sys.executable, "-m", "orchestrator.adapters.fake_agent"]
        argv += ["--permission", request.permission.value]
        if request.resume_session:
            argv += ["--resume", request.resume_session]
        if request.model:
            argv += ["--model", request.model]
        # The prompt goes on stdin, like the real CLIs': one argv string stops at 128 KiB (E2BIG).
        argv += [*request.extra_args, "-"]
        return Command(argv=tuple(argv), cwd=request.cwd, env=dict(request.env), stdin=request.prompt)

    def parse_line(self, line: str) -> list[AgentEvent]:
        data = load_json_line(line)
        if data is None:
            return []
        kind = data.get("type")
        if kind == "session":
            return [SessionStarted(session_id=data.get("session_id"), model=data.get("model"))]
        if kind == "message":
            return [AssistantMessage(text=str(data.get("text", "")))]
        if kind == "tool":
            return [
                ToolUse(
                    call_id=data.get("id"),
                    tool="fake",
                    action=data.get("action", "other"),
                    status=data.get("status", "started"),
                    path=data.get("path"),
                    command=data.get("command"),
                    detail=data.get("detail"),
                )
            ]
        if kind == "usage":
            tokens_in, tokens_out = int(data.get("input_tokens", 0)), int(data.get("output_tokens", 0))
            model = data.get("model")
            return [
                Usage(
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    model=model,
                    cost_usd=price_usd(model, tokens_in, tokens_out),
                    scope="delta",
                )
            ]
        if kind == "error":
            wait = data.get("retry_after_s")
            return [
                AgentErrorEvent(
                    kind=data.get("kind", "other"),
                    message=str(data.get("message", "")),
                    retry_after_s=float(wait) if isinstance(wait, int | float) else None,
                )
            ]
        if kind == "result":
            return [
                Result(
                    final_text=str(data.get("text", "")),
                    session_id=data.get("session_id"),
                    success=bool(data.get("success")),
                )
            ]
        return []

    def finish(
        self, outcome: ProcessOutcome, events: Sequence[AgentEvent], collected: Mapping[Path, str]
    ) -> list[AgentEvent]:
        extra: list[AgentEvent] = []
        limit = limit_error(outcome)
        if limit is not None:
            extra.append(limit)
        refused = [e for e in events if isinstance(e, ToolUse) and e.status == "refused"]
        if refused:
            what = ", ".join(e.path or e.command or e.tool for e in refused)
            extra.append(AgentErrorEvent(kind="refused", message=f"the agent was refused: {what}"))
        return extra

    def availability(
        self,
        env: Mapping[str, str],
        command: str | None = None,
        *,
        args: Sequence[str] = (),
        model: str | None = None,
        versions: object = None,
    ) -> Availability:
        return Availability(
            agent=self.name,
            installed=True,
            path=command or sys.executable,
            version="builtin",
            tested_version="builtin",
            version_tested=True,
            auth_configured=True,
            auth_source="none needed",
            ready=True,
            reason="ready",
        )
