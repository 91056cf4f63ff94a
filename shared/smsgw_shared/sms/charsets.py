"""Incoming text bytes (UTF-8, windows-1251, KOI8-R) to str; Russian to Latin transliteration."""

from __future__ import annotations

from smsgw_shared.sms.encoding import substitute_gsm7
from smsgw_shared.sms.errors import CharsetError

# Accepted spellings (case-insensitive, '_' treated as '-') -> Python codec.
_ALIASES = {
    "utf-8": "utf-8-sig",  # -sig: a leading BOM is dropped, not sent
    "utf8": "utf-8-sig",
    "windows-1251": "cp1251",
    "cp1251": "cp1251",
    "cp-1251": "cp1251",
    "win-1251": "cp1251",
    "win1251": "cp1251",
    "koi8-r": "koi8_r",
    "koi8r": "koi8_r",
    "koi8": "koi8_r",
}

SUPPORTED_CHARSETS = ("utf-8", "windows-1251", "koi8-r")


_CANONICAL = {"utf-8-sig": "utf-8", "cp1251": "windows-1251", "koi8_r": "koi8-r"}


def _codec(name: str) -> str:
    codec = _ALIASES.get(name.strip().lower().replace("_", "-"))
    if codec is None:
        supported = ", ".join(SUPPORTED_CHARSETS)
        raise CharsetError(f"unknown charset {name!r}; supported: {supported}")
    return codec


def normalize_charset(name: str) -> str:
    """Canonical name among SUPPORTED_CHARSETS for an accepted alias, else CharsetError."""
    return _CANONICAL[_codec(name)]


def decode_text(data: bytes, charset: str = "utf-8") -> str:
    """Decode input bytes in `charset`; unknown charset or invalid bytes raise CharsetError."""
    codec = _codec(charset)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise CharsetError(
            f"bytes at offset {exc.start} are not valid {_CANONICAL[codec]}"
        ) from exc


def _ru_table() -> dict[str, str]:
    # A readable SMS-style romanisation, close to ICAO Doc 9303 (Russian passports since 2013)
    # but with ю/я as yu/ya; ь and ъ are dropped. Ukrainian and Belarusian letters included.
    lower = {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u",
    }  # fmt: skip
    table = dict(lower)
    table.update({k.upper(): v.capitalize() for k, v in lower.items()})
    return table


_RU = _ru_table()


def transliterate_ru(text: str) -> str:
    """Russian (Cyrillic) to Latin, then punctuation (—, «», №, …) to GSM-7 look-alikes."""
    out: list[str] = []
    for i, char in enumerate(text):
        latin = _RU.get(char)
        if latin is None:
            out.append(char)
            continue
        if len(latin) > 1 and char.isupper():
            # "ЩУКА" -> "SHCHUKA" but "Щука" -> "Shchuka": follow the neighbouring letters.
            neighbours = text[max(0, i - 1) : i] + text[i + 1 : i + 2]
            if any(c.isupper() for c in neighbours):
                latin = latin.upper()
        out.append(latin)
    return substitute_gsm7("".join(out))
