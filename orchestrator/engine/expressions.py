"""The `when:` language: a small expression over the run's state, parsed and type-checked at load time.

    review.verdict == 'request_changes' and gates.failed > 0
    budget.used_usd < 0.8 * budget.limit_usd
    'tests' in gates.failed_names

User text is tokenized and parsed by hand (recursive descent) into a tree of frozen nodes; nothing is
ever handed to `eval` or `ast`. `parse_expression` checks every name against a schema (WHEN_SCHEMA by
default) and every operator against its operands' types, so a typo or `review.verdict > 2` is a load
error with its column and what is allowed, not a surprise in iteration 3.

Grammar (lowest precedence first; comparisons do not chain):
    expr    := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not' 'in') sum)?
    sum     := product (('+'|'-') product)*
    product := unary (('*'|'/') unary)*
    unary   := '-' unary | atom
    atom    := number | 'string' | "string" | true | false | null | name('.'name)* | '(' expr ')'
             | '[' (literal (',' literal)*)? ']'

Null rules (a name is null when the run has no value for it yet, e.g. `review.verdict` before any
review, or `budget.limit_usd` without a budget):
- `a == b` is true when both are null and false when only one is; `!=` is its negation.
- `<`, `<=`, `>`, `>=` with a null operand are false (so `not (a < b)` is not `a >= b` then).
- `x in xs` with either side null is false; `not in` is its negation.
- arithmetic with a null operand is null; so is division by zero.
- in `and`, `or`, `not` and as the final result, null counts as false.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic_core import PydanticCustomError

from orchestrator.engine.expression_syntax import (
    COMPARISONS,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    Binary,
    Const,
    ExpressionError,
    Name,
    Node,
    Unary,
    Value,
    ValueType,
    parse_tree,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "WHEN_SCHEMA",
    "Expression",
    "ExpressionError",
    "NameSpec",
    "Schema",
    "Value",
    "WhenState",
    "parse_expression",
    "validate_when",
]


@dataclass(frozen=True)
class NameSpec:
    """One name the language knows: its type, whether it can be null, and (strings) its values."""

    type: ValueType
    doc: str
    nullable: bool = False
    choices: tuple[str, ...] = ()


Schema = Mapping[str, NameSpec]

# The run's state as `when:` sees it. The engine fills these names (see WhenState); a new name is one
# entry here and one field there.
WHEN_SCHEMA: dict[str, NameSpec] = {
    "iteration": NameSpec("number", "the current iteration, from 1"),
    "max_iterations": NameSpec("number", "the workflow's max_iterations"),
    "review.verdict": NameSpec(
        "string", "the last review's verdict", nullable=True, choices=("approve", "request_changes")
    ),
    "review.approved": NameSpec("bool", "whether the last review approved", nullable=True),
    "review.findings": NameSpec("number", "findings in the last review", nullable=True),
    "review.high": NameSpec("number", "high-severity findings in the last review", nullable=True),
    "review.medium": NameSpec("number", "medium-severity findings in the last review", nullable=True),
    "review.low": NameSpec("number", "low-severity findings in the last review", nullable=True),
    "gates.passed": NameSpec("bool", "whether every gate of this iteration passed", nullable=True),
    "gates.failed": NameSpec("number", "gates that failed in this iteration"),
    "gates.run": NameSpec("number", "gates run in this iteration"),
    "gates.failed_names": NameSpec("list[string]", "names of the gates that failed"),
    "gates.passed_names": NameSpec("list[string]", "names of the gates that passed"),
    "budget.used_usd": NameSpec("number", "dollars this run has spent so far"),
    "budget.limit_usd": NameSpec("number", "the run's budget in dollars", nullable=True),
    "plan.size": NameSpec("number", "subtasks in the plan", nullable=True),
    "attempts.total": NameSpec("number", "attempts of the last best-of-N step", nullable=True),
    "attempts.passed": NameSpec("number", "attempts whose gates all passed", nullable=True),
}


@dataclass(frozen=True)
class WhenState:
    """The run's state in the shape WHEN_SCHEMA declares; None where there is no value yet."""

    iteration: int
    max_iterations: int
    review_verdict: str | None = None
    review_high: int | None = None
    review_medium: int | None = None
    review_low: int | None = None
    gates_failed_names: tuple[str, ...] = ()
    gates_passed_names: tuple[str, ...] = ()
    budget_used_usd: float = 0.0
    budget_limit_usd: float | None = None
    plan_size: int | None = None
    attempts_total: int | None = None
    attempts_passed: int | None = None

    def values(self) -> dict[str, Value]:
        counts = (self.review_high, self.review_medium, self.review_low)
        findings = None if any(c is None for c in counts) else sum(c or 0 for c in counts)
        gates_run = len(self.gates_failed_names) + len(self.gates_passed_names)
        return {
            "iteration": self.iteration,
            "max_iterations": self.max_iterations,
            "review.verdict": self.review_verdict,
            "review.approved": None if self.review_verdict is None else self.review_verdict == "approve",
            "review.findings": findings,
            "review.high": self.review_high,
            "review.medium": self.review_medium,
            "review.low": self.review_low,
            "gates.passed": None if gates_run == 0 else not self.gates_failed_names,
            "gates.failed": len(self.gates_failed_names),
            "gates.run": gates_run,
            "gates.failed_names": self.gates_failed_names,
            "gates.passed_names": self.gates_passed_names,
            "budget.used_usd": self.budget_used_usd,
            "budget.limit_usd": self.budget_limit_usd,
            "plan.size": self.plan_size,
            "attempts.total": self.attempts_total,
            "attempts.passed": self.attempts_passed,
        }


# --- types ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Typed:
    type: ValueType
    nullable: bool
    choices: tuple[str, ...] = ()
    label: str = ""  # how an error names this operand


def _check(node: Node, schema: Schema) -> _Typed:
    if isinstance(node, Const):
        label = "null" if node.value is None else repr(node.value)
        return _Typed(node.type, node.value is None, label=label)
    if isinstance(node, Name):
        spec = schema.get(node.path)
        if spec is None:
            raise _unknown_name(node, schema)
        return _Typed(spec.type, spec.nullable, spec.choices, label=node.path)
    if isinstance(node, Unary):
        operand = _check(node.operand, schema)
        wanted: ValueType = "bool" if node.op == "not" else "number"
        _require(operand, wanted, node.column, f"'{node.op}'")
        return _Typed(wanted, operand.nullable and node.op == "-", label=f"{node.op} {operand.label}")
    left, right = _check(node.left, schema), _check(node.right, schema)
    op, column = node.op, node.column
    if op in ("and", "or"):
        _require(left, "bool", column, f"'{op}'")
        _require(right, "bool", column, f"'{op}'")
        return _Typed("bool", False, label=op)
    if op in ("+", "-", "*", "/"):
        _require(left, "number", column, f"'{op}'")
        _require(right, "number", column, f"'{op}'")
        return _Typed("number", left.nullable or right.nullable or op == "/", label=op)
    if op in ("==", "!="):
        listed = next((t for t in (left, right) if t.type.startswith("list")), None)
        if listed is not None:
            raise ExpressionError(
                f"cannot compare {_a(listed)} with '{op}'",
                column,
                allowed="'in' and 'not in' to ask about a list's items, e.g. 'tests' in gates.failed_names",
            )
        if "null" not in (left.type, right.type) and left.type != right.type:
            raise ExpressionError(
                f"cannot compare {_a(left)} with {_a(right)}",
                column,
                allowed="== and != between two values of one type, or with null",
            )
        _check_choice(node, left, right)
        other = right if left.type == "null" else left
        if "null" in (left.type, right.type) and other.type != "null" and not other.nullable:
            raise ExpressionError(
                f"{other.label} is never null, so this is always {'false' if op == '==' else 'true'}",
                column,
                allowed="null comparisons with names that can be null: "
                + ", ".join(n for n, s in schema.items() if s.nullable),
            )
        return _Typed("bool", False, label=op)
    if op in ("<", "<=", ">", ">="):
        if left.type != "number" or right.type != "number":
            raise ExpressionError(
                f"cannot order {_a(left)} and {_a(right)} with '{op}'",
                column,
                allowed="<, <=, >, >= between numbers; == and != for other types",
            )
        return _Typed("bool", False, label=op)
    # in, not in
    ok = (
        (left.type == "string" and right.type in ("string", "list[string]"))
        or (left.type == "number" and right.type == "list[number]")
        or "null" in (left.type, right.type)
    )
    if not ok:
        raise ExpressionError(
            f"cannot look for {_a(left)} in {_a(right)}",
            column,
            allowed="a string in a list of strings or in a string; a number in a list of numbers",
        )
    if left.choices and isinstance(node.right, Const) and isinstance(node.right.value, tuple):
        impossible = [v for v in node.right.value if v not in left.choices]
        if impossible:
            raise ExpressionError(
                f"{left.label} is never {impossible[0]!r}",
                node.right.column,
                allowed=", ".join(repr(c) for c in left.choices),
            )
    return _Typed("bool", False, label=op)


def _check_choice(node: Binary, left: _Typed, right: _Typed) -> None:
    """`review.verdict == 'aprove'` can never be true: say so at load time."""
    for named, const in ((left, node.right), (right, node.left)):
        if named.choices and isinstance(const, Const) and isinstance(const.value, str):
            if const.value not in named.choices:
                raise ExpressionError(
                    f"{named.label} is never {const.value!r}",
                    const.column,
                    allowed=", ".join(repr(c) for c in named.choices),
                )


def _require(operand: _Typed, wanted: ValueType, column: int, what: str) -> None:
    if operand.type != wanted and operand.type != "null":
        raise ExpressionError(
            f"{what} needs {_article(wanted)}, not {_a(operand)}",
            column,
            allowed=f"{what} with {wanted} operands",
        )


def _a(operand: _Typed) -> str:
    return f"{_article(operand.type)} ({operand.label})" if operand.label else _article(operand.type)


def _article(value_type: ValueType) -> str:
    return {
        "number": "a number",
        "string": "a string",
        "bool": "a true/false value",
        "list[string]": "a list of strings",
        "list[number]": "a list of numbers",
        "null": "null",
    }[value_type]


def _unknown_name(node: Name, schema: Schema) -> ExpressionError:
    close = difflib.get_close_matches(node.path, list(schema), n=1, cutoff=0.75)
    problem = f"unknown name {node.path!r}" + (f": did you mean {close[0]!r}?" if close else "")
    return ExpressionError(problem, node.column, allowed=", ".join(schema))


# --- the compiled expression ------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed, type-checked `when:`. `evaluate` takes the values of the schema's names."""

    source: str
    tree: Node
    names: frozenset[str] = field(default_factory=frozenset)

    def evaluate(self, values: Mapping[str, Value]) -> bool:
        """True or False by the module's null rules. A name missing from `values` is null."""
        return _evaluate(self.tree, values) is True


def parse_expression(source: str, schema: Schema = WHEN_SCHEMA) -> Expression:
    """Parse and type-check `source`; ExpressionError (column, problem, allowed) when it is not valid."""
    tree = parse_tree(source)
    typed = _check(tree, schema)
    if typed.type not in ("bool", "null"):
        raise ExpressionError(
            f"the expression gives {_a(typed)}, not true or false",
            1,
            allowed="a comparison, e.g. plan.size > 2, or a true/false name, e.g. gates.passed",
        )
    return Expression(source=source, tree=tree, names=frozenset(_names(tree)))


def validate_when(source: str) -> str:
    """For a pydantic field (AfterValidator): the workflow loader then reports a bad `when:` like
    any other key, `file: steps[3].when: column 16: ... (allowed: ...)`, exit 2."""
    try:
        parse_expression(source)
    except ExpressionError as exc:
        raise PydanticCustomError(
            "when_expression", "{problem}", {"problem": exc.message, "allowed": exc.allowed or ""}
        ) from None
    return source


def _names(node: Node) -> set[str]:
    if isinstance(node, Name):
        return {node.path}
    if isinstance(node, Unary):
        return _names(node.operand)
    if isinstance(node, Binary):
        return _names(node.left) | _names(node.right)
    return set()


def _evaluate(node: Node, values: Mapping[str, Value]) -> Value:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Name):
        value = values.get(node.path)
        return tuple(value) if isinstance(value, list) else value
    if isinstance(node, Unary):
        operand = _evaluate(node.operand, values)
        if node.op == "not":
            return operand is not True
        return -operand if _is_number(operand) else None  # type: ignore[operator]
    op = node.op
    if op == "and":  # short-circuit: the right side is not evaluated when the left decides
        return _evaluate(node.left, values) is True and _evaluate(node.right, values) is True
    if op == "or":
        return _evaluate(node.left, values) is True or _evaluate(node.right, values) is True
    left, right = _evaluate(node.left, values), _evaluate(node.right, values)
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("in", "not in"):
        found = left is not None and right is not None and left in right  # type: ignore[operator]
        return found if op == "in" else not found
    if not (_is_number(left) and _is_number(right)):
        return False if op in COMPARISONS else None
    a, b = float(left), float(right)  # type: ignore[arg-type]
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "+":
        return left + right  # type: ignore[operator]
    if op == "-":
        return left - right  # type: ignore[operator]
    if op == "*":
        return left * right  # type: ignore[operator]
    return None if b == 0 else a / b


def _is_number(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Value, right: Value) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) != isinstance(right, bool):
        return False  # True == 1 in Python; not here
    return left == right
