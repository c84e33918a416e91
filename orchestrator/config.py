"""Settings and per-agent configuration (pydantic), and where they are found.

`--config FILE` or `$ORCHESTRATOR_CONFIG` is used alone; otherwise the repository's `.orchestrator.yaml`
is laid over `~/.config/orchestrator/config.yaml` (`$XDG_CONFIG_HOME` honoured): mappings merged key by
key, lists and values replaced (`layered_config`), so your budgets, sandbox and cluster hold. A bad file exits 2 naming the file,
the key path, and what is allowed. A repository's `.orchestrator.yaml` may set `command`, `args`, `env`
(and so `${VAR}`) and `sandbox` only once trusted (`orchestrator trust`, see trust.py).

    agents:
      claude:
        command: /opt/claude/bin/claude     # another binary
        args: ["--add-dir", "../shared"]     # extra arguments, appended
        env: {ANTHROPIC_API_KEY: "${MY_KEY}"}  # `${VAR}` takes the parent's value
        model: claude-sonnet-4-5
        timeout_s: 1200
        idle_timeout_s: 180
        transcript_max_bytes: 52428800       # per step, .jsonl and .stderr together (default 50 MB)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Before any model is built: pydantic's plugin look-up without importlib.metadata (see there).
import orchestrator.pydantic_plugins  # noqa: F401
from orchestrator.adapters import AGENT_NAMES, get_adapter
from orchestrator.errors import ConfigError
from orchestrator.files import load_yaml, read_config_text
from orchestrator.limits.ledger import Budgets
from orchestrator.secrets import masked_url, url_has_credentials
from orchestrator.trust import require_trust, trust_state, untrusted_config_keys, without_trust_keys


class RetryPolicy(BaseModel):
    """A rate-limited step (429) with a known retry-after, and no other agent to take it, is tried
    again after that wait: `attempts` tries in all (1: never again), a wait over `max_wait_s` is not
    waited for."""

    model_config = ConfigDict(defer_build=True, extra="forbid")
    attempts: int = Field(default=3, ge=1, le=20)
    max_wait_s: float = Field(default=120.0, ge=0)


class AgentConfig(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    timeout_s: float = Field(default=1800.0, gt=0)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    # Let this CLI read its own vendor's credentials from your environment (ANTHROPIC_API_KEY for claude,
    # ...). Never another vendor's. Set false to pass credentials only through `env`.
    inherit_credentials: bool = True
    # "subprocess" (structured output on pipes, the default) or "pty" (a terminal).
    communicator: Literal["subprocess", "pty"] = "subprocess"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    # What one step's transcripts (.jsonl and .stderr together) may take on disk; past it, a marker.
    transcript_max_bytes: int = Field(default=50 * 1024 * 1024, ge=4096)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value


class ClusterConfig(BaseModel):
    """Several machines: `database` is the PostgreSQL run store every machine shares (the `[cluster]`
    extra); $ORCHESTRATOR_DATABASE_URL overrides it. Without it the store is the embedded SQLite file.

    `temporal` (HOST:PORT of a Temporal frontend) turns cluster mode on: runs become Temporal workflows
    on a pool of `orchestrator worker`s (orchestrator/cluster/). `heartbeat_timeout_s` is how long a
    step's worker may stay silent before Temporal gives its step to another worker; `task_queue_prefix`
    names the task queues (`<prefix>.workflows`, `<prefix>.agents.<a+b>`), so that several teams can
    share one Temporal namespace.

    `remote` (a remote's name in the run's repository, or a git URL) is where workers fetch a run's
    repository and push its branch (cluster/remote.py); without it, the repository's own path (one
    machine, or a shared file system). A URL with a password or token in it is refused.

    `keep_finished_runs_s` is how long a worker keeps a finished run's
    repository (a full checkout) on its disk before its sweep removes it (0: at once); the run branch
    is on the repository's URL already, and a later step makes the repository again from it
    (cluster/cleanup.py)."""

    model_config = ConfigDict(defer_build=True, extra="forbid")
    database: str | None = None
    temporal: str | None = None
    namespace: str = "default"
    heartbeat_timeout_s: float = 30.0
    task_queue_prefix: str = "orchestrator"
    remote: str | None = None
    keep_finished_runs_s: float = 3600.0

    @field_validator("database")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)")
        return value

    @field_validator("temporal")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if "://" in value or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"must be HOST:PORT of a Temporal frontend (e.g. temporal.internal:7233), not {value!r}"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", value):
            raise ValueError(f"must be a Temporal namespace name (letters, digits, . _ -), not {value!r}")
        return value

    @field_validator("heartbeat_timeout_s")
    @classmethod
    def _heartbeat(cls, value: float) -> float:
        # Below ~2 s a busy worker's heartbeats (every third of the timeout) would time out spuriously;
        # above an hour a dead worker's step would wait that long for another worker.
        if not 2.0 <= value <= 3600.0:
            raise ValueError(f"must be from 2 to 3600 seconds, not {value:g}")
        return value

    @field_validator("keep_finished_runs_s")
    @classmethod
    def _keep(cls, value: float) -> float:
        # Up to a year: "keep forever" is not what a worker's disk can promise (math.inf is refused too).
        if not 0.0 <= value <= 366 * 86400.0:
            raise ValueError(f"must be from 0 (at once) to 31622400 seconds (a year), not {value:g}")
        return value

    @field_validator("task_queue_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", value):
            raise ValueError(f"must be letters, digits, _ or - (a task queue name's start), not {value!r}")
        return value

    @field_validator("remote")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must be a remote's name or a git URL, not empty")
        if url_has_credentials(value):
            # The message names the URL masked: pydantic's own would repeat the value as it is.
            raise ValueError(
                f"{masked_url(value)} has a password or token in it; give the URL without it and use a "
                "credential helper (https://) or an SSH URL, so that no run record holds the secret"
            )
        return value

    @property
    def enabled(self) -> bool:
        """Whether runs go to the cluster (a Temporal frontend is configured)."""
        return self.temporal is not None


class MachineLimits(BaseModel):
    """The config's `limits:`: `per_agent: {claude: 2}` caps a CLI on the whole machine (default 4)."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    per_agent: dict[str, int] = Field(default_factory=dict)

    @field_validator("per_agent")
    @classmethod
    def _caps(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cap in value.items():
            if name not in AGENT_NAMES:
                raise ValueError(f"unknown agent {name!r}")
            if not 1 <= cap <= 64:
                raise ValueError(f"limits.per_agent.{name} must be from 1 to 64, not {cap}")
        return value


class Settings(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    # Who takes a step when its agent is not ready (not installed, not authenticated, rate-limited).
    fallback_order: list[str] = Field(default_factory=lambda: ["claude", "codex", "gemini", "copilot"])
    workspace_dir: Path | None = None  # where runs outside any repo get a repo of their own
    workflow: str = "default"
    # The OS sandbox for agents and gates (orchestrator/workspace/sandbox.py): auto, bwrap or off.
    sandbox: Literal["auto", "bwrap", "off"] = "auto"
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    # Money across every run on the machine, by the hour and the day (orchestrator/limits/ledger.py).
    budgets: Budgets = Field(default_factory=Budgets)
    # Agent steps of one CLI at once across every run on the machine (orchestrator/limits/slots.py).
    limits: MachineLimits = Field(default_factory=lambda: MachineLimits())

    @field_validator("sandbox", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false (and `on` as true).
        return {False: "off", True: "bwrap"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("agents")
    @classmethod
    def _known_agents(cls, value: dict[str, AgentConfig]) -> dict[str, AgentConfig]:
        for name in value:
            if name not in AGENT_NAMES:
                raise ValueError(f"unknown agent {name!r}")
        return value

    @field_validator("fallback_order")
    @classmethod
    def _known_fallbacks(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in AGENT_NAMES:
                raise ValueError(f"unknown agent {name!r}")
        return value

    def agent(self, name: str) -> AgentConfig:
        return self.agents.get(name) or AgentConfig()


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    source: Path | None  # None: built-in defaults
    unresolved: dict[str, list[str]] = field(default_factory=dict)  # agent -> `${VAR}` not set


_ALLOWED = {
    "": "agents, fallback_order, workspace_dir, workflow, sandbox, cluster, budgets, limits",
    "cluster": "database, temporal, namespace, heartbeat_timeout_s, task_queue_prefix, remote,"
    " keep_finished_runs_s",
    "agents": ", ".join(AGENT_NAMES),
    "agent": "command, args, env, model, timeout_s, idle_timeout_s, inherit_credentials, communicator,"
    " retry, transcript_max_bytes",
}


def discover_config(
    explicit: Path | None, repo_root: Path | None, env: Mapping[str, str]
) -> tuple[Path | None, str]:
    """The config file to use and how it was found."""
    if explicit is not None:
        return explicit, "--config"
    if env.get("ORCHESTRATOR_CONFIG"):
        return Path(env["ORCHESTRATOR_CONFIG"]), "$ORCHESTRATOR_CONFIG"
    if repo_root is not None and (repo_root / ".orchestrator.yaml").is_file():
        return repo_root / ".orchestrator.yaml", "repo"
    user_file = user_config_file(env)
    if user_file.is_file():
        return user_file, "user"
    return None, "defaults"


def user_config_file(env: Mapping[str, str]) -> Path:
    config_home = (
        Path(env["XDG_CONFIG_HOME"])
        if env.get("XDG_CONFIG_HOME")
        else Path(env.get("HOME", "~")).expanduser() / ".config"
    )
    return config_home / "orchestrator" / "config.yaml"


def load_settings(
    explicit: Path | None = None,
    *,
    repo_root: Path | None = None,
    env: Mapping[str, str],
    drop_untrusted: bool = False,
) -> LoadedSettings:
    """The settings in effect. `drop_untrusted`: for commands that run no agent (`runs list`, ...), an
    untrusted repository file's trust-only keys are left out instead of refused."""
    path, how = discover_config(explicit, repo_root, env)
    if path is None:
        return LoadedSettings(Settings(), None)
    data = _read_config_data(path, how)
    if how == "repo" and repo_root is not None:
        # A repository's own file may not run programs or read your environment until you trust it.
        found = untrusted_config_keys(data)
        if drop_untrusted and found and trust_state(path, env) != "trusted":
            data = without_trust_keys(data)
        else:
            require_trust(path, found, env, repo_root=repo_root)
        # It is laid over your own file, not instead of it: your budgets, sandbox, cluster and agents'
        # set-up still hold in a repository that brings its own choice of workflow or models.
        user_file = user_config_file(env)
        if user_file.is_file() and isinstance(data, dict):
            user_data = _read_config_data(user_file, "user")
            if isinstance(user_data, dict):
                settings_from_data(user_data, source=str(user_file))  # its own mistakes name it
                data = layered_config(user_data, data)
    settings = settings_from_data(data or {}, source=str(path))
    return LoadedSettings(settings, path, _unresolved(settings, env))


def _read_config_data(path: Path, how: str) -> Any:
    try:
        text = read_config_text(path, what="configuration file")
    except ConfigError as exc:
        exc.hint = exc.hint or "check the path given by " + how
        raise
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from exc


def layered_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: mappings are merged key by key (an agent's block, its `env`), anything
    else (a list such as `fallback_order`, a value) is replaced."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = layered_config(below, value)
        else:
            merged[key] = value
    return merged


def settings_from_data(data: Any, *, source: str = "configuration") -> Settings:
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", file=source, allowed=_ALLOWED[""])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        key_path = ".".join(loc)
        if err["type"] == "extra_forbidden":
            allowed = _ALLOWED["agent"] if len(loc) >= 3 and loc[0] == "agents" else _ALLOWED[""]
            allowed = _ALLOWED["cluster"] if len(loc) >= 2 and loc[0] == "cluster" else allowed
            raise ConfigError("unknown key", file=source, key_path=key_path, allowed=allowed) from exc
        message = err["msg"].removeprefix("Value error, ")
        unknown = re.search(r"unknown agent '([^']*)'", message)
        choices = _ALLOWED["agents"] if unknown else None
        if unknown and loc == ["agents"]:
            key_path = f"agents.{unknown.group(1)}"
        raise ConfigError(message, file=source, key_path=key_path, allowed=choices) from exc


_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_agent_env(config: AgentConfig, parent: Mapping[str, str]) -> dict[str, str]:
    """The agent's configured variables with `${VAR}` taken from the parent. A variable whose reference
    is not set in the parent is left out (and `orchestrator agents` says so)."""
    resolved: dict[str, str] = {}
    for name, value in config.env.items():
        missing = [ref for ref in _VAR_REF.findall(value) if ref not in parent]
        if missing:
            continue
        resolved[name] = _VAR_REF.sub(lambda m: parent[m.group(1)], value)
    return resolved


def _unresolved(settings: Settings, env: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for agent, config in settings.agents.items():
        refs = [ref for value in config.env.values() for ref in _VAR_REF.findall(value) if ref not in env]
        if refs:
            out[agent] = refs
    return out


def agent_child_vars(
    name: str, config: AgentConfig, credential_vars: tuple[str, ...], parent: Mapping[str, str]
) -> dict[str, str]:
    """Everything an agent's child gets on top of proc's allowlist: its own vendor's credentials from the
    parent (when allowed), then its configured variables (which win)."""
    inherited = (
        {var: parent[var] for var in credential_vars if var in parent} if config.inherit_credentials else {}
    )
    return {**inherited, **resolve_agent_env(config, parent)}


def agent_environments(settings: Settings, parent: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """What each known agent would be given on top of proc's allowlist (`agent_child_vars`): the run's
    secrets are read from here, for every agent, used by the workflow or not."""
    return {
        name: agent_child_vars(name, settings.agent(name), get_adapter(name).credential_vars, parent)
        for name in AGENT_NAMES
    }
