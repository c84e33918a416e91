"""Secrets: which values are secret, masking them in text, and finding them in a step's changes.

A run is given secrets two ways: the values of `agents.<name>.env` and the credential variables each
agent inherits (`credential_vars` of its adapter). Those are "given" secrets: masked everywhere whatever
their shape once they are `MIN_GIVEN_LENGTH` characters or more, and a step whose changes hold one is not
committed (`find_leaks`). On top of them, the masker hides the values of any variable of the parent
environment named like a secret (`..._KEY`, `..._TOKEN`, ...) and strings shaped like well-known keys
(`SECRET_PATTERNS`), wherever they come from.

One masker is built per run (`SecretMasker.from_environments`) and handed to everything that writes:
the event bus (console, dashboard, metrics and the store follow it), the store, the transcripts. Its
values are also added to the process's masker (`process_masker()`), which logging and the last-resort
error handler use, since those are set up before any run exists.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

MASK = "***"

# Environment variables whose values are secrets, by the end of their name.
SECRET_NAME_SUFFIXES: tuple[str, ...] = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD")
# Variables whose names say they hold a setting, not a credential (a model, an endpoint, a folder):
# masking `ANTHROPIC_MODEL=claude-sonnet-4-5` everywhere, or refusing a commit that names the model,
# would only get in the way. A secret-like name wins (OPENAI_BASE_URL_KEY is a secret).
SETTING_NAME_SUFFIXES: tuple[str, ...] = (
    "_MODEL",
    "_URL",
    "_HOST",
    "_REGION",
    "_PROJECT",
    "_LOCATION",
    "_DIR",
    "_HOME",
    "_PATH",
    "_TYPE",
    "_WIRE_API",
    "_CREDENTIALS",  # GOOGLE_APPLICATION_CREDENTIALS: the path of a key file, not the key
)

# A secret-named variable's value shorter than this is not masked: masking "1" or "true" everywhere
# would mangle logs, and such a value is no real credential.
MIN_SECRET_LENGTH = 6
# A value the run was given (agents.*.env, credential variables) is masked whatever its shape from this
# length on; shorter ones ("1", "true", "us-east") are settings, and would mask half of every line.
MIN_GIVEN_LENGTH = 8

# Strings that look like credentials wherever they come from (a key pasted into a task, a CLI echoing
# a header). Each keeps its recognizable prefix so a reader still sees what kind of thing was there.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # OpenAI and Anthropic keys: sk-..., sk-proj-..., sk-ant-...
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"), "sk-" + MASK),
    # GitHub tokens: ghp_ (classic), gho_, ghu_, ghs_, ghr_, and fine-grained github_pat_.
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,}"), "gh_" + MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{16,}"), "github_pat_" + MASK),
    # Google API keys (Gemini).
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), "AIza" + MASK),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "AKIA" + MASK),
    # Slack tokens.
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "xox-" + MASK),
    # Authorization headers: "Bearer <token>" in any case.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + MASK),
    # Private keys (PEM), whole.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
        "-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----",
    ),
)


def is_secret_name(name: str) -> bool:
    return name.upper().endswith(SECRET_NAME_SUFFIXES)


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of variables named like secrets, longest first (so a key that contains another is
    masked whole)."""
    values = {
        value for name, value in env.items() if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH
    }
    return tuple(sorted(values, key=len, reverse=True))


def is_plain_setting(value: str) -> bool:
    """A value that is configuration, not a credential: a web address without credentials in it (a base
    URL), or the path of something that exists (CODEX_HOME, a credentials *file*'s path). Masking those
    would hide where a request went, and finding them in a change is no leak."""
    if re.fullmatch(r"https?://\S+", value):
        parts = urlsplit(value)
        return not (parts.username or parts.password or parts.query or parts.fragment)
    if value.startswith("/") and "\n" not in value:
        try:
            return Path(value).exists()
        except OSError:
            return False
    return False


def _mask_shapes(text: str) -> str:
    for shaped, replacement in SECRET_PATTERNS:
        text = shaped.sub(replacement, text)
    return text


def _url_parts_masked(url: str) -> tuple[str, bool]:
    """The URL with its credentials as MASK, and whether it held any: a password
    (https://user:secret@host), a token-shaped user (https://ghp_...@github.com), a secret-named query
    parameter (?access_token=...), or a credential-shaped string anywhere in it."""
    shaped = _mask_shapes(url)
    if "://" not in url:
        return shaped, shaped != url  # a path or user@host:path: no password can be written there
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    found = shaped != url
    netloc = parts.netloc
    if at:
        user, colon, _password = userinfo.partition(":")
        masked_user = _mask_shapes(user)
        found = found or bool(colon) or masked_user != user
        netloc = f"{masked_user}{':' + MASK if colon else ''}@{host}"
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        name, eq, value = pair.partition("=")
        secret = (
            bool(eq) and bool(value) and (is_secret_name(name) or name.lower() in ("pass", "pwd", "auth"))
        )
        found = found or secret
        pairs.append(f"{name}={MASK}" if secret else pair)
    if not found:
        return url, False
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, "&".join(pairs), parts.fragment))
    return _mask_shapes(rebuilt), True


def masked_url(url: str) -> str:
    """The URL (a git remote's, a database's) safe to show: any password, token-shaped user or
    secret-named query value replaced by MASK. A URL with none is returned as it is."""
    return _url_parts_masked(url)[0]


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"`<>]+")


def mask_urls(text: str) -> str:
    """`text` (git's message, say) with every URL in it as `masked_url` shows it."""
    return _URL_IN_TEXT.sub(lambda found: masked_url(found.group(0)), text)


def url_has_credentials(url: str) -> bool:
    """Whether the URL carries a credential (`masked_url` would change it)."""
    return _url_parts_masked(url)[1]


def given_secrets(environments: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """`{value: "agent:NAME"}` for every value given to an agent that counts as a secret: secret-named
    from MIN_SECRET_LENGTH characters, any other from MIN_GIVEN_LENGTH unless its name says it is a
    setting or its value is a plain setting (a web address, an existing path)."""
    found: dict[str, str] = {}
    for agent, env in environments.items():
        for name, value in env.items():
            named = is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH
            # A web address with a user, password or query in it is a secret whatever its name.
            url_with_credentials = bool(re.fullmatch(r"https?://\S+", value)) and not is_plain_setting(value)
            setting = is_plain_setting(value) or (
                name.upper().endswith(SETTING_NAME_SUFFIXES) and not url_with_credentials
            )
            shaped = len(value) >= MIN_GIVEN_LENGTH and not setting
            if named or shaped:
                found.setdefault(value, f"{agent}:{name}")
    return found


def _variants(value: str) -> set[str]:
    """The value as written, and as it appears inside a JSON string (quotes and backslashes escaped):
    a CLI's JSON output line holds the escaped form."""
    escaped = json.dumps(value)[1:-1]
    ascii_escaped = json.dumps(value, ensure_ascii=True)[1:-1]
    return {value, escaped, ascii_escaped}


class SecretMasker:
    """Replaces secrets in text: the values of secret-named variables of `env` (default: os.environ,
    read once, never written), the `values` given, and credential-shaped strings.

    `given` holds the values the run handed to its agents (from `from_environments`), by where each came
    from; `find_leaks` looks for those in a step's changes."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        values: Iterable[str] = (),
        given: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._given: dict[str, str] = dict(given or {})
        self._values: set[str] = set(secret_values(os.environ if env is None else env))
        self._values.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        self._values.update(self._given)
        self._pattern = self._compile()

    @classmethod
    def from_environments(
        cls, parent: Mapping[str, str], agents: Mapping[str, Mapping[str, str]]
    ) -> SecretMasker:
        """The run's masker: `parent` is the orchestrator's environment (its secret-named variables are
        masked), `agents` maps each agent to the variables it is given on top of the allowlist
        (`config.agent_environments`)."""
        return cls(parent, given=given_secrets(agents))

    @property
    def values(self) -> tuple[str, ...]:
        """Every value masked by value, longest first."""
        return tuple(sorted(self._values, key=len, reverse=True))

    @property
    def given(self) -> dict[str, str]:
        """`{value: source}` of the secrets the run gave its agents (source: "agent:VARIABLE")."""
        return dict(self._given)

    def add(self, other: SecretMasker | Iterable[str]) -> None:
        """Mask these values too (another masker's values and given secrets)."""
        with self._lock:
            if isinstance(other, SecretMasker):
                self._values.update(other._values)
                for value, source in other._given.items():
                    self._given.setdefault(value, source)
            else:
                self._values.update(v for v in other if len(v) >= MIN_SECRET_LENGTH)
            self._pattern = self._compile()

    def _compile(self) -> re.Pattern[str] | None:
        variants = {variant for value in self._values for variant in _variants(value) if variant}
        if not variants:
            return None
        # One alternation, longest first: a value that contains another is masked whole.
        ordered = sorted(variants, key=len, reverse=True)
        return re.compile("|".join(re.escape(v) for v in ordered))

    def mask(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _mask_shapes(text)

    def mask_value(self, value: Any) -> Any:
        """Masks strings inside dicts, lists and tuples; other values are returned as they are."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {key: self.mask_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.mask_value(item) for item in value)
        return value


ModelT = TypeVar("ModelT", bound=BaseModel)


def mask_model(masker: SecretMasker, model: ModelT) -> ModelT:
    """The same pydantic model (an event) with every string in it masked; the object itself when
    nothing needed masking (the common case, cheap)."""
    data = model.model_dump(mode="json")
    masked = masker.mask_value(data)
    if masked == data:
        return model
    return type(model).model_validate(masked)


_process_masker: SecretMasker | None = None
_process_lock = threading.Lock()


def process_masker() -> SecretMasker:
    """The masker of this process: os.environ's secret-named values (read when first asked for), plus
    what every run started here added. Logging and the error handler use it."""
    global _process_masker
    with _process_lock:
        if _process_masker is None:
            _process_masker = SecretMasker()
        return _process_masker


# --- finding given secrets in a step's changes -------------------------------------------------------


@dataclass(frozen=True)
class SecretLeak:
    path: str  # the changed file (or "commit message" for a commit the agent made)
    source: str  # where the secret came from: "agent:VARIABLE"


def find_leaks(
    files: Mapping[str, bytes | None], given: Mapping[str, str], *, texts: Mapping[str, str] | None = None
) -> list[SecretLeak]:
    """Which changed files hold a given secret (in their content or their name). `files` maps each
    changed path to its new content (None: deleted); `texts` are other things the step would commit
    (the agent's own commit messages and patches), by a label. Pure: no file or process is touched.
    Values are looked for as written and as JSON would escape them."""
    needles = [
        (variant.encode("utf-8"), source)
        for value, source in sorted(given.items(), key=lambda item: len(item[0]), reverse=True)
        for variant in _variants(value)
        if len(value) >= MIN_SECRET_LENGTH
    ]
    leaks: list[SecretLeak] = []
    items: list[tuple[str, bytes]] = [(p, c) for p, c in files.items() if c is not None]
    items += [(p, p.encode("utf-8")) for p in files]  # a secret used as a file name
    items += [(label, text.encode("utf-8")) for label, text in (texts or {}).items()]
    seen: set[str] = set()
    for path, content in items:
        if path in seen:
            continue
        for needle, source in needles:
            if needle in content:
                leaks.append(SecretLeak(path=path, source=source))
                seen.add(path)
                break
    return leaks
