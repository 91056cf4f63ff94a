"""Turn recorded submit_sm PDUs into texts and reassembled messages (for `GET /sent`).

The concatenation parsing here is written independently of the worker's encoder (UDH per
TS 23.040 §9.2.3.24.1/.8, SAR per SMPP 3.4 §5.3.2.22-24), so a test comparing the
reassembled text with the input checks the worker rather than agreeing with it.
"""

from __future__ import annotations

from typing import Any

from smsgw_shared.sms import gsm7
from smsgw_smpp import pdu as sp
from smsgw_smpp.sim.state import Submitted

ESM_UDHI = 0x40


def _udh_concat(sm: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(ref, total, seq) from a UDH and the payload after it."""
    if not sm:
        return None, sm
    udhl = sm[0]
    header, rest = sm[1 : 1 + udhl], sm[1 + udhl :]
    pos = 0
    concat = None
    while pos + 2 <= len(header):
        iei, n = header[pos], header[pos + 1]
        data = header[pos + 2 : pos + 2 + n]
        if iei == 0x00 and n == 3:
            concat = (data[0], data[1], data[2])
        elif iei == 0x08 and n == 4:
            concat = (int.from_bytes(data[:2], "big"), data[2], data[3])
        pos += 2 + n
    return concat, rest


def decode_payload(payload: bytes, data_coding: int) -> str:
    """Text of a part's payload by data_coding (0 GSM-7 unpacked, 3 Latin-1, 8 UCS-2)."""
    dc = data_coding & 0xEF if data_coding in (0x10, 0x18) else data_coding  # flash class 0
    if dc == 0:
        return gsm7.decode(payload)
    if dc == 3:
        return payload.decode("latin-1")
    if dc == 8:
        return payload.decode("utf-16-be", errors="surrogatepass")
    if dc == 1:
        return payload.decode("ascii", errors="replace")
    return payload.hex()


def describe(rec: Submitted) -> dict[str, Any]:
    """One recorded PDU as JSON-friendly values, with its concatenation info."""
    pdu = rec.pdu
    sm = pdu.raw("short_message")
    esm = pdu.num("esm_class")
    split = "single"
    concat: tuple[int, int, int] | None = None
    payload = sm
    if sp.TLV_MESSAGE_PAYLOAD in pdu.tlvs:
        payload = pdu.tlvs[sp.TLV_MESSAGE_PAYLOAD]
        split = "payload"
    elif esm & ESM_UDHI:
        concat, payload = _udh_concat(sm)
        split = "udh"
    sar = [pdu.tlv_int(t) for t in (0x020C, 0x020E, 0x020F)]
    if concat is None and all(v is not None for v in sar):
        concat = (sar[0] or 0, sar[1] or 0, sar[2] or 0)
        split = "sar"
    dc = pdu.num("data_coding")
    try:
        text = decode_payload(payload, dc)
    except Exception as exc:  # a broken part is recorded, not fatal
        text = f"<undecodable: {exc}>"
    return {
        "message_id": rec.message_id,
        "system_id": rec.system_id,
        "source": pdu.text("source_addr"),
        "source_ton": pdu.num("source_addr_ton"),
        "source_npi": pdu.num("source_addr_npi"),
        "destination": pdu.text("destination_addr"),
        "dest_ton": pdu.num("dest_addr_ton"),
        "dest_npi": pdu.num("dest_addr_npi"),
        "data_coding": dc,
        "esm_class": esm,
        "registered_delivery": pdu.num("registered_delivery"),
        "validity_period": pdu.text("validity_period"),
        "service_type": pdu.text("service_type"),
        "split": split,
        "concat": list(concat) if concat else None,
        "text": text,
        "tlvs": {f"0x{tag:04x}": v.hex() for tag, v in pdu.tlvs.items()},
        "received_at": rec.received_at,
    }


def reassemble(records: list[Submitted]) -> list[dict[str, Any]]:
    """Group parts into messages (by source, destination, reference, total), in order."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for rec in records:
        part = describe(rec)
        concat = part["concat"]
        if not concat or concat[1] <= 1:
            out.append(_message([part]))
            continue
        ref, total, _ = concat
        key = (part["source"], part["destination"], ref, total)
        group = groups.get(key)
        # A second copy of a part (a resend) starts a new group only once this one is full.
        if group is None or len(group["parts"]) >= total:
            group = {"parts": []}
            groups[key] = group
            out.append(group)
        group["parts"].append(part)
    return [g if "text" in g else _message(g["parts"]) for g in out]


def _message(parts: list[dict[str, Any]]) -> dict[str, Any]:
    parts = sorted(parts, key=lambda p: p["concat"][2] if p["concat"] else 0)
    first = parts[0]
    total = first["concat"][1] if first["concat"] else 1
    return {
        "message_ids": [p["message_id"] for p in parts],
        "source": first["source"],
        "destination": first["destination"],
        "data_coding": first["data_coding"],
        "split": first["split"],
        "parts": len(parts),
        "complete": len(parts) == total,
        "text": "".join(p["text"] for p in parts),
        "registered_delivery": first["registered_delivery"],
        "validity_period": first["validity_period"],
        "esm_class": first["esm_class"],
        "pdus": parts,
    }
