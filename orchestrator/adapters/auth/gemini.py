"""Gemini CLI's credentials, in the CLI's own order (getAuthTypeFromEnv and validateNonInteractiveAuth
in its bundle): the auth type selected in its settings.json, else GOOGLE_GENAI_USE_GCA (a Google login),
GOOGLE_GENAI_USE_VERTEXAI (Vertex AI: an API key, or a project and location with Google's application
default credentials), GOOGLE_GEMINI_BASE_URL (a gateway: headless it needs GEMINI_API_KEY as well, which
makes the adapter select API-key auth), GEMINI_API_KEY (also read from ~/.gemini/.env or ~/.env), or a
stored Google login.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from orchestrator.adapters.auth import NONE, Credentials
from orchestrator.adapters.auth.claude import google_adc

CLOUD_VARS: tuple[str, ...] = (
    "GEMINI_CLI_USE_COMPUTE_ADC",
    "CLOUD_SHELL",
    "CLOUDSDK_CONFIG",
    "GEMINI_CLI_HOME",
)


def _home(env: Mapping[str, str]) -> Path | None:
    home = env.get("GEMINI_CLI_HOME") or env.get("HOME")
    return Path(home) if home else None


def dotenv_key(env: Mapping[str, str]) -> str | None:
    """The .env file under home that sets GEMINI_API_KEY (the CLI loads ~/.gemini/.env, then ~/.env)."""
    home = env.get("HOME")
    if not home:
        return None
    for path in (Path(home) / ".gemini" / ".env", Path(home) / ".env"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and name.strip() == "GEMINI_API_KEY" and value.strip().strip("'\""):
                return str(path)
    return None


def find_credentials(env: Mapping[str, str]) -> Credentials:
    if env.get("GEMINI_API_KEY"):
        # The adapter then runs the CLI from a home of its own whose settings select API-key auth
        # (see gemini.py), whatever the user's settings select; a gateway's base URL still applies.
        gateway = env.get("GOOGLE_GEMINI_BASE_URL")
        return Credentials(f"GEMINI_API_KEY via the gateway {gateway}" if gateway else "GEMINI_API_KEY")
    home = _home(env)
    selected = _selected_auth(home / ".gemini" / "settings.json") if home else None
    kind = selected or _auth_type_from_env(env)
    if kind == "vertex-ai":
        return _vertex(env)
    if kind == "gateway":
        # Headless, the gateway type fails validation ("Invalid auth method selected."); with a key the
        # adapter selects API-key auth and the base URL still applies (above).
        return Credentials(
            None,
            problem="GOOGLE_GEMINI_BASE_URL (a gateway) is set but GEMINI_API_KEY is not: headless, "
            "the CLI needs the key with it",
            fix="set GEMINI_API_KEY to the gateway's key",
        )
    if kind == "gemini-api-key":
        found = dotenv_key(env)
        if found:
            return Credentials(f"GEMINI_API_KEY in {found}")
        return NONE
    if kind == "compute-default-credentials":
        return Credentials("the machine's Google credentials (compute ADC)")
    if kind == "oauth-personal" and home is not None:
        for name in ("oauth_creds.json", "gemini-credentials.json"):
            if (home / ".gemini" / name).is_file():
                return Credentials(f"Google login (~/.gemini/{name})")
    if kind is None:
        found = dotenv_key(env)
        if found:
            return Credentials(f"GEMINI_API_KEY in {found}")
    return NONE


def _auth_type_from_env(env: Mapping[str, str]) -> str | None:
    if env.get("GOOGLE_GENAI_USE_GCA") == "true":
        return "oauth-personal"
    if env.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() == "true":
        return "vertex-ai"
    if env.get("GOOGLE_GEMINI_BASE_URL"):
        return "gateway"
    if env.get("GEMINI_API_KEY"):
        return "gemini-api-key"
    if env.get("CLOUD_SHELL") == "true" or env.get("GEMINI_CLI_USE_COMPUTE_ADC") == "true":
        return "compute-default-credentials"
    return None


def _vertex(env: Mapping[str, str]) -> Credentials:
    if env.get("GOOGLE_CLOUD_PROJECT") and env.get("GOOGLE_CLOUD_LOCATION"):
        return Credentials(
            f"Vertex AI (project {env['GOOGLE_CLOUD_PROJECT']}, {env['GOOGLE_CLOUD_LOCATION']}; "
            f"credentials: {google_adc(env)})"
        )
    if env.get("GOOGLE_API_KEY"):
        return Credentials("GOOGLE_API_KEY (Vertex AI express mode)")
    return Credentials(
        None,
        problem="Vertex AI is selected but neither GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION "
        "nor GOOGLE_API_KEY is set",
        fix="set GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION (with `gcloud auth application-default "
        "login`), or GOOGLE_API_KEY",
    )


def _selected_auth(settings: Path) -> str | None:
    try:
        data = json.loads(settings.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    selected = (
        data.get("security", {}).get("auth", {}).get("selectedType") if isinstance(data, dict) else None
    )
    if not isinstance(selected, str):
        selected = data.get("selectedAuthType") if isinstance(data, dict) else None  # older settings
    return selected if isinstance(selected, str) else None
