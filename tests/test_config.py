from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import (
    AgentConfig,
    agent_child_vars,
    discover_config,
    load_settings,
    resolve_agent_env,
    settings_from_data,
)
from orchestrator.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_discovery_order(tmp_path):
    repo = tmp_path / "repo"
    explicit = write(tmp_path / "explicit.yaml", "{}")
    from_env = write(tmp_path / "env.yaml", "{}")
    repo_file = write(repo / ".orchestrator.yaml", "{}")
    user_file = write(tmp_path / "xdg" / "orchestrator" / "config.yaml", "{}")
    env = {"ORCHESTRATOR_CONFIG": str(from_env), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert discover_config(explicit, repo, env)[0] == explicit
    assert discover_config(None, repo, env)[0] == from_env
    env.pop("ORCHESTRATOR_CONFIG")
    assert discover_config(None, repo, env)[0] == repo_file
    assert discover_config(None, None, env)[0] == user_file
    assert discover_config(None, None, {"HOME": str(tmp_path / "nohome")}) == (None, "defaults")


def test_full_agent_block_loads(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        """
agents:
  claude:
    command: /opt/claude
    args: ["--add-dir", "../x"]
    env: {ANTHROPIC_API_KEY: "${MY_KEY}", PLAIN: "v"}
    model: claude-sonnet-4-5
    timeout_s: 60
    idle_timeout_s: 10
fallback_order: [codex, claude]
""",
    )
    loaded = load_settings(path, env={"MY_KEY": "k-123"})
    claude = loaded.settings.agent("claude")
    assert claude.command == "/opt/claude" and claude.args == ["--add-dir", "../x"]
    assert claude.timeout_s == 60 and claude.idle_timeout_s == 10 and claude.model == "claude-sonnet-4-5"
    assert resolve_agent_env(claude, {"MY_KEY": "k-123"}) == {"ANTHROPIC_API_KEY": "k-123", "PLAIN": "v"}
    assert loaded.unresolved == {}
    assert loaded.settings.fallback_order == ["codex", "claude"]


def test_unset_reference_is_left_out_and_reported(tmp_path):
    path = write(tmp_path / "c.yaml", "agents: {codex: {env: {CODEX_API_KEY: '${NOPE}'}}}")
    loaded = load_settings(path, env={})
    assert resolve_agent_env(loaded.settings.agent("codex"), {}) == {}
    assert loaded.unresolved == {"codex": ["NOPE"]}


@pytest.mark.parametrize(
    ("text", "key_path", "allowed"),
    [
        ("agents: {claude: {timeout: 5}}", "agents.claude.timeout", "command, args, env"),
        ("agents: {clod: {}}", "agents.clod", "claude, codex, gemini, copilot"),
        ("agentz: {}", "agentz", "agents, fallback_order"),
        ("agents: {claude: {timeout_s: -1}}", "agents.claude.timeout_s", None),
        ("agents: {claude: {env: {'BAD NAME': x}}}", "agents.claude.env", None),
        ("cluster: {database: 'sqlite:///x.db'}", "cluster.database", None),
        ("cluster: {workers: 3}", "cluster.workers", "database, temporal, namespace"),
        ("cluster: {temporal: 'http://h:7233'}", "cluster.temporal", None),
        ("cluster: {temporal: 'h'}", "cluster.temporal", None),
        ("cluster: {temporal: 'h:99999'}", "cluster.temporal", None),
        ("cluster: {namespace: 'two words'}", "cluster.namespace", None),
        ("cluster: {heartbeat_timeout_s: 1}", "cluster.heartbeat_timeout_s", None),
        ("cluster: {task_queue_prefix: 'a.b'}", "cluster.task_queue_prefix", None),
        ("cluster: {remote: ''}", "cluster.remote", None),
        ("cluster: {keep_finished_runs_s: -1}", "cluster.keep_finished_runs_s", None),
        ("cluster: {keep_finished_runs_s: .nan}", "cluster.keep_finished_runs_s", None),
        ("cluster: {keep_finished_runs_s: .inf}", "cluster.keep_finished_runs_s", None),
        ("cluster: {keep: 1}", "cluster.keep", "keep_finished_runs_s"),
    ],
)
def test_bad_files_name_file_key_path_and_allowed(tmp_path, text, key_path, allowed):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert str(path) in message and key_path in message
    if allowed:
        assert allowed in message
    assert info.value.exit_code == 2


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path / "a.yaml", "agents: [unclosed"), env={})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        settings_from_data(["x"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", env={})


def test_credentials_reach_only_their_own_agent():
    parent = {"ANTHROPIC_API_KEY": "a-key", "GITHUB_TOKEN": "gh", "OPENAI_API_KEY": "o"}
    claude_vars = agent_child_vars("claude", AgentConfig(), ("ANTHROPIC_API_KEY",), parent)
    assert claude_vars == {"ANTHROPIC_API_KEY": "a-key"}
    locked = AgentConfig(inherit_credentials=False, env={"X": "1"})
    assert agent_child_vars("claude", locked, ("ANTHROPIC_API_KEY",), parent) == {"X": "1"}
    # Configured values win over inherited ones.
    override = AgentConfig(env={"ANTHROPIC_API_KEY": "other"})
    assert agent_child_vars("claude", override, ("ANTHROPIC_API_KEY",), parent) == {
        "ANTHROPIC_API_KEY": "other"
    }


def test_the_cluster_block_names_the_postgresql_store(tmp_path):
    path = write(tmp_path / "c.yaml", "cluster: {database: 'postgresql://orch@db:5432/runs'}")
    assert load_settings(path, env={}).settings.cluster.database == "postgresql://orch@db:5432/runs"
    assert (
        load_settings(None, env={"XDG_CONFIG_HOME": str(tmp_path / "none")}).settings.cluster.database is None
    )


def test_a_repositorys_cluster_block_needs_trust():
    """It names where every run is written: an untrusted repository may not send them elsewhere."""
    from orchestrator.trust import untrusted_config_keys, without_trust_keys

    data = {"cluster": {"database": "postgresql://evil/x"}, "workflow": "default"}
    assert untrusted_config_keys(data) == {"cluster": {"database": "postgresql://evil/x"}}
    assert without_trust_keys(data) == {"workflow": "default"}


def test_cluster_settings_and_their_defaults(tmp_path):
    path = write(
        tmp_path / "c.yaml", "cluster: {temporal: 'temporal.internal:7233', database: 'postgresql://u@h/d'}"
    )
    cluster = load_settings(path, env={}).settings.cluster
    assert cluster.enabled and cluster.temporal == "temporal.internal:7233"
    assert (cluster.namespace, cluster.heartbeat_timeout_s, cluster.task_queue_prefix) == (
        "default",
        30.0,
        "orchestrator",
    )
    assert not load_settings(write(tmp_path / "d.yaml", "cluster: {}"), env={}).settings.cluster.enabled
    assert cluster.keep_finished_runs_s == 3600.0
    at_once = load_settings(write(tmp_path / "e.yaml", "cluster: {keep_finished_runs_s: 0}"), env={})
    assert at_once.settings.cluster.keep_finished_runs_s == 0.0


def test_a_repository_file_is_laid_over_yours_not_instead_of_it(tmp_path):
    """Your budgets, sandbox and agents' set-up hold in a repository that brings its own file."""
    xdg = tmp_path / "xdg"
    write(
        xdg / "orchestrator" / "config.yaml",
        """
sandbox: bwrap
budgets: {day_usd: 5}
fallback_order: [claude, codex]
agents:
  claude: {command: /opt/claude, env: {ANTHROPIC_API_KEY: "${MY_KEY}"}, timeout_s: 60}
""",
    )
    repo = tmp_path / "repo"
    write(
        repo / ".orchestrator.yaml",
        "workflow: review-loop\nfallback_order: [codex]\nagents:\n  claude: {model: claude-opus-4}\n",
    )
    loaded = load_settings(None, repo_root=repo, env={"XDG_CONFIG_HOME": str(xdg), "MY_KEY": "k"})
    settings = loaded.settings
    assert loaded.source == repo / ".orchestrator.yaml"
    assert settings.sandbox == "bwrap" and settings.budgets.day_usd == 5
    claude = settings.agent("claude")
    assert (claude.command, claude.model, claude.timeout_s) == ("/opt/claude", "claude-opus-4", 60)
    assert claude.env == {"ANTHROPIC_API_KEY": "${MY_KEY}"}
    assert settings.workflow == "review-loop" and settings.fallback_order == ["codex"]  # lists replaced


def test_a_mistake_in_your_file_names_your_file_under_a_repository_file(tmp_path):
    xdg = tmp_path / "xdg"
    user_file = write(xdg / "orchestrator" / "config.yaml", "agents: {claude: {colour: red}}\n")
    repo = tmp_path / "repo"
    write(repo / ".orchestrator.yaml", "workflow: review-loop\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, repo_root=repo, env={"XDG_CONFIG_HOME": str(xdg)})
    assert caught.value.file == str(user_file)


def test_a_cluster_remote_with_a_password_is_refused_and_never_repeated(tmp_path):
    path = write(tmp_path / "c.yaml", "cluster: {remote: 'https://me:hunter2-secret@git.example.com/r.git'}")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "cluster.remote" in message and "credential helper" in message
    assert "https://me:***@git.example.com/r.git" in message
    assert "hunter2-secret" not in message
    fine = write(tmp_path / "ok.yaml", "cluster: {remote: origin}")
    assert load_settings(fine, env={}).settings.cluster.remote == "origin"
