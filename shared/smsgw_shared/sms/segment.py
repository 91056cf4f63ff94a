"""Splitting a text into concatenated SMS parts, and the segment preview shown by the API."""

from __future__ import annotations

from dataclasses import dataclass

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.encoding import Encoding, RequestedEncoding, choose_encoding
from smsgw_shared.sms.errors import SmsError, TooManyPartsError
from smsgw_shared.sms.udh import RefBits

USER_DATA_OCTETS = 140  # TS 23.040 §9.2.3.16: at most 140 octets of TP-UD
MAX_PARTS_LIMIT = 255  # TS 23.040 §9.2.3.24.1: the part count is one octet
DEFAULT_MAX_PARTS = 10  # a gateway default; callers pass their own configured limit


def concat_udh_octets(ref_bits: RefBits = 8) -> int:
    """Octets of a concatenation UDH incl. UDHL: 6 with 8-bit refs, 7 with 16-bit refs."""
    return 6 if ref_bits == 8 else 7


def part_limit(encoding: Encoding, multipart: bool, ref_bits: RefBits = 8) -> int:
    """Units in one part: septets (160/153), UTF-16 units (70/67) or octets (140/134)."""
    octets = USER_DATA_OCTETS - (concat_udh_octets(ref_bits) if multipart else 0)
    if encoding is Encoding.GSM7:
        return octets * 8 // 7  # TS 23.038 §6.1.2.1.1: fill bits pad the UDH to a septet
    if encoding is Encoding.UCS2:
        return octets // 2
    return octets


@dataclass(frozen=True, slots=True)
class Segment:
    """One part: its text, its payload (GSM-7 unpacked septets, UTF-16BE or octets), units."""

    text: str
    payload: bytes
    units: int


@dataclass(frozen=True, slots=True)
class SegmentedText:
    """A text split into parts, with the alphabet chosen and what forced UCS-2."""

    text: str
    encoding: Encoding
    segments: tuple[Segment, ...]
    ucs2_chars: tuple[str, ...] = ()

    @property
    def parts(self) -> int:
        """Number of parts."""
        return len(self.segments)


@dataclass(frozen=True, slots=True)
class SegmentPreview:
    """What a text costs: alphabet, parts and room left in the last part."""

    encoding: Encoding
    parts: int
    units: int
    units_per_part: int
    remaining: int
    ucs2_chars: tuple[str, ...] = ()


def _check_max_parts(max_parts: int | None) -> int:
    if max_parts is None:
        return MAX_PARTS_LIMIT
    if not 1 <= max_parts <= MAX_PARTS_LIMIT:
        raise SmsError(f"max_parts must be 1..{MAX_PARTS_LIMIT}, not {max_parts}")
    return max_parts


def _cuts(payload: bytes, encoding: Encoding, ref_bits: RefBits) -> list[tuple[int, int]]:
    """Octet ranges of the parts; never between ESC and its code, nor inside a surrogate pair."""
    width = 2 if encoding is Encoding.UCS2 else 1
    if len(payload) <= part_limit(encoding, False) * width:
        return [(0, len(payload))]
    step = part_limit(encoding, True, ref_bits) * width
    cuts: list[tuple[int, int]] = []
    start = 0
    while start < len(payload):
        end = min(start + step, len(payload))
        if end < len(payload):
            if encoding is Encoding.GSM7 and payload[end - 1] == gsm7.ESC:
                end -= 1  # TS 23.038 §6.2.1.1: ESC and its code stay in one part
            elif encoding is Encoding.UCS2 and 0xD8 <= payload[end - 2] <= 0xDB:
                end -= 2  # a high surrogate stays with its low surrogate
        cuts.append((start, end))
        start = end
    return cuts


def split_payload(
    payload: bytes,
    encoding: Encoding,
    *,
    max_parts: int | None = DEFAULT_MAX_PARTS,
    ref_bits: RefBits = 8,
) -> tuple[bytes, ...]:
    """Split an encoded payload (septets, UTF-16BE or octets) into part payloads."""
    limit = _check_max_parts(max_parts)
    cuts = _cuts(payload, encoding, ref_bits)
    if len(cuts) > limit:
        raise TooManyPartsError(len(cuts), limit)
    return tuple(payload[a:b] for a, b in cuts)


def split_text(
    text: str,
    encoding: RequestedEncoding = "auto",
    *,
    substitute: bool = False,
    max_parts: int | None = DEFAULT_MAX_PARTS,
    ref_bits: RefBits = 8,
) -> SegmentedText:
    """Choose the alphabet for `text` and split it into at most `max_parts` parts."""
    choice = choose_encoding(text, encoding, substitute)
    if choice.encoding is Encoding.GSM7:
        payload = gsm7.encode(choice.text)
        parts = split_payload(payload, Encoding.GSM7, max_parts=max_parts, ref_bits=ref_bits)
        segments = tuple(Segment(gsm7.decode(p), p, len(p)) for p in parts)
    else:
        payload = ucs2.encode(choice.text)
        parts = split_payload(payload, Encoding.UCS2, max_parts=max_parts, ref_bits=ref_bits)
        segments = tuple(Segment(ucs2.decode(p), p, len(p) // 2) for p in parts)
    return SegmentedText(choice.text, choice.encoding, segments, choice.ucs2_chars)


def preview(
    text: str,
    encoding: RequestedEncoding = "auto",
    substitute: bool = False,
    max_parts: int | None = DEFAULT_MAX_PARTS,
    ref_bits: RefBits = 8,
) -> SegmentPreview:
    """Encoding, part count and room left for `text`, as the API reports it."""
    choice = choose_encoding(text, encoding, substitute)
    if choice.encoding is Encoding.GSM7:
        payload, width = gsm7.encode(choice.text), 1
    else:
        payload, width = ucs2.encode(choice.text), 2
    limit = _check_max_parts(max_parts)
    cuts = _cuts(payload, choice.encoding, ref_bits)
    if len(cuts) > limit:
        raise TooManyPartsError(len(cuts), limit)
    per_part = part_limit(choice.encoding, len(cuts) > 1, ref_bits)
    last = (cuts[-1][1] - cuts[-1][0]) // width
    return SegmentPreview(
        encoding=choice.encoding,
        parts=len(cuts),
        units=len(payload) // width,
        units_per_part=per_part,
        remaining=per_part - last,
        ucs2_chars=choice.ucs2_chars,
    )
