"""Decoding TPDUs (TS 23.040 §9.2.2): SMS-DELIVER, SMS-SUBMIT and SMS-STATUS-REPORT."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.encoding import Encoding
from smsgw_shared.sms.errors import EncodingError, PduError, UdhError
from smsgw_shared.sms.pdu import (
    MTI_DELIVER,
    MTI_STATUS_REPORT,
    MTI_SUBMIT,
    VPF_ABSOLUTE,
    VPF_ENHANCED,
    VPF_RELATIVE,
)
from smsgw_shared.sms.pdu_fields import (
    Address,
    DataCodingScheme,
    Reader,
    decode_address,
    decode_smsc,
    decode_timestamp,
    parse_dcs,
    parse_hex,
    validity_seconds,
)
from smsgw_shared.sms.udh import ConcatInfo, UserDataHeader, parse_udh


@dataclass(frozen=True, slots=True)
class UserData:
    """Decoded TP-UD: text (None for 8-bit or compressed data), payload after the UDH, UDH."""

    text: str | None
    payload: bytes
    udh: UserDataHeader | None = None

    @property
    def concat(self) -> ConcatInfo | None:
        """Concatenation info from the UDH, if any."""
        return self.udh.concat if self.udh else None


@dataclass(frozen=True, slots=True)
class SmsDeliver:
    """SMS-DELIVER (TS 23.040 §9.2.2.1): a message received by the modem."""

    smsc: str | None
    sender: Address
    pid: int
    dcs: DataCodingScheme
    scts: datetime
    user_data: UserData
    more_messages: bool = False
    status_report_indication: bool = False
    reply_path: bool = False

    @property
    def text(self) -> str | None:
        """The text of this part."""
        return self.user_data.text

    @property
    def concat(self) -> ConcatInfo | None:
        """Concatenation info of this part."""
        return self.user_data.concat


@dataclass(frozen=True, slots=True)
class SmsSubmit:
    """SMS-SUBMIT (TS 23.040 §9.2.2.2): a message sent by the modem."""

    smsc: str | None
    message_ref: int
    recipient: Address
    pid: int
    dcs: DataCodingScheme
    user_data: UserData
    validity_seconds: int | None = None
    validity_until: datetime | None = None
    status_report_request: bool = False
    reject_duplicates: bool = False
    reply_path: bool = False

    @property
    def text(self) -> str | None:
        """The text of this part."""
        return self.user_data.text

    @property
    def concat(self) -> ConcatInfo | None:
        """Concatenation info of this part."""
        return self.user_data.concat


class DeliveryStatus(StrEnum):
    """What a TP-ST value means for the message (TS 23.040 §9.2.3.15)."""

    DELIVERED = "delivered"
    PENDING = "pending"
    FAILED = "failed"


# TS 23.040 §9.2.3.15, values whose meaning is defined; the rest fall back to their range.
_STATUS_TEXT = {
    0x00: "received by the SME",
    0x01: "forwarded to the SME, delivery unconfirmed",
    0x02: "replaced by the SC",
    0x20: "congestion",
    0x21: "SME busy",
    0x22: "no response from SME",
    0x23: "service rejected",
    0x24: "quality of service not available",
    0x25: "error in SME",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by SME",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "validity period expired",
    0x47: "deleted by originating SME",
    0x48: "deleted by SC administration",
    0x49: "message does not exist",
}


def status_meaning(status: int) -> DeliveryStatus:
    """TP-ST to delivered / pending (SC still trying) / failed (TS 23.040 §9.2.3.15)."""
    if status <= 0x1F:
        return DeliveryStatus.DELIVERED  # transaction completed
    if status <= 0x3F:
        return DeliveryStatus.PENDING  # temporary error, SC still trying
    return DeliveryStatus.FAILED  # permanent error, or temporary with no more attempts


def status_description(status: int) -> str:
    """Human-readable TP-ST, e.g. 'validity period expired (failed)'."""
    if status >= 0x80:
        return "reserved status (failed)"
    if status in _STATUS_TEXT:
        text = _STATUS_TEXT[status]
    else:
        text = "SC-specific status" if status & 0x10 else "reserved status"
    if 0x60 <= status <= 0x7F:
        text += ", SC gave up"
    return f"{text} ({status_meaning(status)})"


@dataclass(frozen=True, slots=True)
class SmsStatusReport:
    """SMS-STATUS-REPORT (TS 23.040 §9.2.2.3): the fate of a submitted message."""

    smsc: str | None
    message_ref: int
    recipient: Address
    scts: datetime
    discharge_time: datetime
    status: int
    status_report_qualifier: bool = False
    more_messages: bool = False
    user_data: UserData | None = None

    @property
    def meaning(self) -> DeliveryStatus:
        """Delivered, pending or failed."""
        return status_meaning(self.status)

    @property
    def description(self) -> str:
        """Human-readable status."""
        return status_description(self.status)


def decode_user_data(reader: Reader, dcs: DataCodingScheme, udhi: bool) -> UserData:
    """Read TP-UDL and TP-UD; a UDH is parsed and GSM-7 text skips its fill bits."""
    udl = reader.byte("TP-UDL")
    if dcs.encoding is Encoding.GSM7 and not dcs.compressed:
        if udl > 160:
            raise PduError(f"TP-UDL {udl} is over 160 septets")
        data = reader.take(math.ceil(udl * 7 / 8), "TP-UD")
        udh, header_octets = None, 0
        if udhi:
            udh, _ = parse_udh(data)
            header_octets = 1 + data[0]
        header_septets = math.ceil(header_octets * 8 / 7)
        if header_septets > udl:
            raise UdhError(f"UDH of {header_octets} octets is longer than TP-UDL {udl}")
        fill = gsm7.fill_bits(header_octets)
        septets = gsm7.unpack(data[header_octets:], udl - header_septets, fill)
        return UserData(gsm7.decode(septets), septets, udh)
    if udl > 140:
        raise PduError(f"TP-UDL {udl} is over 140 octets")
    data = reader.take(udl, "TP-UD")
    udh = None
    if udhi:
        udh, data = parse_udh(data)
    if dcs.encoding is Encoding.UCS2 and not dcs.compressed:
        try:
            return UserData(ucs2.decode(data), data, udh)
        except EncodingError as exc:
            raise PduError(f"TP-UD: {exc}") from exc
    return UserData(None, data, udh)


def _no_trailing(reader: Reader) -> None:
    extra = len(reader.data) - reader.pos
    if extra:
        raise PduError(f"{extra} unexpected octet(s) after the user data")


def _deliver(reader: Reader, smsc: str | None, first: int) -> SmsDeliver:
    sender = decode_address(reader, "TP-OA")
    pid = reader.byte("TP-PID")
    dcs = parse_dcs(reader.byte("TP-DCS"))
    scts = decode_timestamp(reader.take(7, "TP-SCTS"), "TP-SCTS")
    ud = decode_user_data(reader, dcs, bool(first & 0x40))
    _no_trailing(reader)
    # TP-MMS = 0 means more messages are waiting (TS 23.040 §9.2.3.2)
    return SmsDeliver(
        smsc, sender, pid, dcs, scts, ud, not first & 0x04, bool(first & 0x20), bool(first & 0x80)
    )


def _submit(reader: Reader, smsc: str | None, first: int) -> SmsSubmit:
    message_ref = reader.byte("TP-MR")
    recipient = decode_address(reader, "TP-DA")
    pid = reader.byte("TP-PID")
    dcs = parse_dcs(reader.byte("TP-DCS"))
    vpf = (first >> 3) & 0x03
    seconds: int | None = None
    until: datetime | None = None
    if vpf == VPF_RELATIVE:
        seconds = validity_seconds(reader.byte("TP-VP"))
    elif vpf == VPF_ABSOLUTE:
        until = decode_timestamp(reader.take(7, "TP-VP"), "TP-VP")
    elif vpf == VPF_ENHANCED:
        reader.take(7, "TP-VP")  # TS 23.040 §9.2.3.12.3, not produced by this gateway
    ud = decode_user_data(reader, dcs, bool(first & 0x40))
    _no_trailing(reader)
    return SmsSubmit(
        smsc,
        message_ref,
        recipient,
        pid,
        dcs,
        ud,
        seconds,
        until,
        bool(first & 0x20),
        bool(first & 0x04),
        bool(first & 0x80),
    )


def _status_report(reader: Reader, smsc: str | None, first: int) -> SmsStatusReport:
    message_ref = reader.byte("TP-MR")
    recipient = decode_address(reader, "TP-RA")
    scts = decode_timestamp(reader.take(7, "TP-SCTS"), "TP-SCTS")
    discharge = decode_timestamp(reader.take(7, "TP-DT"), "TP-DT")
    status = reader.byte("TP-ST")
    ud = None
    if reader.pos < len(reader.data):
        # TS 23.040 §9.2.3.27: TP-PI says which optional fields follow.
        pi = reader.byte("TP-PI")
        if pi & 0x01:
            reader.byte("TP-PID")
        dcs = parse_dcs(reader.byte("TP-DCS")) if pi & 0x02 else DataCodingScheme(Encoding.GSM7)
        if pi & 0x04:
            ud = decode_user_data(reader, dcs, bool(first & 0x40))
    return SmsStatusReport(
        smsc,
        message_ref,
        recipient,
        scts,
        discharge,
        status,
        bool(first & 0x20),
        not first & 0x04,
        ud,
    )


def decode_pdu(
    pdu: str | bytes, *, has_smsc: bool = True, tpdu_length: int | None = None
) -> SmsDeliver | SmsSubmit | SmsStatusReport:
    """Decode a PDU by its TP-MTI; `tpdu_length` (from +CMT/+CMGR) is checked when given."""
    reader = Reader(parse_hex(pdu))
    smsc = decode_smsc(reader) if has_smsc else None
    if tpdu_length is not None and len(reader.data) - reader.pos != tpdu_length:
        raise PduError(f"TPDU is {len(reader.data) - reader.pos} octets, expected {tpdu_length}")
    first = reader.byte("first octet")
    mti = first & 0x03
    if mti == MTI_DELIVER:
        return _deliver(reader, smsc, first)
    if mti == MTI_SUBMIT:
        return _submit(reader, smsc, first)
    if mti == MTI_STATUS_REPORT:
        return _status_report(reader, smsc, first)
    raise PduError("TP-MTI 3 is reserved")


def decode_deliver(pdu: str | bytes, *, has_smsc: bool = True) -> SmsDeliver:
    """Decode an SMS-DELIVER; any other type raises PduError."""
    result = decode_pdu(pdu, has_smsc=has_smsc)
    if not isinstance(result, SmsDeliver):
        raise PduError(f"expected an SMS-DELIVER, got {type(result).__name__}")
    return result


def decode_submit(pdu: str | bytes, *, has_smsc: bool = True) -> SmsSubmit:
    """Decode an SMS-SUBMIT; any other type raises PduError."""
    result = decode_pdu(pdu, has_smsc=has_smsc)
    if not isinstance(result, SmsSubmit):
        raise PduError(f"expected an SMS-SUBMIT, got {type(result).__name__}")
    return result


def decode_status_report(pdu: str | bytes, *, has_smsc: bool = True) -> SmsStatusReport:
    """Decode an SMS-STATUS-REPORT; any other type raises PduError."""
    result = decode_pdu(pdu, has_smsc=has_smsc)
    if not isinstance(result, SmsStatusReport):
        raise PduError(f"expected an SMS-STATUS-REPORT, got {type(result).__name__}")
    return result
