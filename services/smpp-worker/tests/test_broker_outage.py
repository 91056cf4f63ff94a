"""A brief broker outage does not leave receipts and incoming SMS to the SMSC's retry
policy: the worker holds the deliver_sm_resp until the event is confirmed (up to the bind's
`event_hold`), and only past it answers ESME_RX_T_APPN. The simulated SMSC never retries.

The outage is real for the worker: it reaches RabbitMQ through a TCP relay that is killed
(connections dropped, new ones refused) and started again on the same port."""

from __future__ import annotations

import asyncio

from smsgw_shared.amqp import AmqpConnection
from smsgw_shared.config import Settings
from smsgw_shared.testing.relay import TcpRelay, url_through

from .conftest import EventLog, SimControl, running_service, with_bind


def through(settings: Settings, relay: TcpRelay, port: int, hold: float) -> Settings:
    url = url_through(settings.amqp_url, relay.port)
    return with_bind(settings, port, event_hold=hold).model_copy(update={"amqp_url": url})


async def test_an_incoming_sms_waits_out_a_broker_outage(
    settings: Settings,
    amqp: AmqpConnection,
    sim: SimControl,
    events: EventLog,
    broker_relay: TcpRelay,
) -> None:
    relay = broker_relay
    async with running_service(through(settings, relay, sim.sim.port, hold=30), amqp) as svc:
        await relay.kill()
        inject = asyncio.create_task(
            sim.post("/inject", {"text": "while away", "from": "79161234567", "timeout": 40})
        )
        await asyncio.sleep(3)  # the broker stays away a while; the answer is held
        assert not inject.done()
        await relay.start()
        r = await inject
        assert r["statuses"] == ["ESME_ROK"]  # answered OK once the event was confirmed
        (part,) = await events.wait(lambda e: e.of("inbound_part"), timeout=30)
        assert part["text"] == "while away"
        held = svc.metrics.held.labels("b1", "confirmed")._value.get()
        assert held == 1


async def test_past_the_hold_the_smsc_is_told_to_retry(
    settings: Settings,
    amqp: AmqpConnection,
    sim: SimControl,
    events: EventLog,
    broker_relay: TcpRelay,
) -> None:
    relay = broker_relay
    async with running_service(through(settings, relay, sim.sim.port, hold=1.0), amqp) as svc:
        await relay.kill()
        try:
            r = await sim.post("/inject", {"text": "too long away", "timeout": 20})
            assert r["statuses"] == ["ESME_RX_T_APPN"]
            assert svc.metrics.held.labels("b1", "refused")._value.get() == 1
        finally:
            await relay.start()
