"""Choosing GSM-7 or UCS-2 for a text, with optional substitution that keeps it in GSM-7."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Literal

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.errors import EncodingError, UnencodableCharactersError


class Encoding(StrEnum):
    """Alphabet of the user data (TS 23.038 §4: the DCS character set bits)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"
    BINARY = "binary"


RequestedEncoding = Literal["auto", "gsm7", "ucs2"]


def _table() -> dict[str, str]:
    table: dict[str, str] = {}
    groups = {
        "'": "\u2018\u2019\u201a\u201b\u2032\u00b4\u02bc\u2039\u203a`",
        '"': "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb",
        "-": "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\u2022",
        # NBSP, the typographic spaces, narrow NBSP, ideographic space and TAB
        " ": "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
        "\u202f\u205f\u3000\t",
        # zero-width characters, BOM and soft hyphen disappear
        "": "\u200b\u200c\u200d\u2060\ufeff\u00ad",
        "\n": "\u2028\u2029",
    }
    for replacement, chars in groups.items():
        table.update(dict.fromkeys(chars, replacement))
    table.update(
        {
            "\u2026": "...",
            "\u2116": "No",
            "\u00b7": ".",
            "\u00d7": "x",
            "\u00f7": "/",
            "\u2122": "TM",
            "\u00a9": "(c)",
            "\u00ae": "(R)",
            "\u00e7": "\u00c7",  # ç: TS 23.038 0x09 is Ç; phones show it for ç as well
        }
    )
    # Greek capitals that look like Latin ones (the others are in the GSM alphabet itself).
    table.update(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True))
    return table


SUBSTITUTIONS: dict[str, str] = _table()


@lru_cache(maxsize=4096)
def _substitute_char(char: str) -> str:
    if char in gsm7.GSM7_CHARS:
        return char
    if char in SUBSTITUTIONS:
        return SUBSTITUTIONS[char]
    # Letters with diacritics outside GSM-7 (á, ł is not decomposable, ő, ā...) lose the mark.
    decomposed = unicodedata.normalize("NFKD", char)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if base and gsm7.is_gsm7(base):
        return base
    return char


def substitute_gsm7(text: str) -> str:
    """Replace characters outside GSM-7 with GSM-7 look-alikes where one exists."""
    if gsm7.is_gsm7(text):
        return text
    return "".join(_substitute_char(c) for c in text)


def check_text(text: str) -> str:
    """Validate user text: join surrogate pairs, reject unpaired surrogates and NUL."""
    if "\x00" in text:
        raise EncodingError(f"NUL character (U+0000) at character {text.index(chr(0))}")
    return ucs2.join_surrogates(text)


@dataclass(frozen=True, slots=True)
class EncodingChoice:
    """The text to send (after substitution, if any), its alphabet, and why UCS-2 was chosen."""

    text: str
    encoding: Encoding
    ucs2_chars: tuple[str, ...] = ()


def choose_encoding(
    text: str, encoding: RequestedEncoding = "auto", substitute: bool = False
) -> EncodingChoice:
    """Pick GSM-7 when every character fits, else UCS-2; or check a forced encoding."""
    if encoding not in ("auto", "gsm7", "ucs2"):
        raise EncodingError(f"unknown encoding {encoding!r}; expected auto, gsm7 or ucs2")
    text = check_text(text)
    if encoding == "ucs2":
        return EncodingChoice(text, Encoding.UCS2)
    if gsm7.is_gsm7(text):
        return EncodingChoice(text, Encoding.GSM7)
    candidate = substitute_gsm7(text) if substitute else text
    missing = gsm7.unencodable_chars(candidate)
    if not missing:
        return EncodingChoice(candidate, Encoding.GSM7)
    if encoding == "gsm7":
        raise UnencodableCharactersError("gsm7", missing)
    # Substitution could not save GSM-7: send the original text, quotes and all, in UCS-2.
    return EncodingChoice(text, Encoding.UCS2, missing)
