"""SQL written for sqlite3 (`?` placeholders) made fit for psycopg (`%s`), without psycopg: the budget
ledger (limits/cluster_ledger.py) needs this on every run, and importing psycopg costs a run's start
70 ms or more where the store is not PostgreSQL at all."""

from __future__ import annotations

import re

_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


def to_pyformat(statement: str) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal `%` doubled), leaving string literals alone."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        return {"?": "%s", "%": "%%"}.get(token, token)

    return _TOKENS.sub(swap, statement)
