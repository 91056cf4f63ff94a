"""Part limits, safe split points, max parts, and the preview."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.encoding import Encoding
from smsgw_shared.sms.errors import SmsError, TooManyPartsError
from smsgw_shared.sms.segment import (
    MAX_PARTS_LIMIT,
    part_limit,
    preview,
    split_payload,
    split_text,
)


@pytest.mark.parametrize(
    ("encoding", "single", "multi8", "multi16"),
    [(Encoding.GSM7, 160, 153, 152), (Encoding.UCS2, 70, 67, 66), (Encoding.BINARY, 140, 134, 133)],
)
def test_part_limits(encoding: Encoding, single: int, multi8: int, multi16: int) -> None:
    assert part_limit(encoding, False) == single
    assert part_limit(encoding, True) == multi8
    assert part_limit(encoding, True, 16) == multi16


@pytest.mark.parametrize(
    ("text", "parts", "encoding"),
    [
        ("", 1, Encoding.GSM7),
        ("a" * 160, 1, Encoding.GSM7),
        ("a" * 161, 2, Encoding.GSM7),
        ("a" * 306, 2, Encoding.GSM7),
        ("a" * 307, 3, Encoding.GSM7),
        ("€" * 80, 1, Encoding.GSM7),
        ("€" * 81, 2, Encoding.GSM7),
        ("я" * 70, 1, Encoding.UCS2),
        ("я" * 71, 2, Encoding.UCS2),
        ("я" * 134, 2, Encoding.UCS2),
        ("я" * 135, 3, Encoding.UCS2),
        ("😀" * 35, 1, Encoding.UCS2),
        ("😀" * 36, 2, Encoding.UCS2),
    ],
)
def test_part_counts(text: str, parts: int, encoding: Encoding) -> None:
    result = split_text(text)
    assert result.parts == parts
    assert result.encoding is encoding
    assert "".join(s.text for s in result.segments) == text


def test_escape_pair_never_split() -> None:
    text = "a" * 152 + "€" + "b" * 10  # the € would straddle septets 153/154
    result = split_text(text)
    assert [s.units for s in result.segments] == [152, 12]
    assert result.segments[1].text.startswith("€")
    assert all(not s.payload.endswith(b"\x1b") for s in result.segments)


def test_surrogate_pair_never_split() -> None:
    text = "я" * 66 + "😀" + "я" * 10
    result = split_text(text)
    assert [s.units for s in result.segments] == [66, 12]
    assert result.segments[1].text.startswith("😀")


def test_too_many_parts() -> None:
    with pytest.raises(TooManyPartsError) as info:
        split_text("a" * 1000, max_parts=3)
    assert (info.value.parts, info.value.max_parts) == (7, 3)
    with pytest.raises(TooManyPartsError):
        preview("a" * 1000, max_parts=3)
    assert split_text("a" * 1000, max_parts=None).parts == 7


@pytest.mark.parametrize("max_parts", [0, -1, MAX_PARTS_LIMIT + 1])
def test_bad_max_parts(max_parts: int) -> None:
    with pytest.raises(SmsError):
        split_text("x", max_parts=max_parts)


def test_split_binary() -> None:
    parts = split_payload(bytes(300), Encoding.BINARY)
    assert [len(p) for p in parts] == [134, 134, 32]
    assert split_payload(bytes(140), Encoding.BINARY) == (bytes(140),)


def test_preview_gsm7() -> None:
    p = preview("a" * 200)
    assert (p.encoding, p.parts, p.units, p.units_per_part, p.remaining) == (
        "gsm7",
        2,
        200,
        153,
        106,
    )
    assert preview("").remaining == 160
    assert preview("€").units == 2


def test_preview_ucs2() -> None:
    p = preview("Привет")
    assert (p.encoding, p.parts, p.units, p.units_per_part, p.remaining) == ("ucs2", 1, 6, 70, 64)
    assert p.ucs2_chars == ("П", "р", "и", "в", "е", "т")


def test_preview_substitution_and_forcing() -> None:
    assert preview("“hi”", substitute=True).encoding == "gsm7"
    assert preview("hi", encoding="ucs2").units_per_part == 70


def _check_parts(text: str, ref_bits: int = 8) -> None:
    result = split_text(text, max_parts=None, ref_bits=ref_bits)  # type: ignore[arg-type]
    width = 2 if result.encoding is Encoding.UCS2 else 1
    limit = part_limit(result.encoding, result.parts > 1, ref_bits)  # type: ignore[arg-type]
    for segment in result.segments:
        assert segment.units <= limit
        assert len(segment.payload) == segment.units * width
        if result.encoding is Encoding.GSM7:
            assert not segment.payload.endswith(b"\x1b")
            assert gsm7.decode(segment.payload) == segment.text
        else:
            assert ucs2.decode(segment.payload) == segment.text  # raises on a split pair
    assert "".join(s.text for s in result.segments) == text
    p = preview(text, max_parts=None)
    assert p.parts == result.parts
    assert p.remaining == p.units_per_part - result.segments[-1].units


@settings(max_examples=200)
@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=600))
def test_any_unicode_roundtrips(text: str) -> None:
    _check_parts(text)


@settings(max_examples=200)
@given(st.text(alphabet="a€[ ]😀яZ", max_size=800), st.sampled_from([8, 16]))
def test_boundary_heavy_alphabet(text: str, ref_bits: int) -> None:
    _check_parts(text, ref_bits)


@settings(max_examples=100)
@given(st.text(alphabet=sorted(gsm7.GSM7_CHARS), max_size=800))
def test_gsm7_text_stays_gsm7(text: str) -> None:
    assert split_text(text, max_parts=None).encoding is Encoding.GSM7
    _check_parts(text)
