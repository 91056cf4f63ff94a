"""A send job → the submit_sm PDUs of one bind (split mode, data_coding, addresses).

Text work (GSM-7/Latin-1/UCS-2, splitting that never cuts an ESC pair or a surrogate pair,
UDH/SAR/message_payload) is the shared text engine's `build_smpp_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from smsgw_shared.config import SmppBindConfig
from smsgw_shared.messages import SendJob
from smsgw_shared.sms import ConcatRefCounter, UnencodableCharactersError, build_smpp_parts
from smsgw_smpp import pdu as sp

DC_GSM7 = 0x00
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
# TS 23.038 §4 general data coding group with message class 0 (flash): 0x10 GSM-7, 0x18 UCS-2.
FLASH_BIT = 0x10
# §7.1.1.2: relative times go up to 99 years, but 99 days is what SMSCs honour in practice.
MAX_VALIDITY = 99 * 86400
REGISTERED_DELIVERY_FINAL = 0x01  # §5.2.17: receipt on final delivery outcome


@dataclass(frozen=True, slots=True)
class SubmitPart:
    """One submit_sm of a job: 1-based index, mandatory fields, TLVs."""

    index: int
    fields: dict[str, sp.FieldValue | str]
    tlvs: dict[int, bytes]


def relative_validity(seconds: int) -> str:
    """SMPP relative time `YYMMDDhhmmss000R` (§7.1.1.2) for a validity in seconds."""
    s = max(60, min(int(seconds), MAX_VALIDITY))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{s:02d}000R"


def address(value: str, default_ton: int, default_npi: int) -> tuple[int, int, str]:
    """(ton, npi, addr): `+E.164` → international/ISDN; letters → alphanumeric (§5.2.5)."""
    v = value.strip()
    if v.startswith("+") and v[1:].isdigit():
        return 1, 1, v[1:]
    if v and not v.isdigit():
        return 5, 0, v  # alphanumeric
    if v.isdigit() and len(v) <= 6:
        return 3, 0, v  # short code: network specific
    if v.isdigit() and default_ton == 5:
        return 1, 1, v  # a long number never goes out as alphanumeric
    return default_ton, default_npi, v


def _coding(job: SendJob, cfg: SmppBindConfig) -> list[int]:
    """data_coding values to try, in order (the first that can carry the text wins)."""
    if job.encoding == "ucs2" or cfg.data_coding == DC_UCS2:
        return [DC_UCS2]
    return [cfg.data_coding, DC_UCS2]


def build_submits(
    job: SendJob, cfg: SmppBindConfig, refs: ConcatRefCounter, sar_refs: ConcatRefCounter
) -> list[SubmitPart]:
    """The submit_sm PDUs for `job` on bind `cfg` (raises the text engine's SmsError)."""
    codings = _coding(job, cfg)
    message = None
    for i, dc in enumerate(codings):
        try:
            ref = sar_refs.next() if cfg.split == "sar" else refs.next()
            message = build_smpp_parts(
                job.text, data_coding=dc, mode=cfg.split, ref=ref, ref_bits=8, max_parts=255
            )
            break
        except UnencodableCharactersError:
            if i == len(codings) - 1:
                raise
    assert message is not None
    data_coding = message.data_coding
    if job.flash and data_coding in (DC_GSM7, DC_UCS2):
        data_coding |= FLASH_BIT
    src_ton, src_npi, src = address(
        job.sender or cfg.default_source, cfg.source_ton, cfg.source_npi
    )
    dst_ton, dst_npi, dst = address(job.to, cfg.dest_ton, cfg.dest_npi)
    if dst_ton in (3, 5):
        dst_ton, dst_npi = cfg.dest_ton, cfg.dest_npi
    base: dict[str, sp.FieldValue | str] = {
        "service_type": cfg.service_type,
        "source_addr_ton": src_ton,
        "source_addr_npi": src_npi,
        "source_addr": src,
        "dest_addr_ton": dst_ton,
        "dest_addr_npi": dst_npi,
        "destination_addr": dst,
        "validity_period": relative_validity(job.validity) if job.validity else "",
        "registered_delivery": REGISTERED_DELIVERY_FINAL if job.dlr else 0,
        "data_coding": data_coding,
    }
    out = []
    for index, part in enumerate(message.parts, start=1):
        tlvs: dict[int, bytes] = {}
        fields = dict(base)
        fields["esm_class"] = part.esm_class
        fields["short_message"] = part.short_message
        if part.sar_msg_ref_num is not None:
            # §5.3.2.22-24: 2-octet reference, 1-octet total and sequence number
            tlvs[sp.TLV_SAR_MSG_REF_NUM] = part.sar_msg_ref_num.to_bytes(2, "big")
            tlvs[sp.TLV_SAR_TOTAL_SEGMENTS] = bytes((part.sar_total_segments or 1,))
            tlvs[sp.TLV_SAR_SEGMENT_SEQNUM] = bytes((part.sar_segment_seqnum or 1,))
        if part.message_payload is not None:
            tlvs[sp.TLV_MESSAGE_PAYLOAD] = part.message_payload  # §5.3.2.32, sm_length 0
        out.append(SubmitPart(index, fields, tlvs))
    return out
