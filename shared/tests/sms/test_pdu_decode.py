"""Decoding SMS-DELIVER, SMS-SUBMIT and SMS-STATUS-REPORT; bad PDUs raise PduError."""

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgw_shared.sms.encoding import Encoding
from smsgw_shared.sms.errors import PduError, SmsError, UdhError
from smsgw_shared.sms.pdu import build_deliver_pdus, build_status_report_pdu, build_submit_pdus
from smsgw_shared.sms.pdu_decode import (
    DeliveryStatus,
    SmsDeliver,
    decode_deliver,
    decode_pdu,
    decode_status_report,
    decode_submit,
    status_description,
    status_meaning,
)
from smsgw_shared.sms.pdu_fields import parse_dcs
from smsgw_shared.sms.udh import ConcatInfo

CLASSIC_DELIVER = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
STATUS_REPORT = "07911326060032F0060D0B911326880736F4111011719551401110117195714000"
CET = timezone(timedelta(hours=1))


def test_classic_deliver() -> None:
    sms = decode_deliver(CLASSIC_DELIVER)
    assert sms.smsc == "+27381000015"
    assert sms.sender.number == "27838890001"
    assert sms.text == "hellohello"
    assert sms.dcs.encoding is Encoding.GSM7
    assert sms.scts == datetime(1999, 3, 29, 15, 16, 59, tzinfo=timezone(timedelta(hours=2)))
    assert sms.concat is None
    assert not sms.more_messages


def test_status_report() -> None:
    report = decode_status_report(STATUS_REPORT)
    assert report.smsc == "+31626000230"
    assert report.message_ref == 13
    assert report.recipient.number == "+31628870634"
    assert report.scts == datetime(2011, 1, 11, 17, 59, 15, tzinfo=CET)
    assert report.discharge_time == datetime(2011, 1, 11, 17, 59, 17, tzinfo=CET)
    assert report.scts.tzinfo is not None
    assert report.status == 0
    assert report.meaning is DeliveryStatus.DELIVERED


def test_status_report_with_optional_fields() -> None:
    # TP-PI 0x07: PID, DCS and UDL present; 2 septets of text "hi"
    hexpdu = STATUS_REPORT + "07" + "00" + "00" + "02" + "E834"
    report = decode_status_report(hexpdu)
    assert report.user_data is not None
    assert report.user_data.text == "hi"


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (0x00, "delivered"),
        (0x01, "delivered"),
        (0x02, "delivered"),
        (0x1F, "delivered"),
        (0x20, "pending"),
        (0x21, "pending"),
        (0x3F, "pending"),
        (0x40, "failed"),
        (0x46, "failed"),
        (0x60, "failed"),
        (0x7F, "failed"),
        (0x80, "failed"),
        (0xFF, "failed"),
    ],
)
def test_status_meaning(status: int, meaning: str) -> None:
    assert status_meaning(status) == meaning
    assert meaning in status_description(status)


def test_status_description() -> None:
    assert status_description(0x46) == "validity period expired (failed)"
    assert status_description(0x61) == "reserved status, SC gave up (failed)"


def test_built_status_report_roundtrip() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=3)))
    pdu = build_status_report_pdu(42, "+79203048606", 0x46, scts=now, discharge_time=now)
    report = decode_status_report(pdu.hex)
    assert (report.message_ref, report.status, report.meaning) == (42, 0x46, "failed")
    assert report.recipient.number == "+79203048606"
    assert report.discharge_time == now


def test_deliver_multipart_alphanumeric_roundtrip() -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=3)))
    text = "Ваш код: 1234. " * 10
    pdus = build_deliver_pdus(text, "MyBank", scts=now, concat_ref=200, flash=True)
    decoded = [decode_deliver(p.hex) for p in pdus]
    assert [d.concat for d in decoded] == [ConcatInfo(200, 3, i, 8) for i in (1, 2, 3)]
    assert all(d.sender.number == "MyBank" and d.dcs.flash for d in decoded)
    assert "".join(d.text or "" for d in decoded) == text


def test_decode_pdu_dispatch_and_length_check() -> None:
    (submit,) = build_submit_pdus("x", "+79203048606")
    assert decode_submit(submit.hex).text == "x"
    assert isinstance(decode_pdu(CLASSIC_DELIVER, tpdu_length=28), SmsDeliver)
    with pytest.raises(PduError, match="expected 29"):
        decode_pdu(CLASSIC_DELIVER, tpdu_length=29)
    with pytest.raises(PduError, match="SMS-DELIVER"):
        decode_deliver(submit.hex)
    with pytest.raises(PduError, match="SMS-SUBMIT"):
        decode_submit(CLASSIC_DELIVER)
    with pytest.raises(PduError, match="STATUS-REPORT"):
        decode_status_report(CLASSIC_DELIVER)
    assert decode_deliver(CLASSIC_DELIVER[16:], has_smsc=False).text == "hellohello"


def test_8bit_and_ucs2_deliver() -> None:
    binary = decode_deliver(
        "00" + "04" + "0B917238880900F1" + "0004" + "99309251619580" + "03010203"
    )
    assert binary.text is None
    assert binary.user_data.payload == b"\x01\x02\x03"
    ucs2 = decode_deliver(
        "00" + "04" + "0B917238880900F1" + "0008" + "99309251619580" + "04D83DDE00"
    )
    assert ucs2.text == "😀"


@pytest.mark.parametrize("pdu", [CLASSIC_DELIVER, STATUS_REPORT])
def test_truncated_at_every_length(pdu: str) -> None:
    for cut in range(0, len(pdu), 2):
        with pytest.raises(PduError):
            decode_pdu(pdu[:cut])


def test_truncated_submits_at_every_length() -> None:
    pdus = build_submit_pdus("Привет 😀" * 12, "+79203048606", validity=60, concat_ref=1)
    pdus += build_submit_pdus("hello € " * 30, "Shop", concat_ref=2, ref_bits=16)
    for pdu in pdus:
        for cut in range(0, len(pdu.hex), 2):
            with pytest.raises(PduError):
                decode_pdu(pdu.hex[:cut])


@pytest.mark.parametrize(
    "pdu",
    [
        "XYZ",
        "0",
        CLASSIC_DELIVER + "0",
        CLASSIC_DELIVER[:-2] + "G7",
        CLASSIC_DELIVER + "00",  # trailing octet after the user data
        "0003",  # TP-MTI 3 is reserved
        "00" + "04" + "0B917238880900F1" + "0008" + "99309251619580" + "03D83DDE",  # odd UCS-2
        "00" + "04" + "0B917238880900F1" + "0008" + "99309251619580" + "02D83D",  # lone surrogate
        "00" + "04" + "0B917238880900F1" + "0000" + "99309251619580" + "A1" + "00" * 141,  # UDL
        "00" + "04" + "0B917238880900F1" + "0004" + "99309251619580" + "8D" + "00" * 141,
        "00" + "04" + "1B917238880900F1" + "0000" + "99309251619580" + "00",  # 27 digits
        "00" + "04" + "0B917238880900FF" + "0000" + "99309251619580" + "00",  # F inside
        "0C" + "04",  # SMSC length over 11
    ],
)
def test_corrupt_pdus(pdu: str) -> None:
    with pytest.raises(PduError):
        decode_pdu(pdu)


@pytest.mark.parametrize(
    "udh_and_text",
    [
        "07" + "08" + "050003010203",  # UDHL 8 beyond the 7 octets of user data (UCS-2)
        "06" + "06" + "0500030102",  # UDHL 6 but only 5 octets follow
        "05" + "04" + "00050102",  # concat element length 5 overruns the header
    ],
)
def test_corrupt_udh(udh_and_text: str) -> None:
    pdu = "00" + "44" + "0B917238880900F1" + "0008" + "99309251619580" + udh_and_text
    with pytest.raises(UdhError):
        decode_pdu(pdu)


def test_corrupt_udh_gsm7() -> None:
    # 7-bit, UDHI set, UDL 3 septets but UDHL claims 5 octets
    pdu = "00" + "44" + "0B917238880900F1" + "0000" + "99309251619580" + "03" + "050003"
    with pytest.raises(UdhError):
        decode_pdu(pdu)
    # UDL of 2 septets cannot even hold a 2-octet UDH
    pdu = "00" + "44" + "0B917238880900F1" + "0000" + "99309251619580" + "02" + "0100"
    with pytest.raises(UdhError):
        decode_pdu(pdu)


def test_errors_are_value_errors_not_index_errors() -> None:
    assert issubclass(PduError, SmsError)
    assert issubclass(SmsError, ValueError)
    assert not issubclass(PduError, IndexError)


@pytest.mark.parametrize(
    ("dcs", "encoding", "message_class"),
    [
        (0x00, "gsm7", None),
        (0x08, "ucs2", None),
        (0x04, "binary", None),
        (0x10, "gsm7", 0),
        (0x18, "ucs2", 0),
        (0x0C, "gsm7", None),  # reserved alphabet -> default
        (0xF0, "gsm7", 0),
        (0xF6, "binary", 2),
        (0xE0, "ucs2", None),
        (0xC0, "gsm7", None),
        (0x90, "gsm7", None),
    ],
)
def test_parse_dcs(dcs: int, encoding: str, message_class: int | None) -> None:
    parsed = parse_dcs(dcs)
    assert (parsed.encoding, parsed.message_class) == (encoding, message_class)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_random_bytes_never_crash_unnamed(data: bytes) -> None:
    with contextlib.suppress(SmsError):
        decode_pdu(data)


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=400))
def test_deliver_roundtrip(text: str) -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    pdus = build_deliver_pdus(text, "+79203048606", scts=now, concat_ref=7)
    decoded = [decode_deliver(p.hex) for p in pdus]
    assert "".join(d.text or "" for d in decoded) == text
    assert all(d.scts == now for d in decoded)
