"""Trust of configuration found inside a repository, like direnv's `allow`.

A repository's `.orchestrator.yaml` and `.orchestrator/workflows/*.yaml` come with the code: cloning a
repository must not let it run programs or read your environment. Such a file may choose workflows,
agents, models and limits; what makes the orchestrator run something or hand something over is used only
once you have trusted the file (`orchestrator trust`), which records its SHA-256 in the state home. A
changed file needs trust again. Files you name yourself (`--config`, `$ORCHESTRATOR_CONFIG`, the user
config, `--workflow FILE`) are yours and always trusted.

Trust-only keys (`untrusted_config_keys`): an agent's `command`, `args` and `env` (which includes
`${VAR}` expansion from your environment and base-URL redirects), and `sandbox` (turning the sandbox off).
In workflows, a gate's `run:` command, except `run: auto`: auto runs the repository's own test command
that the orchestrator picks (pytest, npm test, ...), which only runs code the agents run anyway inside
their permission mode and sandbox; any other `run:` is an arbitrary program chosen by the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

TRUST_FILE = "trusted-config.json"
# Keys of an agent block that run programs or pass environment.
AGENT_TRUST_KEYS: tuple[str, ...] = ("command", "args", "env")
# `cluster` names the store every run is written to: a repository may not send them elsewhere.
# `budgets` is how much of your money runs may spend: a repository may not raise it.
TOP_TRUST_KEYS: tuple[str, ...] = ("sandbox", "cluster", "budgets")


class UntrustedConfig(ConfigError):
    """A repository's configuration file sets what only a trusted file may set (exit 2)."""


def repo_config_files(repo_root: Path) -> list[Path]:
    """The repository's own configuration files (those that exist)."""
    files = [repo_root / ".orchestrator.yaml"]
    workflows = repo_root / ".orchestrator" / "workflows"
    if workflows.is_dir():
        files += sorted(p for p in workflows.iterdir() if p.suffix in (".yaml", ".yml"))
    return [p for p in files if p.is_file()]


def is_inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


# --- what a file would be trusted with (pure) --------------------------------------------------------


def untrusted_config_keys(data: Any) -> dict[str, Any]:
    """`{key path: value}` of the trust-only keys a configuration mapping sets."""
    found: dict[str, Any] = {}
    if not isinstance(data, dict):
        return found
    for key in TOP_TRUST_KEYS:
        if key in data:
            found[key] = data[key]
    agents = data.get("agents")
    if isinstance(agents, dict):
        for agent, block in agents.items():
            if not isinstance(block, dict):
                continue
            for key in AGENT_TRUST_KEYS:
                if block.get(key) not in (None, [], {}):
                    found[f"agents.{agent}.{key}"] = block[key]
    return found


def untrusted_gate_commands(data: Any) -> dict[str, str]:
    """`{key path: command}` of the gates in a workflow file's data whose `run:` is not `auto`."""
    found: dict[str, str] = {}

    def steps_of(value: Any, prefix: str) -> None:
        # A workflow is a mapping with `steps:`, or (in a `workflows:` file) a bare list of steps.
        if isinstance(value, dict):
            steps, prefix = value.get("steps"), f"{prefix}steps."
        else:
            steps = value
        if not isinstance(steps, list):
            return
        for index, step in enumerate(steps):
            run = step.get("run") if isinstance(step, dict) else None
            if isinstance(run, str) and run.strip() != "auto":
                found[f"{prefix}{index}.run"] = run

    if not isinstance(data, dict):
        return found
    if "steps" in data:
        steps_of(data, "")
    workflows = data.get("workflows")
    if isinstance(workflows, dict):
        for name, body in workflows.items():
            steps_of(body, f"workflows.{name}.")
    return found


def without_trust_keys(data: Any) -> Any:
    """A copy of configuration data without its trust-only keys (for commands that run no agent)."""
    if not isinstance(data, dict):
        return data
    kept = {k: v for k, v in data.items() if k not in TOP_TRUST_KEYS}
    agents = kept.get("agents")
    if isinstance(agents, dict):
        kept["agents"] = {
            name: {k: v for k, v in block.items() if k not in AGENT_TRUST_KEYS}
            if isinstance(block, dict)
            else block
            for name, block in agents.items()
        }
    return kept


def describe(found: Mapping[str, Any]) -> list[str]:
    """One line per trust-only key: what trusting the file would allow."""
    lines = []
    for key, value in found.items():
        if key.endswith(".env") and isinstance(value, dict):
            for name, item in value.items():
                lines.append(f"{key}.{name}: {item}")
        else:
            lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    return lines


# --- the record of trusted files ---------------------------------------------------------------------


def trust_path(env: Mapping[str, str]) -> Path:
    from orchestrator.workspace.paths import state_home

    return state_home(env) / TRUST_FILE


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(env: Mapping[str, str]) -> dict[str, str]:
    try:
        data = json.loads(trust_path(env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save(env: Mapping[str, str], records: Mapping[str, str]) -> None:
    path = trust_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trust-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dict(sorted(records.items())), fh, indent=2)
        os.replace(tmp, path)  # atomic: a reader sees the old record or the new one
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def trust_state(path: Path, env: Mapping[str, str]) -> str:
    """ "trusted", "changed" (trusted once, different now) or "untrusted"."""
    recorded = _load(env).get(str(path.resolve()))
    if recorded is None:
        return "untrusted"
    try:
        return "trusted" if recorded == digest(path) else "changed"
    except OSError:
        return "untrusted"


def trust_files(paths: Iterable[Path], env: Mapping[str, str]) -> dict[str, str]:
    records = _load(env)
    added = {str(p.resolve()): digest(p) for p in paths}
    records.update(added)
    _save(env, records)
    return added


def revoke_files(paths: Iterable[Path], env: Mapping[str, str], *, under: Path | None = None) -> list[str]:
    """Forget the given files, and with `under` every recorded file inside that folder (a file that no
    longer exists included)."""
    records = _load(env)
    names = {str(p.resolve()) for p in paths}
    if under is not None:
        names |= {name for name in records if is_inside(Path(name), under)}
    removed = sorted(name for name in names if name in records)
    for name in removed:
        del records[name]
    _save(env, records)
    return removed


# --- refusing -----------------------------------------------------------------------------------------


def require_trust(path: Path, found: Mapping[str, Any], env: Mapping[str, str], *, repo_root: Path) -> None:
    """Raise UntrustedConfig when `path` (a repository file) sets trust-only keys and is not trusted."""
    if not found:
        return
    state = trust_state(path, env)
    if state == "trusted":
        return
    why = "it changed since you trusted it" if state == "changed" else "not trusted yet"
    raise UntrustedConfig(
        f"sets {', '.join(found)}; a repository's own file may run programs or read your environment "
        f"only once you trust it ({why})",
        file=str(path),
        hint=(
            f"see what it would run and allow it: `orchestrator trust --repo {repo_root}` (undo with "
            "--revoke); or move those keys to your own config (~/.config/orchestrator/config.yaml, "
            "or --config FILE)"
        ),
    )
