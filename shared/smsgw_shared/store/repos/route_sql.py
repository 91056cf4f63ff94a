"""Route patterns as SQL: `modem:m1` (equal) or `modem:*` (every modem), the form stream,
webhook and route-limited key filters use (`smsgw_shared.routing.route_matches` in Python)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, false, or_


def route_condition(column: Any, pattern: str) -> ColumnElement[bool]:
    """`column` matches one route pattern."""
    if pattern.endswith(":*"):
        return column.startswith(pattern[:-1], autoescape=True)  # type: ignore[no-any-return]
    return column == pattern  # type: ignore[no-any-return]


def routes_condition(column: Any, patterns: Iterable[str]) -> ColumnElement[bool]:
    """`column` matches any of the patterns (none: nothing matches)."""
    conds = [route_condition(column, p) for p in patterns]
    return or_(*conds) if conds else false()
