"""`setup:` in workflows, and what `run: auto` picks from the lockfile it finds."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.setup_steps import auto_setup, manifests_fingerprint, plan_setup, tool_missing
from orchestrator.engine.workflow import SetupStep, WorkflowInvalid, parse_workflow_data

CACHE = Path("/state/cache")


@pytest.mark.parametrize(
    ("files", "argv0", "words"),
    [
        ({"package-lock.json": "{}"}, "npm", ["ci", "--cache", "/state/cache/npm"]),
        ({"npm-shrinkwrap.json": "{}"}, "npm", ["ci"]),
        ({"pnpm-lock.yaml": ""}, "pnpm", ["--frozen-lockfile", "--store-dir", "/state/cache/pnpm-store"]),
        ({"yarn.lock": ""}, "yarn", ["--frozen-lockfile"]),
        ({"yarn.lock": "", ".yarnrc.yml": ""}, "yarn", ["--immutable"]),
        ({"bun.lockb": ""}, "bun", ["--frozen-lockfile"]),
        ({"uv.lock": ""}, "uv", ["sync", "--frozen"]),
        ({"poetry.lock": ""}, "poetry", ["install"]),
        ({"Pipfile.lock": ""}, "pipenv", ["sync"]),
        ({"package.json": '{"dependencies": {"x": "1"}}'}, "npm", ["install", "--no-package-lock"]),
    ],
)
def test_auto_setup_follows_the_lockfile(tmp_path, files, argv0, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (command,), notes = auto_setup(tmp_path, CACHE, 60)
    assert command.argv[0] == argv0 and all(word in command.argv for word in words)
    assert command.reason and not notes and command.timeout_s == 60


def test_caches_live_under_the_state_home(tmp_path):
    (tmp_path / "yarn.lock").write_text("")
    (tmp_path / "uv.lock").write_text("")
    yarn, uv = auto_setup(tmp_path, CACHE, 60)[0]
    assert (
        yarn.env["YARN_CACHE_FOLDER"] == "/state/cache/yarn" and uv.env["UV_CACHE_DIR"] == "/state/cache/uv"
    )


def test_nothing_to_install(tmp_path):
    (tmp_path / "package.json").write_text('{"name": "x"}')
    assert auto_setup(tmp_path, CACHE, 60) == ([], ["setup (auto): no lockfile found, nothing to install"])


def test_plan_mixes_auto_and_own_commands(tmp_path):
    (tmp_path / "package-lock.json").write_text("{}")
    steps = (SetupStep(run="auto"), SetupStep(run="make generated", timeout_s=5))
    commands, _ = plan_setup(steps, tmp_path, CACHE)
    assert [c.argv[:2] for c in commands] == [("npm", "ci"), ("make", "generated")]
    assert commands[1].timeout_s == 5


def test_a_missing_tool_is_named_with_what_to_do(tmp_path):
    (tmp_path / "pnpm-lock.yaml").write_text("")
    (command,), _ = auto_setup(tmp_path, CACHE, 60)
    message = tool_missing(command, path=str(tmp_path))
    assert message is not None
    assert message.startswith("pnpm-lock.yaml found: `pnpm install --frozen-lockfile")
    assert "needs `pnpm`, which is not on PATH" in message and "corepack enable pnpm" in message
    assert tool_missing(command, path=str(tmp_path)) == message


def test_the_fingerprint_follows_the_manifests(tmp_path):
    empty = manifests_fingerprint(tmp_path)
    (tmp_path / "package.json").write_text("{}")
    one = manifests_fingerprint(tmp_path)
    (tmp_path / "index.js").write_text("x")
    assert manifests_fingerprint(tmp_path) == one != empty


def load(data):
    return parse_workflow_data(data, file="wf.yaml", stem="wf")[0].workflow


def test_setup_and_base_gates_in_a_workflow():
    wf = load(
        {
            "setup": ["npm ci", {"run": "auto", "timeout_s": 30}],
            "base_gates": False,
            "steps": [{"run": "npm test"}],
        }
    )
    assert [s.run for s in wf.setup_steps] == ["npm ci", "auto"] and wf.setup_steps[1].timeout_s == 30
    assert wf.base_gates is False
    # Absent: `run: auto` setup when a gate is `run: auto`, none otherwise; `setup: []` is none.
    assert [s.run for s in load({"steps": [{"run": "auto"}]}).setup_steps] == ["auto"]
    assert load({"steps": [{"run": "make check"}]}).setup_steps == ()
    assert load({"setup": [], "steps": [{"run": "auto"}]}).setup_steps == ()
    legacy = parse_workflow_data(
        {"workflows": {"w": {"setup": ["make"], "base_gates": False, "steps": [{"run": "auto"}]}}},
        file="f",
        stem="f",
    )[0].workflow
    assert legacy.setup_steps[0].run == "make" and not legacy.base_gates


def test_setup_entries_are_checked_like_gates():
    with pytest.raises(WorkflowInvalid) as caught:
        load({"setup": ["npm ci && npm run build"], "steps": [{"run": "auto"}]})
    assert "setup[0].run" in caught.value.message and "shell syntax" in caught.value.message
    with pytest.raises(WorkflowInvalid) as caught:
        load({"setup": [{"run": "npm ci", "time": 3}], "steps": [{"run": "auto"}]})
    assert "unknown key 'time'" in caught.value.message and "timeout_s" in caught.value.message
