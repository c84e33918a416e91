from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Settings, agent_environments
from orchestrator.events import AgentActivity, AssistantMessage, Notice
from orchestrator.logs import SecretMasker as ReExported
from orchestrator.secrets import (
    MASK,
    SecretLeak,
    SecretMasker,
    find_leaks,
    given_secrets,
    is_plain_setting,
    mask_model,
    mask_urls,
    masked_url,
    url_has_credentials,
)


def test_the_masker_is_still_importable_from_logs():
    assert ReExported is SecretMasker


def test_given_values_are_masked_whatever_their_shape_from_8_characters(tmp_path: Path):
    masker = SecretMasker.from_environments(
        {"PATH": "/usr/bin"},
        {
            "claude": {
                "PLAIN": "plainvalue8",  # no key shape, no secret name
                "SHORT": "1234567",  # 7 characters: a setting
                "BASE_URL": "http://127.0.0.1:8080/v1",  # a web address: where requests go, not a key
                "WITH_TOKEN_URL": "https://u:pw@host/x",  # an address with credentials in it: a secret
                "HOME_DIR": str(tmp_path),  # an existing path: a setting
                "API_KEY": "k3y-abc",  # named like a secret: from 6 characters
                "ANTHROPIC_MODEL": "claude-sonnet-4-5",  # named like a setting
                "GOOGLE_APPLICATION_CREDENTIALS": "/gone/key.json",  # a key file's path: a setting
            }
        },
    )
    text = f"plainvalue8 1234567 http://127.0.0.1:8080/v1 https://u:pw@host/x {tmp_path} k3y-abc claude-sonnet-4-5"
    assert (
        masker.mask(text)
        == f"{MASK} 1234567 http://127.0.0.1:8080/v1 {MASK} {tmp_path} {MASK} claude-sonnet-4-5"
    )
    assert set(masker.given) == {"plainvalue8", "https://u:pw@host/x", "k3y-abc"}
    assert masker.given["plainvalue8"] == "claude:PLAIN"


def test_plain_settings(tmp_path: Path):
    assert is_plain_setting("https://api.example.com/v1")
    assert not is_plain_setting("https://api.example.com/v1?key=abcdefgh")
    assert is_plain_setting(str(tmp_path))
    assert not is_plain_setting("/not/an/existing/path/3f9a")
    assert not is_plain_setting("abcdefghijkl")


def test_json_escaped_values_are_masked_too():
    secret = 'quote"and\\slash-value'
    masker = SecretMasker({}, given=given_secrets({"a": {"X": secret}}))
    line = '{"text": "quote\\"and\\\\slash-value"}'
    assert secret not in masker.mask(line) and MASK in masker.mask(line)


def test_longest_value_wins_and_add_merges():
    masker = SecretMasker({"A_KEY": "prefix-secret"})
    masker.add(SecretMasker({}, given={"prefix-secret-and-more": "x:B"}))
    assert masker.mask("x prefix-secret-and-more y prefix-secret") == f"x {MASK} y {MASK}"
    assert masker.given == {"prefix-secret-and-more": "x:B"}


def test_mask_model_masks_nested_events_and_keeps_clean_ones():
    masker = SecretMasker({}, given={"s3cr3t-value-1": "a:X"})
    clean = Notice(text="nothing here")
    assert mask_model(masker, clean) is clean
    event = AgentActivity(
        run_id="r", step_id="s", agent="claude", event=AssistantMessage(text="key s3cr3t-value-1")
    )
    masked = mask_model(masker, event)
    assert isinstance(masked.event, AssistantMessage) and masked.event.text == f"key {MASK}"


def test_find_leaks_in_content_names_and_commit_texts():
    given = {"s3cr3t-value-1": "claude:PLAIN", "other-secret-2": "codex:OPENAI_API_KEY"}
    files: dict[str, bytes | None] = {
        "clean.py": b"print('hi')\n",
        "config.txt": b"key = s3cr3t-value-1\n",
        "gone.txt": None,
        "s3cr3t-value-1.txt": b"",
        "data.json": b'{"k": "other-secret-2"}',
    }
    leaks = find_leaks(files, given, texts={"commits": "message with other-secret-2"})
    assert leaks == [
        SecretLeak("config.txt", "claude:PLAIN"),
        SecretLeak("data.json", "codex:OPENAI_API_KEY"),
        SecretLeak("s3cr3t-value-1.txt", "claude:PLAIN"),
        SecretLeak("commits", "codex:OPENAI_API_KEY"),
    ]
    assert find_leaks({"a": b"nothing"}, given) == []
    assert find_leaks(files, {}) == []


def test_agent_environments_hold_configured_and_inherited_credentials():
    settings = Settings.model_validate(
        {"agents": {"claude": {"env": {"X": "${UP}"}}, "codex": {"inherit_credentials": False}}}
    )
    envs = agent_environments(
        settings, {"UP": "up-value", "ANTHROPIC_API_KEY": "a-key", "OPENAI_API_KEY": "o"}
    )
    assert envs["claude"] == {"ANTHROPIC_API_KEY": "a-key", "X": "up-value"}
    assert envs["codex"] == {}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:hunter2-secret@git.example.com/o/r.git", "https://user:***@git.example.com/o/r.git"),
        ("ssh://git:pw-1234@host:22/r.git", "ssh://git:***@host:22/r.git"),
        ("https://ghp_abcdefghijklmnopqrstuvwx@github.com/o/r", "https://gh_***@github.com/o/r"),
        ("https://h/r.git?access_token=abc123&ref=main", "https://h/r.git?access_token=***&ref=main"),
    ],
)
def test_a_url_with_credentials_is_masked(url: str, shown: str):
    assert url_has_credentials(url)
    assert masked_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r.git",
        "https://user@git.example.com/o/r.git",  # a user alone: git asks its credential helper
        "git@github.com:o/r.git",
        "ssh://git@host:22/r.git",
        "/srv/git/r.git",
        "file:///srv/git/r.git",
        "https://h/r.git?ref=main",
    ],
)
def test_a_url_without_credentials_is_left_as_it_is(url: str):
    assert not url_has_credentials(url)
    assert masked_url(url) == url


def test_urls_in_a_message_are_masked_and_the_rest_kept():
    said = "`git fetch --quiet -- https://me:pw-1234@h/r.git` failed: fatal: 'ssh://h/x' not found"
    assert (
        mask_urls(said)
        == "`git fetch --quiet -- https://me:***@h/r.git` failed: fatal: 'ssh://h/x' not found"
    )
