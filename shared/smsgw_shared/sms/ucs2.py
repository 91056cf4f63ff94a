"""UCS-2 as sent today: UTF-16BE with surrogate pairs for characters beyond the BMP."""

from __future__ import annotations

import re

from smsgw_shared.sms.errors import EncodingError

_SURROGATE = re.compile("[\ud800-\udfff]")


def char_units(char: str) -> int:
    """UTF-16 code units of one character: 2 beyond the BMP (a surrogate pair), else 1."""
    return 2 if ord(char) > 0xFFFF else 1


def unit_count(text: str) -> int:
    """UTF-16 code units needed for `text`."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def join_surrogates(text: str) -> str:
    """Join surrogate code points that form valid pairs; raise EncodingError for unpaired ones."""
    if _SURROGATE.search(text) is None:
        return text
    try:
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
    except UnicodeDecodeError as exc:
        position = exc.start // 2
        raise EncodingError(f"unpaired UTF-16 surrogate at character {position}") from exc


def encode(text: str) -> bytes:
    """Encode `text` as UTF-16BE; an unpaired surrogate raises EncodingError."""
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise EncodingError(
            f"unpaired UTF-16 surrogate U+{ord(text[exc.start]):04X} at character {exc.start}"
        ) from exc


def decode(data: bytes) -> str:
    """Decode UTF-16BE octets; odd length or an unpaired surrogate raises EncodingError."""
    if len(data) % 2:
        raise EncodingError(f"UCS-2 data has an odd number of octets ({len(data)})")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"unpaired UTF-16 surrogate at octet {exc.start}") from exc
