"""Python gates test the run's tree, not the user's editable install (issue 9), on real projects: a
src-layout and a flat-layout package installed editable (pip install -e) in the user's virtualenv."""

from __future__ import annotations

import os

from orchestrator.proc import child_env, run_command
from orchestrator.testing.checkout import snapshot_checkout

from .conftest import APPROVE, CALC, commit_all, make_repo, src_layout_files

BREAK_ADD = {"edit_file": {"path": "src/calc/__init__.py", "old": "a + b", "new": "a - b"}}
QUICK = [{"agent": "fake", "task": "implement"}, {"run": "auto", "name": "tests"}]


def test_the_users_venv_really_imports_the_users_checkout(user_venv):
    # What makes the tests below mean something: outside a gate, `calc` is the user's checkout.
    done = run_command(
        [
            str(user_venv.python),
            "-c",
            "import calc, flatcalc; print(calc.__file__); print(flatcalc.__file__)",
        ],
        user_venv.path,
        env=child_env(os.environ),
        check=True,
    )
    calc_file, flat_file = done.stdout.split()
    assert calc_file.startswith(str(user_venv.src_checkout))
    assert flat_file.startswith(str(user_venv.flat_checkout))


def test_an_agent_breaking_add_fails_the_gate_despite_the_editable_install(user_venv, gate_run):
    run = gate_run(
        user_venv.src_checkout, [BREAK_ADD, {"text": "done"}], QUICK, env=user_venv.env(dict(os.environ))
    )
    before = snapshot_checkout(user_venv.src_checkout)
    report = run.run()
    assert report.status == "not_approved" and report.exit_code == 1
    (gate,) = report.gates
    assert gate.command == "pytest -q" and not gate.passed and gate.exit_code == 1
    assert "assert -1 == 5" in gate.output_tail  # the run's broken add, not the user's
    assert gate.cause == "failing_tests" and "tests/test_calc.py::test_add" in gate.cause_text
    # The base ran beside it, in a checkout of its own: it passed, so the change broke it.
    assert gate.base is not None and gate.base.passed is True
    assert gate.versus_base == "new"
    assert snapshot_checkout(user_venv.src_checkout) == before
    assert (user_venv.src_checkout / "src/calc/__init__.py").read_text() == CALC
    assert not (run.worktree().parent.parent / "runs" / run.run_id / "base-tree").exists()  # removed


def test_an_untouched_run_passes(user_venv, gate_run):
    run = gate_run(
        user_venv.src_checkout,
        [{"write_file": {"path": "NOTES.md", "content": "notes\n"}}, {"text": "done"}],
        QUICK,
        env=user_venv.env(dict(os.environ)),
    )
    report = run.run()
    assert report.status == "approved" and report.exit_code == 0
    (gate,) = report.gates
    assert gate.passed and gate.base is not None and gate.base.passed is True


def test_a_flat_layout_break_fails_the_gate(user_venv, gate_run):
    turns = [
        {"edit_file": {"path": "flatcalc/__init__.py", "old": "a + b", "new": "a * b"}},
        {"text": "done"},
    ]
    run = gate_run(user_venv.flat_checkout, turns, QUICK, env=user_venv.env(dict(os.environ)))
    report = run.run()
    assert report.status == "not_approved"
    (gate,) = report.gates
    assert not gate.passed and "assert 6 == 5" in gate.output_tail
    assert gate.base is not None and gate.base.passed


def test_a_package_that_raises_on_import_still_fails_not_misconfigured(user_venv, gate_run):
    # click's case: `raise RuntimeError` at the top of a module. The import check finds the package
    # without importing it, so this is the tests failing, not a misconfigured gate.
    turns = [
        {
            "edit_file": {
                "path": "src/calc/__init__.py",
                "old": "def add",
                "new": "raise RuntimeError('broken')\n\n\ndef add",
            }
        },
        {"text": "done"},
    ]
    run = gate_run(user_venv.src_checkout, turns, QUICK, env=user_venv.env(dict(os.environ)))
    report = run.run()
    (gate,) = report.gates
    assert not gate.passed and "RuntimeError: broken" in gate.output_tail
    assert gate.cause == "collection_error" and gate.versus_base == "new"
    assert report.stop_reason == "max_iterations"


def test_tests_failing_on_the_base_are_reported_and_do_not_drive_refine(tmp_path, gate_run):
    files = src_layout_files()
    files["tests/test_known_bug.py"] = "def test_known_bug():\n    assert 1 == 2, 'known bug'\n"
    repo = make_repo(tmp_path / "buggy", files)
    steps = [
        {"agent": "fake", "task": "implement"},
        {"run": "auto", "name": "tests"},
        {"agent": "fake", "task": "review"},
        {"agent": "fake", "task": "refine"},
    ]
    turns = [{"write_file": {"path": "CHANGES.md", "content": "x\n"}}, {"text": "done"}, {"text": APPROVE}]
    run = gate_run(repo, turns, steps, max_iterations=3)
    report = run.run()
    # Approved in one iteration: the only failure was there before the change, so no refine ran.
    assert report.status == "approved" and report.iterations == 1
    assert [s.task for s in report.steps] == ["implement", "gate", "review"]
    (gate,) = report.gates
    assert not gate.passed and gate.versus_base == "as_on_base"
    assert gate.base is not None and gate.base.passed is False
    assert gate.base.cause == "failing_tests" and gate.base.failures == [
        "tests/test_known_bug.py::test_known_bug"
    ]
    assert any("same failures as before any change" in note for note in report.notes)


def test_new_failures_on_top_of_base_failures_still_count(tmp_path, gate_run):
    files = src_layout_files()
    files["tests/test_known_bug.py"] = "def test_known_bug():\n    assert 1 == 2\n"
    repo = make_repo(tmp_path / "buggy", files)
    turns = [BREAK_ADD, {"text": "done"}]
    report = gate_run(repo, turns, QUICK).run()
    assert report.status == "not_approved"
    (gate,) = report.gates
    assert gate.versus_base == "worse"
    assert any("new failures since the base: tests/test_calc.py::test_add" in n for n in report.notes)


def test_no_base_gates_turns_the_base_run_off(tmp_path, gate_run):
    repo = make_repo(tmp_path / "p", src_layout_files())
    report = gate_run(repo, [BREAK_ADD, {"text": "done"}], QUICK).run(base_gates=False)
    (gate,) = report.gates
    assert not gate.passed and gate.base is None and gate.versus_base == "no_base"
    assert report.base_gates == []
    off = gate_run(repo, [BREAK_ADD, {"text": "done"}], QUICK, base_gates=False).run()
    assert off.base_gates == [] and off.gates[0].base is None


def test_a_gate_that_resolves_to_the_users_checkout_fails_as_misconfigured(tmp_path, gate_run):
    # A venv whose site hook maps `calc` to the user's checkout ahead of every path entry: nothing the
    # orchestrator sets can make the gate import the run's tree, so it fails and never passes.
    repo = make_repo(tmp_path / "calc", src_layout_files())
    venv = tmp_path / "hijacked"
    run_command(
        ["python3", "-m", "venv", "--without-pip", str(venv)], tmp_path, env=child_env(os.environ), check=True
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "hijack_calc.py").write_text(
        "import importlib.util, sys\n"
        f"ORIGIN = {str(repo / 'src/calc/__init__.py')!r}\n"
        "class Finder:\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        if name == 'calc':\n"
        "            return importlib.util.spec_from_file_location(name, ORIGIN, submodule_search_locations=[])\n"
        "        return None\n"
        "sys.meta_path.insert(0, Finder)\n"
    )
    (site / "hijack_calc.pth").write_text("import hijack_calc\n")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    steps = [
        {"agent": "fake", "task": "implement"},
        {"run": "python -m unittest discover -s tests", "name": "unit"},
    ]
    report = gate_run(repo, [BREAK_ADD, {"text": "done"}], steps, env=env, max_iterations=3).run()
    assert report.status == "failed" and report.stop_reason == "step_failed"
    assert report.iterations == 1  # no refine loop: agents cannot fix the environment
    (gate,) = report.gates
    assert not gate.passed and gate.cause == "misconfigured"
    assert "misconfigured" in gate.output_tail and str(repo / "src/calc/__init__.py") in gate.output_tail
    assert "What to do" in gate.output_tail
    failed = [s for s in report.steps if s.task == "gate"][0]
    assert failed.error is not None and failed.error.kind == "gate_misconfigured"


def test_setup_changes_are_rerun_when_the_manifest_changes(tmp_path, gate_run):
    files = src_layout_files()
    repo = make_repo(tmp_path / "p", files)
    steps = [
        {"agent": "fake", "task": "implement"},
        {"run": "auto"},
        {"agent": "fake", "task": "refine"},
        {"run": "auto", "name": "again"},
    ]
    marker = "import pathlib, sys; pathlib.Path('setup-ran.txt').open('a').write('x')"
    turns = [
        {"text": "impl"},
        {"edit_file": {"path": "pyproject.toml", "old": 'version = "0.1"', "new": 'version = "0.2"'}},
        {"text": "refined"},
    ]
    run = gate_run(repo, turns, steps, setup=[f'python3 -c "{marker}"'], base_gates=False)
    (repo / ".gitignore").write_text("setup-ran.txt\n__pycache__/\n")
    commit_all(repo, "ignore")
    report = run.run()
    assert [s.where for s in report.setup] == ["run", "run"]
    assert all(s.ok for s in report.setup)
    assert (run.worktree() / "setup-ran.txt").read_text() == "xx"
