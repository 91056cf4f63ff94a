"""SMPP 3.4 PDU codec: the header (§3.2), the mandatory fields of the PDUs we use (§4) and
TLVs (§5.3). Shared by the worker's client and the SMSC simulator.

A `Pdu` keeps mandatory fields in a dict and TLVs as raw bytes keyed by tag, so unknown
vendor TLVs pass through instead of failing the decode (the smpplib pitfall).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

HEADER: Final = struct.Struct(">IIII")
HEADER_LEN: Final = 16
# §3.2: command_length has no fixed maximum; real PDUs stay well under 64 KiB (a
# message_payload is at most 64 KiB). Anything larger means the stream lost its framing.
MAX_PDU_LEN: Final = 70_000

GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_TRANSMITTER: Final = 0x00000002
QUERY_SM: Final = 0x00000003
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
UNBIND: Final = 0x00000006
BIND_TRANSCEIVER: Final = 0x00000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
DATA_SM: Final = 0x00000103
RESP: Final = 0x80000000

COMMAND_NAMES: Final = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    QUERY_SM: "query_sm",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    UNBIND: "unbind",
    BIND_TRANSCEIVER: "bind_transceiver",
    OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link",
    DATA_SM: "data_sm",
}

# TLV tags (§5.3.2)
TLV_SAR_MSG_REF_NUM: Final = 0x020C
TLV_SAR_TOTAL_SEGMENTS: Final = 0x020E
TLV_SAR_SEGMENT_SEQNUM: Final = 0x020F
TLV_SC_INTERFACE_VERSION: Final = 0x0210
TLV_NETWORK_ERROR_CODE: Final = 0x0423
TLV_MESSAGE_PAYLOAD: Final = 0x0424
TLV_RECEIPTED_MESSAGE_ID: Final = 0x001E
TLV_MESSAGE_STATE: Final = 0x0427

INTERFACE_VERSION: Final = 0x34

# Field kinds: "c" C-octet string, "b" one-octet integer, "sm" sm_length + short_message.
_BIND: Final = (
    ("system_id", "c"),
    ("password", "c"),
    ("system_type", "c"),
    ("interface_version", "b"),
    ("addr_ton", "b"),
    ("addr_npi", "b"),
    ("address_range", "c"),
)
_SM: Final = (
    ("service_type", "c"),
    ("source_addr_ton", "b"),
    ("source_addr_npi", "b"),
    ("source_addr", "c"),
    ("dest_addr_ton", "b"),
    ("dest_addr_npi", "b"),
    ("destination_addr", "c"),
    ("esm_class", "b"),
    ("protocol_id", "b"),
    ("priority_flag", "b"),
    ("schedule_delivery_time", "c"),
    ("validity_period", "c"),
    ("registered_delivery", "b"),
    ("replace_if_present_flag", "b"),
    ("data_coding", "b"),
    ("sm_default_msg_id", "b"),
    ("short_message", "sm"),
)
_DATA_SM: Final = (
    ("service_type", "c"),
    ("source_addr_ton", "b"),
    ("source_addr_npi", "b"),
    ("source_addr", "c"),
    ("dest_addr_ton", "b"),
    ("dest_addr_npi", "b"),
    ("destination_addr", "c"),
    ("esm_class", "b"),
    ("registered_delivery", "b"),
    ("data_coding", "b"),
)
_MESSAGE_ID: Final = (("message_id", "c"),)
_SYSTEM_ID: Final = (("system_id", "c"),)

LAYOUTS: Final[dict[int, tuple[tuple[str, str], ...]]] = {
    BIND_RECEIVER: _BIND,
    BIND_TRANSMITTER: _BIND,
    BIND_TRANSCEIVER: _BIND,
    BIND_RECEIVER | RESP: _SYSTEM_ID,
    BIND_TRANSMITTER | RESP: _SYSTEM_ID,
    BIND_TRANSCEIVER | RESP: _SYSTEM_ID,
    OUTBIND: (("system_id", "c"), ("password", "c")),
    SUBMIT_SM: _SM,
    DELIVER_SM: _SM,
    SUBMIT_SM | RESP: _MESSAGE_ID,
    DELIVER_SM | RESP: _MESSAGE_ID,
    DATA_SM: _DATA_SM,
    DATA_SM | RESP: _MESSAGE_ID,
    QUERY_SM: (
        ("message_id", "c"),
        ("source_addr_ton", "b"),
        ("source_addr_npi", "b"),
        ("source_addr", "c"),
    ),
    QUERY_SM | RESP: (
        ("message_id", "c"),
        ("final_date", "c"),
        ("message_state", "b"),
        ("error_code", "b"),
    ),
    UNBIND: (),
    UNBIND | RESP: (),
    ENQUIRE_LINK: (),
    ENQUIRE_LINK | RESP: (),
    GENERIC_NACK: (),
}


class PduDecodeError(ValueError):
    """A PDU whose body does not match its command's layout (truncated, unterminated…)."""

    def __init__(self, reason: str, command_id: int = 0, seq: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.seq = seq


class UnknownCommand(PduDecodeError):
    """A command_id this codec does not know (§5.1.2.1: answer generic_nack)."""


FieldValue = int | bytes


@dataclass(slots=True)
class Pdu:
    """One PDU: header values, mandatory fields by name, TLVs by tag (raw values)."""

    command_id: int
    seq: int
    status: int = 0
    fields: dict[str, FieldValue] = field(default_factory=dict)
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The command name, e.g. `submit_sm_resp`; `generic_nack` has the response bit set
        and no request of its own (§5.1.2.1)."""
        if self.command_id == GENERIC_NACK:
            return COMMAND_NAMES[GENERIC_NACK]
        base = COMMAND_NAMES.get(self.command_id & ~RESP, f"0x{self.command_id:08x}")
        return base + "_resp" if self.command_id & RESP else base

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESP)

    def text(self, name: str) -> str:
        """A C-string field as text (latin-1 never fails; SMPP strings are ASCII)."""
        value = self.fields.get(name, b"")
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    def num(self, name: str) -> int:
        """A one-octet field (0 when absent)."""
        value = self.fields.get(name, 0)
        return value if isinstance(value, int) else 0

    def raw(self, name: str) -> bytes:
        """A bytes field (b'' when absent)."""
        value = self.fields.get(name, b"")
        return value if isinstance(value, bytes) else b""

    def tlv_int(self, tag: int) -> int | None:
        """A TLV as a big-endian unsigned integer, or None."""
        value = self.tlvs.get(tag)
        return int.from_bytes(value, "big") if value else None

    def tlv_text(self, tag: int) -> str | None:
        """A C-string TLV as text without its terminating NUL, or None."""
        value = self.tlvs.get(tag)
        return value.split(b"\0", 1)[0].decode("latin-1") if value is not None else None


_OCTETS = tuple(bytes((i,)) for i in range(256))


def _encode_body(layout: tuple[tuple[str, str], ...], fields: dict[str, FieldValue | str]) -> bytes:
    """The mandatory fields in `layout` order: "b" one octet, "c" a NUL-terminated string,
    "sm" sm_length then short_message (§4.4.1). One loop, no call per field (a submit_sm
    has 17)."""
    out: list[bytes] = []
    put = out.append
    get = fields.get
    for name, kind in layout:
        value = get(name)
        if kind == "b":
            put(_OCTETS[int(value or 0) & 0xFF])
            continue
        if isinstance(value, str):
            value = value.encode("latin-1")
        elif value is None or isinstance(value, int):
            value = b""
        if kind == "c":
            put(value)
            put(b"\0")
        else:
            put(bytes((len(value),)))  # ValueError past 255 octets
            put(value)
    return b"".join(out)


def encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    """TLVs as tag, length, value (§3.3)."""
    return b"".join(struct.pack(">HH", tag, len(v)) + v for tag, v in tlvs.items())


def encode(
    command_id: int,
    seq: int,
    fields: dict[str, FieldValue | str] | None = None,
    tlvs: dict[int, bytes] | None = None,
    status: int = 0,
) -> bytes:
    """Encode a PDU; absent fields are empty strings / zero."""
    layout = LAYOUTS.get(command_id, ())
    body = b""
    # §4.4.2 and others: a response with an error status carries no body.
    if not (command_id & RESP and status and command_id != QUERY_SM | RESP):
        body = _encode_body(layout, fields or {})
    if tlvs:
        body += encode_tlvs(tlvs)
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, seq) + body


def encode_pdu(pdu: Pdu) -> bytes:
    """Encode a `Pdu` object."""
    return encode(pdu.command_id, pdu.seq, dict(pdu.fields), pdu.tlvs, pdu.status)


def decode(data: bytes | memoryview) -> Pdu:
    """Decode one whole PDU (header included); raises `PduDecodeError`."""
    if len(data) < HEADER_LEN:
        raise PduDecodeError("shorter than a header")
    length, command_id, status, seq = HEADER.unpack_from(data)
    if length != len(data):
        raise PduDecodeError("length mismatch", command_id, seq)
    layout = LAYOUTS.get(command_id)
    if layout is None:
        raise UnknownCommand(f"unknown command 0x{command_id:08x}", command_id, seq)
    body = bytes(data[HEADER_LEN:])
    pdu = Pdu(command_id, seq, status)
    if not body:
        return pdu  # empty body: e.g. an error response (§4.4.2) — fields stay absent
    pos = 0
    end = len(body)
    fields = pdu.fields
    try:
        for name, kind in layout:
            if kind == "c":
                nul = body.index(b"\0", pos)
                fields[name] = body[pos:nul]
                pos = nul + 1
            elif kind == "b":
                fields[name] = body[pos]
                pos += 1
            else:
                n = body[pos]
                if pos + 1 + n > end:
                    raise PduDecodeError("short_message runs past the PDU", command_id, seq)
                fields[name] = body[pos + 1 : pos + 1 + n]
                pos += 1 + n
    except (ValueError, IndexError) as exc:
        if isinstance(exc, PduDecodeError):
            raise
        raise PduDecodeError(f"truncated body (field {name!r})", command_id, seq) from exc
    while pos < end:
        if pos + 4 > end:
            raise PduDecodeError("truncated TLV header", command_id, seq)
        tag, n = struct.unpack_from(">HH", body, pos)
        if pos + 4 + n > end:
            raise PduDecodeError(f"TLV 0x{tag:04x} runs past the PDU", command_id, seq)
        pdu.tlvs[tag] = body[pos + 4 : pos + 4 + n]
        pos += 4 + n
    return pdu


def split_frames(buf: bytearray) -> tuple[list[bytes], int]:
    """Cut whole PDUs off the front of `buf` (consumed in place).

    Returns the frames and 0, or the frames before a bad command_length and that length
    (the stream has lost its framing; the caller closes the connection).
    """
    frames: list[bytes] = []
    pos = 0
    n = len(buf)
    while n - pos >= 4:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        if length < HEADER_LEN or length > MAX_PDU_LEN:
            del buf[:pos]
            return frames, length or -1
        if n - pos < length:
            break
        frames.append(bytes(buf[pos : pos + length]))
        pos += length
    del buf[:pos]
    return frames, 0
