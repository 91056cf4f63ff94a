"""SMPP 3.4 short_message / UDH / SAR / message_payload, and decoding deliver_sm."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgw_shared.sms.errors import (
    PduError,
    SmsError,
    TooManyPartsError,
    UdhError,
    UnencodableCharactersError,
)
from smsgw_shared.sms.smpp_payload import build_smpp_parts, decode_short_message
from smsgw_shared.sms.udh import ConcatInfo


def test_single_gsm7_is_unpacked_septets() -> None:
    msg = build_smpp_parts("Hi €@")
    assert msg.data_coding == 0
    (part,) = msg.parts
    assert part.short_message == b"Hi \x1b\x65\x00"
    assert part.esm_class == 0
    assert part.sar_msg_ref_num is None


def test_single_ucs2() -> None:
    msg = build_smpp_parts("Привет")
    assert msg.data_coding == 8
    assert msg.parts[0].short_message == "Привет".encode("utf-16-be")
    assert msg.ucs2_chars == ("П", "р", "и", "в", "е", "т")


def test_udh_mode() -> None:
    msg = build_smpp_parts("a" * 152 + "€" + "b" * 100, ref=0x33)
    assert [p.esm_class for p in msg.parts] == [0x40, 0x40]
    first, second = (p.short_message for p in msg.parts)
    assert first[:6] == bytes.fromhex("050003330201")
    assert len(first) == 6 + 152
    assert second[:6] == bytes.fromhex("050003330202")
    assert second[6:8] == b"\x1b\x65"


def test_udh_mode_16bit_ref() -> None:
    msg = build_smpp_parts("я" * 100, ref=0xABCD, ref_bits=16)
    assert msg.parts[0].short_message[:7] == bytes.fromhex("060804ABCD0201")
    assert len(msg.parts[0].short_message) == 7 + 66 * 2


def test_sar_mode() -> None:
    msg = build_smpp_parts("я" * 150, mode="sar", ref=0x1234)
    assert [(p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum) for p in msg.parts] == [
        (0x1234, 3, 1),
        (0x1234, 3, 2),
        (0x1234, 3, 3),
    ]
    assert all(p.esm_class == 0 for p in msg.parts)
    assert [len(p.short_message) for p in msg.parts] == [134, 134, 32]
    with pytest.raises(SmsError):
        build_smpp_parts("я" * 150, mode="sar", ref=70000)


def test_payload_mode() -> None:
    msg = build_smpp_parts("x" * 500, mode="payload", max_parts=None)
    (part,) = msg.parts
    assert part.short_message == b""
    assert part.message_payload == b"x" * 500
    with pytest.raises(TooManyPartsError):
        build_smpp_parts("x" * 5000, mode="payload")


def test_latin1() -> None:
    msg = build_smpp_parts("café " * 40, data_coding=3)
    assert msg.data_coding == 3
    assert [len(p.short_message) for p in msg.parts] == [6 + 134, 6 + 66]
    assert "".join(p.text for p in msg.parts) == "café " * 40
    with pytest.raises(UnencodableCharactersError) as info:
        build_smpp_parts("café €", data_coding=3)
    assert info.value.chars == ("€",)


def test_forced_codings() -> None:
    assert build_smpp_parts("abc", data_coding=8).data_coding == 8
    with pytest.raises(UnencodableCharactersError):
        build_smpp_parts("abc я", data_coding=0)
    assert build_smpp_parts("“abc”", data_coding=0, substitute=True).parts[0].short_message == (
        b'"abc"'
    )
    with pytest.raises(SmsError):
        build_smpp_parts("abc", data_coding=4)
    with pytest.raises(SmsError):
        build_smpp_parts("abc", mode="other")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("short_message", "data_coding", "text"),
    [
        (b"Hi \x1b\x65\x00", 0, "Hi €@"),
        (b"hello", 1, "hello"),
        (b"caf\xe9", 3, "café"),
        ("Привет".encode("utf-16-be"), 8, "Привет"),
        ("Привет".encode("iso8859-5"), 6, "Привет"),
        (b"\x01\x02", 4, None),
        (b"\x01\x02", 2, None),
        (b"Hi", 0xF0, "Hi"),
        ("я".encode("utf-16-be"), 0xE0, "я"),
    ],
)
def test_decode(short_message: bytes, data_coding: int, text: str | None) -> None:
    decoded = decode_short_message(short_message, data_coding)
    assert decoded.text == text
    assert decoded.concat is None


def test_decode_udh_and_sar() -> None:
    decoded = decode_short_message(bytes.fromhex("050003330201") + b"abc", 0, 0x40)
    assert decoded.text == "abc"
    assert decoded.concat == ConcatInfo(0x33, 2, 1, 8)
    decoded = decode_short_message(
        b"abc", 0, sar_msg_ref_num=513, sar_total_segments=2, sar_segment_seqnum=2
    )
    assert decoded.concat == ConcatInfo(513, 2, 2, 16)


@pytest.mark.parametrize(
    ("short_message", "data_coding", "esm_class", "error"),
    [
        (b"\x80", 0, 0, PduError),
        (b"\xff", 1, 0, PduError),
        (b"\x00", 8, 0, PduError),
        (b"\xd8\x3d", 8, 0, PduError),
        (b"\x09\x00\x03", 0, 0x40, UdhError),
        (b"", 0, 0x40, UdhError),
    ],
)
def test_decode_errors(
    short_message: bytes, data_coding: int, esm_class: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        decode_short_message(short_message, data_coding, esm_class)


@settings(max_examples=150, deadline=None)
@given(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=500),
    st.sampled_from(["udh", "sar", "payload"]),
)
def test_roundtrip(text: str, mode: str) -> None:
    msg = build_smpp_parts(text, mode=mode, max_parts=None)  # type: ignore[arg-type]
    out = []
    for part in msg.parts:
        raw = part.message_payload if part.message_payload is not None else part.short_message
        decoded = decode_short_message(
            raw,
            msg.data_coding,
            part.esm_class,
            sar_msg_ref_num=part.sar_msg_ref_num,
            sar_total_segments=part.sar_total_segments,
            sar_segment_seqnum=part.sar_segment_seqnum,
        )
        assert decoded.text == part.text
        if len(msg.parts) > 1:
            assert decoded.concat is not None and decoded.concat.total == len(msg.parts)
        assert len(part.short_message) <= 140
        out.append(decoded.text or "")
    assert "".join(out) == text
