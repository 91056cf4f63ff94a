"""An incoming SMS that arrives while the store is down is kept (retried in place), not
requeued until the quorum queue's delivery limit dead-letters it."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import OperationalError

from smsgw_inbound.received import Receiver
from smsgw_shared.amqp import DeliveryInfo
from smsgw_shared.messages import InboundPart


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
