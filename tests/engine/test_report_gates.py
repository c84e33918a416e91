"""The report shows each gate's base and final results side by side, and what setup did."""

from __future__ import annotations

from orchestrator.engine.report import build_report
from orchestrator.engine.report_render import render_markdown, render_text
from orchestrator.events import BaseGateFinished, GateFinished, SetupFinished
from orchestrator.store import Store

RUN = "20261121-061502-a1b2c3"


def test_base_and_final_side_by_side(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.create_run(
            run_id=RUN, repo=tmp_path, task="t", workflow_name="quick", workflow={}, base="main", branch="b"
        )
        events = [
            SetupFinished(
                run_id=RUN,
                where="base",
                command="npm ci",
                ok=True,
                exit_code=0,
                duration_s=2.5,
                note="package-lock.json found",
            ),
            SetupFinished(
                run_id=RUN, where="run", command="pnpm install", ok=None, note="pnpm is not on PATH"
            ),
            BaseGateFinished(
                run_id=RUN,
                gate_index=1,
                command="pytest -q",
                passed=False,
                exit_code=1,
                cause="failing_tests",
                cause_text="failing test: t::known",
                failures=["t::known"],
                output_tail="FAILED t::known\nbase tail",
            ),
            BaseGateFinished(run_id=RUN, gate_index=3, command="ruff check", passed=True, exit_code=0),
            GateFinished(
                run_id=RUN,
                step_id="i1-s2-gate",
                command="pytest -q",
                passed=False,
                exit_code=1,
                output_tail="FAILED t::known",
                versus_base="as_on_base",
                cause="failing_tests",
                cause_text="failing test: t::known",
                gate_index=1,
            ),
        ]
        for event in events:
            store.add_event(RUN, event)
        store.update_run_status(RUN, "approved", stop_reason="approved", iterations=1)
        report = build_report(store, RUN)
    (gate,) = report.gates
    assert gate.base is not None and gate.base.failures == ["t::known"] and gate.versus_base == "as_on_base"
    assert [b.gate_index for b in report.base_gates] == [1, 3]
    assert [(s.where, s.ok) for s in report.setup] == [("base", True), ("run", None)]

    text = render_text(report)
    assert "gate `pytest -q`: FAILED (exit 1); on the base: failed (exit 1)" in text
    assert "  as on the base: does not count against approval" in text
    assert "  likely cause: failing test: t::known" in text
    assert "gate `ruff check` on the base: passed" in text  # it never ran on the run's tree
    assert "setup (base): `npm ci` (package-lock.json found): ok, 2.5s" in text
    assert "setup (run): pnpm is not on PATH" in text
    assert all(len(line) <= 100 for line in text.splitlines())

    md = render_markdown(report)
    assert "| Gate | Base (before any change) | Final | Exit code | Likely cause |" in md
    assert (
        "| `pytest -q` | failed (exit 1) | failed (exit 1), as on the base (does not count) | 1 | failing test: t::known |"
        in md
    )
    assert "| `ruff check` | passed | not run | 0 | - |" in md
    assert (
        "<summary><code>pytest -q</code> output on the base (last lines)</summary>" in md
        and "base tail" in md
    )
    assert "| base | `npm ci` | ok | 2.5s | package-lock.json found |" in md
    assert "| run | `pnpm install` | - | - | pnpm is not on PATH |" in md
