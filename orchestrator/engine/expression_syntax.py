"""The `when:` language's syntax: tokens, the tree, and a hand-written recursive-descent parser.

Nothing here evaluates or type-checks (orchestrator/engine/expressions.py does); nothing here ever hands
user text to `eval` or `ast`. Limits on length, nesting and list size keep hostile input cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import ConfigError

MAX_EXPRESSION_LENGTH = 500
MAX_DEPTH = 24  # nested parentheses, `not` and unary minus
MAX_LIST_ITEMS = 32

ValueType = Literal["number", "string", "bool", "list[string]", "list[number]", "null"]
Value = float | int | str | bool | tuple[str, ...] | tuple[float | int, ...] | None

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
SYMBOLS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",", ".")


class ExpressionError(ValueError):
    """A `when:` that does not parse or type-check: the 1-based column, the problem, what is allowed."""

    def __init__(self, problem: str, column: int, *, allowed: str | None = None) -> None:
        self.problem = problem
        self.column = column
        self.allowed = allowed
        self.message = f"column {column}: {problem}"
        super().__init__(f"{self.message} (allowed: {allowed})" if allowed else self.message)

    def to_config_error(self, *, file: str | None, key_path: str) -> ConfigError:
        return ConfigError(self.message, file=file, key_path=key_path, allowed=self.allowed)


# --- tokens -----------------------------------------------------------------------------------------

TokenKind = Literal["number", "string", "name", "keyword", "symbol", "end"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # a string token's text is its decoded value
    column: int  # 1-based


def tokenize(source: str) -> list[Token]:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"the expression is {len(source)} characters long",
            MAX_EXPRESSION_LENGTH + 1,
            allowed=f"at most {MAX_EXPRESSION_LENGTH} characters",
        )
    tokens: list[Token] = []
    index = 0
    while index < len(source):
        char = source[index]
        column = index + 1
        if char in " \t":
            index += 1
        elif char.isascii() and char.isdigit():
            end = index
            while end < len(source) and source[end].isascii() and source[end].isdigit():
                end += 1
            if end + 1 < len(source) and source[end] == "." and source[end + 1].isdigit():
                end += 1
                while end < len(source) and source[end].isascii() and source[end].isdigit():
                    end += 1
            tokens.append(Token("number", source[index:end], column))
            index = end
        elif char in "'\"":
            text, index = _read_string(source, index)
            tokens.append(Token("string", text, column))
        elif char.isascii() and (char.isalpha() or char == "_"):
            end = index
            while (
                end < len(source) and source[end].isascii() and (source[end].isalnum() or source[end] == "_")
            ):
                end += 1
            word = source[index:end]
            tokens.append(Token("keyword" if word in KEYWORDS else "name", word, column))
            index = end
        else:
            symbol = next((s for s in SYMBOLS if source.startswith(s, index)), None)
            if symbol is None:
                hint = "use '==' to compare" if char == "=" else None
                raise ExpressionError(
                    f"unexpected character {char!r}" + (f": {hint}" if hint else ""),
                    column,
                    allowed="names, numbers, 'strings', and/or/not/in, == != < <= > >=, + - * /, ( ) [ ]",
                )
            tokens.append(Token("symbol", symbol, column))
            index += len(symbol)
    tokens.append(Token("end", "", len(source) + 1))
    return tokens


def _read_string(source: str, start: int) -> tuple[str, int]:
    quote = source[start]
    out: list[str] = []
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source) and source[index + 1] in (quote, "\\"):
            out.append(source[index + 1])
            index += 2
        elif char == quote:
            return "".join(out), index + 1
        else:
            out.append(char)
            index += 1
    raise ExpressionError("this string is never closed", start + 1, allowed=f"a closing {quote}")


# --- the tree ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: Value
    type: ValueType
    column: int


@dataclass(frozen=True)
class Name:
    path: str
    column: int


@dataclass(frozen=True)
class Unary:
    op: Literal["not", "-"]
    operand: Node
    column: int


@dataclass(frozen=True)
class Binary:
    op: str  # and or == != < <= > >= in "not in" + - * /
    left: Node
    right: Node
    column: int  # the operator's


Node = Const | Name | Unary | Binary


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: TokenKind, *texts: str) -> bool:
        return self.token.kind == kind and (not texts or self.token.text in texts)

    def parse(self) -> Node:
        if self.at("end"):
            raise ExpressionError(
                "the expression is empty", 1, allowed="e.g. review.verdict == 'request_changes'"
            )
        node = self.or_()
        if not self.at("end"):
            raise ExpressionError(
                f"unexpected {_describe(self.token)} after a complete expression",
                self.token.column,
                allowed="'and', 'or', or the end of the expression",
            )
        return node

    def nest(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                "the expression is nested too deeply", column, allowed=f"at most {MAX_DEPTH} levels"
            )

    def or_(self) -> Node:
        node = self.and_()
        while self.at("keyword", "or"):
            op = self.take()
            node = Binary("or", node, self.and_(), op.column)
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("keyword", "and"):
            op = self.take()
            node = Binary("and", node, self.not_(), op.column)
        return node

    def not_(self) -> Node:
        if self.at("keyword", "not"):
            op = self.take()
            self.nest(op.column)
            node = Unary("not", self.not_(), op.column)
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        left = self.sum_()
        op = self.comparison_operator()
        if op is None:
            return left
        node = Binary(op[0], left, self.sum_(), op[1])
        if self.comparison_operator(peek=True) is not None:
            raise ExpressionError(
                "comparisons do not chain", self.token.column, allowed="join two comparisons with 'and'"
            )
        return node

    def comparison_operator(self, *, peek: bool = False) -> tuple[str, int] | None:
        token = self.token
        if token.kind == "symbol" and token.text in COMPARISONS:
            found = (token.text, token.column)
            width = 1
        elif token.kind == "keyword" and token.text == "in":
            found, width = ("in", token.column), 1
        elif token.kind == "keyword" and token.text == "not" and self.tokens[self.index + 1].text == "in":
            found, width = ("not in", token.column), 2
        else:
            return None
        if not peek:
            self.index += width
        return found

    def sum_(self) -> Node:
        node = self.product()
        while self.at("symbol", "+", "-"):
            op = self.take()
            node = Binary(op.text, node, self.product(), op.column)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at("symbol", "*", "/"):
            op = self.take()
            node = Binary(op.text, node, self.unary(), op.column)
        return node

    def unary(self) -> Node:
        if self.at("symbol", "-"):
            op = self.take()
            self.nest(op.column)
            node = Unary("-", self.unary(), op.column)
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        token = self.token
        if token.kind == "symbol" and token.text == "(":
            self.take()
            self.nest(token.column)
            node = self.or_()
            self.depth -= 1
            self.expect(")", opened_at=token.column)
            return node
        if token.kind == "symbol" and token.text == "[":
            return self.list_()
        if token.kind == "name":
            return self.name()
        literal = self.literal()
        if literal is not None:
            return literal
        raise ExpressionError(
            f"expected a value, found {_describe(token)}",
            token.column,
            allowed="a name, a number, a 'string', true, false, null, ( or [",
        )

    def literal(self) -> Const | None:
        token = self.token
        if token.kind == "number":
            self.take()
            return Const(float(token.text) if "." in token.text else int(token.text), "number", token.column)
        if token.kind == "string":
            self.take()
            return Const(token.text, "string", token.column)
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.take()
            return Const(token.text == "true", "bool", token.column)
        if token.kind == "keyword" and token.text == "null":
            self.take()
            return Const(None, "null", token.column)
        return None

    def name(self) -> Name:
        first = self.take()
        parts = [first.text]
        while self.at("symbol", "."):
            self.take()
            if not self.at("name"):
                raise ExpressionError(
                    f"expected a name after '.', found {_describe(self.token)}",
                    self.token.column,
                    allowed="e.g. review.verdict",
                )
            parts.append(self.take().text)
        return Name(".".join(parts), first.column)

    def list_(self) -> Const:
        opening = self.take()
        items: list[Const] = []
        while not self.at("symbol", "]"):
            if items:
                self.expect(",", opened_at=opening.column, closing="]")
            item = self.literal()
            if item is None or item.type not in ("string", "number"):
                raise ExpressionError(
                    f"expected a string or a number in the list, found {_describe(self.token)}",
                    self.token.column if item is None else item.column,
                    allowed="a list of 'strings' or of numbers, e.g. ['tests', 'lint']",
                )
            if items and item.type != items[0].type:
                raise ExpressionError(
                    f"this list mixes {items[0].type}s and {item.type}s",
                    item.column,
                    allowed="items of one type",
                )
            items.append(item)
            if len(items) > MAX_LIST_ITEMS:
                raise ExpressionError(
                    "the list is too long", item.column, allowed=f"at most {MAX_LIST_ITEMS} items"
                )
        self.take()
        if not items:
            return Const((), "list[string]", opening.column)
        element = items[0].type
        values = tuple(i.value for i in items)
        return Const(values, "list[string]" if element == "string" else "list[number]", opening.column)  # type: ignore[arg-type]

    def expect(self, symbol: str, *, opened_at: int, closing: str | None = None) -> None:
        if self.at("symbol", symbol):
            self.take()
            return
        wanted = f"'{symbol}'" + (f" or '{closing}'" if closing else "")
        raise ExpressionError(
            f"expected {wanted}, found {_describe(self.token)}",
            self.token.column,
            allowed=f"{wanted} to close what column {opened_at} opened",
        )


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "string":
        return f"the string {token.text!r}"
    return f"{token.kind} {token.text!r}"


def parse_tree(source: str) -> Node:
    """The tree of `source`, or ExpressionError with the column, the problem and what is allowed."""
    return _Parser(tokenize(source)).parse()
