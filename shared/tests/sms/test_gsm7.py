"""GSM 03.38 alphabet, septet counting and packing (3GPP TS 23.038 §6.1.2.1, §6.2.1)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw_shared.sms import gsm7
from smsgw_shared.sms.errors import EncodingError, PduError, UnencodableCharactersError

# (code, character) spot checks of TS 23.038 Figure 1, one per row and the tricky ones.
BASIC_TABLE = [
    (0x00, "@"),
    (0x01, "£"),
    (0x02, "$"),
    (0x03, "¥"),
    (0x09, "Ç"),
    (0x0A, "\n"),
    (0x0D, "\r"),
    (0x10, "Δ"),
    (0x11, "_"),
    (0x1C, "Æ"),
    (0x1F, "É"),
    (0x20, " "),
    (0x24, "¤"),
    (0x40, "¡"),
    (0x41, "A"),
    (0x5B, "Ä"),
    (0x5F, "§"),
    (0x60, "¿"),
    (0x7B, "ä"),
    (0x7F, "à"),
]

EXTENSION_TABLE = [
    ("\f", 0x0A),
    ("^", 0x14),
    ("{", 0x28),
    ("}", 0x29),
    ("\\", 0x2F),
    ("[", 0x3C),
    ("~", 0x3D),
    ("]", 0x3E),
    ("|", 0x40),
    ("€", 0x65),
]


@pytest.mark.parametrize(("code", "char"), BASIC_TABLE)
def test_basic_table(code: int, char: str) -> None:
    assert gsm7.encode(char) == bytes([code])
    assert gsm7.decode(bytes([code])) == char
    assert gsm7.char_septets(char) == 1


@pytest.mark.parametrize(("char", "code"), EXTENSION_TABLE)
def test_extension_table(char: str, code: int) -> None:
    assert gsm7.encode(char) == bytes([0x1B, code])
    assert gsm7.decode(bytes([0x1B, code])) == char
    assert gsm7.char_septets(char) == 2


def test_alphabet_is_complete_and_distinct() -> None:
    assert len(gsm7.BASIC_CHARS) == 127  # 128 codes minus ESC
    assert len(gsm7.GSM7_CHARS) == 137
    assert gsm7.decode(gsm7.encode("".join(sorted(gsm7.GSM7_CHARS)))) == "".join(
        sorted(gsm7.GSM7_CHARS)
    )


def test_septet_count_extension_counts_two() -> None:
    assert gsm7.septet_count("") == 0
    assert gsm7.septet_count("abc") == 3
    assert gsm7.septet_count("€10 [x]") == 10


@pytest.mark.parametrize("text", ["Привет", "ç", "`", "\x1b", "😀"])
def test_unencodable(text: str) -> None:
    assert not gsm7.is_gsm7(text)
    assert gsm7.char_septets(text[0]) == 0
    with pytest.raises(UnencodableCharactersError) as info:
        gsm7.encode("ok " + text + text)
    assert info.value.chars == gsm7.unencodable_chars(text)
    assert isinstance(info.value, EncodingError)


def test_decode_unknown_escape_falls_back_to_basic() -> None:
    # TS 23.038 §6.2.1.1: a code absent from the extension table shows as the basic character
    assert gsm7.decode(bytes([0x1B, 0x41])) == "A"
    assert gsm7.decode(bytes([0x1B, 0x1B])) == " "
    assert gsm7.decode(bytes([0x41, 0x1B])) == "A "


def test_decode_rejects_octets() -> None:
    with pytest.raises(EncodingError):
        gsm7.decode(b"\x80")


PACKING = [
    ("hellohello", "E8329BFD4697D9EC37"),
    ("How are you?", "C8F71D14969741F977FD07"),
    ("2 € par mois", "32D0A60C8287E5A0F63B3D07"),
    ("1234567", "31D98C56B3DD00"),
    ("12345678", "31D98C56B3DD70"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "packed"), PACKING)
def test_packing_examples(text: str, packed: str) -> None:
    septets = gsm7.encode(text)
    assert gsm7.pack(septets).hex().upper() == packed
    assert gsm7.decode(gsm7.unpack(bytes.fromhex(packed), len(septets))) == text


@pytest.mark.parametrize(("udh_octets", "fill"), [(0, 0), (6, 1), (7, 0), (5, 2), (1, 6)])
def test_fill_bits(udh_octets: int, fill: int) -> None:
    assert gsm7.fill_bits(udh_octets) == fill
    assert (udh_octets * 8 + fill) % 7 == 0


def test_pack_with_fill_bit() -> None:
    # after a 6-octet UDH the text starts one bit into the next octet
    assert gsm7.pack(gsm7.encode("h"), 1) == bytes([0x68 << 1])
    assert gsm7.unpack(bytes([0xD0]), 1, 1) == b"h"


def test_unpack_too_short_is_pdu_error() -> None:
    with pytest.raises(PduError):
        gsm7.unpack(b"\x00", 2)
    with pytest.raises(PduError):
        gsm7.unpack(b"\x00", 1, -1)


@given(st.lists(st.integers(0, 127), max_size=200), st.integers(0, 6))
def test_pack_unpack_roundtrip(values: list[int], fill: int) -> None:
    septets = bytes(values)
    packed = gsm7.pack(septets, fill)
    assert len(packed) == (fill + 7 * len(septets) + 7) // 8
    assert gsm7.unpack(packed, len(septets), fill) == septets


@given(st.text(alphabet=sorted(gsm7.GSM7_CHARS), max_size=300))
def test_encode_decode_roundtrip(text: str) -> None:
    septets = gsm7.encode(text)
    assert len(septets) == gsm7.septet_count(text)
    assert gsm7.decode(septets) == text
