"""deliver_sm whose UCS-2 text holds a lone surrogate (an emoji cut between two parts by
the sending phone): kept as text with U+FFFD and its octets as hex, its concatenation kept."""

from __future__ import annotations

from smsgw_smpp import pdu as sp
from smsgw_smpp.deliveries import inbound_part


def deliver(short_message: bytes, data_coding: int = 8, esm_class: int = 0) -> sp.Pdu:
    fields: dict[str, sp.FieldValue] = {
        "source_addr_ton": 1,
        "source_addr": b"79160000001",
        "destination_addr": b"1234",
        "data_coding": data_coding,
        "esm_class": esm_class,
        "short_message": short_message,
    }
    return sp.Pdu(sp.DELIVER_SM, 1, fields=fields)


def test_lone_surrogate_in_a_part_keeps_its_text_octets_and_concat() -> None:
    text = "hi".encode("utf-16-be") + bytes.fromhex("d83d")  # the high half of 😀
    udh = bytes.fromhex("0500030a0201")
    part = inbound_part(deliver(udh + text, esm_class=0x40), "smpp:b1")
    assert (part.text, part.encoding, part.raw_hex) == ("hi\ufffd", "ucs2", "00680069d83d")
    assert part.concat is not None and (part.concat.total, part.concat.seq) == (2, 1)
    assert part.sender == "+79160000001"
    part.to_bytes()  # JSON can carry it


def test_lone_surrogate_in_a_gsm_dcs_ucs2_message() -> None:
    part = inbound_part(deliver(bytes.fromhex("de000021"), data_coding=0xE0), "smpp:b1")
    assert (part.text, part.encoding, part.raw_hex) == ("\ufffd!", "ucs2", "de000021")


def test_odd_length_ucs2_is_still_binary() -> None:
    part = inbound_part(deliver(bytes.fromhex("006100")), "smpp:b1")
    assert (part.text, part.encoding, part.raw_hex) == ("006100", "binary", None)


def test_gsm_dcs_groups_are_labelled_as_decoded() -> None:
    """TS 23.038 §4: 0xE0-0xEF are UCS-2, 0xC0-0xDF and 0xF0-0xF3/0xF8-0xFB GSM-7."""
    ucs2 = inbound_part(deliver("hi".encode("utf-16-be"), data_coding=0xE0), "smpp:b1")
    assert (ucs2.text, ucs2.encoding) == ("hi", "ucs2")
    gsm7 = inbound_part(deliver(b"hi", data_coding=0xC8), "smpp:b1")
    assert (gsm7.text, gsm7.encoding) == ("hi", "gsm7")
