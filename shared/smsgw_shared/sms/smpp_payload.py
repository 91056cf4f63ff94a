"""Text as SMPP 3.4 payloads: short_message parts with UDH or SAR TLVs, or message_payload."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.encoding import Encoding, RequestedEncoding, check_text, choose_encoding
from smsgw_shared.sms.errors import EncodingError, PduError, SmsError, UnencodableCharactersError
from smsgw_shared.sms.pdu_fields import parse_dcs
from smsgw_shared.sms.segment import DEFAULT_MAX_PARTS, split_payload
from smsgw_shared.sms.udh import ConcatInfo, RefBits, UserDataHeader, build_concat_udh, parse_udh

# SMPP 3.4 §5.2.19 data_coding values handled here
DATA_CODING_DEFAULT = 0x00  # SMSC default alphabet; here GSM-7, one septet per octet
DATA_CODING_IA5 = 0x01
DATA_CODING_BINARY = 0x02
DATA_CODING_LATIN1 = 0x03
DATA_CODING_BINARY_ALT = 0x04
DATA_CODING_CYRILLIC = 0x06
DATA_CODING_HEBREW = 0x07
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40  # SMPP 3.4 §5.2.12: short_message starts with a UDH

SmppMode = Literal["udh", "sar", "payload"]

_TEXT_CODECS = {
    DATA_CODING_IA5: "ascii",
    DATA_CODING_LATIN1: "latin-1",
    DATA_CODING_CYRILLIC: "iso8859-5",
    DATA_CODING_HEBREW: "iso8859-8",
}


@dataclass(frozen=True, slots=True)
class SmppPart:
    """One submit_sm: short_message (UDH included in udh mode), esm_class, SAR TLVs, payload."""

    short_message: bytes
    text: str
    esm_class: int = 0
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class SmppMessage:
    """A text ready for submit_sm: its data_coding and one SmppPart per PDU to send."""

    data_coding: int
    parts: tuple[SmppPart, ...]
    ucs2_chars: tuple[str, ...] = ()


def _encode(
    text: str, data_coding: int | None, substitute: bool
) -> tuple[int, Encoding, bytes, tuple[str, ...]]:
    if data_coding == DATA_CODING_LATIN1:
        text = check_text(text)
        try:
            return data_coding, Encoding.BINARY, text.encode("latin-1"), ()
        except UnicodeEncodeError:
            bad = tuple(dict.fromkeys(c for c in text if ord(c) > 0xFF))
            raise UnencodableCharactersError("latin1", bad) from None
    forced: dict[int | None, RequestedEncoding] = {
        None: "auto",
        DATA_CODING_DEFAULT: "gsm7",
        DATA_CODING_UCS2: "ucs2",
    }
    if data_coding not in forced:
        raise SmsError(f"data_coding {data_coding} is not supported for text; use 0, 3 or 8")
    choice = choose_encoding(text, forced[data_coding], substitute)
    if choice.encoding is Encoding.GSM7:
        return DATA_CODING_DEFAULT, Encoding.GSM7, gsm7.encode(choice.text), ()
    return DATA_CODING_UCS2, Encoding.UCS2, ucs2.encode(choice.text), choice.ucs2_chars


def _part_text(encoding: Encoding, payload: bytes) -> str:
    if encoding is Encoding.GSM7:
        return gsm7.decode(payload)
    if encoding is Encoding.UCS2:
        return ucs2.decode(payload)
    return payload.decode("latin-1")


def build_smpp_parts(
    text: str,
    *,
    data_coding: int | None = None,
    mode: SmppMode = "udh",
    ref: int | None = None,
    ref_bits: RefBits = 8,
    substitute: bool = False,
    max_parts: int | None = DEFAULT_MAX_PARTS,
) -> SmppMessage:
    """Encode `text` for submit_sm; data_coding None picks 0 (GSM-7) or 8 (UCS-2)."""
    coding, encoding, payload, ucs2_chars = _encode(text, data_coding, substitute)
    # The SAR TLVs carry the reference outside the 140 octets, but the SMSC still adds a UDH
    # of its own on the air, so parts are as long as with an 8-bit-reference UDH.
    bits: RefBits = ref_bits if mode == "udh" else 8
    chunks = split_payload(payload, encoding, max_parts=max_parts, ref_bits=bits)
    if mode == "payload":
        part = SmppPart(b"", _part_text(encoding, payload), message_payload=payload)
        return SmppMessage(coding, (part,), ucs2_chars)
    if mode not in ("udh", "sar"):
        raise SmsError(f"unknown SMPP split mode {mode!r}; expected udh, sar or payload")
    if len(chunks) == 1:
        return SmppMessage(coding, (SmppPart(payload, _part_text(encoding, payload)),), ucs2_chars)
    if mode == "sar":
        # SMPP 3.4 §5.3.2.22: sar_msg_ref_num is a 2-octet integer
        ref = random.randrange(1 << 16) if ref is None else ref
        if not 0 <= ref <= 0xFFFF:
            raise SmsError(f"sar_msg_ref_num must be 0..65535, not {ref}")
    else:
        ref = random.randrange(1 << ref_bits) if ref is None else ref
    parts = []
    total = len(chunks)
    for seq, chunk in enumerate(chunks, start=1):
        part_text = _part_text(encoding, chunk)
        if mode == "sar":
            parts.append(SmppPart(chunk, part_text, 0, ref, total, seq))
        else:
            udh = build_concat_udh(ref, total, seq, ref_bits)
            parts.append(SmppPart(udh + chunk, part_text, ESM_CLASS_UDHI))
    return SmppMessage(coding, tuple(parts), ucs2_chars)


@dataclass(frozen=True, slots=True)
class SmppText:
    """A decoded short_message: text (None for binary), payload after the UDH, UDH, concat."""

    text: str | None
    payload: bytes
    udh: UserDataHeader | None = None
    concat: ConcatInfo | None = None


def _decode_text(payload: bytes, data_coding: int) -> str | None:
    try:
        if data_coding == DATA_CODING_DEFAULT:
            return gsm7.decode(payload)
        if data_coding in _TEXT_CODECS:
            return payload.decode(_TEXT_CODECS[data_coding])
        if data_coding == DATA_CODING_UCS2:
            return ucs2.decode(payload)
    except (EncodingError, UnicodeDecodeError) as exc:
        raise PduError(f"short_message is not valid for data_coding {data_coding}: {exc}") from exc
    if data_coding >= 0xC0:  # GSM DCS groups (SMPP 3.4 §5.2.19 refers to TS 23.038)
        encoding = parse_dcs(data_coding).encoding
        if encoding is Encoding.GSM7:
            return _decode_text(payload, DATA_CODING_DEFAULT)
        if encoding is Encoding.UCS2:
            return _decode_text(payload, DATA_CODING_UCS2)
    return None  # binary or unsupported: the caller gets the payload


def decode_short_message(
    short_message: bytes,
    data_coding: int,
    esm_class: int = 0,
    *,
    sar_msg_ref_num: int | None = None,
    sar_total_segments: int | None = None,
    sar_segment_seqnum: int | None = None,
) -> SmppText:
    """Decode a deliver_sm short_message (or message_payload); UDH or SAR TLVs give concat."""
    udh = None
    payload = short_message
    if esm_class & ESM_CLASS_UDHI:
        udh, payload = parse_udh(short_message)
    concat = udh.concat if udh else None
    sar = (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum)
    if concat is None and None not in sar:
        ref, total, seq = (int(v) for v in sar if v is not None)
        if total >= 1 and 1 <= seq <= total:
            concat = ConcatInfo(ref, total, seq, 16)
    return SmppText(_decode_text(payload, data_coding), payload, udh, concat)
