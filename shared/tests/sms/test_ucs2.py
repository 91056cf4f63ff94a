"""UTF-16BE with surrogate pairs."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw_shared.sms import ucs2
from smsgw_shared.sms.errors import EncodingError


def test_bmp_and_emoji() -> None:
    assert ucs2.encode("Привет") == bytes.fromhex("041F04400438043204350442")
    assert ucs2.encode("😀") == bytes.fromhex("D83DDE00")
    assert ucs2.decode(bytes.fromhex("D83DDE00")) == "😀"
    assert ucs2.unit_count("a😀") == 3
    assert ucs2.char_units("😀") == 2
    assert ucs2.char_units("я") == 1


@pytest.mark.parametrize("text", ["\ud83d", "a\ude00b", "\ude00\ud83d"])
def test_unpaired_surrogate_in_text(text: str) -> None:
    with pytest.raises(EncodingError, match="surrogate"):
        ucs2.encode(text)
    with pytest.raises(EncodingError, match="unpaired"):
        ucs2.join_surrogates(text)


def test_join_surrogates_joins_valid_pairs() -> None:
    assert ucs2.join_surrogates("x\ud83d\ude00") == "x😀"
    assert ucs2.join_surrogates("plain") == "plain"


@pytest.mark.parametrize("hex_data", ["D83D", "DE00", "0041D83D0041", "004"])
def test_decode_bad(hex_data: str) -> None:
    data = bytes.fromhex(hex_data) if len(hex_data) % 2 == 0 else b"\x00\x41\x00"
    with pytest.raises(EncodingError):
        ucs2.decode(data)


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=100))
def test_roundtrip(text: str) -> None:
    data = ucs2.encode(text)
    assert len(data) == 2 * ucs2.unit_count(text)
    assert ucs2.decode(data) == text
