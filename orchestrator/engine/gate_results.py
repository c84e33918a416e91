"""What a gate's output says: the likely cause of a failure, the failing tests it names, and how a
result after the agents' change compares with the same gate on the base. Pure functions of text.

The comparison is what keeps a refine loop from chasing failures no agent caused: a gate that failed
on the base and fails now with no failure the base did not have is `as_on_base`, which does not count
against approval and is not handed to the agents as something to fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

CauseKind = Literal[
    "failing_tests",  # tests ran and some failed: a real failing test
    "collection_error",  # the tests could not be collected (an import or syntax error in them)
    "project_not_importable",  # the project's own package does not import (not installed, wrong roots)
    "missing_dependency",  # a dependency is missing: nothing installed them (setup)
    "no_tests",  # the runner found no tests
    "tool_missing",  # the gate's program is not installed
    "misconfigured",  # the gate would test another tree than the run's (checked before it ran)
    "timed_out",
    "unknown",
]
CAUSES: tuple[CauseKind, ...] = get_args(CauseKind)
# Causes that mean the suite never really ran: when the base fails the same way, the gate can judge
# nothing here, so the run can neither be approved on it nor ask the agents to fix it.
ENVIRONMENT_CAUSES: frozenset[CauseKind] = frozenset(
    {"missing_dependency", "tool_missing", "project_not_importable", "misconfigured"}
)

Versus = Literal[
    "new",  # passed on the base: the change broke it
    "as_on_base",  # failed on the base with the same named failures (or fewer): not the change's doing
    "same_cause",  # failed on the base the same way, but names no tests to compare: it still counts
    "worse",  # failed on the base too, but now with failures the base did not have
    "no_base",  # there is no base result to compare with
]


@dataclass(frozen=True)
class Cause:
    kind: CauseKind
    text: str  # one line for people


@dataclass(frozen=True)
class Comparison:
    versus: Versus
    new_failures: tuple[str, ...] = ()
    note: str = ""

    @property
    def blocks(self) -> bool:
        """Whether the failure counts against approval (and is given to the agents to fix)."""
        return self.versus != "as_on_base"

    @property
    def same_as_base(self) -> bool:
        return self.versus in ("as_on_base", "same_cause")


# Python: "ModuleNotFoundError: No module named 'x.y'"; "ImportError: No module named x" (old).
_PY_MISSING = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '?([A-Za-z0-9_.]+)'?")
# Node: "Cannot find module 'x'" (CommonJS, MODULE_NOT_FOUND), "Cannot find package 'x'" (ESM).
_NODE_MISSING = re.compile(r"Cannot find (?:module|package) '([^']+)'")
_COLLECTION = re.compile(
    r"errors? during collection|^ERROR collecting |^_+ ERROR collecting |^ImportError while loading conftest|"
    r"^ImportError while importing test module",
    re.MULTILINE,
)
_PYTEST_NO_TESTS = re.compile(r"^no tests ran\b|collected 0 items", re.MULTILINE)
_FAILING_SUMMARY = re.compile(
    r"\b\d+ (?:failed|failing|failures?)\b|^FAILED |AssertionError|^not ok \d+|^--- FAIL: |"
    r"\.\.\. FAILED$|^\s*✖ |^\s*● ",
    re.MULTILINE,
)

# Failing test names as the common runners print them.
_FAILURE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^(?:FAILED|ERROR) (\S+?)(?: - .*)?$", re.MULTILINE),  # pytest's short summary
    re.compile(r"^\s*not ok \d+ - (.+?)\s*(?:#.*)?$", re.MULTILINE),  # TAP (node --test, tap, ava)
    re.compile(r"^\s*--- FAIL: (\S+)", re.MULTILINE),  # go test
    re.compile(r"^test (\S+) \.\.\. FAILED$", re.MULTILINE),  # cargo test
    re.compile(r"^\s*✖ (.+?)(?: \([\d.]+m?s\))?$", re.MULTILINE),  # node --test spec reporter
    re.compile(r"^\s*● (.+?)$", re.MULTILINE),  # jest
)
# Summary lines that the patterns above would also catch but that name no test.
_NOT_A_TEST = re.compile(r"^(?:failing tests:|tests? \d+|\d+ )", re.IGNORECASE)


def failing_tests(output: str) -> frozenset[str]:
    """The names of the failing tests the output lists (empty when it lists none we recognise)."""
    names: set[str] = set()
    for pattern in _FAILURE_PATTERNS:
        for match in pattern.finditer(output):
            name = match.group(1).strip()
            if name and not _NOT_A_TEST.match(name):
                names.add(name)
    return frozenset(names)


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def likely_cause(
    output: str,
    *,
    exit_code: int | None,
    timed_out: bool = False,
    own_packages: Collection[str] = (),
) -> Cause:
    """Why a gate failed, judged from its output. `own_packages` are the project's own import names
    (a missing one of those means the project is not importable, not a missing dependency)."""
    if timed_out:
        return Cause("timed_out", "it ran past its time limit")
    own = {_top(name) for name in own_packages}
    missing = [m.group(1) for m in _PY_MISSING.finditer(output)]
    own_missing = [name for name in missing if _top(name) in own]
    if own_missing:
        return Cause(
            "project_not_importable",
            f"the project's own package `{own_missing[0]}` does not import "
            "(not installed, and not under src/ or the top folder)",
        )
    node_missing = [m.group(1) for m in _NODE_MISSING.finditer(output)]
    node_deps = [name for name in node_missing if not name.startswith((".", "/"))]
    if missing or node_deps:
        name = (missing or node_deps)[0]
        hint = "pip install it, or add a `setup:` step" if missing else "add a lockfile, or a `setup:` step"
        return Cause("missing_dependency", f"a dependency is not installed: `{name}` ({hint})")
    if _COLLECTION.search(output):
        return Cause("collection_error", "the tests could not be collected (an import or syntax error)")
    names = failing_tests(output)
    if names:
        listed = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return Cause("failing_tests", f"failing test{'s' if len(names) > 1 else ''}: {listed}")
    if _FAILING_SUMMARY.search(output):
        return Cause("failing_tests", "tests failed")
    if exit_code == 5 and _PYTEST_NO_TESTS.search(output):
        return Cause("no_tests", "pytest collected no tests")
    return Cause("unknown", f"it exited with {exit_code}" if exit_code is not None else "it was stopped")


@dataclass(frozen=True)
class GateSide:
    """One side of the comparison: a gate's result on the base or after the change."""

    passed: bool | None
    exit_code: int | None = None
    cause: CauseKind = "unknown"
    failures: frozenset[str] = field(default_factory=frozenset)


def compare_with_base(final: GateSide, base: GateSide | None) -> Comparison:
    """How a failing gate compares with the base. (Call it only for a failure: `final.passed` False.)

    With failing test names on both sides, the new ones decide: none new is `as_on_base`, which does not
    block. Without names, the same cause and exit code is `same_cause`, which still blocks."""
    if base is None:
        return Comparison("no_base")
    if base.passed is not False:
        return Comparison("new", note="it passed before any change")
    if final.failures and base.failures:
        new = tuple(sorted(final.failures - base.failures))
        if not new:
            return Comparison("as_on_base", note="it fails with the same failures as before any change")
        return Comparison("worse", new, note=f"new failures since the base: {', '.join(new[:10])}")
    if final.cause == base.cause and final.exit_code == base.exit_code:
        # Without test names, "the same" could as well be the very check the task is meant to fix
        # (a script that fails until the feature exists): it keeps counting, and says so.
        return Comparison(
            "same_cause",
            note=f"it failed the same way before any change ({final.cause}, exit {final.exit_code}); "
            "with no test names to compare, it still counts",
        )
    return Comparison(
        "worse",
        note=f"it failed before any change too, but differently: {base.cause} then, {final.cause} now",
    )


def describe(passed: bool | None, exit_code: int | None) -> str:
    if passed is None:
        return "skipped"
    return "passed" if passed else ("timed out" if exit_code is None else f"failed (exit {exit_code})")


def join_notes(notes: Iterable[str]) -> str:
    return "; ".join(n for n in notes if n)
