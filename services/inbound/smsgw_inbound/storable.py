"""An incoming SMS part as the store can hold it, whatever the modem or SMSC sent.

PostgreSQL refuses NUL in text and a lone surrogate cannot be encoded to UTF-8, so either
would have an incoming SMS refused on every attempt and dead-lettered. Here such characters
become U+FFFD and the original text is kept as hex (`raw_hex`); concatenation info no
receiver could honour (TS 23.040 §9.2.3.24.1: a zero count, a sequence number of 0 or above
the count; values wider than their octets) makes the part a single message. This is the one
place where an `InboundPart` is made storable: the message id and the duplicate checks are
computed from its result. (JSON cannot carry a lone surrogate: the SMPP worker, which meets
them in UCS-2 cut between parts, sends U+FFFD with the octets in `raw_hex`, kept here.)
"""

from __future__ import annotations

import re

from smsgw_shared.messages import Concat, InboundPart

REPLACEMENT = "\ufffd"
_REFUSED = re.compile("[\x00\ud800-\udfff]")
MAX_PARTS = 255  # one octet in the UDH and in sar_total_segments (SMPP 3.4 §5.3.2.23)

# The codec that gives back the octets each encoding's text was decoded from; anything
# else (and text its codec cannot hold) is given as UTF-16BE code units.
_CODECS = {
    "ucs2": "utf-16-be",
    "latin1": "latin-1",
    "ascii": "ascii",
    "iso8859-5": "iso8859-5",
    "iso8859-8": "iso8859-8",
}


def _join_pairs(value: str) -> str:
    """Join surrogate pairs held as two code points into the character they encode."""
    return value.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "surrogatepass")


def clean(value: str) -> tuple[str, bool]:
    """`value` with NUL and lone surrogates replaced by U+FFFD, and whether any was."""
    if _REFUSED.search(value) is None:
        return value, False
    cleaned, replaced = _REFUSED.subn(REPLACEMENT, _join_pairs(value))
    return cleaned, replaced > 0


def raw_octets(text: str, encoding: str) -> bytes:
    """The octets `text` was decoded from: UCS-2 as UTF-16BE, 8-bit charsets as octets."""
    codec = _CODECS.get(encoding)
    if codec is not None and codec != "utf-16-be":
        try:
            return text.encode(codec)
        except UnicodeEncodeError:
            pass
    return text.encode("utf-16-be", "surrogatepass")


def plausible(concat: Concat) -> bool:
    """Whether a receiver can reassemble with this info (a total of 1 is a whole SMS)."""
    ref_limit = 0xFF if concat.ref_bits == 8 else 0xFFFF
    return (
        2 <= concat.total <= MAX_PARTS
        and 1 <= concat.seq <= concat.total
        and 0 <= concat.ref <= ref_limit
    )


def storable(part: InboundPart) -> InboundPart:
    """`part` with text and numbers the store accepts and only plausible concat info."""
    update: dict[str, object] = {}
    text, replaced = clean(part.text)
    if text != part.text:
        update["text"] = text
    if replaced and part.raw_hex is None:
        update["raw_hex"] = raw_octets(part.text, part.encoding).hex()
    # Numbers keep no raw form: a replaced character in one is rarer still (SMPP addresses
    # are C-strings, modem ones digits or GSM 7-bit).
    sender = clean(part.sender)[0]
    if sender != part.sender:
        update["sender"] = sender
    if part.recipient is not None and (recipient := clean(part.recipient)[0]) != part.recipient:
        update["recipient"] = recipient
    if part.concat is not None and not plausible(part.concat):
        update["concat"] = None
    return part.model_copy(update=update) if update else part
