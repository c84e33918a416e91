"""Claude Code's credentials: a cloud it is switched to (Amazon Bedrock, Google Vertex AI, Microsoft
Foundry: CLAUDE_CODE_USE_*, with what each needs), an API key or token, an `apiKeyHelper` (or an `env`
block) in its settings (`--settings` in the agent's args, CLAUDE_CONFIG_DIR or ~/.claude/settings.json,
the machine's managed settings), the stored login, or the key stored by `claude /login`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.auth import NONE, Credentials, truthy

AUTH_VARS: tuple[str, ...] = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
MANAGED_SETTINGS = Path("/etc/claude-code/managed-settings.json")

AWS_KEY_VARS: tuple[str, ...] = (
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
# What the cloud set-ups read: they must reach the CLI (the adapter's credential_vars).
CLOUD_VARS: tuple[str, ...] = (
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
    "CLAUDE_CODE_SKIP_VERTEX_AUTH",
    "CLAUDE_CONFIG_DIR",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "ANTHROPIC_BEDROCK_BASE_URL",
    *AWS_KEY_VARS,
    "CLOUD_ML_REGION",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "ANTHROPIC_VERTEX_BASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "ANTHROPIC_FOUNDRY_RESOURCE",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "ANTHROPIC_FOUNDRY_API_KEY",
)


def find_credentials(env: Mapping[str, str], args: Sequence[str] = ()) -> Credentials:
    """Which credential Claude Code will use with this environment and these arguments."""
    settings = _settings(env, args)
    merged_env = {**_settings_env(settings), **{k: v for k, v in env.items() if v}}
    if truthy(merged_env.get("CLAUDE_CODE_USE_BEDROCK")):
        return _bedrock(merged_env)
    if truthy(merged_env.get("CLAUDE_CODE_USE_VERTEX")):
        return _vertex(merged_env)
    if truthy(merged_env.get("CLAUDE_CODE_USE_FOUNDRY")):
        if merged_env.get("ANTHROPIC_FOUNDRY_RESOURCE") or merged_env.get("ANTHROPIC_FOUNDRY_BASE_URL"):
            return Credentials("Microsoft Foundry (CLAUDE_CODE_USE_FOUNDRY)")
        return Credentials(
            None,
            problem="CLAUDE_CODE_USE_FOUNDRY is on but ANTHROPIC_FOUNDRY_RESOURCE is not set",
            fix="set ANTHROPIC_FOUNDRY_RESOURCE (or ANTHROPIC_FOUNDRY_BASE_URL)",
        )
    for var in AUTH_VARS:
        if env.get(var, "").strip():
            return Credentials(var)
    for path, data in settings:
        if isinstance(data.get("apiKeyHelper"), str) and data["apiKeyHelper"].strip():
            return Credentials(f"apiKeyHelper in {path}")
        block = data.get("env")
        if isinstance(block, dict):
            named = next((v for v in AUTH_VARS if isinstance(block.get(v), str) and block[v]), None)
            if named:
                return Credentials(f"{named} in the env of {path}")
    home = env.get("HOME")
    config_dir = _config_dir(env)
    if config_dir is not None and _non_empty(config_dir / ".credentials.json"):
        return Credentials(f"login ({config_dir / '.credentials.json'})")
    if home and _stored_api_key(Path(home) / ".claude.json"):
        return Credentials(f"stored API key ({Path(home) / '.claude.json'})")
    return NONE


def _bedrock(env: Mapping[str, str]) -> Credentials:
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        return Credentials(
            None,
            problem="CLAUDE_CODE_USE_BEDROCK is on but AWS_REGION is not set (Claude Code needs it)",
            fix="set AWS_REGION (e.g. us-east-1) in your environment or agents.claude.env",
        )
    key = next((var for var in AWS_KEY_VARS if env.get(var)), None)
    if key is None:
        home = env.get("HOME")
        files = [
            Path(env["AWS_SHARED_CREDENTIALS_FILE"]) if env.get("AWS_SHARED_CREDENTIALS_FILE") else None,
            Path(env["AWS_CONFIG_FILE"]) if env.get("AWS_CONFIG_FILE") else None,
            Path(home) / ".aws" / "credentials" if home else None,
            Path(home) / ".aws" / "config" if home else None,
        ]
        found = next((f for f in files if f is not None and _non_empty(f)), None)
        key = (
            str(found)
            if found
            else "the AWS default chain: no keys, profile or file here (an instance role?)"
        )
    return Credentials(f"Amazon Bedrock (CLAUDE_CODE_USE_BEDROCK, {region}; credentials: {key})")


def _vertex(env: Mapping[str, str]) -> Credentials:
    missing = [v for v in ("CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID") if not env.get(v)]
    if missing:
        return Credentials(
            None,
            problem=f"CLAUDE_CODE_USE_VERTEX is on but {' and '.join(missing)} is not set",
            fix=f"set {', '.join(missing)} in your environment or agents.claude.env",
        )
    return Credentials(
        f"Google Vertex AI (CLAUDE_CODE_USE_VERTEX, project {env['ANTHROPIC_VERTEX_PROJECT_ID']}, "
        f"{env['CLOUD_ML_REGION']}; credentials: {google_adc(env)})"
    )


def google_adc(env: Mapping[str, str]) -> str:
    """Where Google's application default credentials come from, in words."""
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return f"GOOGLE_APPLICATION_CREDENTIALS ({env['GOOGLE_APPLICATION_CREDENTIALS']})"
    gcloud = (
        Path(env["CLOUDSDK_CONFIG"])
        if env.get("CLOUDSDK_CONFIG")
        else (Path(env["HOME"]) / ".config" / "gcloud" if env.get("HOME") else None)
    )
    adc = gcloud / "application_default_credentials.json" if gcloud else None
    if adc is not None and _non_empty(adc):
        return f"gcloud ADC ({adc})"
    return "no ADC file here (the metadata server's?)"


def _config_dir(env: Mapping[str, str]) -> Path | None:
    if env.get("CLAUDE_CONFIG_DIR"):
        return Path(env["CLAUDE_CONFIG_DIR"])
    return Path(env["HOME"]) / ".claude" if env.get("HOME") else None


def _settings(env: Mapping[str, str], args: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Settings that apply to every run, highest precedence first: managed, `--settings`, the user's."""
    found: list[tuple[str, dict[str, Any]]] = []
    managed = _read_json(MANAGED_SETTINGS)
    if managed is not None:
        found.append((str(MANAGED_SETTINGS), managed))
    items = list(args)
    for i, arg in enumerate(items):
        value = items[i + 1] if arg == "--settings" and i + 1 < len(items) else None
        if arg.startswith("--settings="):
            value = arg.removeprefix("--settings=")
        if value is None:
            continue
        data = _parse_json(value) if value.lstrip().startswith("{") else _read_json(Path(value))
        if data is not None:
            found.append(("--settings in agents.claude.args", data))
    config_dir = _config_dir(env)
    if config_dir is not None:
        user = _read_json(config_dir / "settings.json")
        if user is not None:
            found.append((str(config_dir / "settings.json"), user))
    return found


def _settings_env(settings: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for _, data in reversed(settings):  # lowest precedence first, so higher ones win
        block = data.get("env")
        if isinstance(block, dict):
            merged.update({k: v for k, v in block.items() if isinstance(v, str)})
    return merged


def _parse_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return _parse_json(path.read_text(encoding="utf-8"))
    except OSError:
        return None


def _non_empty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 2
    except OSError:
        return False


def _stored_api_key(path: Path) -> bool:
    data = _read_json(path)
    return bool(data and data.get("primaryApiKey"))
