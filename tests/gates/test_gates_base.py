"""The base run: beside the first agent step (where the machine has the cores), in a checkout of its own
that never sees the agents' edits, and ended with the run."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from orchestrator.engine.run_gates import parallel_allowed
from orchestrator.engine.service import RunSpec
from orchestrator.events import RunEvent
from orchestrator.proc import run_command

from .conftest import make_repo


def logging_gate(log: Path) -> str:
    """A gate that appends the tree it ran in and what app.py held there, then passes."""
    code = f"import os; open({str(log)!r}, 'a').write(os.getcwd() + ' ' + open('app.py').read().strip() + chr(10))"
    return f'{sys.executable} -c "{code}"'


def test_the_base_runs_beside_the_first_step_on_the_untouched_tree(tmp_path, gate_run):
    repo = make_repo(tmp_path / "r", {"app.py": "base"})
    log = tmp_path / "gate.log"
    turns = [{"hang": 3}, {"write_file": {"path": "app.py", "content": "changed"}}, {"text": "done"}]
    steps = [{"agent": "fake", "task": "implement"}, {"run": logging_gate(log), "name": "log"}]
    # The gate logs outside the run's tree, which the sandbox (on for gates) would refuse.
    run = gate_run(repo, turns, steps, sandbox="off")
    report = run.run()
    assert report.status == "approved"
    trees = {line.split()[1]: line.split()[0] for line in log.read_text().splitlines()}
    assert set(trees) == {"base", "changed"}  # the base checkout never saw the agent's edit
    assert trees["base"].endswith("base-tree") and trees["changed"] == str(run.worktree())
    kinds = [e.type for e in run.events if e.type in ("base_gate_finished", "step_finished")]
    if parallel_allowed():
        assert kinds[0] == "base_gate_finished"  # done while the agent was still working
    else:
        assert kinds.index("base_gate_finished") > 0


def test_cancel_ends_the_base_run_and_its_processes(tmp_path, gate_run):
    repo = make_repo(tmp_path / "r", {"app.py": "x"})
    slow = f'{sys.executable} -c "import time; time.sleep(60)"'
    run = gate_run(
        repo, [{"hang": None}], [{"agent": "fake", "task": "implement"}, {"run": slow, "name": "slow"}]
    )
    cancel = threading.Event()
    record = run.service.create(RunSpec(task="t", cwd=repo, workflow=str(run.workflow)))
    threading.Timer(2.0, cancel.set).start()
    started = time.monotonic()
    report = run.service.execute(record.id, cancel=cancel)
    assert report.status == "cancelled"
    assert time.monotonic() - started < 2 + 15  # not the gate's 60 s
    # The autouse fixture in tests/conftest.py fails the test if the sleeping base gate is left behind.


def test_setup_products_are_excluded_in_a_clone_and_never_in_the_users_repository(tmp_path):
    import os

    from orchestrator.engine.gates import exclude_setup_products
    from orchestrator.proc import run_command

    user = make_repo(tmp_path / "user", {"a.txt": "a"})
    user_exclude = (user / ".git" / "info" / "exclude").read_bytes()
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(user), str(clone)], tmp_path, check=True)
    worktree = tmp_path / "wt"
    run_command(["git", "worktree", "add", "-q", "--detach", str(worktree)], user, check=True)
    for tree in (clone, worktree):
        (tree / "node_modules" / "x").mkdir(parents=True)
        (tree / "node_modules" / "x" / "index.js").write_text("")
        (tree / ".venv").mkdir()
        (tree / ".venv" / "pyvenv.cfg").write_text("")
        exclude_setup_products(tree, dict(os.environ))
        exclude_setup_products(tree, dict(os.environ))  # once is enough
    lines = (clone / ".git" / "info" / "exclude").read_text().splitlines()
    assert lines.count("node_modules/") == 1 and lines.count(".venv/") == 1
    status = run_command(["git", "status", "--porcelain", "--ignored"], clone, check=True).stdout
    assert "!! .venv/" in status and "!! node_modules/" in status
    assert (user / ".git" / "info" / "exclude").read_bytes() == user_exclude  # a worktree's is the user's


def test_an_approving_review_does_not_skip_refine_while_a_gate_fails_and_resume_reuses_the_base(
    tmp_path, gate_run
):
    from .conftest import APPROVE, src_layout_files

    repo = make_repo(tmp_path / "calc", src_layout_files())
    turns = [
        {"edit_file": {"path": "src/calc/__init__.py", "old": "a + b", "new": "a - b"}},
        {"text": "done"},
        {"hang": None},  # the first review hangs: the run is cancelled there, then resumed
        {"text": APPROVE},
        {"edit_file": {"path": "src/calc/__init__.py", "old": "a - b", "new": "a + b"}},
        {"text": "fixed"},
        {"text": APPROVE},
    ]
    steps = [
        {"agent": "fake", "task": "implement"},
        {"run": "auto", "name": "tests"},
        {"agent": "fake", "task": "review"},
        {"agent": "fake", "task": "refine"},
    ]
    run = gate_run(repo, turns, steps, max_iterations=3)
    record = run.service.create(RunSpec(task="t", cwd=repo, workflow=str(run.workflow)))
    cancel = threading.Event()

    def cancel_in_review(event):
        if event.type == "step_started" and getattr(event, "task", "") == "review":
            threading.Timer(1.0, cancel.set).start()

    first = run.service.execute(record.id, cancel=cancel, subscribers=[cancel_in_review])
    assert first.status == "cancelled" and first.gates[0].passed is False
    report = run.service.execute(record.id, resume=True)
    # The gate (run again on resume) still fails, so the approving review alone does not approve, and
    # the refine step is not skipped as "nothing left to refine": it gets the failing output.
    assert report.status == "approved", [(s.id, s.status, s.error) for s in report.steps]
    assert report.iterations == 2
    assert [s.id for s in report.steps if s.status != "cancelled"][-3:] == [
        "i1-s4-refine",
        "i2-s2-gate",
        "i2-s3-review",
    ]
    assert len(report.base_gates) == 1  # the base ran once, before the resume
    events = run.service.store.events(record.id, types=("base_gate_finished",))
    assert len(events) == 1


def _base_gates(tmp_path: Path, head_start: threading.Event):
    """The run gates of a one-gate workflow on a fresh repository, with the base run on."""
    from orchestrator.engine.run_gates import build_run_gates
    from orchestrator.engine.workflow import Workflow

    repo = make_repo(tmp_path / "r", {"app.py": "base"})
    head = run_command(["git", "rev-parse", "HEAD"], repo, check=True).stdout.strip()
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "steps": [
                {"agent": "fake", "task": "implement"},
                {"run": f'{sys.executable} -c "pass"', "name": "ok"},
            ],
        }
    )
    published: list[RunEvent] = []
    gates = build_run_gates(
        workflow=workflow,
        run_id="r1",
        run_tree=repo,
        first_commit=head,
        user_checkout=repo,
        run_dir=tmp_path / "run",
        state_home=tmp_path / "state",
        env=os.environ,
        guard_env={},
        base_option=True,
        known_base=[],
        publish=published.append,
        cancel=threading.Event(),
        head_start=head_start,
    )
    assert gates.base is not None
    return gates.base, published


def test_the_base_run_waits_for_the_first_agent_to_start(tmp_path):
    """Its clone, checkout and gates start once the agent's process exists, not against its start."""
    agent_started = threading.Event()
    base, published = _base_gates(tmp_path, agent_started)
    base.start()
    try:
        time.sleep(0.5)
        assert published == [] and not (tmp_path / "run" / "base-tree").exists()
        agent_started.set()
        base.join()
        assert [e.type for e in published] == ["base_gate_finished"]
    finally:
        base.stop()


def test_a_gate_that_needs_the_base_result_does_not_wait_for_an_agent(tmp_path):
    agent_started = threading.Event()  # never set by an agent: the run starts with a gate (a resume)
    base, _ = _base_gates(tmp_path, agent_started)
    outcome = base.result(1)
    assert outcome is not None and outcome.passed
    assert agent_started.is_set()
