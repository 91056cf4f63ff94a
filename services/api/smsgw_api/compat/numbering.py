"""Operator, MNC and region of a number from the numbering plan — not a live HLR lookup.

Russian mobile numbers are looked up by their DEF code (the three digits after +7) in the
original allocation of the big four; a number ported to another operator still shows its
original one. Regions come only where a DEF code is (nearly) all Moscow, as code "77";
elsewhere a DEF code spans many regions, so the region is left empty rather than guessed.
Other countries use libphonenumber's carrier data (operator only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import carrier

# Operator name (SMStele spelling: "m" + name) and MNC (MCC 250).
_MTS = ("mMTS", "01")
_MEGAFON = ("mMEGAFON", "02")
_BEELINE = ("mBEELINE", "99")
_TELE2 = ("mTELE2", "20")

_ALLOCATION = (
    (_MTS, "910-919 980-989"),
    (_MEGAFON, "920-929 930-934 936-938"),
    (_BEELINE, "903 905 906 909 960-969"),
    (_TELE2, "900-902 904 908 950-953 958 977 991-996"),
)


def _codes(spec: str) -> list[str]:
    out: list[str] = []
    for item in spec.split():
        lo, _, hi = item.partition("-")
        out += [str(c) for c in range(int(lo), int(hi or lo) + 1)]
    return out


_DEF: dict[str, tuple[str, str]] = {c: op for op, spec in _ALLOCATION for c in _codes(spec)}

_MOSCOW = frozenset({"915", "916", "917", "985", "925", "926", "977"})


@dataclass(frozen=True)
class NumberInfo:
    """What the numbering plan says about a number ("" when it says nothing)."""

    valid: bool
    operator: str = ""
    region: str = ""
    mnc: str = ""


@functools.lru_cache(maxsize=10_000)
def lookup(e164: str) -> NumberInfo:
    """Numbering-plan facts for an E.164 number (`+79160001234`), remembered: callers pass
    normalised numbers only (16 characters at most), and `phonenumbers.parse` is slow."""
    try:
        number = phonenumbers.parse(e164 if e164.startswith("+") else "+" + e164, None)
    except phonenumbers.NumberParseException:
        return NumberInfo(False)
    if not phonenumbers.is_valid_number(number):
        return NumberInfo(False)
    national = str(number.national_number)
    if number.country_code == 7 and len(national) == 10 and national.startswith("9"):
        code = national[:3]
        operator, mnc = _DEF.get(code, ("", ""))
        return NumberInfo(True, operator, "77" if code in _MOSCOW and operator else "", mnc)
    name = carrier.name_for_number(number, "en")
    return NumberInfo(True, "m" + name.upper().replace(" ", "") if name else "")
