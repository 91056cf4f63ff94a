"""SMS-SUBMIT building (TS 23.040 §9.2.2.2), cross-checked with the independent smspdudecoder."""

import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smspdudecoder.fields import SMSSubmit

from smsgw_shared.sms.errors import PduError, TooManyPartsError
from smsgw_shared.sms.pdu import build_binary_submit_pdus, build_submit_pdus
from smsgw_shared.sms.pdu_decode import decode_submit
from smsgw_shared.sms.pdu_fields import (
    Address,
    Reader,
    decode_address,
    decode_timestamp,
    encode_address,
    encode_smsc,
    encode_timestamp,
    relative_validity,
    validity_seconds,
)
from smsgw_shared.sms.udh import ConcatInfo


def independent(hex_pdu: str) -> dict[str, Any]:
    result: dict[str, Any] = SMSSubmit.decode(io.StringIO(hex_pdu))
    return result


def test_known_submit() -> None:
    (pdu,) = build_submit_pdus("hellohello", "+27838890001", validity=timedelta(days=4))
    assert pdu.hex == "0011000B917238880900F10000AA0AE8329BFD4697D9EC37"
    assert pdu.tpdu_length == 23  # AT+CMGS=23: the SMSC prefix "00" is not counted
    assert pdu.message_ref == 0
    assert pdu.concat is None


def test_submit_fields_cross_checked() -> None:
    (pdu,) = build_submit_pdus(
        "Hi €", "+79203048606", message_ref=77, status_report=True, validity=3600
    )
    other = independent(pdu.hex)
    assert other["header"] == {
        "rp": False, "udhi": False, "srr": True, "vpf": 2, "rd": False, "mti": "submit"
    }  # fmt: skip
    assert other["message-ref"] == 77
    assert other["recipient"]["number"] == "79203048606"
    assert other["recipient"]["toa"]["ton"] == "international"
    assert other["vp"] == 11  # (11 + 1) x 5 minutes = 1 hour
    assert other["user_data"]["data"] == "Hi €"


def test_multipart_gsm7_cross_checked() -> None:
    text = "x" * 152 + "€" + "y" * 200
    pdus = build_submit_pdus(text, "+79203048606", message_ref=255, concat_ref=0x42)
    assert [p.message_ref for p in pdus] == [255, 0, 1]
    assert [p.concat for p in pdus] == [ConcatInfo(0x42, 3, i, 8) for i in (1, 2, 3)]
    decoded = [independent(p.hex) for p in pdus]
    for i, d in enumerate(decoded, start=1):
        (element,) = d["user_data"]["header"]["elements"]
        assert element["data"] == {"reference": 0x42, "parts_count": 3, "part_number": i}
    assert "".join(d["user_data"]["data"] for d in decoded) == text
    assert decoded[1]["user_data"]["data"].startswith("€")


def test_multipart_ucs2_16bit_ref_cross_checked() -> None:
    text = "Привет 😀 " * 30
    pdus = build_submit_pdus(text, "+79203048606", concat_ref=0x1234, ref_bits=16)
    decoded = [independent(p.hex) for p in pdus]
    assert all(d["dcs"]["encoding"] == "ucs2" for d in decoded)
    assert decoded[0]["user_data"]["header"]["elements"][0]["iei"] == 0x08
    assert decoded[0]["user_data"]["header"]["elements"][0]["data"]["reference"] == 0x1234
    assert "".join(d["user_data"]["data"] for d in decoded) == text


def test_flash_absolute_validity_and_smsc() -> None:
    until = datetime(2030, 5, 17, 13, 45, 30, tzinfo=timezone(timedelta(hours=-3)))
    (pdu,) = build_submit_pdus(
        "flash", "89203048606", flash=True, validity=until, smsc="+79168999100"
    )
    assert pdu.hex.startswith("07919761989901F0")
    assert pdu.tpdu_length == len(pdu.hex) // 2 - 8
    decoded = decode_submit(pdu.hex)
    assert decoded.smsc == "+79168999100"
    assert decoded.dcs.flash
    assert decoded.validity_until == until
    assert decoded.recipient == Address("89203048606", 0, 1)
    assert independent(pdu.hex)["header"]["vpf"] == 3


def test_binary_submit_keeps_udh() -> None:
    data = bytes(range(256)) + bytes(44)
    pdus = build_binary_submit_pdus(data, "+79203048606", concat_ref=9)
    assert len(pdus) == 3
    decoded = [decode_submit(p.hex) for p in pdus]
    assert all(d.concat is not None and d.concat.ref == 9 for d in decoded)
    assert b"".join(d.user_data.payload for d in decoded) == data
    assert independent(pdus[0].hex)["dcs"]["encoding"] == "binary"


def test_submit_errors() -> None:
    with pytest.raises(PduError):
        build_submit_pdus("x", "+79203048606", message_ref=256)
    with pytest.raises(TooManyPartsError):
        build_submit_pdus("x" * 2000, "+79203048606", max_parts=5)
    with pytest.raises(PduError):
        build_submit_pdus("x", "+79203048606", validity=datetime(2030, 1, 1))  # naive
    with pytest.raises(PduError):
        build_submit_pdus("x", "+79203048606", validity=0)
    with pytest.raises(PduError):
        build_submit_pdus("x", "")


@pytest.mark.parametrize(
    ("address", "hex_field"),
    [
        ("Design@Home", "14D0C4F23C7D760390EF7619"),  # smspdudecoder's doc example
        ("+15551234567", "0B915155214365F7"),
        ("1234", "04812143"),
    ],
)
def test_address_encoding(address: str, hex_field: str) -> None:
    assert encode_address(address).hex().upper() == hex_field
    assert decode_address(Reader(bytes.fromhex(hex_field)), "TP-DA").number == address


@pytest.mark.parametrize("name", ["ABCDEFG", "A", "MyShop", "ABCDEFGHIJK", "Shop{1}"])
def test_alphanumeric_roundtrip_no_trailing_at(name: str) -> None:
    # python-messaging decodes a 7-character name with a trailing '@'
    address = decode_address(Reader(encode_address(name)), "TP-OA")
    assert address.number == name
    assert address.is_alphanumeric


def test_address_errors() -> None:
    with pytest.raises(PduError):
        encode_address("ABCDEFGHIJKL")  # 12 septets
    with pytest.raises(PduError):
        encode_address("Привет")
    with pytest.raises(PduError):
        encode_address("+1" + "2" * 20)
    with pytest.raises(PduError):
        encode_smsc("Shop")
    assert encode_smsc(None) == b"\x00"


@pytest.mark.parametrize(
    ("seconds", "vp", "back"),
    [
        (1, 0, 300),
        (300, 0, 300),
        (301, 1, 600),
        (3600, 11, 3600),
        (12 * 3600, 143, 12 * 3600),
        (12 * 3600 + 1, 144, 12 * 3600 + 1800),
        (24 * 3600, 167, 24 * 3600),
        (24 * 3600 + 1, 168, 2 * 86400),
        (30 * 86400, 196, 30 * 86400),
        (30 * 86400 + 1, 197, 5 * 604800),
        (63 * 604800, 255, 63 * 604800),
        (10**9, 255, 63 * 604800),
    ],
)
def test_relative_validity(seconds: int, vp: int, back: int) -> None:
    # TS 23.040 §9.2.3.12.1; rounds up so a message never expires early
    assert relative_validity(seconds) == vp
    assert validity_seconds(vp) == back


@given(st.integers(1, 63 * 604800))
def test_relative_validity_never_shorter(seconds: int) -> None:
    vp = relative_validity(seconds)
    assert validity_seconds(vp) >= seconds
    assert vp == 0 or validity_seconds(vp - 1) < seconds


@pytest.mark.parametrize(
    ("moment", "hex_ts"),
    [
        (datetime(1999, 3, 29, 15, 16, 59, tzinfo=timezone(timedelta(hours=2))), "99309251619580"),
        (datetime(2013, 3, 25, 23, 1, 56, tzinfo=timezone(timedelta(hours=-7))), "3130523210658A"),
        (datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC), "42211332959500"),
    ],
)
def test_timestamps(moment: datetime, hex_ts: str) -> None:
    assert encode_timestamp(moment).hex().upper() == hex_ts
    assert decode_timestamp(bytes.fromhex(hex_ts), "TP-SCTS") == moment


def test_timestamp_errors() -> None:
    with pytest.raises(PduError):
        encode_timestamp(datetime(2024, 1, 1, tzinfo=timezone(timedelta(minutes=10))))
    with pytest.raises(PduError, match="BCD"):
        decode_timestamp(bytes.fromhex("4A211332959500"), "TP-SCTS")
    with pytest.raises(PduError):
        decode_timestamp(bytes.fromhex("42312332959500"), "TP-SCTS")  # month 13


@settings(max_examples=150, deadline=None)
@given(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=500),
    st.integers(0, 255),
    st.sampled_from([8, 16]),
)
def test_any_text_cross_checked(text: str, ref: int, ref_bits: int) -> None:
    pdus = build_submit_pdus(
        text,
        "+79203048606",
        concat_ref=ref,
        ref_bits=ref_bits,
        max_parts=None,  # type: ignore[arg-type]
    )
    theirs = [independent(p.hex) for p in pdus]
    ours = [decode_submit(p.hex) for p in pdus]
    assert "".join(d["user_data"]["data"] for d in theirs) == text
    assert "".join(d.text or "" for d in ours) == text
    for pdu, decoded in zip(pdus, ours, strict=True):
        assert pdu.tpdu_length == len(pdu.hex) // 2 - 1
        assert decoded.concat == pdu.concat
