"""Comparing phone numbers written differently by different sources."""

from __future__ import annotations

# National significant numbers are at least this long in practice; comparing the last digits
# makes `+79210001234`, `79210001234` and `89210001234` (a national prefix) equal.
SIGNIFICANT_DIGITS = 10


def digits(number: str | None) -> str:
    """Only the digits of a number."""
    return "".join(ch for ch in number or "" if ch.isdigit())


def same_number(a: str | None, b: str | None) -> bool:
    """Whether two numbers are the same subscriber; unknown (None/empty) matches anything."""
    da, db = digits(a), digits(b)
    if not da or not db:
        return True
    if da == db:
        return True
    n = min(len(da), len(db), SIGNIFICANT_DIGITS)
    return n >= 7 and da[-n:] == db[-n:]
