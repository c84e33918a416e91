"""Causes, failing test names and the comparison with the base, from recorded runner output."""

from __future__ import annotations

import pytest

from orchestrator.engine.gate_results import GateSide, compare_with_base, failing_tests, likely_cause

PYTEST_FAIL = """\
F.                                                                       [100%]
=================================== FAILURES ===================================
___________________________________ test_add ___________________________________
    def test_add():
>       assert add(2, 3) == 5
E       assert -1 == 5
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - assert -1 == 5
1 failed, 1 passed in 0.05s
"""
PYTEST_OWN_MISSING = """\
==================================== ERRORS ====================================
_____________________ ERROR collecting tests/test_calc.py ______________________
ImportError while importing test module '/x/tests/test_calc.py'.
E   ModuleNotFoundError: No module named 'calc'
=========================== short test summary info ============================
ERROR tests/test_calc.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
"""
PYTEST_RAISES = """\
_____________________ ERROR collecting tests/test_basic.py _____________________
tests/test_basic.py:1: in <module>
    import click
src/click/core.py:1: in <module>
    raise RuntimeError("broken by the agent")
E   RuntimeError: broken by the agent
ERROR tests/test_basic.py - RuntimeError: broken by the agent
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
"""
CONFTEST_SYNTAX = """\
ImportError while loading conftest '/run/tests/conftest.py'.
tests/conftest.py:3: in <module>
    from click.testing import CliRunner
E     File "/run/src/click/core.py", line 2
E       from __future__ import annotations
E   SyntaxError: from __future__ imports must occur at the beginning of the file
"""
NODE_MISSING = """\
node:internal/modules/cjs/loader:1210
  throw err;
  ^
Error: Cannot find module 'leftpad-local'
Require stack:
- /run/index.js
  code: 'MODULE_NOT_FOUND',
not ok 1 - /run/test/pad.test.js
"""
TAP = "TAP version 13\nnot ok 1 - pads\nok 2 - trims\nnot ok 3 - splits # took 3ms\n1..3\n"
GO = "--- FAIL: TestAdd (0.00s)\n    calc_test.go:8: got -1\nFAIL\nFAIL\texample/calc\t0.002s\n"
CARGO = "running 2 tests\ntest tests::adds ... FAILED\ntest tests::subs ... ok\n\nfailures:\n"


@pytest.mark.parametrize(
    ("output", "names"),
    [
        (PYTEST_FAIL, {"tests/test_calc.py::test_add"}),
        (PYTEST_OWN_MISSING, {"tests/test_calc.py"}),
        (TAP, {"pads", "splits"}),
        (GO, {"TestAdd"}),
        (CARGO, {"tests::adds"}),
        ("all good\n", set()),
    ],
)
def test_failing_tests(output, names):
    assert failing_tests(output) == names


@pytest.mark.parametrize(
    ("output", "exit_code", "kind", "words"),
    [
        (PYTEST_FAIL, 1, "failing_tests", "tests/test_calc.py::test_add"),
        (PYTEST_OWN_MISSING, 2, "project_not_importable", "`calc`"),
        (PYTEST_OWN_MISSING.replace("'calc'", "'numpy'"), 2, "missing_dependency", "`numpy`"),
        (PYTEST_RAISES, 2, "collection_error", "could not be collected"),
        (CONFTEST_SYNTAX, 4, "collection_error", "could not be collected"),
        (NODE_MISSING, 1, "missing_dependency", "`leftpad-local`"),
        ("Error: Cannot find module './lib/missing'\n", 1, "unknown", "exited with 1"),
        ("no tests ran in 0.01s\n", 5, "no_tests", "no tests"),
        ("segfault\n", None, "unknown", "stopped"),
    ],
)
def test_likely_cause(output, exit_code, kind, words):
    cause = likely_cause(output, exit_code=exit_code, own_packages=["calc"])
    assert cause.kind == kind and words in cause.text


def test_a_timeout_is_its_own_cause():
    assert likely_cause(PYTEST_FAIL, exit_code=None, timed_out=True).kind == "timed_out"


def side(passed, exit_code=1, cause="failing_tests", failures=()):
    return GateSide(passed, exit_code, cause, frozenset(failures))


def test_compare_with_base():
    broken = side(False, failures={"t::a"})
    assert compare_with_base(broken, None).versus == "no_base"
    assert compare_with_base(broken, side(True, 0)).versus == "new"
    same = compare_with_base(broken, side(False, failures={"t::a", "t::b"}))
    assert same.versus == "as_on_base" and not same.blocks  # fewer failures than the base: fine
    worse = compare_with_base(side(False, failures={"t::a", "t::c"}), side(False, failures={"t::a"}))
    assert worse.versus == "worse" and worse.new_failures == ("t::c",) and worse.blocks
    # Without test names: the same cause and exit code are the same failure, and it still counts (it
    # may be the very check the task is to make pass); anything else is worse.
    unnamed = side(False, 1, "missing_dependency")
    same = compare_with_base(unnamed, side(False, 1, "missing_dependency"))
    assert same.versus == "same_cause" and same.blocks and same.same_as_base
    assert compare_with_base(unnamed, side(False, 2, "missing_dependency")).versus == "worse"
    assert compare_with_base(
        side(False, 2, "collection_error"), side(False, 1, "failing_tests", {"x"})
    ).blocks
