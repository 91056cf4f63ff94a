"""The SMPP codec and the SMSC simulator against smpplib, an independent implementation.

- Every PDU type smsgw uses, encoded by smpplib and by our codec from the same values: the
  octets are equal, our decoder reads smpplib's octets, and smpplib reads ours.
- The submit_sm PDUs the worker really builds (`encode.build_submits`: UDH, SAR and
  message_payload splits, UCS-2) read back by smpplib as the same fields.
- smpplib's client bound to our simulator: a long message sent in UDH parts is reassembled
  by the simulator, and smpplib reads the delivery receipts it sends back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.gsm
import smpplib.smpp

from smsgw_shared.config import SmppBindConfig
from smsgw_shared.messages import SendJob
from smsgw_shared.sms import ConcatRefCounter
from smsgw_smpp import pdu as sp
from smsgw_smpp.dlr import parse_receipt_text
from smsgw_smpp.encode import build_submits

from .conftest import SimControl

# smpplib's name of each TLV we use, and its tag
TLV_NAMES = {
    "sc_interface_version": sp.TLV_SC_INTERFACE_VERSION,
    "sar_msg_ref_num": sp.TLV_SAR_MSG_REF_NUM,
    "sar_total_segments": sp.TLV_SAR_TOTAL_SEGMENTS,
    "sar_segment_seqnum": sp.TLV_SAR_SEGMENT_SEQNUM,
    "message_payload": sp.TLV_MESSAGE_PAYLOAD,
    "network_error_code": sp.TLV_NETWORK_ERROR_CODE,
    "message_state": sp.TLV_MESSAGE_STATE,
    "receipted_message_id": sp.TLV_RECEIPTED_MESSAGE_ID,
}
# The TLVs' value as smpplib holds them → as our codec holds them (raw octets)
TLV_SIZES = {"sar_msg_ref_num": 2}


def _tlv_octets(name: str, value: Any) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(TLV_SIZES.get(name, 1), "big")
    if isinstance(value, str):
        return value.encode() + b"\0"  # a C-Octet String TLV carries its NUL
    return bytes(value)


def _smpplib(command: str, seq: int, status: int = 0, **params: Any) -> Any:
    pdu = smpplib.smpp.make_pdu(command, sequence=seq, allow_unknown_opt_params=True, **params)
    pdu.sequence = seq  # responses take no sequence from the factory
    pdu.status = status
    return pdu


def _parse(octets: bytes) -> Any:
    """smpplib's reading of a PDU (sequence=0: its factory would draw a request's number
    from a client; the header's replaces it)."""
    return smpplib.smpp.parse_pdu(octets, sequence=0, allow_unknown_opt_params=True)


def _ours(params: dict[str, Any]) -> tuple[dict[str, sp.FieldValue | str], dict[int, bytes]]:
    """smpplib's keyword values as our codec's mandatory fields and TLVs (in smpplib's
    TLV order, which is the order the caller listed them in)."""
    fields: dict[str, sp.FieldValue | str] = {}
    tlvs: dict[int, bytes] = {}
    for name, value in params.items():
        if name in TLV_NAMES:
            tlvs[TLV_NAMES[name]] = _tlv_octets(name, value)
        else:
            fields[name] = value
    return fields, tlvs


def _as_read(value: Any) -> Any:
    """A value as a decoder hands it back: text as octets."""
    return value.encode() if isinstance(value, str) else value


SM = {
    "service_type": "",
    "source_addr_ton": 5,
    "source_addr_npi": 0,
    "source_addr": "Shop",
    "dest_addr_ton": 1,
    "dest_addr_npi": 1,
    "destination_addr": "79160001234",
    "esm_class": 0,
    "protocol_id": 0,
    "priority_flag": 0,
    "schedule_delivery_time": "",
    "validity_period": "000001000000000R",
    "registered_delivery": 1,
    "replace_if_present_flag": 0,
    "data_coding": 0,
    "sm_default_msg_id": 0,
}
BIND = {
    "system_id": "smsgw",
    "password": "secret",
    "system_type": "",
    "interface_version": 0x34,
    "addr_ton": 0,
    "addr_npi": 0,
    "address_range": "",
}
RECEIPT = (
    b"id:4f2a01 sub:001 dlvrd:001 submit date:2603011234 done date:2603011235 "
    b"stat:DELIVRD err:000 text:Hello"
)

# (smpplib command, our command_id, status, smpplib keyword values)
CASES: list[tuple[str, int, int, dict[str, Any]]] = [
    ("bind_transmitter", sp.BIND_TRANSMITTER, 0, BIND),
    ("bind_receiver", sp.BIND_RECEIVER, 0, BIND),
    ("bind_transceiver", sp.BIND_TRANSCEIVER, 0, BIND | {"addr_ton": 1, "address_range": "7916"}),
    ("bind_transmitter_resp", sp.BIND_TRANSMITTER | sp.RESP, 0, {"system_id": "smsgw-sim"}),
    ("bind_receiver_resp", sp.BIND_RECEIVER | sp.RESP, 0, {"system_id": "smsgw-sim"}),
    (
        "bind_transceiver_resp",
        sp.BIND_TRANSCEIVER | sp.RESP,
        0,
        {"system_id": "smsgw-sim", "sc_interface_version": 0x34},
    ),
    ("submit_sm", sp.SUBMIT_SM, 0, SM | {"short_message": b"Hello world"}),
    (
        "submit_sm",  # one part of a long UCS-2 message, UDH (TS 23.040 §9.2.3.24.1)
        sp.SUBMIT_SM,
        0,
        SM
        | {
            "esm_class": 0x40,
            "data_coding": 8,
            "short_message": bytes.fromhex("0500032A0201") + "Привет".encode("utf-16-be"),
        },
    ),
    (
        "submit_sm",  # SAR TLVs (§5.3.2.22-24), in smpplib's order
        sp.SUBMIT_SM,
        0,
        SM
        | {
            "short_message": b"part two",
            "sar_msg_ref_num": 300,
            "sar_total_segments": 3,
            "sar_segment_seqnum": 2,
        },
    ),
    (
        "submit_sm",  # message_payload (§5.3.2.32), sm_length 0
        sp.SUBMIT_SM,
        0,
        SM | {"short_message": b"", "message_payload": b"x" * 400},
    ),
    ("submit_sm_resp", sp.SUBMIT_SM | sp.RESP, 0, {"message_id": "4f2a01"}),
    (
        "deliver_sm",  # an incoming SMS, part 2 of 2 with a UDH
        sp.DELIVER_SM,
        0,
        SM
        | {
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": "79160001234",
            "dest_addr_ton": 1,
            "destination_addr": "79000000010",
            "validity_period": "",
            "registered_delivery": 0,
            "esm_class": 0x40,
            "short_message": bytes.fromhex("050003070202") + b"world",
        },
    ),
    (
        "deliver_sm",  # a delivery receipt (§5.2.12 esm_class 0x04, Appendix B), with TLVs
        sp.DELIVER_SM,
        0,
        SM
        | {
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "source_addr": "79160001234",
            "dest_addr_ton": 5,
            "dest_addr_npi": 0,
            "destination_addr": "Shop",
            "validity_period": "",
            "registered_delivery": 0,
            "esm_class": 0x04,
            "short_message": RECEIPT,
            "network_error_code": b"\x03\x00\x01",
            "message_state": 2,
            "receipted_message_id": "4f2a01",
        },
    ),
    ("deliver_sm_resp", sp.DELIVER_SM | sp.RESP, 0, {"message_id": ""}),
    ("enquire_link", sp.ENQUIRE_LINK, 0, {}),
    ("enquire_link_resp", sp.ENQUIRE_LINK | sp.RESP, 0, {}),
    ("unbind", sp.UNBIND, 0, {}),
    ("unbind_resp", sp.UNBIND | sp.RESP, 0, {}),
    ("generic_nack", sp.GENERIC_NACK, 0x03, {}),  # ESME_RINVCMDID
]


@pytest.mark.parametrize(
    ("command", "command_id", "status", "params"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_both_codecs_write_the_same_octets(
    command: str, command_id: int, status: int, params: dict[str, Any]
) -> None:
    seq = 0x01020304
    theirs = _smpplib(command, seq, status, **params).generate()
    fields, tlvs = _ours(params)
    ours = sp.encode(command_id, seq, fields, tlvs, status)
    assert ours.hex() == theirs.hex()

    # ours reads smpplib's octets
    pdu = sp.decode(theirs)
    assert (pdu.command_id, pdu.seq, pdu.status, pdu.name) == (command_id, seq, status, command)
    assert pdu.fields == {name: _as_read(value) for name, value in fields.items()}
    assert pdu.tlvs == tlvs

    # smpplib reads ours
    read = _parse(ours)
    assert (read.command, read.sequence, read.status) == (command, seq, status)
    for name, value in params.items():
        assert getattr(read, name) == _as_read(value), name


def _job(text: str) -> SendJob:
    return SendJob(
        message_id="m", to="+79160001234", sender="Shop", text=text, route="smpp:b1", validity=3600
    )


@pytest.mark.parametrize(
    ("split", "text"),
    [
        ("udh", "Hello! " * 40),
        ("udh", "Привет, мир! " * 12),
        ("sar", "Hello! " * 40),
        ("payload", "Привет, мир! " * 12),
        ("udh", "short"),
    ],
)
def test_smpplib_reads_the_submits_the_worker_builds(split: str, text: str) -> None:
    cfg = SmppBindConfig(id="b1", split=split)
    parts = build_submits(_job(text), cfg, ConcatRefCounter(8), ConcatRefCounter(16))
    assert len(parts) >= 1
    for seq, part in enumerate(parts, start=1):
        octets = sp.encode(sp.SUBMIT_SM, seq, part.fields, part.tlvs)
        read = _parse(octets)
        assert (read.command, read.sequence) == ("submit_sm", seq)
        for name, value in part.fields.items():
            assert getattr(read, name) == _as_read(value), name
        assert read.sm_length == len(part.fields["short_message"])  # type: ignore[arg-type]
        for name, tag in TLV_NAMES.items():
            if tag in part.tlvs:
                assert _tlv_octets(name, getattr(read, name)) == part.tlvs[tag], name
        # and smpplib writes the same octets from what it read
        again = _smpplib("submit_sm", seq, **{n: getattr(read, n) for n in SM})
        again.short_message = read.short_message
        for name, tag in TLV_NAMES.items():
            if tag in part.tlvs:
                setattr(again, name, getattr(read, name))
        for name in SM:
            value = getattr(again, name)
            if isinstance(value, bytes) and name != "short_message":
                setattr(again, name, value.decode())
        assert again.generate().hex() == octets.hex()


# -- smpplib's client against our SMSC simulator ------------------------------------------------
LONG = "smsgw checked against smpplib: " + "the quick brown fox jumps over the lazy dog " * 7


def _client_session(port: int) -> dict[str, Any]:
    """Bind with smpplib, send LONG in UDH parts (smpplib's own splitter), read the
    submit_sm_resp of each part and its delivery receipt, unbind. Runs in a thread."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    ids: list[bytes] = []
    receipts: list[Any] = []
    client.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id))
    client.set_message_received_handler(lambda pdu: receipts.append(pdu))  # noqa: PLW0108 (pdu=)
    parts, coding, esm_class = smpplib.gsm.make_parts(LONG)
    client.connect()
    try:
        bound = client.bind_transceiver(system_id="smsgw", password="secret")
        for part in parts:
            client.send_message(
                source_addr_ton=5,
                source_addr="smpplib",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="79160001234",
                short_message=part,
                data_coding=coding,
                esm_class=esm_class,
                registered_delivery=1,
            )
        for _ in range(100):  # each read waits for a PDU (or sends enquire_link after 5 s)
            if len(ids) == len(parts) and len(receipts) == len(parts):
                break
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return {
        "bound": bound,
        "parts": parts,
        "esm_class": esm_class,
        "ids": ids,
        "receipts": receipts,
    }


async def test_smpplib_client_sends_a_long_message_and_reads_its_receipts(sim: SimControl) -> None:
    got = await asyncio.to_thread(_client_session, sim.sim.port)
    bound = got["bound"]
    assert (bound.command, bound.status, bound.system_id) == (
        "bind_transceiver_resp",
        0,
        b"smsgw-sim",
    )
    parts = got["parts"]
    assert len(parts) == 3 and got["esm_class"] == smpplib.consts.SMPP_GSMFEAT_UDHI
    assert all(p.startswith(b"\x05\x00\x03") for p in parts)  # 8-bit reference concat UDH

    # The simulator put the parts back together.
    sent = await sim.sent()
    assert len(sent) == 1
    message = sent[0]
    assert message["complete"] and message["parts"] == len(parts)
    assert message["text"] == LONG
    assert message["destination"] == "79160001234" and message["source"] == "smpplib"

    # smpplib read a receipt for every part, naming the ids it was given.
    ids = got["ids"]
    assert sorted(ids) == sorted(m.encode() for m in message["message_ids"])
    receipts = got["receipts"]
    assert sorted(r.receipted_message_id for r in receipts) == sorted(ids)
    for r in receipts:
        assert r.command == "deliver_sm" and r.esm_class == 0x04
        assert r.message_state == 2  # DELIVERED (§5.2.28)
        assert b"stat:DELIVRD" in r.short_message
        assert r.destination_addr == b"smpplib" and r.source_addr == b"79160001234"
        # and our receipt parser reads the text smpplib read as smpplib does
        fields = parse_receipt_text(r.short_message.decode())
        assert fields["id"].encode() == r.receipted_message_id and fields["stat"] == "DELIVRD"
