"""Incoming SMS and status events that arrive while the store is down are kept (retried in
place), not requeued until the quorum queue's delivery limit dead-letters them."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import OperationalError

from smsgw_inbound.projection import Projector
from smsgw_inbound.received import Receiver
from smsgw_inbound.service import StatusHandler
from smsgw_shared.amqp import DeliveryInfo, PermanentFailure
from smsgw_shared.messages import InboundPart, PartRef, StatusEvent

from .conftest import add_message, status_of


async def test_store_outage_is_retried_in_place(engine, monkeypatch):
    receiver = Receiver(engine, reassembly_timeout=60)
    real_store = receiver.store
    calls = 0

    async def flaky(part: InboundPart) -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("store down"))
        return await real_store(part)

    monkeypatch.setattr(receiver, "store", flaky)
    part = InboundPart(route="modem:m1", sender="+79215551111", text="during the outage")
    info = DeliveryInfo(queue="q", attempt=0, max_attempts=5, redelivered=False)
    await asyncio.wait_for(receiver.handle(part, info), 10)
    assert calls == 4  # three failures, then stored — never raised to the consumer


async def test_status_batch_survives_a_store_outage_and_fails_items_alone(engine, monkeypatch):
    projector = Projector(engine, match_window=3600)
    real_apply = projector.apply_batch
    calls = 0

    async def flaky(events):
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("store down"))
        if any(e.error == "boom" for e in events):
            raise ValueError("this event cannot be applied")
        return await real_apply(events)

    monkeypatch.setattr(projector, "apply_batch", flaky)
    handler = StatusHandler(projector)
    known = await add_message(engine)
    events = [
        StatusEvent(
            message_id=str(known),
            state="sent",
            route="smpp:b1",
            parts=[PartRef(index=1, provider_id="p1")],
        ),
        StatusEvent(message_id=str(known), state="failed", route="smpp:b1", error="boom"),
        StatusEvent(message_id="00000000-0000-0000-0000-000000000000", state="sent", route="x"),
    ]
    outcomes = await asyncio.wait_for(handler.handle(events), 10)
    assert outcomes[0] is None  # applied after the outage
    assert isinstance(outcomes[1], ValueError)  # failed alone: requeued by the consumer
    assert isinstance(outcomes[2], PermanentFailure)  # unknown message: dead-lettered
    assert await status_of(engine, known) == "sent"
