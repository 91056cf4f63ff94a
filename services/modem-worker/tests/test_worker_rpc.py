"""USSD and balance over RabbitMQ request/reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage

from smsgw_modem.sim import Simulator
from smsgw_modem.sim.state import UssdReply
from smsgw_shared.amqp import AmqpConnection, Outgoing, Publisher
from smsgw_shared.config import ScriptStep
from smsgw_shared.messages import ModemReply, ModemRequest


class Rpc:
    def __init__(self, amqp: AmqpConnection) -> None:
        self.amqp = amqp
        self.replies: asyncio.Queue[ModemReply] = asyncio.Queue()

    async def open(self) -> None:
        self.channel = await self.amqp.channel(confirms=False)
        self.queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self.replies.put_nowait(ModemReply.from_bytes(message.body))

        await self.queue.consume(on_message, no_ack=True)
        self.publisher = Publisher(self.amqp)

    async def call(self, modem_id: str, action: str, code: str | None = None) -> ModemReply:
        topo = self.amqp.topology
        request = ModemRequest(
            modem_id=modem_id, action=action, code=code, timeout=10, reply_to=self.queue.name
        )  # type: ignore[arg-type]
        await self.publisher.publish(
            Outgoing(topo.rpc_exchange, topo.rpc_routing_key(modem_id), request)
        )
        reply = await asyncio.wait_for(self.replies.get(), 15)
        assert reply.request_id == request.request_id
        return reply

    async def close(self) -> None:
        await self.publisher.close()
        await self.channel.close()


@pytest.fixture
async def rpc(amqp: AmqpConnection) -> AsyncIterator[Rpc]:
    client = Rpc(amqp)
    await client.open()
    yield client
    await client.close()


async def test_ussd_text_and_balance_ucs2(
    sim: Simulator,
    worker: Any,
    events: Any,
    rpc: Rpc,
    mk_modem: Callable[..., Any],
    setup_modems: Any,
) -> None:
    sim.device(1).state.ussd["*111#"] = UssdReply("Menu: 1 tariffs", dcs=15, status=1)
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    reply = await rpc.call("m1", "ussd", "*111#")
    assert reply.ok and reply.raw == "Menu: 1 tariffs"
    assert 'AT+CUSD=1,"*111#",15' in sim.device(1).command_log
    assert "AT+CUSD=2" in sim.device(1).command_log  # the menu session was closed
    balance = await rpc.call("m1", "balance")  # default reply: UCS-2 (DCS 72)
    assert balance.ok and balance.raw == "Баланс 123.45 р."
    assert (balance.amount, balance.currency) == (Decimal("123.45"), "RUB")


async def test_ussd_huawei_packed_gsm7(
    sim: Simulator,
    worker: Any,
    events: Any,
    rpc: Rpc,
    mk_modem: Callable[..., Any],
    setup_modems: Any,
) -> None:
    state = sim.device(1).state
    state.ussd_hex = True
    state.ussd["*100#"] = UssdReply("Balance: 10,50 USD", dcs=15)
    await worker.start(setup_modems(mk_modem(1, ussd_encoding="gsm7-hex")))
    await events.wait_connected("modem:m1")
    reply = await rpc.call("m1", "balance")
    assert 'AT+CUSD=1,"AA180C3602",15' in sim.device(1).command_log
    assert reply.ok and reply.raw == "Balance: 10,50 USD"
    assert (reply.amount, reply.currency) == (Decimal("10.50"), "USD")


async def test_ussd_network_error(
    sim: Simulator,
    worker: Any,
    events: Any,
    rpc: Rpc,
    mk_modem: Callable[..., Any],
    setup_modems: Any,
) -> None:
    sim.device(1).state.ussd["*5#"] = UssdReply("", status=4)
    await worker.start(setup_modems(mk_modem(1)))
    await events.wait_connected("modem:m1")
    reply = await rpc.call("m1", "ussd", "*5#")
    assert not reply.ok and "status 4" in (reply.error or "")


async def test_balance_script_sim_toolkit(
    sim: Simulator,
    worker: Any,
    events: Any,
    rpc: Rpc,
    mk_modem: Callable[..., Any],
    setup_modems: Any,
) -> None:
    sim.device(1).state.balance_text = "Остаток 99 руб"
    steps = [
        ScriptStep(send="AT+STGI=0", expect="OK"),
        ScriptStep(send="AT+STGR=0,1,1", expect="+STIN:"),
        ScriptStep(send="AT+STGI=1", expect="OK"),
    ]
    await worker.start(setup_modems(mk_modem(1, balance_script=steps)))
    await events.wait_connected("modem:m1")
    reply = await rpc.call("m1", "balance")
    assert reply.ok and reply.raw == "Остаток 99 руб"
    assert (reply.amount, reply.currency) == (Decimal("99"), "RUB")
