"""Delivery receipts: SMPP 3.4 §5.2.12 (esm_class), §5.3.2.12/§5.3.2.35 (TLVs), Appendix B
(the de-facto text format `id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`).

The text parser is tolerant: keys in any case, `submit_date`/`submitdate` spellings, fields
missing or in another order, 10-, 12- or 14-digit dates, a `text:` that contains colons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from smsgw_smpp.pdu import (
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
    Pdu,
)

# §5.2.12: bits 2..5 of esm_class give the message type of a deliver_sm.
ESM_TYPE_MASK = 0x3C
ESM_SMSC_RECEIPT = 0x04
ESM_SME_ACK = 0x08
ESM_USER_ACK = 0x10
ESM_INTERMEDIATE = 0x20

# §5.2.28 message_state values → our StatusEvent states.
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVERED",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIVERABLE",
    6: "ACCEPTED",
    7: "UNKNOWN",
    8: "REJECTED",
}
_STAT_TO_STATE = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "EXPIRED": "expired",
    "DELETED": "undelivered",
    "UNDELIV": "undelivered",
    "UNDELIVERABLE": "undelivered",
    "UNDELIVERED": "undelivered",
    "FAILED": "undelivered",
    "ACCEPTD": "accepted",
    "ACCEPTED": "accepted",
    "ACKED": "accepted",
    "UNKNOWN": "undelivered",
    "REJECTD": "rejected",
    "REJECTED": "rejected",
    "ENROUTE": "enroute",
    "BUFFRED": "enroute",
    "BUFFERED": "enroute",
}
_STAT_PREFIX = (
    ("DELIV", "delivered"),
    ("UNDEL", "undelivered"),
    ("EXPIR", "expired"),
    ("REJEC", "rejected"),
    ("ACCEP", "accepted"),
    ("ENROU", "enroute"),
)

_KEY_RE = re.compile(
    r"(?i)(?:^|(?<=\s))(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:"
)


# Appendix B's layout exactly as most SMSCs write it (one space between fields, lower-case
# keys, every field present, `text:` last): one match instead of a scan for each key.
_APPENDIX_B = re.compile(
    r"id:(\S+) sub:(\S*) dlvrd:(\S*) submit date:(\S*) done date:(\S*) stat:(\S*)"
    r" err:(\S*) text:(.*)",
    re.S,
)
_APPENDIX_B_KEYS = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a delivery receipt says, before id normalisation."""

    message_id: str
    state: str  # StatusEvent state: delivered, undelivered, expired, rejected, enroute, accepted
    stat: str  # the SMSC's own word (DELIVRD, 2, …)
    error_code: str | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    id_from_text: bool = False  # the id came from the text (may be written in another base)


def parse_date(value: str | None) -> datetime | None:
    """YYMMDDhhmm, YYMMDDhhmmss or YYYYMMDDhhmmss as aware UTC; None when unusable."""
    if not value:
        return None
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    # By hand rather than strptime (about 10 times the CPU, once per receipt); %y's rule:
    # 69-99 are 19xx, 00-68 are 20xx.
    n = len(digits)
    if n not in (10, 12, 14):
        return None
    if n == 14:
        year, rest = int(digits[:4]), digits[4:]
    else:
        yy = int(digits[:2])
        year, rest = (1900 + yy if yy >= 69 else 2000 + yy), digits[2:]
    try:
        return datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]) if len(rest) == 10 else 0,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_receipt_text(text: str) -> dict[str, str]:
    """The key/value fields of a text receipt, keys lowercased (`submit date` → `submit_date`)."""
    exact = _APPENDIX_B.fullmatch(text)
    if exact is not None:
        out = dict(zip(_APPENDIX_B_KEYS, exact.groups(), strict=True))
        out["text"] = out["text"].strip()
        return out
    return scan_receipt_text(text)


def scan_receipt_text(text: str) -> dict[str, str]:
    """`parse_receipt_text` for any layout: each key found where it stands."""
    out: dict[str, str] = {}
    matches = list(_KEY_RE.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1).lower().replace(" ", "_")
        if key in ("submitdate", "donedate"):
            key = key[:-4] + "_date"
        end = (
            len(text)
            if key == "text"
            else (matches[i + 1].start() if i + 1 < len(matches) else len(text))
        )
        value = text[m.end() : end].strip()
        if key == "text":
            out.setdefault(key, value)
            break  # `text:` is last and may contain anything, even `stat:`
        out.setdefault(key, value)
    return out


def stat_to_state(stat: str) -> str | None:
    """`DELIVRD` → `delivered`; None for a word we do not know."""
    word = stat.strip().upper()
    if word in _STAT_TO_STATE:
        return _STAT_TO_STATE[word]
    for prefix, state in _STAT_PREFIX:
        if word.startswith(prefix):
            return state
    return None


def _error_code(err: str | None) -> str | None:
    if not err:
        return None
    err = err.strip()
    return None if not err or set(err) == {"0"} else err


def is_receipt(pdu: Pdu) -> bool:
    """A deliver_sm/data_sm that is a receipt (§5.2.12), or that carries receipt TLVs."""
    esm = pdu.num("esm_class") & ESM_TYPE_MASK
    if esm in (ESM_SMSC_RECEIPT, ESM_INTERMEDIATE, ESM_SME_ACK, ESM_USER_ACK):
        return True
    return TLV_RECEIPTED_MESSAGE_ID in pdu.tlvs and TLV_MESSAGE_STATE in pdu.tlvs


def receipt_body(pdu: Pdu) -> str:
    """The receipt text (short_message, else message_payload), decoded leniently."""
    body = pdu.raw("short_message") or pdu.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
    return body.decode("latin-1", errors="replace")


def parse_receipt(pdu: Pdu) -> Receipt | None:
    """A `Receipt` from the TLVs (preferred) and/or the text; None if neither names an id."""
    fields = parse_receipt_text(receipt_body(pdu))
    tlv_id = pdu.tlv_text(TLV_RECEIPTED_MESSAGE_ID)
    tlv_state = pdu.tlv_int(TLV_MESSAGE_STATE)
    message_id = (tlv_id or "").strip() or fields.get("id", "")
    if not message_id:
        return None
    from_text = not (tlv_id or "").strip()
    state: str | None = None
    stat = fields.get("stat", "")
    if tlv_state is not None and tlv_state in MESSAGE_STATES:
        stat = stat or MESSAGE_STATES[tlv_state]
        state = stat_to_state(MESSAGE_STATES[tlv_state])
    if state is None and stat:
        state = stat_to_state(stat)
    if state is None:
        # An intermediate notification (§5.2.12 bit 5) without a known state is en route.
        if pdu.num("esm_class") & ESM_TYPE_MASK == ESM_INTERMEDIATE:
            state = "enroute"
        else:
            state = "undelivered" if stat else "accepted"
    error_code = _error_code(fields.get("err"))
    net = pdu.tlvs.get(TLV_NETWORK_ERROR_CODE)
    if error_code is None and net is not None and len(net) == 3:
        # §5.3.2.31: network type (1 octet) + error code (2 octets)
        code = int.from_bytes(net[1:], "big")
        error_code = f"{net[0]}:{code}" if code else None
    return Receipt(
        message_id=message_id,
        state=state,
        stat=stat or "",
        error_code=error_code,
        submit_date=parse_date(fields.get("submit_date")),
        done_date=parse_date(fields.get("done_date")),
        id_from_text=from_text,
    )


def format_receipt_text(
    message_id: str,
    stat: str,
    err: str = "000",
    submit_date: datetime | None = None,
    done_date: datetime | None = None,
    text: str = "",
) -> str:
    """Appendix B text form, as the simulator writes it."""
    sub = (submit_date or datetime.now(UTC)).strftime("%y%m%d%H%M")
    done = (done_date or datetime.now(UTC)).strftime("%y%m%d%H%M")
    dlvrd = "001" if stat == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{sub} done date:{done} "
        f"stat:{stat} err:{err} text:{text[:20]}"
    )
