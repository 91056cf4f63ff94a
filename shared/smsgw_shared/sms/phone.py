"""Phone numbers to E.164 (phonenumbers' rules, see `numparse`), and sender validation."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from smsgw_shared.sms import gsm7
from smsgw_shared.sms.errors import InvalidNumberError, InvalidSenderError
from smsgw_shared.sms.numparse import e164
from smsgw_shared.sms.pdu_fields import (
    NPI_ISDN,
    NPI_UNKNOWN,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    TON_UNKNOWN,
)

_SEPARATORS = frozenset(" -().\u00a0")
_MAX_E164_DIGITS = 15  # ITU-T E.164 §6.1
_MAX_ALPHANUMERIC = 11  # TS 23.040 §9.1.2.5: 11 septets in 10 octets


# ASCII digits and separators, a '+' first at most: what `_reject_characters` lets through.
_WELL_FORMED = re.compile(r"\+?[0-9 \-().\u00a0]+")
_NOT_DIGITS = str.maketrans(dict.fromkeys("+" + "".join(_SEPARATORS)))


def _reject_characters(raw: str, text: str) -> None:
    """Say what is wrong with a number that is not digits and separators."""
    if any(c.isalpha() for c in text):
        raise InvalidNumberError(raw, "contains letters")
    for i, char in enumerate(text):
        allowed = (char.isascii() and char.isdigit()) or char in _SEPARATORS
        if not allowed and not (char == "+" and i == 0):
            raise InvalidNumberError(raw, f"unexpected character {char!r}")


_MAX_RAW_LENGTH = 64  # '+7 (916) 000-12-34' is 18 characters: 64 is no number a person types


def normalize_number(raw: str, default_region: str | None = "RU") -> str:
    """E.164 from '8 (920) 304-86-06', '+7…', '7…' or '00…' forms; else InvalidNumberError.

    Numbers are parsed and validated as phonenumbers does it, by `numparse`; the same
    numbers come back all the time (campaign lists, retries, OTPs), so
    the answer for each cleaned number (at most 17 characters) is remembered (about 10 MB
    when full). The cache is keyed on the cleaned form, never on the raw text: a number
    padded with a megabyte of spaces would otherwise be kept as a megabyte-long key."""
    if len(raw) > _MAX_RAW_LENGTH:
        shown = raw[:20] + "…"
        raise InvalidNumberError(shown, f"too long ({len(raw)} characters, at most 64)")
    text = raw.strip()
    if not text:
        raise InvalidNumberError(raw, "empty")
    if _WELL_FORMED.fullmatch(text) is None:
        _reject_characters(raw, text)
    digits = text.translate(_NOT_DIGITS)
    if text.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]  # the ITU international prefix (the RU one is 810)
    else:
        candidate = digits
    if len(candidate.lstrip("+")) > _MAX_E164_DIGITS + (0 if candidate.startswith("+") else 1):
        raise InvalidNumberError(raw, f"too long (E.164 allows {_MAX_E164_DIGITS} digits)")
    if len(digits) < 3:
        raise InvalidNumberError(raw, "too short")
    if not candidate.startswith("+") and default_region is None:
        raise InvalidNumberError(raw, "no country code and no default region")
    number = _e164(candidate, default_region)
    if number is None:
        where = f" for region {default_region}" if not candidate.startswith("+") else ""
        raise InvalidNumberError(raw, f"not a valid phone number{where}")
    return number


@functools.lru_cache(maxsize=50_000)
def _e164(candidate: str, default_region: str | None) -> str | None:
    """The E.164 form of a cleaned number ('+' and digits, or digits of the region)."""
    if candidate.startswith("+"):
        return e164(candidate, None)
    # '8920…' and '7920…' both parse in RU; a '+7 70x' number comes out as KZ, not forced RU.
    number = e164(candidate, default_region)
    if number is None and len(candidate) > 10:
        number = e164("+" + candidate, None)  # an international number missing its '+'
    return number


SenderKind = Literal["alphanumeric", "international", "short_code", "numeric"]


@dataclass(frozen=True, slots=True)
class Sender:
    """A validated originator with the TON/NPI to send it with (SMPP source_addr_ton/npi)."""

    value: str
    kind: SenderKind
    ton: int
    npi: int


def validate_sender(raw: str, default_region: str | None = "RU") -> Sender:
    """Alphanumeric (1..11 GSM-7 basic chars), E.164, short code (3..8 digits) or numeric."""
    if not raw or not raw.strip():
        raise InvalidSenderError(raw, "empty")
    if raw != raw.strip():
        raise InvalidSenderError(raw, "leading or trailing spaces")
    if raw.startswith("+"):
        try:
            number = normalize_number(raw, None)
        except InvalidNumberError as exc:
            raise InvalidSenderError(raw, exc.reason) from exc
        return Sender(number, "international", TON_INTERNATIONAL, NPI_ISDN)
    if raw.isascii() and raw.isdigit():
        if len(raw) < 3:
            raise InvalidSenderError(raw, "numeric sender shorter than 3 digits")
        if len(raw) <= 8:
            return Sender(raw, "short_code", TON_UNKNOWN, NPI_ISDN)
        if len(raw) > _MAX_E164_DIGITS:
            raise InvalidSenderError(raw, f"numeric sender over {_MAX_E164_DIGITS} digits")
        try:
            number = normalize_number(raw, default_region)
        except InvalidNumberError:
            return Sender(raw, "numeric", TON_UNKNOWN, NPI_ISDN)
        return Sender(number, "international", TON_INTERNATIONAL, NPI_ISDN)
    if len(raw) > _MAX_ALPHANUMERIC:
        raise InvalidSenderError(raw, f"alphanumeric sender over {_MAX_ALPHANUMERIC} characters")
    bad = [c for c in raw if c not in gsm7.BASIC_CHARS or c in "\r\n"]
    if bad:
        shown = ", ".join(repr(c) for c in dict.fromkeys(bad))
        raise InvalidSenderError(raw, f"characters outside the GSM-7 basic alphabet: {shown}")
    return Sender(raw, "alphanumeric", TON_ALPHANUMERIC, NPI_UNKNOWN)


def is_alphanumeric_sender(raw: str) -> bool:
    """True when `raw` is a valid alphanumeric sender (sent with TON 5)."""
    try:
        return validate_sender(raw).kind == "alphanumeric"
    except InvalidSenderError:
        return False
