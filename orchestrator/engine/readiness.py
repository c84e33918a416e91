"""Which agents can work here: each CLI asked once (installed? version? auth?), with the environment its
child would really get. Shared by the run service (the check before a run starts), the engine (fallbacks)
and `orchestrator agents`.

Cheap on purpose: only the agents a workflow can use are asked, all at once (one thread each: the
`--version` probes are processes that mostly wait), and a version is remembered by the executable's
path, size and mtime in `<state home>/cli-versions.json`, so a known CLI costs no process at all.

A review is never given to a CLI that wrote the code under review: when the reviewer a workflow names is
not ready, its fallback is another CLI than the workflow's authors (its editing steps' agents), or the
run is refused before it starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.adapters import get_adapter
from orchestrator.adapters.base import Availability, credential_vars_for
from orchestrator.adapters.versions import CACHE_FILE, VersionCache
from orchestrator.config import Settings, agent_child_vars
from orchestrator.engine.workflow import AttemptsStep, ForEachStep, Step, Workflow
from orchestrator.proc import child_env


def unready_kind(availability: Availability) -> str:
    """The error kind a step gets when its agent is not ready."""
    if not availability.installed:
        return "not_installed"
    if not availability.auth_configured:
        return "auth"
    return "other"


class AgentReadiness:
    def __init__(self, settings: Settings, env: Mapping[str, str], *, state_home: Path | None = None) -> None:
        self.settings = settings
        self.env = env
        self._known: dict[str, Availability] = {}
        if state_home is None:
            from orchestrator.workspace.paths import state_home as default_state_home

            state_home = default_state_home(env)
        self.versions = VersionCache(state_home / CACHE_FILE)

    def of(self, agent: str) -> Availability:
        if agent not in self._known:
            self._known[agent] = self._probe(agent)
        return self._known[agent]

    def _probe(self, agent: str) -> Availability:
        adapter = get_adapter(agent)
        config = self.settings.agent(agent)
        allowed = credential_vars_for(adapter, self.env, config.args)
        env = child_env(self.env, agent_child_vars(agent, config, allowed, self.env))
        return adapter.availability(
            env, config.command, args=config.args, model=config.model, versions=self.versions
        )

    def probe(self, agents: Iterable[str]) -> None:
        """Asks every agent not asked yet, at once."""
        todo = [a for a in dict.fromkeys(agents) if a not in self._known]
        if len(todo) == 1:
            self.of(todo[0])
        elif todo:
            with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="readiness") as pool:
                for agent, found in zip(todo, pool.map(self._probe, todo), strict=True):
                    self._known.setdefault(agent, found)

    def candidates(self, wanted: str) -> list[str]:
        """Who may take a step of `wanted`'s: it first, then the configured fallback order."""
        return [wanted, *[a for a in self.settings.fallback_order if a != wanted]]

    def pick(self, wanted: str, exclude: Sequence[str] = (), avoid: Sequence[str] = ()) -> str | None:
        """The agent that takes a step of `wanted`'s: `wanted` when ready, else the first ready fallback
        that is neither excluded nor in `avoid` (for a review: the CLIs that wrote the code)."""
        if wanted not in exclude and self.of(wanted).ready:
            return wanted
        rest = [a for a in self.candidates(wanted)[1:] if a not in exclude and a not in avoid]
        self.probe(rest)
        return next((a for a in rest if self.of(a).ready), None)

    def authors(self, workflow: Workflow) -> list[str]:
        """The agents that will write the code: those that take the workflow's editing steps."""
        found: list[str] = []
        for step in workflow.task_steps:
            if step.read_only or not step.agents:
                continue
            # Each attempt and subtask is its own agent's; a plain step may fall back to another.
            picked = (
                step.agents if isinstance(step, AttemptsStep | ForEachStep) else (self.pick(step.agents[0]),)
            )
            for agent in picked:
                if agent is not None and agent not in found:
                    found.append(agent)
        return found

    def avoid_for(self, step: Step, workflow: Workflow) -> list[str]:
        """Who may not take `step` as a fallback: for a read-only step, the code's authors."""
        return self.authors(workflow) if step.read_only else []

    def blocked_steps(self, workflow: Workflow) -> list[str]:
        """Required steps that no agent could take: one line each, saying why and what to do."""
        self.probe(step.agent for step in workflow.agent_steps)
        blocked: list[str] = []
        for step in workflow.agent_steps:
            if step.optional:
                continue
            avoid = self.avoid_for(step, workflow)
            if self.pick(step.agent, avoid=avoid) is not None:
                continue
            availability = self.of(step.agent)
            line = f"{step.task} ({step.agent}): {availability.reason}"
            ready_authors = [a for a in avoid if a != step.agent and self.of(a).ready]
            if ready_authors:
                line += (
                    f"; the other ready CLIs ({', '.join(ready_authors)}) wrote the code under review, "
                    "so they may not review it"
                )
            if availability.fix:
                line += f"; fix: {availability.fix}"
            blocked.append(line)
        for group in workflow.task_steps:
            if isinstance(group, Step) or group.optional or not group.agents:
                continue
            self.probe(group.agents)
            if not any(self.of(agent).ready for agent in group.agents):
                reasons = "; ".join(f"{a}: {self.of(a).reason}" for a in group.agents)
                blocked.append(f"{group.label}: none of its agents is ready ({reasons})")
        return list(dict.fromkeys(blocked))
