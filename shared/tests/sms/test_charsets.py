"""Input charsets and Russian transliteration."""

import pytest

from smsgw_shared.sms import gsm7
from smsgw_shared.sms.charsets import decode_text, normalize_charset, transliterate_ru
from smsgw_shared.sms.errors import CharsetError

TEXT = "Привет, мир! Ёжик"


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        ("utf_8", "utf-8"),
        ("windows-1251", "cp1251"),
        ("CP1251", "cp1251"),
        ("Win-1251", "cp1251"),
        ("KOI8-R", "koi8-r"),
        ("koi8_r", "koi8-r"),
        (" koi8r ", "koi8-r"),
    ],
)
def test_decode(name: str, codec: str) -> None:
    assert decode_text(TEXT.encode(codec), name) == TEXT


def test_normalize_and_bom() -> None:
    assert normalize_charset("CP1251") == "windows-1251"
    assert decode_text(b"\xef\xbb\xbfhi") == "hi"


@pytest.mark.parametrize("name", ["latin-9", "", "utf-16", "ebcdic"])
def test_unknown_charset(name: str) -> None:
    with pytest.raises(CharsetError, match="unknown charset"):
        decode_text(b"x", name)


@pytest.mark.parametrize(("data", "name"), [(b"\xff\xfe", "utf-8"), (b"ab\x98", "cp1251")])
def test_undecodable(data: bytes, name: str) -> None:
    with pytest.raises(CharsetError, match="not valid"):
        decode_text(data, name)


@pytest.mark.parametrize(
    ("text", "latin"),
    [
        ("Привет, мир!", "Privet, mir!"),
        ("Щука и ёж", "Shchuka i ezh"),
        ("ЩУКА", "SHCHUKA"),
        ("Юля Якушева", "Yulya Yakusheva"),
        ("объявление", "obyavlenie"),
        ("«Заказ» № 5 — готов…", '"Zakaz" No 5 - gotov...'),
        ("Hello", "Hello"),
        ("Київ", "Kiyiv"),
    ],
)
def test_transliterate_ru(text: str, latin: str) -> None:
    result = transliterate_ru(text)
    assert result == latin
    assert gsm7.is_gsm7(result)


def test_transliterate_whole_alphabet_is_gsm7() -> None:
    alphabet = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    assert gsm7.is_gsm7(transliterate_ru(alphabet + alphabet.upper() + " «»—№…"))
