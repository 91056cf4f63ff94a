"""Building TPDUs (TS 23.040 §9.2.2): SMS-SUBMIT for the modem, DELIVER/STATUS-REPORT for tests."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from smsgw_shared.sms import gsm7
from smsgw_shared.sms.encoding import Encoding, RequestedEncoding
from smsgw_shared.sms.errors import PduError
from smsgw_shared.sms.pdu_fields import (
    Address,
    build_dcs,
    encode_address,
    encode_smsc,
    encode_timestamp,
    relative_validity,
)
from smsgw_shared.sms.segment import (
    DEFAULT_MAX_PARTS,
    USER_DATA_OCTETS,
    SegmentedText,
    split_payload,
    split_text,
)
from smsgw_shared.sms.udh import ConcatInfo, RefBits, build_concat_udh

# TS 23.040 §9.2.3.1: TP-MTI values (bits 1..0 of the first octet)
MTI_DELIVER = 0b00
MTI_SUBMIT = 0b01
MTI_STATUS_REPORT = 0b10

# TS 23.040 §9.2.3.3: TP-VPF (bits 4..3 of the SMS-SUBMIT first octet)
VPF_NONE = 0b00
VPF_ENHANCED = 0b01
VPF_RELATIVE = 0b10
VPF_ABSOLUTE = 0b11

Validity = int | float | timedelta | datetime | None


@dataclass(frozen=True, slots=True)
class EncodedPdu:
    """One PDU as AT+CMGS wants it: hex with the SMSC prefix, and the TPDU length in octets."""

    hex: str
    tpdu_length: int
    text: str
    concat: ConcatInfo | None = None
    message_ref: int | None = None


def user_data(encoding: Encoding, payload: bytes, udh: bytes = b"") -> tuple[int, bytes]:
    """TP-UDL and TP-UD for one part (TS 23.040 §9.2.3.16, §9.2.3.24; fill bits for GSM-7)."""
    if encoding is Encoding.GSM7:
        fill = gsm7.fill_bits(len(udh))
        udl = (len(udh) * 8 + fill) // 7 + len(payload)
        data = udh + gsm7.pack(payload, fill)
    else:
        udl = len(udh) + len(payload)
        data = udh + payload
    if len(data) > USER_DATA_OCTETS:
        raise PduError(f"user data of {len(data)} octets is over {USER_DATA_OCTETS}")
    return udl, data


def _validity(validity: Validity) -> tuple[int, bytes]:
    if validity is None:
        return VPF_NONE, b""
    if isinstance(validity, datetime):
        return VPF_ABSOLUTE, encode_timestamp(validity)
    return VPF_RELATIVE, bytes((relative_validity(validity),))


def _finish(
    smsc: str | None,
    tpdu: bytes,
    text: str,
    concat: ConcatInfo | None = None,
    message_ref: int | None = None,
) -> EncodedPdu:
    hex_pdu = (encode_smsc(smsc) + tpdu).hex().upper()
    return EncodedPdu(hex_pdu, len(tpdu), text, concat, message_ref)


def _concat(
    total: int, seq: int, ref: int | None, ref_bits: RefBits
) -> tuple[bytes, ConcatInfo | None]:
    if total == 1 or ref is None:
        return b"", None
    return build_concat_udh(ref, total, seq, ref_bits), ConcatInfo(ref, total, seq, ref_bits)


def _ref(ref: int | None, ref_bits: RefBits) -> int:
    # Without a caller's counter, a random reference is still far better than python-messaging's 0.
    return random.randrange(1 << ref_bits) if ref is None else ref


def build_submit_parts(
    encoding: Encoding,
    payloads: Sequence[bytes],
    texts: Sequence[str],
    recipient: str | Address,
    *,
    message_ref: int = 0,
    concat_ref: int | None = None,
    ref_bits: RefBits = 8,
    validity: Validity = None,
    status_report: bool = False,
    flash: bool = False,
    smsc: str | None = None,
    reject_duplicates: bool = False,
) -> list[EncodedPdu]:
    """SMS-SUBMIT PDUs for already split part payloads (TS 23.040 §9.2.2.2)."""
    if not 0 <= message_ref <= 255:
        raise PduError(f"TP-MR must be 0..255, not {message_ref}")
    vpf, vp = _validity(validity)
    first = MTI_SUBMIT | vpf << 3
    first |= (0x04 if reject_duplicates else 0) | (0x20 if status_report else 0)
    destination = encode_address(recipient)
    dcs = build_dcs(encoding, flash)
    ref = _ref(concat_ref, ref_bits) if len(payloads) > 1 else None
    pdus = []
    for index, (payload, text) in enumerate(zip(payloads, texts, strict=True)):
        udh, concat = _concat(len(payloads), index + 1, ref, ref_bits)
        udl, ud = user_data(encoding, payload, udh)
        mr = (message_ref + index) % 256
        header = bytes((first | (0x40 if udh else 0), mr))
        tpdu = header + destination + bytes((0x00, dcs)) + vp + bytes((udl,)) + ud
        pdus.append(_finish(smsc, tpdu, text=text, concat=concat, message_ref=mr))
    return pdus


def build_submit_pdus(
    text: str | SegmentedText,
    recipient: str | Address,
    *,
    message_ref: int = 0,
    encoding: RequestedEncoding = "auto",
    substitute: bool = False,
    concat_ref: int | None = None,
    ref_bits: RefBits = 8,
    max_parts: int | None = DEFAULT_MAX_PARTS,
    validity: Validity = None,
    status_report: bool = False,
    flash: bool = False,
    smsc: str | None = None,
) -> list[EncodedPdu]:
    """One SMS-SUBMIT PDU per part of `text`; part i gets TP-MR message_ref + i (mod 256)."""
    if isinstance(text, str):
        text = split_text(
            text, encoding, substitute=substitute, max_parts=max_parts, ref_bits=ref_bits
        )
    segments = text.segments
    return build_submit_parts(
        text.encoding,
        [s.payload for s in segments],
        [s.text for s in segments],
        recipient,
        message_ref=message_ref,
        concat_ref=concat_ref,
        ref_bits=ref_bits,
        validity=validity,
        status_report=status_report,
        flash=flash,
        smsc=smsc,
    )


def build_binary_submit_pdus(
    data: bytes,
    recipient: str | Address,
    *,
    message_ref: int = 0,
    concat_ref: int | None = None,
    ref_bits: RefBits = 8,
    max_parts: int | None = DEFAULT_MAX_PARTS,
    validity: Validity = None,
    status_report: bool = False,
    smsc: str | None = None,
) -> list[EncodedPdu]:
    """SMS-SUBMIT PDUs with 8-bit data, 140/134 octets a part, the UDH kept on every part."""
    payloads = split_payload(data, Encoding.BINARY, max_parts=max_parts, ref_bits=ref_bits)
    return build_submit_parts(
        Encoding.BINARY,
        payloads,
        [""] * len(payloads),
        recipient,
        message_ref=message_ref,
        concat_ref=concat_ref,
        ref_bits=ref_bits,
        validity=validity,
        status_report=status_report,
        smsc=smsc,
    )


def build_deliver_pdus(
    text: str | SegmentedText,
    sender: str | Address,
    *,
    scts: datetime,
    encoding: RequestedEncoding = "auto",
    concat_ref: int | None = None,
    ref_bits: RefBits = 8,
    max_parts: int | None = None,
    flash: bool = False,
    status_report_indication: bool = False,
    smsc: str | None = None,
) -> list[EncodedPdu]:
    """SMS-DELIVER PDUs (TS 23.040 §9.2.2.1), as a network (or a modem simulator) sends them."""
    if isinstance(text, str):
        text = split_text(text, encoding, max_parts=max_parts, ref_bits=ref_bits)
    originator = encode_address(sender)
    dcs = build_dcs(text.encoding, flash)
    total = text.parts
    ref = _ref(concat_ref, ref_bits) if total > 1 else None
    pdus = []
    for index, segment in enumerate(text.segments):
        udh, concat = _concat(total, index + 1, ref, ref_bits)
        udl, ud = user_data(text.encoding, segment.payload, udh)
        # TP-MMS (bit 2) set means "no more messages waiting"
        first = MTI_DELIVER | 0x04 | (0x20 if status_report_indication else 0)
        first |= 0x40 if udh else 0
        tpdu = bytes((first,)) + originator + bytes((0x00, dcs)) + encode_timestamp(scts)
        tpdu += bytes((udl,)) + ud
        pdus.append(_finish(smsc, tpdu, text=segment.text, concat=concat))
    return pdus


def build_status_report_pdu(
    message_ref: int,
    recipient: str | Address,
    status: int,
    *,
    scts: datetime,
    discharge_time: datetime,
    smsc: str | None = None,
) -> EncodedPdu:
    """SMS-STATUS-REPORT (TS 23.040 §9.2.2.3) for the SUBMIT that had TP-MR `message_ref`."""
    if not 0 <= message_ref <= 255 or not 0 <= status <= 255:
        raise PduError("TP-MR and TP-ST must be 0..255")
    tpdu = bytes((MTI_STATUS_REPORT | 0x04, message_ref)) + encode_address(recipient)
    tpdu += encode_timestamp(scts) + encode_timestamp(discharge_time) + bytes((status,))
    return _finish(smsc, tpdu, text="", message_ref=message_ref)
