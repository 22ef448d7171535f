"""The SQL the SQLite store builds from a search: full-text match, filters, keyset positions.

Only identifiers that :func:`~mlcycle.common.store.base.check_filters` and
:func:`~mlcycle.common.store.base.check_sort` allowed are inlined; every value
is a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any

_HAS_WORD = re.compile(r"[^\W_]")


def match_expression(text: str) -> str | None:
    """An FTS5 query requiring every whitespace-separated word of ``text``, as plain text.

    Each word becomes a quoted phrase (quotes doubled), so operators, stars,
    parentheses and column filters in user input are just characters. Words with
    no letter or digit produce no token and are dropped; None when nothing is left.
    """
    words = [w for w in text.split() if _HAS_WORD.search(w)]
    if not words:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def filter_sql(filters: dict[str, Any], column_prefix: str) -> tuple[str, list[Any]]:
    """A WHERE clause (``1`` when empty) for equality filters on top-level fields."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, value in filters.items():
        if name == "id":
            clauses.append(f"{column_prefix}id IS ?")
            params.append(value)
            continue
        # check_filters allowed only identifiers, so the path is safe to inline.
        extract = f"json_extract({column_prefix}doc, '$.{name}')"
        if value is None:
            clauses.append(f"{extract} IS NULL")
        else:
            clauses.append(f"{extract} = ?")
            params.append(value)
    return (" AND ".join(clauses) or "1"), params


def after_sort_position(value: str, last: Any, descending: bool, after_id: str) -> str:
    """The rows after ``(last, id)`` in a field order where null is the smallest value."""
    if last is None:
        # Ascending, nulls come first: the rest of the nulls, then every non-null.
        # Descending, nulls come last: only the rest of the nulls.
        rest_of_nulls = f"({value} IS NULL AND c.id {after_id} ?)"
        return rest_of_nulls if descending else f"({rest_of_nulls} OR {value} IS NOT NULL)"
    beyond = "<" if descending else ">"
    past = f"{value} {beyond} ? OR ({value} = ? AND c.id {after_id} ?)"
    return f"({past} OR {value} IS NULL)" if descending else f"({past})"


def after_params(position: list[Any]) -> list[Any]:
    last, last_id = position
    return [last_id] if last is None else [last, last, last_id]
