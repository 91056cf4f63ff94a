"""SMSC message id normalisation, so a delivery receipt finds its `sent` event by string.

SMSCs write the same id differently in submit_sm_resp and in receipts: hex in one and
decimal in the other (SMPP 3.4 Appendix B shows a decimal `id:` field, while many SMSCs
answer submit_sm with hex), upper or lower case, with or without leading zeros. Every id
the worker publishes goes through `normalise`, so the inbound service compares exact strings.

Canonical forms per `id_format`:
- `hex`: lowercase hex without leading zeros (`00A1F` → `a1f`);
- `decimal`: decimal without leading zeros (`000123` → `123`);
- `string`: the id as given (only surrounding whitespace removed);
- `auto`: lowercase, leading zeros removed; no hex/decimal conversion (it cannot be guessed).
"""

from __future__ import annotations

from typing import Literal

IdFormat = Literal["auto", "hex", "decimal", "string"]
ReceiptIdFormat = Literal["same", "hex", "decimal", "string"]


def _strip_zeros(value: str) -> str:
    return (value.lstrip("0") or "0") if value else value


def normalise(raw: str | bytes, id_format: IdFormat, written_as: ReceiptIdFormat = "same") -> str:
    """The canonical form of an SMSC id; `written_as` says how this copy is written.

    A submit_sm_resp id is written in the bind's `id_format` (`same`); a text receipt's
    `id:` may be written in another base (`receipt_id_format`), e.g. decimal for a hex
    bind: it is converted to the bind's canonical base.
    """
    if isinstance(raw, bytes):
        raw = raw.split(b"\0", 1)[0].decode("latin-1")
    value = raw.strip()
    if not value or id_format == "string":
        return value
    source = id_format if written_as in ("same", "string") else written_as
    if id_format == "auto":
        return _strip_zeros(value.lower())
    try:
        number = int(value, 16) if source == "hex" else int(value, 10)
    except ValueError:
        # Not a number in the expected base: keep it comparable (case, zeros) anyway.
        return _strip_zeros(value.lower())
    return format(number, "x") if id_format == "hex" else str(number)


def to_smsc_form(canonical: str, id_format: IdFormat) -> str:
    """A best guess of the SMSC's own spelling of a canonical id (for query_sm)."""
    if id_format == "hex":
        return canonical.upper()
    return canonical
