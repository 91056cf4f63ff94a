"""User Data Header (TS 23.040 §9.2.3.24): concatenation elements and reference numbers."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

from smsgw_shared.sms.errors import UdhError

IEI_CONCAT_8BIT = 0x00  # TS 23.040 §9.2.3.24.1
IEI_CONCAT_16BIT = 0x08  # TS 23.040 §9.2.3.24.8

RefBits = Literal[8, 16]


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """Concatenation: reference shared by the parts, total parts, this part's 1-based number."""

    ref: int
    total: int
    seq: int
    ref_bits: RefBits = 8


@dataclass(frozen=True, slots=True)
class InformationElement:
    """One UDH information element: identifier and raw data."""

    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    """A parsed UDH: its elements, in order."""

    elements: tuple[InformationElement, ...]

    @property
    def length(self) -> int:
        """Octets of the header including the UDHL octet."""
        return 1 + sum(2 + len(e.data) for e in self.elements)

    @property
    def concat(self) -> ConcatInfo | None:
        """The concatenation element, if present and valid (TS 23.040 §9.2.3.24.1)."""
        for element in self.elements:
            if element.iei == IEI_CONCAT_8BIT:
                ref, total, seq = element.data
                bits: RefBits = 8
            elif element.iei == IEI_CONCAT_16BIT:
                ref, total, seq = int.from_bytes(element.data[:2], "big"), *element.data[2:]
                bits = 16
            else:
                continue
            # §9.2.3.24.1: a zero count, or a sequence number of 0 or above the count,
            # makes the receiver ignore the element.
            if total == 0 or not 1 <= seq <= total:
                return None
            return ConcatInfo(ref, total, seq, bits)
        return None

    def to_bytes(self) -> bytes:
        """Encode with the leading UDHL octet."""
        body = b"".join(bytes((e.iei, len(e.data))) + e.data for e in self.elements)
        if len(body) > 139:
            raise UdhError(f"UDH of {len(body)} octets does not fit in a message")
        return bytes((len(body),)) + body


def build_concat_udh(ref: int, total: int, seq: int, ref_bits: RefBits = 8) -> bytes:
    """Concatenation UDH incl. UDHL: 05 00 03 ref total seq, or 06 08 04 ref ref total seq."""
    if not 1 <= total <= 255:
        raise UdhError(f"total parts must be 1..255, not {total}")
    if not 1 <= seq <= total:
        raise UdhError(f"part number must be 1..{total}, not {seq}")
    if ref_bits == 8:
        if not 0 <= ref <= 0xFF:
            raise UdhError(f"8-bit concatenation reference must be 0..255, not {ref}")
        return bytes((5, IEI_CONCAT_8BIT, 3, ref, total, seq))
    if ref_bits == 16:
        if not 0 <= ref <= 0xFFFF:
            raise UdhError(f"16-bit concatenation reference must be 0..65535, not {ref}")
        return bytes((6, IEI_CONCAT_16BIT, 4, ref >> 8, ref & 0xFF, total, seq))
    raise UdhError(f"reference size must be 8 or 16 bits, not {ref_bits}")


_CONCAT_IEDL = {IEI_CONCAT_8BIT: 3, IEI_CONCAT_16BIT: 4}


def parse_udh(user_data: bytes) -> tuple[UserDataHeader, bytes]:
    """Split user data that starts with a UDH into the parsed header and the rest."""
    if not user_data:
        raise UdhError("UDH indicated but the user data is empty")
    udhl = user_data[0]
    if 1 + udhl > len(user_data):
        raise UdhError(f"UDH length {udhl} exceeds the {len(user_data) - 1} octets of user data")
    header = user_data[1 : 1 + udhl]
    elements: list[InformationElement] = []
    pos = 0
    while pos < udhl:
        if pos + 2 > udhl:
            raise UdhError(f"information element at UDH octet {pos} is truncated")
        iei, iedl = header[pos], header[pos + 1]
        if pos + 2 + iedl > udhl:
            raise UdhError(f"information element 0x{iei:02X} length {iedl} overruns the UDH")
        data = header[pos + 2 : pos + 2 + iedl]
        if iei in _CONCAT_IEDL and iedl != _CONCAT_IEDL[iei]:
            raise UdhError(f"concatenation element 0x{iei:02X} has length {iedl}")
        elements.append(InformationElement(iei, data))
        pos += 2 + iedl
    return UserDataHeader(tuple(elements)), user_data[1 + udhl :]


class ConcatRefCounter:
    """Thread-safe concatenation reference source: random start, wraps at 256 or 65536."""

    def __init__(self, ref_bits: RefBits = 8, start: int | None = None) -> None:
        if ref_bits not in (8, 16):
            raise UdhError(f"reference size must be 8 or 16 bits, not {ref_bits}")
        self.ref_bits: RefBits = ref_bits
        self._modulo = 1 << ref_bits
        # A random start keeps a restarted sender from reusing the refs of its previous run.
        self._next = random.randrange(self._modulo) if start is None else start % self._modulo
        self._lock = threading.Lock()

    def next(self) -> int:
        """Return the next reference."""
        with self._lock:
            ref = self._next
            self._next = (ref + 1) % self._modulo
            return ref
