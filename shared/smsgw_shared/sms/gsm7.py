"""GSM 7-bit default alphabet and extension table (3GPP TS 23.038 §6.2.1), septet packing."""

from __future__ import annotations

import re

from smsgw_shared.sms.errors import EncodingError, PduError, UnencodableCharactersError

ESC = 0x1B  # TS 23.038 §6.2.1.1: escape to the extension table

# TS 23.038 §6.2.1, Figure 1, ordered by code 0x00..0x7F. 0x1B (ESC) is a placeholder that no
# text character maps to.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(BASIC) == 128

# TS 23.038 §6.2.1.1, the default extension table: character -> code that follows ESC.
EXTENSION: dict[str, int] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

BASIC_CHARS: frozenset[str] = frozenset(BASIC) - {"\x1b"}
GSM7_CHARS: frozenset[str] = BASIC_CHARS | frozenset(EXTENSION)

# str.translate tables: text -> one latin-1 character per septet, and back.
_ENCODE_TABLE: dict[int, str] = {ord(c): chr(i) for i, c in enumerate(BASIC) if c != "\x1b"}
_ENCODE_TABLE.update({ord(c): f"\x1b{chr(code)}" for c, code in EXTENSION.items()})
_DECODE_TABLE: dict[int, str] = dict(enumerate(BASIC))
# Decoding escapes after translation: the code after ESC already shows as its basic character.
# TS 23.038 §6.2.1.1: a code missing from the extension table shows as that basic character;
# ESC ESC (reserved for another table) and a dangling ESC from a broken sender show as a space.
_EXTENSION_BY_BASIC = {BASIC[code]: char for char, code in EXTENSION.items()} | {"\x1b": " "}
_ESCAPED = re.compile("\x1b(.)?", re.DOTALL)


def _unescape(match: re.Match[str]) -> str:
    code = match[1]
    return " " if code is None else _EXTENSION_BY_BASIC.get(code, code)


def char_septets(char: str) -> int:
    """Septets one character takes: 1 (basic), 2 (extension: ESC + code) or 0 (not GSM-7)."""
    if char in BASIC_CHARS:
        return 1
    return 2 if char in EXTENSION else 0


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM-7 default alphabet or its extension."""
    return GSM7_CHARS.issuperset(text)


def unencodable_chars(text: str) -> tuple[str, ...]:
    """Distinct characters of `text` that GSM-7 cannot represent, in order of appearance."""
    return tuple(dict.fromkeys(c for c in text if c not in GSM7_CHARS))


def septet_count(text: str) -> int:
    """Septets needed for `text`; extension characters count two (TS 23.038 §6.2.1.1)."""
    if not is_gsm7(text):
        raise UnencodableCharactersError("gsm7", unencodable_chars(text))
    return len(text) + sum(1 for c in text if c in EXTENSION)


def encode(text: str) -> bytes:
    """Encode `text` to unpacked septets (one per byte, ESC + code for extension characters)."""
    if not is_gsm7(text):
        raise UnencodableCharactersError("gsm7", unencodable_chars(text))
    return text.translate(_ENCODE_TABLE).encode("latin-1")


def decode(septets: bytes) -> str:
    """Decode unpacked septets to text; unknown escapes fall back per TS 23.038 §6.2.1.1."""
    if max(septets, default=0) > 0x7F:
        raise EncodingError("GSM-7 septet values must be below 0x80")
    text = septets.decode("latin-1").translate(_DECODE_TABLE)
    if "\x1b" not in text:
        return text
    return _ESCAPED.sub(_unescape, text)


def fill_bits(udh_octets: int) -> int:
    """Fill bits after a UDH of `udh_octets` octets so text starts on a septet boundary."""
    return (7 - (udh_octets * 8) % 7) % 7


def pack(septets: bytes, fill: int = 0) -> bytes:
    """Pack septets into octets, LSB first, after `fill` zero bits (TS 23.038 §6.1.2.1.1)."""
    if max(septets, default=0) > 0x7F:
        raise EncodingError("GSM-7 septet values must be below 0x80")
    value = 0
    for i, s in enumerate(septets):
        value |= s << (7 * i)
    nbits = fill + 7 * len(septets)
    return (value << fill).to_bytes((nbits + 7) // 8, "little")


def unpack(data: bytes, count: int, fill: int = 0) -> bytes:
    """Unpack `count` septets from packed octets, skipping `fill` leading bits."""
    if count < 0 or fill < 0:
        raise PduError("septet count and fill bits must not be negative")
    if fill + 7 * count > 8 * len(data):
        raise PduError(f"{len(data)} octets cannot hold {count} septets after {fill} fill bits")
    value = int.from_bytes(data, "little") >> fill
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))
