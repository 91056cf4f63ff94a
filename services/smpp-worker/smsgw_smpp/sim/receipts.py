"""Delivery receipts as the simulated SMSC writes them (SMPP 3.4 §5.2.12, Appendix B)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smsgw_smpp import pdu as sp
from smsgw_smpp.dlr import format_receipt_text
from smsgw_smpp.sim.state import FINAL_STATES, STAT_STATE, SimConfig, Submitted


def build_receipt(
    rec: Submitted, cfg: SimConfig, stat: str
) -> tuple[dict[str, Any], dict[int, bytes]]:
    """deliver_sm fields and TLVs of a receipt saying `stat`; updates the record's state."""
    state = STAT_STATE.get(stat, 7)
    err = cfg.receipt_errors.get(stat, "000" if stat in ("DELIVRD", "ENROUTE") else "001")
    now = datetime.now(UTC)
    if state in FINAL_STATES or stat != "ENROUTE":
        rec.state = state
        rec.final_date = now.strftime("%y%m%d%H%M%S") + "000+"
        rec.error = int(err) if err.isdigit() else 0
    text_id = rec.message_id
    # Some SMSCs write the text receipt's id in another base than submit_sm_resp.
    if cfg.receipt_id_format == "decimal" and cfg.id_format == "hex":
        text_id = str(int(rec.message_id, 16))
    elif cfg.receipt_id_format == "hex" and cfg.id_format == "decimal":
        text_id = format(int(rec.message_id), "X")
    pdu = rec.pdu
    sub_text = pdu.raw("short_message")[-20:].decode("latin-1", "replace")
    text = format_receipt_text(
        text_id, stat, err, datetime.fromtimestamp(rec.received_at, UTC), now, sub_text
    )
    fields: dict[str, Any] = {
        "source_addr_ton": pdu.num("dest_addr_ton"),
        "source_addr_npi": pdu.num("dest_addr_npi"),
        "source_addr": pdu.raw("destination_addr"),
        "dest_addr_ton": pdu.num("source_addr_ton"),
        "dest_addr_npi": pdu.num("source_addr_npi"),
        "destination_addr": pdu.raw("source_addr"),
        "esm_class": 0x20 if stat == "ENROUTE" else 0x04,  # intermediate vs final receipt
        "short_message": b"" if cfg.receipt_form == "tlv" else text.encode(),
    }
    tlvs: dict[int, bytes] = {}
    if cfg.receipt_form != "text":
        tlvs[sp.TLV_RECEIPTED_MESSAGE_ID] = rec.message_id.encode() + b"\0"
        tlvs[sp.TLV_MESSAGE_STATE] = bytes((state,))
    return fields, tlvs
