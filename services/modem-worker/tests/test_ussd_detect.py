"""USSD answers decoded whatever the modem was configured for: packed GSM-7 hex (the Huawei
default, `+CUSD: 0,"C2303BEC…",15`) is detected, and a reply that decodes to no text gives
no balance (its hex digits are not an amount) but comes back as received."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from smsgw_modem.sim import Simulator
from smsgw_modem.sim.commands import encode_ussd
from smsgw_modem.sim.state import UssdReply
from smsgw_modem.ussd import is_huawei, parse_balance, parse_cusd
from smsgw_shared.sms import gsm7

from .test_worker_rpc import Rpc, rpc  # noqa: F401  (the fixture)

HUAWEI_BALANCE = "C2303BEC1E9775A0986CE6A2D540D2AA10"  # "Balance: 123.45 RUB", packed GSM-7
UCS2_BALANCE = "Баланс 123.45 р.".encode("utf-16-be").hex().upper()


def _packed(text: str) -> str:
    return gsm7.pack(gsm7.encode(text)).hex().upper()


def test_the_huawei_vector_is_packed_gsm7() -> None:
    assert _packed("Balance: 123.45 RUB") == HUAWEI_BALANCE


# (line, modem sends hex (configured or a Huawei), text, decoded, amount, currency)
CASES = [
    # plain text, DCS 15
    ('+CUSD: 0,"Balance: 10,50 USD",15', False, "Balance: 10,50 USD", True, "10.50", "USD"),
    ('+CUSD: 0,"Balance: 10,50 USD",15', True, "Balance: 10,50 USD", True, "10.50", "USD"),
    ('+CUSD: 0,"12345678",15', False, "12345678", True, "12345678", None),
    ('+CUSD: 0,"Add",15', False, "Add", True, None, None),  # hex letters, but a word
    ('+CUSD: 0,"Balance 1"', False, "Balance 1", True, "1", None),
    # UCS-2 hex, DCS 72 (and some firmware's UCS-2 hex whatever the DCS)
    (f'+CUSD: 0,"{UCS2_BALANCE}",72', False, "Баланс 123.45 р.", True, "123.45", "RUB"),
    (f'+CUSD: 0,"{UCS2_BALANCE}",72', True, "Баланс 123.45 р.", True, "123.45", "RUB"),
    (f'+CUSD: 0,"{UCS2_BALANCE}",15', False, "Баланс 123.45 р.", True, "123.45", "RUB"),
    # packed GSM-7 hex, DCS 15: known (Huawei / configured) or detected by what it reads as
    (f'+CUSD: 0,"{HUAWEI_BALANCE}",15', True, "Balance: 123.45 RUB", True, "123.45", "RUB"),
    (f'+CUSD: 0,"{HUAWEI_BALANCE}",15', False, "Balance: 123.45 RUB", True, "123.45", "RUB"),
    (
        f'+CUSD: 1,"{HUAWEI_BALANCE.lower()}",15',
        False,
        "Balance: 123.45 RUB",
        True,
        "123.45",
        "RUB",
    ),
    (f'+CUSD: 0,"{_packed("Ostatok 99 rub")}",0', False, "Ostatok 99 rub", True, "99", "RUB"),
    (f'+CUSD: 0,"{_packed("1234567")}",15', True, "1234567", True, "1234567", None),
    # junk: hex that decodes to no text gives no amount, and the reply as received
    ('+CUSD: 0,"DEADBEEF0102",15', False, "DEADBEEF0102", False, None, None),
    ('+CUSD: 0,"DEADBEEF0102",15', True, "DEADBEEF0102", False, None, None),
    ('+CUSD: 0,"FFFFFFFFFF",72', False, "FFFFFFFFFF", False, None, None),  # odd UCS-2
    ('+CUSD: 0,"D800D800",72', False, "D800D800", False, None, None),  # lone surrogates
    ('+CUSD: 0,"Service unavailable",15', False, "Service unavailable", True, None, None),
]


@pytest.mark.parametrize(("line", "hex_gsm7", "text", "decoded", "amount", "currency"), CASES)
def test_decode_and_balance(
    line: str, hex_gsm7: bool, text: str, decoded: bool, amount: str | None, currency: str | None
) -> None:
    reply = parse_cusd(line, hex_gsm7=hex_gsm7)
    assert (reply.text, reply.decoded) == (text, decoded)
    balance = parse_balance(reply.text, reply.decoded)
    assert balance.amount == (None if amount is None else Decimal(amount))
    assert (balance.currency, balance.raw) == (currency, text)


@pytest.mark.parametrize(
    ("cgmi", "huawei"),
    [("huawei", True), ("HUAWEI TECHNOLOGIES CO., LTD", True), ("ZTE", False), (None, False)],
)
def test_huawei_from_cgmi(cgmi: str | None, huawei: bool) -> None:
    assert is_huawei(cgmi) is huawei


async def test_huawei_modem_answers_packed_gsm7_without_configuration(
    sim: Simulator,
    worker: Any,
    events: Any,
    rpc: Rpc,  # noqa: F811
    mk_modem: Callable[..., Any],
    setup_modems: Any,
) -> None:
    """The simulator answers like Huawei firmware (packed GSM-7 hex, DCS 15); the worker
    keeps the default `ussd_encoding = "text"` and still reads the balance."""
    state = sim.device(1).state
    assert state.manufacturer == "huawei"
    state.ussd_hex = True
    state.ussd["*100#"] = UssdReply("Balance: 123.45 RUB", dcs=15)
    assert encode_ussd(sim.device(1), state.ussd["*100#"]) == HUAWEI_BALANCE
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    reply = await rpc.call("m1", "balance")
    assert 'AT+CUSD=1,"*100#",15' in sim.device(1).command_log
    assert reply.ok and reply.raw == "Balance: 123.45 RUB"
    assert (reply.amount, reply.currency) == (Decimal("123.45"), "RUB")


async def test_other_modem_hex_detected_and_junk_has_no_amount(
    sim: Simulator,
    worker: Any,
    events: Any,
    rpc: Rpc,  # noqa: F811
    mk_modem: Callable[..., Any],
    setup_modems: Any,
) -> None:
    state = sim.device(1).state
    state.manufacturer = "ZTE"
    state.ussd_hex = True
    state.ussd["*100#"] = UssdReply("Balance: 123.45 RUB", dcs=15)
    state.ussd["*102#"] = UssdReply("ÑÑÑÑÑÑÑÑÑÑÑ", dcs=15)  # hex that reads as no text
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    reply = await rpc.call("m1", "balance")
    assert reply.ok and reply.raw == "Balance: 123.45 RUB"
    assert (reply.amount, reply.currency) == (Decimal("123.45"), "RUB")
    await worker.stop()
    await worker.start(setup_modems(mk_modem(1, balance_ussd="*102#")))
    await events.wait_connected("modem:m1")
    junk = await rpc.call("m1", "balance")
    assert junk.ok and junk.raw == _packed("ÑÑÑÑÑÑÑÑÑÑÑ")
    assert (junk.amount, junk.currency) == (None, None)
