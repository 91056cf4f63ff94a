"""Delivery receipt parsing: real-world text receipts from several SMSCs, TLVs, malformed."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgw_smpp import dlr
from smsgw_smpp import pdu as sp
from smsgw_smpp.dlr import (
    format_receipt_text,
    is_receipt,
    parse_date,
    parse_receipt,
    parse_receipt_text,
    scan_receipt_text,
)


def _deliver(text: str = "", esm: int = 0x04, tlvs: dict[int, bytes] | None = None) -> sp.Pdu:
    raw = sp.encode(sp.DELIVER_SM, 1, {"esm_class": esm, "short_message": text.encode()}, tlvs)
    return sp.decode(raw)


RECEIPTS = [
    # SMPP 3.4 Appendix B, as Logica/OpenSMPP and most SMSCs write it
    (
        "id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191019 "
        "stat:DELIVRD err:000 text:Hello world",
        "0123456789",
        "delivered",
        None,
        datetime(2006, 10, 19, 10, 19, tzinfo=UTC),
    ),
    # capitalised Text, undelivered with an error code
    (
        "id:1234567890 sub:001 dlvrd:000 submit date:1505051200 done date:1505051201 "
        "stat:UNDELIV err:001 Text:Your code is 1234",
        "1234567890",
        "undelivered",
        "001",
        datetime(2015, 5, 5, 12, 1, tzinfo=UTC),
    ),
    # hex id, 12-digit dates with seconds
    (
        "id:7B3F2A1C sub:001 dlvrd:001 submit date:200101120000 done date:200101120005 "
        "stat:DELIVRD err:000 text:",
        "7B3F2A1C",
        "delivered",
        None,
        datetime(2020, 1, 1, 12, 0, 5, tzinfo=UTC),
    ),
    # fields missing (no sub/dlvrd/text)
    (
        "id:abc123 submit date:2001011200 done date:2001011201 stat:EXPIRED err:000",
        "abc123",
        "expired",
        None,
        datetime(2020, 1, 1, 12, 1, tzinfo=UTC),
    ),
    # upper-case keys
    (
        "ID:123 SUB:001 DLVRD:001 SUBMIT DATE:2001011200 DONE DATE:2001011201 STAT:DELIVRD "
        "ERR:000 TEXT:hi",
        "123",
        "delivered",
        None,
        datetime(2020, 1, 1, 12, 1, tzinfo=UTC),
    ),
    # underscore spelling, rejected
    (
        "id:123 submit_date:2001011200 done_date:2001011201 stat:REJECTD err:069",
        "123",
        "rejected",
        "069",
        datetime(2020, 1, 1, 12, 1, tzinfo=UTC),
    ),
    # another order, short err, no dates
    ("stat:DELIVRD id:55 err:0", "55", "delivered", None, None),
    # a text that contains colons and receipt words
    (
        "id:9 sub:001 dlvrd:001 submit date:2001011200 done date:2001011201 stat:DELIVRD "
        "err:000 text:stat:UNDELIV id:666 err:1",
        "9",
        "delivered",
        None,
        datetime(2020, 1, 1, 12, 1, tzinfo=UTC),
    ),
    # intermediate and buffered states
    ("id:10 stat:ENROUTE err:000", "10", "enroute", None, None),
    ("id:11 stat:ACCEPTD err:000", "11", "accepted", None, None),
    ("id:12 stat:BUFFRED err:000", "12", "enroute", None, None),
    # full words some SMSCs use; 14-digit dates
    (
        "id:13 submit date:20200101120000 done date:20200101120100 stat:DELIVERED err:000",
        "13",
        "delivered",
        None,
        datetime(2020, 1, 1, 12, 1, tzinfo=UTC),
    ),
    ("id:14 stat:UNKNOWN err:999", "14", "undelivered", "999", None),
    ("id:15 stat:DELETED err:000", "15", "undelivered", None, None),
    # impossible date: kept as a receipt, the time is simply unknown
    ("id:16 done date:2013311299 stat:DELIVRD", "16", "delivered", None, None),
    # extra whitespace around values
    ("id:  17   stat: DELIVRD  err: 000", "17", "delivered", None, None),
]


@pytest.mark.parametrize(("text", "rid", "state", "err", "done"), RECEIPTS)
def test_text_receipts(
    text: str, rid: str, state: str, err: str | None, done: datetime | None
) -> None:
    r = parse_receipt(_deliver(text))
    assert r is not None
    assert (r.message_id, r.state, r.error_code, r.done_date) == (rid, state, err, done)
    assert r.id_from_text


@pytest.mark.parametrize("text", ["", "garbage", "id: stat:DELIVRD", "stat:DELIVRD err:000"])
def test_receipts_without_an_id_are_not_guessed(text: str) -> None:
    assert parse_receipt(_deliver(text)) is None


def test_tlv_receipt_wins_over_text_and_maps_message_state() -> None:
    tlvs = {sp.TLV_RECEIPTED_MESSAGE_ID: b"0A1B\0", sp.TLV_MESSAGE_STATE: bytes((3,))}
    r = parse_receipt(_deliver("id:2587 stat:DELIVRD err:000", tlvs=tlvs))
    assert r is not None
    assert (r.message_id, r.state, r.id_from_text) == ("0A1B", "expired", False)
    only_tlv = parse_receipt(_deliver("", tlvs=tlvs | {sp.TLV_MESSAGE_STATE: bytes((8,))}))
    assert only_tlv is not None and only_tlv.state == "rejected"


def test_network_error_code_tlv() -> None:
    tlvs = {
        sp.TLV_RECEIPTED_MESSAGE_ID: b"42\0",
        sp.TLV_MESSAGE_STATE: bytes((5,)),
        sp.TLV_NETWORK_ERROR_CODE: bytes((1, 0, 27)),  # GSM, error 27 (absent subscriber)
    }
    r = parse_receipt(_deliver("", tlvs=tlvs))
    assert r is not None and (r.state, r.error_code) == ("undelivered", "1:27")


def test_receipt_in_message_payload() -> None:
    raw = sp.encode(
        sp.DELIVER_SM,
        1,
        {"esm_class": 0x04},
        {sp.TLV_MESSAGE_PAYLOAD: b"id:77 stat:DELIVRD err:000"},
    )
    r = parse_receipt(sp.decode(raw))
    assert r is not None and r.message_id == "77"


def test_is_receipt() -> None:
    assert is_receipt(_deliver("x", esm=0x04))
    assert is_receipt(_deliver("x", esm=0x20))  # intermediate notification
    assert not is_receipt(_deliver("id:1 stat:DELIVRD", esm=0x00))  # an MO that looks alike
    assert not is_receipt(_deliver("hello", esm=0x40))  # UDHI MO
    tlvs = {sp.TLV_RECEIPTED_MESSAGE_ID: b"1\0", sp.TLV_MESSAGE_STATE: b"\x02"}
    assert is_receipt(_deliver("", esm=0, tlvs=tlvs))


def test_parse_date_forms() -> None:
    assert parse_date("2401311259") == datetime(2024, 1, 31, 12, 59, tzinfo=UTC)
    assert parse_date("240131125901") == datetime(2024, 1, 31, 12, 59, 1, tzinfo=UTC)
    assert parse_date("20240131125901") == datetime(2024, 1, 31, 12, 59, 1, tzinfo=UTC)
    for bad in ("", None, "24013112", "abcdefghij", "2402301200"):
        assert parse_date(bad) is None


def test_parse_date_gives_strptimes_answer() -> None:
    """parse_date reads the digits by hand: the same answer as strptime (%y: 69-99 → 19xx)
    for every form, century edge, impossible date and non-ASCII digit."""
    forms = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S", 14: "%Y%m%d%H%M%S"}
    cases = [
        "6812311259", "6901010000", "0002290000", "0102290000", "2413010000", "2401320000",
        "2401312400", "2401312360", "240131235960", "99123123595", "19991231235959",
        "00000101000000", "20240229120000", "20230229120000", "²401311259", "２４01311259",
        " 2401311259 ", "24013112599", "+401311259", "2401311259\n",
    ]  # fmt: skip
    for value in cases:
        digits = value.strip()
        expected = None
        if digits.isascii() and digits.isdigit() and len(digits) in forms:
            with contextlib.suppress(ValueError):
                expected = datetime.strptime(digits, forms[len(digits)]).replace(tzinfo=UTC)
        assert parse_date(value) == expected, value


def test_fields_dict() -> None:
    f = parse_receipt_text("id:1 sub:002 dlvrd:001 submit date:2401311259 text:a:b")
    assert f == {
        "id": "1",
        "sub": "002",
        "dlvrd": "001",
        "submit_date": "2401311259",
        "text": "a:b",
    }


# Mostly values that fit the layout (no whitespace), sometimes anything.
_WORD = st.one_of(
    st.text(alphabet=st.sampled_from("aZ09:_-DELIVRD"), max_size=8),
    st.text(alphabet=st.sampled_from("aZ09:_- \t\nDELIVRD"), max_size=12),
)
_SEP = st.sampled_from([" "] * 12 + ["  ", "\t", ""])


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(_WORD, min_size=8, max_size=8),
    seps=st.lists(_SEP, min_size=8, max_size=8),
)
def test_the_appendix_b_shortcut_reads_what_the_scan_reads(
    values: list[str], seps: list[str]
) -> None:
    """Receipts in (and near) Appendix B's exact layout: the one-match shortcut gives the
    same fields as the key-by-key scan, whichever of them takes the text."""
    keys = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:"]
    text = "".join(
        f"{sep if i else ''}{k}{v}"
        for i, (k, v, sep) in enumerate(zip(keys, values, seps, strict=True))
    )
    assert parse_receipt_text(text) == scan_receipt_text(text)


def test_the_common_layout_takes_the_shortcut() -> None:
    text = format_receipt_text("0a1b", "DELIVRD", text="hello: stat:x")
    assert dlr._APPENDIX_B.fullmatch(text) is not None
    assert parse_receipt_text(text) == scan_receipt_text(text)
    assert parse_receipt_text(text)["text"] == "hello: stat:x"
