"""Copilot CLI's credentials: its own model provider ("bring your own key": COPILOT_PROVIDER_BASE_URL,
which needs a model and, except for local servers, a key; `copilot help providers`), else GitHub's
tokens in Copilot's order, a login stored by /login, or the GitHub CLI's login.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.adapters.auth import NONE, Credentials

TOKEN_VARS: tuple[str, ...] = ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")
PROVIDER_KEY_VARS: tuple[str, ...] = (
    "COPILOT_PROVIDER_BEARER_TOKEN",
    "COPILOT_PROVIDER_API_KEY",
    "COPILOT_PROVIDER_API_KEY_COMMAND",
)
PROVIDER_VARS: tuple[str, ...] = (
    "COPILOT_PROVIDER_TRANSPORT",
    "COPILOT_PROVIDER_MODEL_ID",
    "COPILOT_PROVIDER_WIRE_MODEL",
    "COPILOT_PROVIDER_MAX_PROMPT_TOKENS",
    "COPILOT_PROVIDER_MAX_OUTPUT_TOKENS",
    "COPILOT_HOME",
    "GH_CONFIG_DIR",
)


def find_credentials(
    env: Mapping[str, str], args: Sequence[str] = (), model: str | None = None
) -> Credentials:
    base_url = env.get("COPILOT_PROVIDER_BASE_URL")
    if base_url:
        return _provider(env, base_url, args, model)
    for var in TOKEN_VARS:
        if env.get(var):
            return Credentials(var)
    home = Path(env["HOME"]) if env.get("HOME") else None
    copilot_home = (
        Path(env["COPILOT_HOME"]) if env.get("COPILOT_HOME") else (home / ".copilot" if home else None)
    )
    if copilot_home is not None and _stored_login(copilot_home / "config.json"):
        return Credentials(f"login stored in {copilot_home / 'config.json'}")
    gh_dir = env.get("GH_CONFIG_DIR") or (
        str(Path(env["XDG_CONFIG_HOME"]) / "gh")
        if env.get("XDG_CONFIG_HOME")
        else (str(home / ".config" / "gh") if home else None)
    )
    if gh_dir and _gh_login(Path(gh_dir) / "hosts.yml"):
        return Credentials(f"GitHub CLI login ({Path(gh_dir) / 'hosts.yml'})")
    return NONE


def _provider(env: Mapping[str, str], base_url: str, args: Sequence[str], model: str | None) -> Credentials:
    kind = env.get("COPILOT_PROVIDER_TYPE") or "openai"
    has_model = bool(
        model or env.get("COPILOT_MODEL") or env.get("COPILOT_PROVIDER_MODEL_ID") or "--model" in args
    ) or any(a.startswith("--model=") for a in args)
    if not has_model:
        return Credentials(
            None,
            problem=f"own model provider {base_url} (COPILOT_PROVIDER_BASE_URL) has no model: "
            "COPILOT_MODEL, COPILOT_PROVIDER_MODEL_ID or a model for the agent is required",
            fix="set COPILOT_MODEL, or agents.copilot.model",
        )
    key = next((var for var in PROVIDER_KEY_VARS if env.get(var)), None)
    what = f"key from {key}" if key else "no key: a local server"
    return Credentials(f"own model provider {base_url} ({kind}; {what})")


def _stored_login(config: Path) -> bool:
    """Copilot's config.json (JSON with // comment lines) names the signed-in user after /login."""
    try:
        text = config.read_text(encoding="utf-8")
    except OSError:
        return False
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and any(
        data.get(key) for key in ("lastLoggedInUser", "loggedInUsers", "copilotTokens", "last_logged_in_user")
    )


def _gh_login(hosts: Path) -> bool:
    try:
        text = hosts.read_text(encoding="utf-8")
    except OSError:
        return False
    return bool(re.search(r"^\s*(oauth_token|user):\s*\S", text, re.MULTILINE))
