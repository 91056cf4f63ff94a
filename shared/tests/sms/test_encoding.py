"""Automatic and forced encoding, smart substitution."""

import pytest

from smsgw_shared.sms import gsm7
from smsgw_shared.sms.encoding import (
    SUBSTITUTIONS,
    Encoding,
    check_text,
    choose_encoding,
    substitute_gsm7,
)
from smsgw_shared.sms.errors import EncodingError, UnencodableCharactersError


def test_auto_gsm7() -> None:
    choice = choose_encoding("Hello {world} €5")
    assert choice.encoding is Encoding.GSM7
    assert choice.ucs2_chars == ()


def test_auto_ucs2_reports_chars() -> None:
    choice = choose_encoding("Hi Вася “ok” Вася")
    assert choice.encoding is Encoding.UCS2
    assert choice.ucs2_chars == ("В", "а", "с", "я", "“", "”")
    assert choice.text == "Hi Вася “ok” Вася"


def test_substitution_keeps_gsm7() -> None:
    choice = choose_encoding("“Quote” — it’s № 5…\u00a0ok", substitute=True)
    assert choice.encoding is Encoding.GSM7
    assert choice.text == '"Quote" - it\'s No 5... ok'


def test_substitution_that_cannot_help_sends_original_text() -> None:
    choice = choose_encoding("“Привет”", substitute=True)
    assert choice.encoding is Encoding.UCS2
    assert choice.text == "“Привет”"
    assert "“" not in choice.ucs2_chars
    assert "П" in choice.ucs2_chars


def test_forced_gsm7_error_lists_chars() -> None:
    with pytest.raises(UnencodableCharactersError) as info:
        choose_encoding("ab Жж ж", "gsm7")
    assert info.value.chars == ("Ж", "ж")
    assert info.value.encoding == "gsm7"
    assert "U+0416" in str(info.value)


def test_forced_gsm7_with_substitution() -> None:
    assert choose_encoding("a–b", "gsm7", substitute=True).text == "a-b"


def test_forced_ucs2() -> None:
    choice = choose_encoding("plain", "ucs2")
    assert choice.encoding is Encoding.UCS2
    assert choice.ucs2_chars == ()


def test_unknown_encoding() -> None:
    with pytest.raises(EncodingError, match="unknown encoding"):
        choose_encoding("x", "latin9")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_bad_text(text: str) -> None:
    with pytest.raises(EncodingError):
        check_text(text)
    with pytest.raises(EncodingError):
        choose_encoding(text)


def test_every_substitution_is_gsm7() -> None:
    for source, target in SUBSTITUTIONS.items():
        assert source not in gsm7.GSM7_CHARS, source
        assert gsm7.is_gsm7(target), source


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ç", "Ç"), ("á", "a"), ("ő", "o"), ("ﬁ", "fi"), ("Ωmega", "Ωmega"), ("Α", "A"), ("я", "я")],
)
def test_substitute_characters(text: str, expected: str) -> None:
    assert substitute_gsm7(text) == expected
