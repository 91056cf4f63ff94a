"""The SMPP 3.4 PDU codec: round trips, framing, malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw_smpp import pdu as sp


def test_submit_sm_round_trip_with_tlvs() -> None:
    fields = {
        "source_addr_ton": 5,
        "source_addr": "Shop",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": "79160000000",
        "esm_class": 0x40,
        "data_coding": 8,
        "registered_delivery": 1,
        "short_message": b"\x05\x00\x03\x01\x02\x01" + "Привет".encode("utf-16-be"),
    }
    tlvs = {sp.TLV_SAR_MSG_REF_NUM: b"\x01\x02", 0x1400: b"vendor"}
    raw = sp.encode(sp.SUBMIT_SM, 7, fields, tlvs)
    pdu = sp.decode(raw)
    assert (pdu.command_id, pdu.seq, pdu.status, pdu.name) == (sp.SUBMIT_SM, 7, 0, "submit_sm")
    assert pdu.text("source_addr") == "Shop" and pdu.num("data_coding") == 8
    assert pdu.raw("short_message") == fields["short_message"]
    assert pdu.tlvs == tlvs and pdu.tlv_int(sp.TLV_SAR_MSG_REF_NUM) == 0x0102
    assert sp.encode_pdu(pdu) == raw


def test_error_response_has_no_body() -> None:
    raw = sp.encode(sp.SUBMIT_SM | sp.RESP, 3, {"message_id": "x"}, status=0x58)
    assert len(raw) == 16
    pdu = sp.decode(raw)
    assert pdu.status == 0x58 and pdu.fields == {} and pdu.name == "submit_sm_resp"


def test_query_sm_resp_and_bind() -> None:
    raw = sp.encode(
        sp.QUERY_SM | sp.RESP,
        9,
        {"message_id": "A1", "final_date": "", "message_state": 2, "error_code": 0},
    )
    pdu = sp.decode(raw)
    assert pdu.text("message_id") == "A1" and pdu.num("message_state") == 2
    bind = sp.decode(sp.encode(sp.BIND_TRANSCEIVER, 1, {"system_id": "smsgw", "password": "p"}))
    assert bind.text("system_id") == "smsgw" and bind.num("interface_version") == 0


@pytest.mark.parametrize(
    "raw",
    [
        sp.HEADER.pack(21, sp.DELIVER_SM, 0, 1) + b"\x00\x01\x01ab",  # unterminated string
        sp.HEADER.pack(20, sp.SUBMIT_SM | sp.RESP, 0, 1) + b"abcd",  # no NUL
        sp.encode(sp.DELIVER_SM, 1, {"short_message": b"x"})[:-2] + b"\x05x",  # sm past end
    ],
)
def test_truncated_bodies_raise_decode_error(raw: bytes) -> None:
    raw = sp.HEADER.pack(len(raw), *sp.HEADER.unpack_from(raw)[1:]) + raw[16:]
    with pytest.raises(sp.PduDecodeError) as exc:
        sp.decode(raw)
    assert exc.value.seq == 1


def test_truncated_tlv_and_unknown_command() -> None:
    body = sp.encode(sp.DELIVER_SM, 4, {})[16:] + b"\x14\x01\x00\x09ab"
    with pytest.raises(sp.PduDecodeError, match="TLV"):
        sp.decode(sp.HEADER.pack(16 + len(body), sp.DELIVER_SM, 0, 4) + body)
    with pytest.raises(sp.UnknownCommand):
        sp.decode(sp.HEADER.pack(16, 0x77, 0, 5))


def test_split_frames_keeps_partial_and_flags_bad_length() -> None:
    a = sp.encode(sp.ENQUIRE_LINK, 1)
    b = sp.encode(sp.SUBMIT_SM | sp.RESP, 2, {"message_id": "abc"})
    buf = bytearray(a + b + b[:5])
    frames, bad = sp.split_frames(buf)
    assert frames == [a, b] and bad == 0 and bytes(buf) == b[:5]
    buf += b[5:]
    assert sp.split_frames(buf) == ([b], 0)
    garbage = bytearray(b"\xff\xff\xff\xff" + bytes(12))
    assert sp.split_frames(garbage) == ([], 0xFFFFFFFF)
    assert sp.split_frames(bytearray(bytes(16)))[1] == -1  # command_length 0


@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_decode_error(body: bytes) -> None:
    for cid in (sp.DELIVER_SM, sp.SUBMIT_SM | sp.RESP, sp.QUERY_SM | sp.RESP, sp.DATA_SM):
        with contextlib.suppress(sp.PduDecodeError):
            sp.decode(sp.HEADER.pack(16 + len(body), cid, 0, 1) + body)
