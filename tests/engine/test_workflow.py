from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.engine.workflow import (
    LEGACY_UNUSED_SETTINGS,
    GateStep,
    Step,
    Workflow,
    WorkflowInvalid,
    apply_agent_overrides,
    builtin_dir,
    detect_test_command,
    list_workflows,
    load_workflow,
    parse_agent_overrides,
    parse_gate_argv,
    parse_workflow_data,
    read_workflow_file,
    resolve_gate_argv,
    validate_file,
)
from orchestrator.errors import EXIT_USAGE, ConfigError, UsageError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "workflows"
BUILTINS = (
    "default",
    "quick",
    "thorough",
    "review-only",
    "document",
    "best-of-3",
    "consensus-review",
    "plan",
)


def agents_by_task(workflow: Workflow) -> list[tuple[str, str]]:
    return [(s.task, s.agent) for s in workflow.agent_steps]


# --- built-ins -------------------------------------------------------------------------------------


def test_builtin_dir_is_the_source_tree_folder():
    assert builtin_dir() == Path(__file__).parents[2] / "workflows"
    assert sorted(p.stem for p in builtin_dir().glob("*.yaml")) == sorted(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_loads_and_round_trips_as_json(name):
    loaded = load_workflow(name, repo=None)
    assert loaded.source == "builtin" and loaded.workflow.name == name and loaded.notes == ()
    again = Workflow.model_validate(json.loads(loaded.workflow.model_dump_json()))
    assert again == loaded.workflow


def test_builtins_cross_clis():
    default = load_workflow("default", repo=None).workflow
    assert agents_by_task(default) == [("implement", "claude"), ("review", "codex"), ("refine", "gemini")]
    assert [g.run for g in default.gates] == ["auto"]

    thorough = load_workflow("thorough", repo=None).workflow
    assert agents_by_task(thorough) == [
        ("implement", "claude"),
        ("suggestions", "gemini"),
        ("review", "codex"),
        ("refine", "gemini"),
        ("review", "copilot"),
    ]
    assert [s.optional for s in thorough.agent_steps if s.task == "suggestions"] == [True]

    quick = load_workflow("quick", repo=None).workflow
    assert [type(s) for s in quick.steps] == [Step, GateStep]
    assert not quick.has_review and not quick.can_iterate and quick.max_iterations == 1

    review_only = load_workflow("review-only", repo=None).workflow
    assert not review_only.edits and review_only.diff_base == "merge_base"
    assert agents_by_task(review_only) == [("review", "codex")]

    document = load_workflow("document", repo=None).workflow
    assert agents_by_task(document) == [("document", "claude"), ("review", "codex")]


def test_later_iterations_skip_implement_only():
    workflow = load_workflow("default", repo=None).workflow
    assert [i for i, _ in workflow.steps_for_iteration(1)] == [0, 1, 2, 3]
    assert [i for i, _ in workflow.steps_for_iteration(2)] == [1, 2, 3]
    assert workflow.can_iterate
    document = load_workflow("document", repo=None).workflow
    assert [s.task for _, s in document.steps_for_iteration(2) if isinstance(s, Step)] == [
        "document",
        "review",
    ]


# --- the legacy format ------------------------------------------------------------------------------


def test_legacy_config_loads_unchanged():
    found = read_workflow_file(FIXTURES / "legacy-agents.yaml")
    workflows = {fw.workflow.name: fw for fw in found}
    assert list(workflows) == ["default", "quick", "thorough", "review-only", "document"]
    default = workflows["default"].workflow
    # settings: give the defaults; each agent's legacy `timeout` becomes its steps' timeout_s
    assert (default.max_iterations, default.min_suggestions_threshold) == (3, 3)
    assert [(s.agent, s.task, s.timeout_s) for s in default.agent_steps] == [
        ("codex", "implement", 300.0),
        ("gemini", "review", 180.0),
        ("claude", "refine", 300.0),
    ]
    assert default.agent_steps[0].description == "First implementation"
    notes = workflows["default"].notes
    assert any(all(key in note for key in LEGACY_UNUSED_SETTINGS) for note in notes)
    assert any("command, role, description" in note for note in notes)


def test_legacy_disabled_agent_drops_its_steps_with_a_note():
    thorough = next(
        fw for fw in read_workflow_file(FIXTURES / "legacy-agents.yaml") if fw.workflow.name == "thorough"
    )
    assert [s.agent for s in thorough.workflow.agent_steps] == ["codex", "gemini", "claude", "gemini"]
    assert "step 2 (suggestions (copilot)) dropped: agents.copilot.enabled is false" in thorough.notes


def test_legacy_mapping_form_with_optional_steps():
    found = {fw.workflow.name: fw.workflow for fw in read_workflow_file(FIXTURES / "legacy-mapping.yaml")}
    thorough = found["thorough"]
    assert (thorough.max_iterations, thorough.min_suggestions_threshold) == (5, 3)
    assert [s.optional for s in thorough.agent_steps] == [False, True, False, False, False]
    assert (found["custom"].max_iterations, found["custom"].min_suggestions_threshold) == (4, 5)


def test_legacy_configmap_variant_uses_defaults_for_what_it_omits():
    [only] = read_workflow_file(FIXTURES / "legacy-configmap.yaml")
    assert only.workflow.name == "default"
    assert (only.workflow.max_iterations, only.workflow.min_suggestions_threshold) == (3, 0)
    assert "unused legacy settings: output_dir, log_level" in only.notes


def test_every_agent_disabled_is_an_error():
    data = {
        "agents": {"codex": {"enabled": False}},
        "workflows": {"quick": [{"agent": "codex", "task": "implement"}]},
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_data(data, file="f.yaml", stem="f")
    assert info.value.key_path == "workflows.quick"


# --- invalid files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "key_path", "allowed_part"),
    [
        (
            "invalid-unknown-step-key.yaml",
            "steps[1].retries",
            "agent, task, description, optional, timeout_s, model",
        ),
        ("invalid-task.yaml", "workflows.security_focused.steps[1].task", "'implement', 'review', 'refine'"),
        ("invalid-agent.yaml", "steps[0].agent", "claude, codex, gemini, copilot"),
        ("invalid-gate-shell.yaml", "steps[1].run", "one command per gate"),
        (
            "invalid-settings-key.yaml",
            "settings.quality_threshold",
            "max_iterations, min_suggestions_threshold",
        ),
    ],
)
def test_invalid_files_name_file_key_path_and_allowed(fixture, key_path, allowed_part):
    path = FIXTURES / fixture
    with pytest.raises(ConfigError) as info:
        validate_file(path)
    error = info.value
    assert error.exit_code == EXIT_USAGE
    assert error.file == str(path) and error.key_path == key_path
    assert error.allowed is not None and allowed_part in error.allowed
    assert str(error).startswith(f"{path}: {key_path}: ")


def test_every_problem_is_reported_once():
    path = FIXTURES / "invalid-many.yaml"
    with pytest.raises(WorkflowInvalid) as info:
        validate_file(path)
    paths = [p.key_path for p in info.value.problems]
    # the item error of steps[1] is not followed by a redundant "steps: at least 1 item"
    assert sorted(paths) == sorted(["max_iterations", "steps[0].timeout_s", "steps[1]", "colour"])
    assert len(info.value.message.splitlines()) == 4
    assert all(line.startswith(f"{path}: ") for line in info.value.message.splitlines())


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(ConfigError) as info:
        validate_file(FIXTURES / "invalid-yaml.yaml")
    assert info.value.exit_code == EXIT_USAGE and "line 4" in str(info.value)


@pytest.mark.parametrize(
    ("data", "key_path", "message_part"),
    [
        ([1, 2], "", "a workflow file is a YAML mapping"),
        (None, "", "a workflow file is a YAML mapping"),
        ({"name": "x"}, "", "no workflow found"),
        ({"steps": [], "workflows": {}}, "steps", "cannot both be at the top"),
        ({"steps": []}, "steps", "at least 1 item"),
        (
            {"workflows": {"a b": [{"agent": "claude", "task": "implement"}]}},
            "workflows.a b",
            "not a workflow name",
        ),
        ({"workflows": {"x": "implement"}}, "workflows.x", "a mapping with `steps:`, or a list of steps"),
        ({"workflows": {"x": []}}, "workflows.x", "at least 1 item"),
        (
            {"version": 2, "workflows": {"x": [{"agent": "claude", "task": "implement"}]}},
            "version",
            "unknown key",
        ),
        (
            {"workflows": {"x": [{"agent": "claude", "task": "implement"}]}, "agents": {"aider": {}}},
            "agents.aider",
            "unknown agent",
        ),
        (
            {
                "workflows": {"x": [{"agent": "claude", "task": "implement"}]},
                "agents": {"codex": {"model": "o3"}},
            },
            "agents.codex.model",
            "unknown key",
        ),
        (
            {"steps": [{"agent": "claude", "task": "implement", "run": "make"}]},
            "steps[0].agent",
            "unknown key",
        ),
        ({"steps": [{"agent": "claude"}]}, "steps[0].task", "this key is required"),
        ({"steps": [{"run": "pytest", "timeout_s": "soon"}]}, "steps[0].timeout_s", "valid number"),
        ({"steps": [{"run": "  "}]}, "steps[0].run", "empty"),
        ({"max_iterations": 51, "steps": [{"run": "make"}]}, "max_iterations", "less than or equal to 50"),
        ({"diff_base": "main", "steps": [{"run": "make"}]}, "diff_base", "not allowed"),
    ],
)
def test_structural_problems(data, key_path, message_part):
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_data(data, file="w.yaml", stem="w")
    first = info.value.problems[0]
    assert (first.key_path, message_part in first.message) == (key_path, True), info.value.problems


def test_unknown_key_lists_what_is_allowed_at_that_level():
    data = {"workflows": {"x": {"steps": [{"run": "make", "retries": 1}]}}}
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_data(data, file="w.yaml", stem="w")
    assert info.value.key_path == "workflows.x.steps[0].retries"
    assert info.value.allowed == "run, name, timeout_s, optional"


def test_unreadable_file():
    with pytest.raises(ConfigError) as info:
        validate_file(FIXTURES / "no-such-file.yaml")
    assert "cannot read" in str(info.value) and info.value.exit_code == EXIT_USAGE


# --- finding workflows ---------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


REVIEW_ONLY_BY_CLAUDE = "steps:\n  - agent: claude\n    task: review\n"


def test_repository_workflow_wins_over_a_builtin(tmp_path):
    path = write(tmp_path / ".orchestrator" / "workflows" / "default.yaml", REVIEW_ONLY_BY_CLAUDE)
    loaded = load_workflow("default", repo=tmp_path)
    assert (loaded.source, loaded.path) == ("repo", path)
    assert agents_by_task(loaded.workflow) == [("review", "claude")]
    assert load_workflow("quick", repo=tmp_path).source == "builtin"


def test_repository_yml_extension(tmp_path):
    write(tmp_path / ".orchestrator" / "workflows" / "mine.yml", REVIEW_ONLY_BY_CLAUDE)
    assert load_workflow("mine", repo=tmp_path).workflow.name == "mine"


def test_file_path_and_file_hash_name(tmp_path, monkeypatch):
    single = write(tmp_path / "flows" / "solo.yaml", REVIEW_ONLY_BY_CLAUDE)
    loaded = load_workflow(str(single), repo=None)
    assert (loaded.source, loaded.workflow.name) == ("file", "solo")
    monkeypatch.chdir(tmp_path)
    assert load_workflow("flows/solo.yaml", repo=None).workflow.name == "solo"

    legacy = str(FIXTURES / "legacy-agents.yaml")
    assert load_workflow(legacy, repo=None).workflow.name == "default"  # several: "default" is taken
    assert load_workflow(f"{legacy}#thorough", repo=None).workflow.name == "thorough"
    with pytest.raises(UsageError, match="has no workflow named 'nope'"):
        load_workflow(f"{legacy}#nope", repo=None)
    with pytest.raises(UsageError, match="holds 2 workflows"):
        load_workflow(str(FIXTURES / "legacy-mapping.yaml"), repo=None)


def test_unknown_names_and_missing_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError) as info:
        load_workflow("nope", repo=tmp_path)
    assert (
        info.value.exit_code == EXIT_USAGE
        and "best-of-3, consensus-review, default, document, plan, quick, review-only, thorough"
        in str(info.value)
    )
    with pytest.raises(UsageError, match="does not exist"):
        load_workflow("../elsewhere.yaml", repo=tmp_path)
    with pytest.raises(UsageError, match="not a workflow name"):
        load_workflow("-rf", repo=tmp_path)


def test_an_invalid_repository_workflow_fails_loudly(tmp_path):
    write(
        tmp_path / ".orchestrator" / "workflows" / "default.yaml",
        "steps:\n  - agent: claude\n    task: test\n",
    )
    with pytest.raises(ConfigError) as info:
        load_workflow("default", repo=tmp_path)
    assert info.value.key_path == "steps[0].task"


def test_list_workflows(tmp_path):
    folder = tmp_path / ".orchestrator" / "workflows"
    write(folder / "default.yaml", REVIEW_ONLY_BY_CLAUDE)
    write(folder / "broken.yaml", "steps: [")
    write(folder / "team.yaml", (FIXTURES / "legacy-mapping.yaml").read_text())
    write(folder / "notes.txt", "not a workflow")
    listings = list_workflows(tmp_path)
    rows = [(item.name, item.source, item.shadowed, item.error is not None) for item in listings]
    assert rows == [
        ("broken", "repo", False, True),
        ("default", "repo", False, False),
        ("team#thorough", "repo", False, False),
        ("team#custom", "repo", False, False),
        ("best-of-3", "builtin", False, False),
        ("consensus-review", "builtin", False, False),
        ("default", "builtin", True, False),
        ("document", "builtin", False, False),
        ("plan", "builtin", False, False),
        ("quick", "builtin", False, False),
        ("review-only", "builtin", False, False),
        ("thorough", "builtin", False, False),
    ]
    assert load_workflow("team#custom", repo=tmp_path).workflow.max_iterations == 4
    assert [item.name for item in list_workflows(None)] == sorted(BUILTINS)


# --- who does what -------------------------------------------------------------------------------------


def test_agent_overrides_replace_every_step_of_the_task():
    thorough = load_workflow("thorough", repo=None).workflow
    changed = apply_agent_overrides(thorough, ["review=claude", " refine = codex "])
    assert agents_by_task(changed) == [
        ("implement", "claude"),
        ("suggestions", "gemini"),
        ("review", "claude"),
        ("refine", "codex"),
        ("review", "claude"),
    ]
    assert agents_by_task(thorough)[2] == ("review", "codex")  # the original is untouched
    assert changed.gates == thorough.gates
    assert apply_agent_overrides(thorough, []) == thorough


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["review"], "is not TASK=AGENT"),
        (["=codex"], "is not TASK=AGENT"),
        (["test=codex"], "unknown task 'test'"),
        (["review=aider"], "unknown agent 'aider'"),
        (["review=codex", "review=claude"], "two agents for 'review'"),
        (["refine=codex"], "has no 'refine' step"),
    ],
)
def test_bad_agent_overrides(values, message):
    review_only = load_workflow("review-only", repo=None).workflow
    with pytest.raises(UsageError, match=message) as info:
        apply_agent_overrides(review_only, values)
    assert info.value.exit_code == EXIT_USAGE


def test_parse_agent_overrides_accepts_repeats_of_the_same_choice():
    assert parse_agent_overrides(["review=codex", "review=codex", "implement=fake"]) == {
        "review": "codex",
        "implement": "fake",
    }


# --- gates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "argv"),
    [
        ("pytest -q", ("pytest", "-q")),
        ("  pytest   -q  tests/unit ", ("pytest", "-q", "tests/unit")),
        ("python -c 'print(\"a b\")'", ("python", "-c", 'print("a b")')),
        ('ruff check "my dir"  # lint only', ("ruff", "check", "my dir")),
        ("sh -c 'pytest -q && ruff check .'", ("sh", "-c", "pytest -q && ruff check .")),
        ("env CI=1 npm test", ("env", "CI=1", "npm", "test")),
        ("auto", ("auto",)),
    ],
)
def test_parse_gate_argv(run, argv):
    assert parse_gate_argv(run) == argv


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("", "empty"),
        ("# just a comment", "empty"),
        ("pytest 'unclosed", "cannot split"),
        ("pytest -q && ruff check .", "'&&' is shell syntax"),
        ("pytest | tee log", "'|' is shell syntax"),
        ("pytest > out.txt", "'>' is shell syntax"),
        ("CI=1 npm test", "sets a variable"),
    ],
)
def test_parse_gate_argv_refuses(run, message):
    with pytest.raises(ValueError, match=message):
        parse_gate_argv(run)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, None),
        ({"README.md": "hi"}, None),
        ({"pytest.ini": "[pytest]\n"}, ("pytest", "-q")),
        ({"pyproject.toml": "[tool.pytest.ini_options]\n"}, ("pytest", "-q")),
        ({"pyproject.toml": "[project]\nname='x'\n"}, None),
        ({"setup.cfg": "[tool:pytest]\n"}, ("pytest", "-q")),
        ({"tests/unit/test_a.py": ""}, ("pytest", "-q")),
        ({"test/a_test.py": ""}, ("pytest", "-q")),
        ({"test_top.py": ""}, ("pytest", "-q")),
        ({"package.json": json.dumps({"scripts": {"test": "vitest run"}})}, ("npm", "test", "--silent")),
        (
            {"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})},
            None,
        ),
        ({"package.json": "{broken"}, None),
        ({"Cargo.toml": "[package]\n"}, ("cargo", "test", "--quiet")),
        ({"go.mod": "module x\n"}, ("go", "test", "./...")),
        ({"Makefile": "build:\n\tcc x.c\ntest: build\n\t./run-tests\n"}, ("make", "test")),
        ({"Makefile": "build:\n\tcc x.c\n"}, None),
    ],
)
def test_detect_test_command(tmp_path, files, expected):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert detect_test_command(tmp_path) == expected


def test_resolve_gate_argv(tmp_path):
    assert resolve_gate_argv(GateStep(run="auto"), tmp_path) is None
    write(tmp_path / "go.mod", "module x\n")
    assert resolve_gate_argv(GateStep(run="auto"), tmp_path) == ("go", "test", "./...")
    assert resolve_gate_argv(GateStep(run="make check"), tmp_path) == ("make", "check")


def test_gate_labels_and_defaults():
    assert GateStep(run="auto").label == "tests"
    assert GateStep(run="pytest -q").label == "pytest -q"
    gate = GateStep(run="make lint", name="lint")
    assert (gate.label, gate.timeout_s, gate.optional) == ("lint", 600.0, False)
