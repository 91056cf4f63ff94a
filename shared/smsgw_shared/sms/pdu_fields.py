"""TPDU fields (TS 23.040 §9.1.2, §9.2.3): addresses, timestamps, validity, DCS, reading."""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from smsgw_shared.sms import gsm7
from smsgw_shared.sms.encoding import Encoding
from smsgw_shared.sms.errors import EncodingError, PduError

# TS 23.040 §9.1.2.5: type of number and numbering plan
TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_NETWORK_SPECIFIC = 3
TON_SUBSCRIBER = 4
TON_ALPHANUMERIC = 5
NPI_UNKNOWN = 0
NPI_ISDN = 1

_BCD_DIGITS = "0123456789*#abc"  # TS 23.040 §9.1.2.3: semi-octet values 0x0..0xE
_MAX_ALPHANUMERIC_SEPTETS = 11  # 10 octets of address value (TS 23.040 §9.1.2.5)


@dataclass(frozen=True, slots=True)
class Address:
    """An address field: the number ('+' prefixed when international) or alphanumeric text."""

    number: str
    ton: int = TON_UNKNOWN
    npi: int = NPI_ISDN

    @property
    def is_alphanumeric(self) -> bool:
        """True for TON 5 (alphanumeric, GSM-7 packed) addresses."""
        return self.ton == TON_ALPHANUMERIC


class Reader:
    """Bounds-checked cursor over PDU octets; running short raises PduError, not IndexError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int, what: str) -> bytes:
        """Return the next `count` octets."""
        if self.pos + count > len(self.data):
            raise PduError(
                f"PDU truncated: {what} needs {count} octet(s) at offset {self.pos}, "
                f"{len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        """Return the next octet."""
        return self.take(1, what)[0]

    def rest(self) -> bytes:
        """Return all remaining octets."""
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def parse_hex(pdu: str | bytes) -> bytes:
    """Hex text (or raw octets) to bytes; non-hex or odd length raises PduError."""
    if isinstance(pdu, bytes | bytearray):
        return bytes(pdu)
    text = pdu.strip()
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError) as exc:
        raise PduError(f"PDU is not an even-length hex string: {exc}") from exc


def _encode_digits(digits: str) -> bytes:
    nibbles = []
    for d in digits:
        index = _BCD_DIGITS.find(d)
        if index < 0:
            raise PduError(f"{d!r} cannot be encoded in a numeric address")
        nibbles.append(index)
    if len(nibbles) % 2:
        nibbles.append(0xF)  # TS 23.040 §9.1.2.3: fill an odd count with 1111
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def _decode_digits(data: bytes, count: int) -> str:
    out = []
    for i in range(count):
        nibble = data[i // 2] >> 4 if i % 2 else data[i // 2] & 0x0F
        if nibble == 0xF:
            raise PduError(f"filler semi-octet inside an address at digit {i}")
        out.append(_BCD_DIGITS[nibble])
    return "".join(out)


def encode_address(address: str | Address) -> bytes:
    """TP-OA/TP-DA: digit count, type, value; '+' is international, letters alphanumeric."""
    if isinstance(address, str):
        if address.startswith("+"):
            address = Address(address[1:], TON_INTERNATIONAL, NPI_ISDN)
        elif address and all(c in "0123456789*#" for c in address):
            address = Address(address, TON_UNKNOWN, NPI_ISDN)
        else:
            address = Address(address, TON_ALPHANUMERIC, NPI_UNKNOWN)
    if not address.number:
        raise PduError("address is empty")
    toa = 0x80 | (address.ton & 0x07) << 4 | (address.npi & 0x0F)
    if address.is_alphanumeric:
        try:
            septets = gsm7.encode(address.number)
        except EncodingError as exc:
            raise PduError(f"alphanumeric address {address.number!r}: {exc}") from exc
        if len(septets) > _MAX_ALPHANUMERIC_SEPTETS:
            raise PduError(f"alphanumeric address {address.number!r} is over 11 septets")
        # §9.1.2.5: the length counts the semi-octets actually used by the packed septets.
        return bytes((math.ceil(len(septets) * 7 / 4), toa)) + gsm7.pack(septets)
    digits = address.number.removeprefix("+")
    if len(digits) > 20:
        raise PduError(f"address {address.number!r} is over 20 digits")
    return bytes((len(digits), toa)) + _encode_digits(digits)


def decode_address(reader: Reader, what: str) -> Address:
    """Read a TP-OA/TP-DA/TP-RA address field."""
    count = reader.byte(f"{what} length")
    toa = reader.byte(f"{what} type")
    ton, npi = (toa >> 4) & 0x07, toa & 0x0F
    if count > 20:
        raise PduError(f"{what} length {count} is over 20 semi-octets")
    value = reader.take((count + 1) // 2, what)
    if ton == TON_ALPHANUMERIC:
        try:
            text = gsm7.decode(gsm7.unpack(value, count * 4 // 7))
        except EncodingError as exc:
            raise PduError(f"{what}: {exc}") from exc
        return Address(text, ton, npi)
    digits = _decode_digits(value, count)
    return Address("+" + digits if ton == TON_INTERNATIONAL and digits else digits, ton, npi)


def encode_smsc(number: str | None) -> bytes:
    """SMSC address as AT+CMGS expects it (TS 24.011 §8.2.5.1); None gives 00 (use the SIM's)."""
    if not number:
        return b"\x00"
    field = encode_address(number)
    if field[1] == 0xD0:
        raise PduError("an SMSC address must be numeric")
    return bytes((len(field) - 1,)) + field[1:]


def decode_smsc(reader: Reader) -> str | None:
    """Read the SMSC address prefix (length in octets, TS 24.011 §8.2.5.1)."""
    length = reader.byte("SMSC length")
    if length == 0:
        return None
    if length > 11:
        raise PduError(f"SMSC address length {length} is over 11 octets")
    toa = reader.byte("SMSC type")
    value = reader.take(length - 1, "SMSC address")
    digits = _decode_digits(value, 2 * len(value) - (1 if value and value[-1] >> 4 == 0xF else 0))
    return "+" + digits if (toa >> 4) & 0x07 == TON_INTERNATIONAL else digits


def _bcd(value: int) -> int:
    return (value % 10) << 4 | value // 10  # swapped semi-octets


def encode_timestamp(moment: datetime) -> bytes:
    """TP-SCTS / absolute TP-VP (TS 23.040 §9.2.3.11) from a timezone-aware datetime."""
    offset = moment.utcoffset()
    if offset is None:
        raise PduError("an absolute time needs a timezone-aware datetime")
    quarters, remainder = divmod(int(offset.total_seconds()), 900)
    if remainder or abs(quarters) > 79:
        raise PduError(f"timezone offset {offset} is not a whole number of quarter hours")
    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute)
    tz = _bcd(abs(quarters)) | (0x08 if quarters < 0 else 0)  # sign: bit 3 of the octet
    return bytes(_bcd(v) for v in (*fields, moment.second)) + bytes((tz,))


def decode_timestamp(data: bytes, what: str) -> datetime:
    """Seven semi-octet swapped octets to a timezone-aware datetime (TS 23.040 §9.2.3.11)."""
    values = []
    for i, octet in enumerate(data):
        low, high = octet & 0x0F, octet >> 4
        if i == 6:
            low &= 0x07  # bit 3 carries the sign of the offset
        if low > 9 or high > 9:
            raise PduError(f"{what}: octet {i} (0x{octet:02X}) is not BCD")
        values.append(low * 10 + high)
    yy, month, day, hour, minute, second, quarters = values
    if data[6] & 0x08:
        quarters = -quarters
    year = 1900 + yy if yy >= 90 else 2000 + yy  # two-digit year: 90..99 are the 1990s
    try:
        tz = timezone(timedelta(minutes=15 * quarters))
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise PduError(f"{what}: {exc}") from exc


def relative_validity(seconds: int | float | timedelta) -> int:
    """Smallest relative TP-VP (TS 23.040 §9.2.3.12.1) lasting at least `seconds`."""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds <= 0:
        raise PduError(f"validity must be positive, not {seconds}")
    if seconds <= 12 * 3600:
        return max(0, math.ceil(seconds / 300) - 1)  # (VP + 1) x 5 minutes
    if seconds <= 24 * 3600:
        return 143 + math.ceil((seconds - 12 * 3600) / 1800)  # 12 h + (VP - 143) x 30 min
    if seconds <= 30 * 86400:
        return 166 + math.ceil(seconds / 86400)  # (VP - 166) days
    return min(255, 192 + math.ceil(seconds / 604800))  # (VP - 192) weeks, 63 at most


def validity_seconds(vp: int) -> int:
    """Duration in seconds of a relative TP-VP value (TS 23.040 §9.2.3.12.1)."""
    if not 0 <= vp <= 255:
        raise PduError(f"TP-VP must be 0..255, not {vp}")
    if vp <= 143:
        return (vp + 1) * 300
    if vp <= 167:
        return 12 * 3600 + (vp - 143) * 1800
    if vp <= 196:
        return (vp - 166) * 86400
    return (vp - 192) * 604800


@dataclass(frozen=True, slots=True)
class DataCodingScheme:
    """The parts of TP-DCS (TS 23.038 §4) that matter here."""

    encoding: Encoding
    message_class: int | None = None
    compressed: bool = False

    @property
    def flash(self) -> bool:
        """Class 0: shown at once, not stored (a 'flash' SMS)."""
        return self.message_class == 0


_ALPHABET_BITS = {Encoding.GSM7: 0x00, Encoding.BINARY: 0x04, Encoding.UCS2: 0x08}


def build_dcs(encoding: Encoding, flash: bool = False) -> int:
    """TP-DCS in the general coding group; flash sets message class 0 (TS 23.038 §4)."""
    return _ALPHABET_BITS[encoding] | (0x10 if flash else 0x00)


def parse_dcs(value: int) -> DataCodingScheme:
    """Decode TP-DCS; reserved alphabets and groups mean GSM-7, as TS 23.038 §4 says."""
    if value < 0x80:  # general data coding, with or without automatic deletion
        alphabet = (value >> 2) & 0x03
        encoding = {1: Encoding.BINARY, 2: Encoding.UCS2}.get(alphabet, Encoding.GSM7)
        message_class = value & 0x03 if value & 0x10 else None
        return DataCodingScheme(encoding, message_class, bool(value & 0x20))
    if 0xE0 <= value <= 0xEF:  # message waiting, store, UCS-2
        return DataCodingScheme(Encoding.UCS2)
    if value >= 0xF0:  # data coding / message class
        encoding = Encoding.BINARY if value & 0x04 else Encoding.GSM7
        return DataCodingScheme(encoding, value & 0x03)
    return DataCodingScheme(Encoding.GSM7)
