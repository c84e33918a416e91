"""Codex's credentials: the built-in OpenAI provider (CODEX_API_KEY, CODEX_ACCESS_TOKEN, the stored
login), or a model provider of the user's own (Azure, Ollama, a gateway) chosen with `model_provider`
(in `~/.codex/config.toml`, a profile there, or `-c model_provider=...` in the agent's args), whose key
is the variable its `env_key` names; or `--oss` (a local provider, no key).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.auth import NONE, Credentials

AUTH_VARS: tuple[str, ...] = ("CODEX_API_KEY", "CODEX_ACCESS_TOKEN")
# Providers built into the CLI that need no key (local servers).
LOCAL_PROVIDERS = frozenset({"oss", "ollama", "lmstudio"})


def codex_home(env: Mapping[str, str]) -> Path | None:
    if env.get("CODEX_HOME"):
        return Path(env["CODEX_HOME"])
    return Path(env["HOME"]) / ".codex" if env.get("HOME") else None


def _toml_value(text: str) -> Any:
    """What `codex -c key=value` makes of a value: TOML, else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p.strip().strip('"') for p in dotted.split(".")]
    for part in parts[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[parts[-1]] = value


def overrides_from_args(args: Sequence[str]) -> tuple[dict[str, Any], str | None, bool]:
    """`-c key=value` overrides, the `--profile`, and whether `--oss` is on, from the agent's args."""
    overrides: dict[str, Any] = {}
    profile: str | None = None
    oss = False
    items = list(args)
    for i, arg in enumerate(items):
        value: str | None = None
        if arg in ("-c", "--config") and i + 1 < len(items):
            value = items[i + 1]
        elif arg.startswith("--config="):
            value = arg.removeprefix("--config=")
        elif arg.startswith("-c") and len(arg) > 2 and "=" in arg:
            value = arg[2:]
        if value is not None and "=" in value:
            key, _, raw = value.partition("=")
            _set_dotted(overrides, key.strip(), _toml_value(raw.strip()))
        if arg in ("-p", "--profile") and i + 1 < len(items):
            profile = items[i + 1]
        elif arg.startswith("--profile="):
            profile = arg.removeprefix("--profile=")
        if arg == "--oss":
            oss = True
    return overrides, profile, oss


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def load_config(env: Mapping[str, str]) -> tuple[dict[str, Any], Path | None]:
    home = codex_home(env)
    path = home / "config.toml" if home else None
    if path is None:
        return {}, None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), path
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}, path


def _shown(path: Path | None, env: Mapping[str, str]) -> str:
    if path is None:
        return "config.toml"
    home = env.get("HOME")
    text = str(path)
    return "~" + text[len(home) :] if home and text.startswith(home.rstrip("/") + "/") else text


def find_credentials(env: Mapping[str, str], args: Sequence[str] = ()) -> Credentials:
    """Which credential Codex will use with this environment and these arguments."""
    file_config, path = load_config(env)
    overrides, profile, oss = overrides_from_args(args)
    config = _merge(file_config, overrides)
    profile = profile or (config.get("profile") if isinstance(config.get("profile"), str) else None)
    profiles = config.get("profiles")
    chosen = profiles.get(profile) if profile and isinstance(profiles, dict) else None
    if isinstance(chosen, dict):
        config = _merge(config, chosen)
    provider = config.get("model_provider")
    if oss:
        provider = config.get("oss_provider") or "oss"
    if isinstance(provider, str) and provider and provider != "openai":
        return _provider_credentials(provider, config, env, path, from_args="model_provider" in overrides)
    return _openai_credentials(env)


def _provider_credentials(
    provider: str, config: dict[str, Any], env: Mapping[str, str], path: Path | None, *, from_args: bool
) -> Credentials:
    where = "agents.codex.args" if from_args else _shown(path, env)
    providers = config.get("model_providers")
    spec = providers.get(provider) if isinstance(providers, dict) else None
    if not isinstance(spec, dict):
        if provider in LOCAL_PROVIDERS:
            return Credentials(f"model provider '{provider}' (local, no key needed)")
        return Credentials(
            None,
            problem=f"model_provider '{provider}' (from {where}) is not defined under [model_providers]",
            fix=f"define [model_providers.{provider}] in {_shown(path, env)} or with -c in agents.codex.args",
        )
    if spec.get("requires_openai_auth") is True:
        found = _openai_credentials(env)
        if found.source:
            return Credentials(f"model provider '{provider}' with {found.source}")
        return found
    env_key = spec.get("env_key")
    if not isinstance(env_key, str) or not env_key:
        return Credentials(f"model provider '{provider}' (from {where}; no key needed)")
    if env.get(env_key, "").strip():
        return Credentials(
            f"model provider '{provider}' (key from {env_key} in {where})", needs_vars=(env_key,)
        )
    return Credentials(
        None,
        problem=f"model provider '{provider}' (from {where}) takes its key from {env_key}, which is not set",
        fix=f"set {env_key} in your environment or in agents.codex.env",
        needs_vars=(env_key,),
    )


def _openai_credentials(env: Mapping[str, str]) -> Credentials:
    for var in AUTH_VARS:
        if env.get(var, "").strip():
            return Credentials(var)
    home = codex_home(env)
    auth_file = home / "auth.json" if home else None
    try:
        if auth_file is not None and auth_file.is_file() and auth_file.stat().st_size > 2:
            return Credentials(f"login ({auth_file})")
    except OSError:
        pass
    return NONE


def provider_vars(env: Mapping[str, str], args: Sequence[str]) -> tuple[str, ...]:
    """The variables the configured provider needs passed to the CLI (its env_key)."""
    return find_credentials(env, args).needs_vars
