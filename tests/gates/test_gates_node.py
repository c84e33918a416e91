"""Node gates get their node_modules from `setup:` (auto: `npm ci` from package-lock.json), in the
run's repository and in the base checkout, with a shared npm cache; never in the user's checkout."""

from __future__ import annotations

import json
import os
import shutil

from orchestrator.testing.checkout import snapshot_checkout

from .conftest import commit_all, make_repo

QUICK = [{"agent": "fake", "task": "implement"}, {"run": "auto", "name": "tests"}]
CHANGE = [
    {
        "edit_file": {
            "path": "index.js",
            "old": "exports.right",
            "new": "exports.left = (s) => s;\nexports.right",
        }
    },
    {"text": "done"},
]


def test_auto_setup_installs_the_dependency_and_the_gate_passes_on_base_and_after(node_project, gate_run):
    before = snapshot_checkout(node_project.repo)
    run = gate_run(node_project.repo, CHANGE, QUICK)
    report = run.run()
    assert report.status == "approved", report.notes
    (gate,) = report.gates
    assert gate.command == "npm test --silent" and gate.passed
    assert gate.base is not None and gate.base.passed is True
    setups = {s.where: s for s in report.setup}
    assert set(setups) == {"run", "base"}
    for setup in setups.values():
        assert (
            setup.ok
            and setup.command.startswith("npm ci --cache ")
            and setup.note == "package-lock.json found"
        )
    # The npm cache is shared under the state home; nothing was written into the user's checkout.
    state = run.env["ORCHESTRATOR_HOME"]
    assert setups["run"].command.split()[3] == os.path.join(state, "cache", "npm")
    assert (run.worktree() / "node_modules" / "leftpad-local" / "index.js").is_file()
    assert snapshot_checkout(node_project.repo) == before
    assert not (node_project.repo / "node_modules").exists()


def test_without_setup_the_missing_dependency_is_blamed_on_the_environment_not_the_agent(
    node_project, gate_run
):
    run = gate_run(node_project.repo, CHANGE, QUICK, setup=[], max_iterations=3)
    report = run.run()
    # MODULE_NOT_FOUND before any change too: the gate can judge nothing, and no agent is asked to fix it.
    assert report.status == "failed", [(g.cause, g.versus_base, g.output_tail[:1500]) for g in report.gates]
    assert report.stop_reason == "step_failed" and report.iterations == 1
    (gate,) = report.gates
    assert not gate.passed and gate.cause == "missing_dependency" and "leftpad-local" in gate.cause_text
    assert gate.versus_base == "as_on_base"
    assert gate.base is not None and gate.base.cause == "missing_dependency"
    step = [s for s in report.steps if s.task == "gate"][0]
    assert step.error is not None and "before any change either" in step.error.message
    assert report.setup == []


def test_a_lockfile_whose_tool_is_missing_says_so(tmp_path, node_project, gate_run):
    repo = tmp_path / "pnpm-project"
    shutil.copytree(node_project.repo, repo)
    (repo / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n")
    commit_all(repo, "pnpm")
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (p and shutil.which("pnpm", path=p))
    )
    run = gate_run(repo, CHANGE, QUICK, env={**os.environ, "PATH": path}, base_gates=False)
    report = run.run()
    (setup,) = report.setup
    assert setup.ok is None and setup.where == "run"
    assert "pnpm-lock.yaml found" in setup.note and "needs `pnpm`, which is not on PATH" in setup.note
    assert "corepack enable pnpm" in setup.note
    assert not report.gates[0].passed  # it ran anyway, without node_modules
    assert "[setup]" in report.gates[0].output_tail


def test_package_json_without_lockfile_installs_without_writing_one(tmp_path, node_project, gate_run):
    repo = make_repo(
        tmp_path / "nolock",
        {
            "package.json": json.dumps(
                {
                    "name": "nolock",
                    "version": "1.0.0",
                    "scripts": {"test": "node --test"},
                    "dependencies": {"leftpad-local": "file:vendor/leftpad-local-1.0.0.tgz"},
                }
            ),
            "test/t.test.js": "require('node:test')('dep', () => require('leftpad-local'));\n",
        },
        ignore=["node_modules/"],
    )
    shutil.copytree(node_project.repo / "vendor", repo / "vendor")
    commit_all(repo, "vendor")
    run = gate_run(repo, CHANGE[1:], QUICK, base_gates=False)
    report = run.run()
    (setup,) = report.setup
    assert setup.ok and "--no-package-lock" in setup.command
    assert report.gates[0].passed
    assert not (run.worktree() / "package-lock.json").exists()
