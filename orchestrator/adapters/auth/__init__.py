"""Which credentials each CLI will use, following the CLI's own configuration (its config files, its
`-c`/`--settings` arguments, the variables that switch it to a cloud or a provider of your own).

Each module answers with `Credentials`: the source found, in words for `orchestrator agents`, or the
set-up found and why it cannot work, or nothing. Pure but for reading the CLI's own files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    source: (
        str | None
    )  # e.g. "model provider 'azure' (key from AZURE_OPENAI_API_KEY in ~/.codex/config.toml)"
    problem: str | None = None  # a set-up was found but cannot work: why
    fix: str | None = None
    # Variables the found set-up needs in the CLI's environment beyond the adapter's fixed list
    # (a Codex provider's env_key): they must pass the allowlist too.
    needs_vars: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.source is not None and self.problem is None


NONE = Credentials(None)


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in {"", "0", "false", "no", "off"}
