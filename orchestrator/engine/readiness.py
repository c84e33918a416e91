"""Which agents can work here: each CLI asked once (installed? version? auth?), with the environment its
child would really get. Shared by the run service (the check before a run starts), the engine (fallbacks)
and `orchestrator agents`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import Availability
from orchestrator.config import Settings, agent_child_vars
from orchestrator.engine.workflow import Workflow
from orchestrator.proc import child_env


def unready_kind(availability: Availability) -> str:
    """The error kind a step gets when its agent is not ready."""
    if not availability.installed:
        return "not_installed"
    if not availability.auth_configured:
        return "auth"
    return "other"


class AgentReadiness:
    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = env
        self._known: dict[str, Availability] = {}

    def of(self, agent: str) -> Availability:
        if agent not in self._known:
            adapter = get_adapter(agent)
            config = self.settings.agent(agent)
            env = child_env(self.env, agent_child_vars(agent, config, adapter.credential_vars, self.env))
            self._known[agent] = adapter.availability(env, config.command)
        return self._known[agent]

    def candidates(self, wanted: str) -> list[str]:
        """Who may take a step of `wanted`'s: it first, then the configured fallback order."""
        return [wanted, *[a for a in self.settings.fallback_order if a != wanted]]

    def pick(self, wanted: str, exclude: Sequence[str] = ()) -> str | None:
        return next((a for a in self.candidates(wanted) if a not in exclude and self.of(a).ready), None)

    def blocked_steps(self, workflow: Workflow) -> list[str]:
        """Required steps that no agent could take: one line each, saying why and what to do."""
        blocked: list[str] = []
        for step in workflow.agent_steps:
            if step.optional or self.pick(step.agent) is not None:
                continue
            availability = self.of(step.agent)
            line = f"{step.task} ({step.agent}): {availability.reason}"
            if availability.fix:
                line += f"; fix: {availability.fix}"
            blocked.append(line)
        return list(dict.fromkeys(blocked))
