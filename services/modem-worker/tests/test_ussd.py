"""USSD encodings (TS 27.007 §7.15, TS 23.038 §5) and balance parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from smsgw_modem.ussd import encode_request, parse_balance, parse_cusd
from smsgw_shared.sms import gsm7


def test_encode_request_text_and_huawei_hex() -> None:
    assert encode_request("*100#", "text") == "*100#"
    # *100# packed as GSM-7: the classic Huawei request string
    assert encode_request("*100#", "gsm7-hex") == "AA180C3602"


def test_decode_ucs2_reply() -> None:
    text = "Баланс 123.45 р."
    line = f'+CUSD: 0,"{text.encode("utf-16-be").hex().upper()}",72'
    reply = parse_cusd(line, hex_gsm7=False)
    assert (reply.status, reply.text, reply.dcs) == (0, text, 72)


def test_decode_packed_gsm7_reply() -> None:
    packed = gsm7.pack(gsm7.encode("Balance: 10,50 USD")).hex().upper()
    assert parse_cusd(f'+CUSD: 1,"{packed}",15', hex_gsm7=True).text == "Balance: 10,50 USD"
    assert parse_cusd('+CUSD: 0,"Balance 1",15', hex_gsm7=False).text == "Balance 1"
    assert parse_cusd("+CUSD: 4", hex_gsm7=False).status == 4


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("Баланс 123.45 р.", Decimal("123.45"), "RUB"),
        ("Balance: 10,50 USD", Decimal("10.50"), "USD"),
        ("Остаток 99 руб", Decimal("99"), "RUB"),
        ("Ваш баланс: -12,30 руб. Пополните счет *100#", Decimal("-12.30"), "RUB"),
        ("Balance $5.25 valid till 01.12", Decimal("5.25"), "USD"),
        ("Баланс 1 234,56 грн", Decimal("1234.56"), "UAH"),
        ("Service unavailable", None, None),
    ],
)
def test_parse_balance(text: str, amount: Decimal | None, currency: str | None) -> None:
    balance = parse_balance(text)
    assert (balance.amount, balance.currency, balance.raw) == (amount, currency, text)
