from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.workflows_cmd import find_repo_root
from orchestrator.engine.workflow import Workflow, load_workflow

FIXTURES = Path(__file__).parents[1] / "fixtures" / "workflows"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the real entry point (with its error handler) and return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(["workflows", *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def repo(tmp_path):
    (tmp_path / ".git").mkdir()
    folder = tmp_path / ".orchestrator" / "workflows"
    folder.mkdir(parents=True)
    (folder / "default.yaml").write_text("steps:\n  - agent: claude\n    task: review\n", encoding="utf-8")
    (folder / "broken.yaml").write_text("steps:\n  - agent: claude\n    task: test\n", encoding="utf-8")
    return tmp_path


def test_list_json(capsys, repo):
    code, out, _ = run(capsys, "list", "--json", "--repo", str(repo))
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["source"], r["shadowed"]) for r in rows] == [
        ("broken", "repo", False),
        ("default", "repo", False),
        ("best-of-3", "builtin", False),
        ("consensus-review", "builtin", False),
        ("default", "builtin", True),
        ("document", "builtin", False),
        ("plan", "builtin", False),
        ("quick", "builtin", False),
        ("review-only", "builtin", False),
        ("thorough", "builtin", False),
    ]
    assert "steps[0].task" in rows[0]["error"] and rows[1]["error"] is None
    assert rows[4]["summary"] == "implement (claude) -> gate (tests) -> review (codex) -> refine (gemini)"
    assert rows[2]["summary"] == (
        "implement (best of 3: claude, codex, gemini) -> gate (tests) -> review (copilot) -> refine (claude)"
    )


def test_list_human_finds_the_repository_from_the_current_directory(capsys, repo, monkeypatch):
    (repo / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(repo / "src" / "deep")
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("broken"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    invalid = " ".join(line.strip() for line in lines[start:end])  # wrapped within 80 columns
    assert "INVALID: " in lines[start] and "steps[0].task" in invalid
    assert any(line.startswith("default") and "(replaced by the repository's)" in line for line in lines)
    assert any(line.startswith("review-only") and "gate (tests) -> review (codex)" in line for line in lines)


def test_find_repo_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    outside = find_repo_root(tmp_path / "a" / "b")
    assert outside is None or not outside.is_relative_to(tmp_path)
    (tmp_path / "a" / ".git").write_text("gitdir: /elsewhere\n")  # a worktree's .git is a file
    assert find_repo_root(tmp_path / "a" / "b") == tmp_path / "a"


def test_show_human(capsys, tmp_path):
    code, out, _ = run(capsys, "show", "thorough", "--repo", str(tmp_path))
    assert code == 0
    assert out.splitlines()[0].startswith("thorough  (built-in: ")
    assert "2. suggestions by gemini  (optional, read-only): " in out
    assert "3. gate tests: auto (the repository's tests)  (timeout 600s)" in out
    assert "7. review by copilot  (read-only)" in out
    assert "later iterations skip implement" in out


def test_show_legacy_file_lists_its_notes(capsys):
    code, out, _ = run(capsys, "show", f"{FIXTURES / 'legacy-agents.yaml'}#thorough")
    assert code == 0
    assert "implement by codex  (timeout 300s): First implementation" in out
    assert "note: step 2 (suggestions (copilot)) dropped: agents.copilot.enabled is false" in out


def test_show_json_is_the_resolved_workflow(capsys, repo):
    code, out, _ = run(capsys, "show", "default", "--json", "--repo", str(repo))
    assert code == 0
    shown = json.loads(out)
    assert shown["source"] == "repo" and shown["path"] == str(
        repo / ".orchestrator" / "workflows" / "default.yaml"
    )
    assert Workflow.model_validate(shown["workflow"]) == load_workflow("default", repo=repo).workflow


def test_show_unknown_name_exits_2(capsys, tmp_path):
    code, out, err = run(capsys, "show", "nope", "--repo", str(tmp_path))
    assert (code, out) == (2, "")
    assert (
        "no workflow named 'nope'" in err
        and "best-of-3, consensus-review, default, document, plan, quick, review-only, thorough" in err
    )


def test_show_invalid_repository_workflow_exits_2(capsys, repo):
    code, _, err = run(capsys, "show", "broken", "--repo", str(repo))
    assert code == 2
    assert (
        f"{repo / '.orchestrator' / 'workflows' / 'broken.yaml'}: steps[0].task: 'test' is not allowed" in err
    )


def test_validate_valid_files(capsys):
    builtins = sorted(str(p) for p in (Path(__file__).parents[2] / "workflows").glob("*.yaml"))
    legacy = str(FIXTURES / "legacy-agents.yaml")
    code, out, err = run(capsys, "validate", legacy, *builtins)
    assert (code, err) == (0, "")
    assert f"ok {legacy}: default, quick, thorough, review-only, document" in out
    assert "  note: step 2 (suggestions (copilot)) dropped: agents.copilot.enabled is false" in out
    assert sum(line.startswith("ok ") for line in out.splitlines()) == 1 + len(builtins)


def test_validate_reports_every_invalid_file_and_exits_2(capsys):
    good = str(FIXTURES / "legacy-mapping.yaml")
    unknown_key = FIXTURES / "invalid-unknown-step-key.yaml"
    bad_task = FIXTURES / "invalid-task.yaml"
    code, out, err = run(
        capsys, "validate", str(unknown_key), good, str(bad_task), str(FIXTURES / "missing.yaml")
    )
    assert code == 2
    assert f"ok {good}: thorough, custom" in out
    assert (
        f"invalid {unknown_key}: steps[1].retries: unknown key 'retries' "
        "(allowed: agent, task, description, optional, timeout_s, model, when)"
    ) in err
    assert (
        f"{bad_task}: workflows.security_focused.steps[1].task: 'security_review' is not allowed here" in err
    )
    assert "missing.yaml: cannot read the workflow file" in err
    assert err.rstrip().endswith("error: 3 of 4 workflow file(s) are invalid")


def test_validate_needs_a_file(capsys):
    code, _, err = run(capsys, "validate")
    assert code == 2 and "Missing argument" in err


def test_list_human_rows_fit_80_columns_with_the_step_chain_wrapped_at_its_arrows(capsys, repo):
    code, out, _ = run(capsys, "list", "--repo", str(repo))
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    start = next(i for i, line in enumerate(lines) if line.startswith("plan "))
    indent = " " * lines[start].index("plan (claude")
    assert lines[start + 1 : start + 4] == [
        f"{indent}-> implement (each subtask: claude, codex)",
        f"{indent}-> merge (subtasks) -> gate (tests)",
        f"{indent}-> review (codex) -> refine (gemini)",
    ]
    assert lines[start + 4] == f"{indent}A planner splits the task; subtasks at once on"
