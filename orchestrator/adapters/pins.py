"""The one place that pins the real CLIs we test against. Re-check cli-facts when you change a version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PinnedCli:
    agent: str  # our adapter name
    package: str  # npm package
    version: str  # the version our adapters are tested with
    binary: str  # the executable the package puts in node_modules/.bin


PINNED: dict[str, PinnedCli] = {
    "claude": PinnedCli("claude", "@anthropic-ai/claude-code", "2.1.332", "claude"),
    "codex": PinnedCli("codex", "@openai/codex", "0.171.0", "codex"),
    "gemini": PinnedCli("gemini", "@google/gemini-cli", "0.61.0", "gemini"),
    "copilot": PinnedCli("copilot", "@github/copilot", "1.0.102", "copilot"),
}
