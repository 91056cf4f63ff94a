"""Named errors of the SMS text engine; all are ValueErrors, none is an IndexError."""

from __future__ import annotations


class SmsError(ValueError):
    """Root of every error raised by `smsgw_shared.sms`."""


class EncodingError(SmsError):
    """Text that cannot be encoded or bytes that cannot be decoded (e.g. unpaired surrogates)."""


class UnencodableCharactersError(EncodingError):
    """Characters that the requested alphabet cannot represent."""

    def __init__(self, encoding: str, chars: tuple[str, ...]) -> None:
        self.encoding = encoding
        self.chars = chars
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)
        super().__init__(f"{len(chars)} character(s) cannot be encoded in {encoding}: {shown}")


class TooManyPartsError(SmsError):
    """The text needs more concatenated parts than allowed."""

    def __init__(self, parts: int, max_parts: int) -> None:
        self.parts = parts
        self.max_parts = max_parts
        super().__init__(f"message needs {parts} parts, more than the maximum of {max_parts}")


class PduError(SmsError):
    """A PDU (or SMPP short_message) that is truncated, corrupt or has wrong lengths."""


class UdhError(PduError):
    """A User Data Header that is malformed (TS 23.040 §9.2.3.24)."""


class CharsetError(SmsError):
    """Unknown input charset, or bytes that are not valid in it."""


class InvalidNumberError(SmsError):
    """A phone number that cannot be normalised to a valid E.164 number."""

    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"invalid phone number {raw!r}: {reason}")


class InvalidSenderError(SmsError):
    """A sender (originator) that is neither a valid alphanumeric nor a numeric address."""

    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"invalid sender {raw!r}: {reason}")
