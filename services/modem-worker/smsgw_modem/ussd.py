"""USSD strings (TS 27.007 §7.15 `+CUSD`, DCS per TS 23.038 §5) and balance parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from smsgw_shared.sms import gsm7, ucs2
from smsgw_shared.sms.errors import SmsError

DCS_GSM7 = 15  # TS 23.038 §5: 0x0F, GSM-7, language unspecified
DCS_UCS2 = 72  # 0x48: general data coding, UCS-2

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_CUSD = re.compile(r'^\+CUSD:\s*(\d+)(?:\s*,\s*"(.*)"\s*(?:,\s*(\d+))?)?\s*$', re.S)


class UssdError(Exception):
    """The network or the modem refused or dropped the USSD session."""


@dataclass(frozen=True, slots=True)
class UssdReply:
    """A decoded `+CUSD: <m>,"<str>",<dcs>` answer."""

    status: int  # 0 done, 1 further action required, 2 terminated, 4 unsupported, 5 timeout
    text: str  # the decoded text; `raw` itself when it could not be decoded
    dcs: int | None
    raw: str
    decoded: bool = True  # False: `raw` looks encoded (hex) but decodes to no text


def encode_request(code: str, encoding: str) -> str:
    """The `<str>` of `AT+CUSD=1,<str>,15`: plain text, or packed GSM-7 as hex (Huawei)."""
    if encoding == "gsm7-hex":
        return gsm7.pack(gsm7.encode(code)).hex().upper()
    return code


def is_huawei(manufacturer: str | None) -> bool:
    """Whether `AT+CGMI` names a Huawei modem: their firmware answers USSD in DCS 15 as
    packed GSM-7 hex by default (`AT^USSDMODE=0`)."""
    return manufacturer is not None and "huawei" in manufacturer.lower()


def _alphabet(dcs: int | None) -> str:
    """TS 23.038 §5 (cell broadcast DCS, used by USSD): 'gsm7', 'ucs2' or '8bit'."""
    if dcs is None:
        return "gsm7"
    group = dcs >> 4
    if group in (0x0, 0x2, 0x3):
        return "gsm7"  # language groups, GSM-7
    if dcs == 0x11:
        return "ucs2"  # UCS-2 preceded by a language
    if group in (0x4, 0x5, 0x6, 0x7, 0x9):
        return {0: "gsm7", 1: "8bit", 2: "ucs2"}.get((dcs >> 2) & 0x03, "gsm7")
    if group == 0xF:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


def _unpack_gsm7_hex(text: str) -> str | None:
    data = bytes.fromhex(text)
    count = len(data) * 8 // 7
    septets = gsm7.unpack(data, count)
    # TS 23.038 §6.1.2.3.1: a trailing CR pads 7 spare bits so they are not read as '@'.
    if len(data) % 7 == 0 and septets.endswith((b"\r", b"\x00")):
        septets = septets[:-1]
    try:
        return gsm7.decode(septets)
    except SmsError:
        return None


# What a network's USSD text is made of: Latin or Cyrillic letters, digits, spaces and common
# punctuation. Packed GSM-7 read back from random bytes is mostly Greek capitals, accented
# letters, control characters and '@' (septet 0), so a high share of these tells text apart.
_COMMON = re.compile(r"[A-Za-zА-Яа-яЁё0-9 .,:;!?%#*+\-/()'\"=\n\r$€£₽]")
_LETTER = re.compile(r"[A-Za-zА-Яа-яЁё]")
_PLAUSIBLE_SHARE = 0.9
_EXPECTED_SHARE = 0.5  # when the modem is known to send packed GSM-7 hex
# A plain-text reply is words and numbers with spaces; one of this many hex digits and no
# space (digits alone excepted) is an encoded reply even when it decodes to nothing.
_ENCODED_MIN = 8


def printable(text: str) -> bool:
    """No control characters but CR and LF (GSM-7 has no others but FF)."""
    return all(c.isprintable() or c in "\r\n" for c in text)


def plausible(text: str, share: float = _PLAUSIBLE_SHARE) -> bool:
    """Whether decoded bytes read as a network's text, not as noise: printable, and at
    least `share` of it letters, digits, spaces and common punctuation; with some letters
    unless that text was expected."""
    if not text.strip() or not printable(text):
        return False
    if share >= _PLAUSIBLE_SHARE and not _LETTER.search(text):
        return False
    return len(_COMMON.findall(text)) >= share * len(text)


def _looks_encoded(text: str) -> bool:
    return len(text) >= _ENCODED_MIN and _HEX.match(text) is not None and not text.isdigit()


def _ucs2_hex(text: str) -> str | None:
    if not _HEX.match(text) or len(text) % 4:
        return None
    try:
        decoded = ucs2.decode(bytes.fromhex(text))
    except SmsError:
        return None
    return decoded if decoded and printable(decoded) else None


def _decode(text: str, dcs: int | None, hex_gsm7: bool) -> str | None:
    """`text` decoded per its DCS, or None when it looks encoded but decodes to no text."""
    alphabet = _alphabet(dcs)
    if alphabet == "ucs2":
        if _HEX.match(text):
            return _ucs2_hex(text)
        return text  # some firmware (AT+CSCS="GSM") sends the text itself
    if alphabet == "8bit":
        return bytes.fromhex(text).decode("latin-1") if _HEX.match(text) else text
    if not _HEX.match(text) or (text.isdigit() and not hex_gsm7):
        return text  # words with spaces, a code, a number: plain text
    unpacked = _unpack_gsm7_hex(text)
    # Packed GSM-7 hex: what the modem is set to send (configured, or a Huawei), or what
    # any modem sent when it reads as text. Some firmware sends UCS-2 hex whatever the DCS.
    share = _EXPECTED_SHARE if hex_gsm7 else _PLAUSIBLE_SHARE
    if unpacked is not None and plausible(unpacked, share):
        return unpacked
    wide = _ucs2_hex(text)
    if wide is not None and plausible(wide):
        return wide
    if hex_gsm7 or _looks_encoded(text):
        return None
    return text  # a short word of hex letters ('Add', 'Cafe'): plain text


def decode_text(text: str, dcs: int | None, hex_gsm7: bool) -> str:
    """Decode `<str>` per its DCS: UCS-2 hex, packed GSM-7 hex (Huawei, or detected), or
    plain text; `text` itself when it cannot be decoded."""
    decoded = _decode(text, dcs, hex_gsm7)
    return text if decoded is None else decoded


def parse_cusd(line: str, hex_gsm7: bool = False) -> UssdReply:
    """Parse `+CUSD: <m>[,"<str>"[,<dcs>]]`. `hex_gsm7`: the modem sends DCS-15 text as
    packed GSM-7 hex (configured, or a Huawei); such text is detected without it too."""
    found = _CUSD.match(line.strip())
    if not found:
        raise UssdError(f"unparseable USSD answer {line!r}")
    status = int(found.group(1))
    raw = found.group(2) or ""
    dcs = int(found.group(3)) if found.group(3) else None
    decoded = _decode(raw, dcs, hex_gsm7)
    if decoded is None:
        return UssdReply(status, raw, dcs, raw, decoded=False)
    return UssdReply(status, decoded, dcs, raw)


# --- balance -------------------------------------------------------------------------------
_CURRENCIES: tuple[tuple[str, str], ...] = (
    (r"руб(?:\.|лей|ля|ль)?|р\.|р\b|₽|rub\b|rur\b", "RUB"),
    (r"грн\.?|uah\b|₴", "UAH"),
    (r"тенге|тг\.?|kzt\b|₸", "KZT"),
    (r"byn\b|бел\.?\s*руб", "BYN"),
    (r"usd\b|\$", "USD"),
    (r"eur\b|€", "EUR"),
    (r"gbp\b|£", "GBP"),
)
_NUMBER = r"-?\s?\d+(?:[ \u00a0]\d{3})*(?:[.,]\d{1,2})?"
_KEYWORDS = r"баланс|остаток|счет[ау]?|счёт[ау]?|balance|credit|account|on account|средств"


@dataclass(frozen=True, slots=True)
class Balance:
    """A parsed balance; `raw` is the reply text as received."""

    raw: str
    amount: Decimal | None
    currency: str | None


def _to_decimal(text: str) -> Decimal | None:
    cleaned = text.replace(" ", "").replace("\u00a0", "").replace(",", ".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def _currency_at(text: str) -> str | None:
    head = text.lstrip()[:12].lower()
    for pattern, code in _CURRENCIES:
        if re.match(pattern, head):
            return code
    found = re.match(r"([A-Z]{3})\b", text.lstrip()[:4])
    return found.group(1) if found else None


def parse_balance(text: str, decoded: bool = True) -> Balance:
    """Amount and currency of a balance reply ('Баланс 123.45 р.', 'Balance: 10,50 USD');
    none of a reply that could not be `decoded` (its digits are hex, not an amount)."""
    if not decoded:
        return Balance(text, None, None)
    candidates: list[tuple[int, Decimal, str | None]] = []
    for found in re.finditer(_NUMBER, text):
        value = _to_decimal(found.group(0))
        if value is None:
            continue
        before = text[max(0, found.start() - 40) : found.start()].lower()
        currency = _currency_at(text[found.end() :])
        prefix_currency = re.search(r"(\$|€|£)\s*$", before)
        if currency is None and prefix_currency:
            currency = {"$": "USD", "€": "EUR", "£": "GBP"}[prefix_currency.group(1)]
        score = (2 if currency else 0) + (1 if re.search(_KEYWORDS, before) else 0)
        candidates.append((score, value, currency))
    if not candidates:
        return Balance(text, None, None)
    best = max(candidates, key=lambda c: c[0])  # first of the best-scored, by max's stability
    return Balance(text, best[1], best[2])
