"""A batch that keeps failing while the store answers is split until the one bad event is
found: the rest is applied, that one fails alone, named in a log line and counted. The
fault is real: another transaction holds a lock on one message row, so every statement of
a batch that touches it times out."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound import metrics
from smsgw_inbound.projection import APPLIED, Projector
from smsgw_inbound.service import StatusHandler
from smsgw_shared.messages import PartRef, StatusEvent
from smsgw_shared.store.db import make_engine
from smsgw_shared.store.direct import asyncpg_dsn

from .conftest import add_message, status_of


def sent(mid: uuid.UUID, pid: str) -> StatusEvent:
    return StatusEvent(
        message_id=str(mid),
        state="sent",
        route="smpp:b1",
        parts=[PartRef(index=1, provider_id=pid)],
        provider_id=pid,
    )


async def test_a_batch_stuck_on_one_locked_row_is_split_and_the_rest_applied(
    database_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    mids = [await add_message(engine) for _ in range(8)]
    bad = mids[5]
    # The projection's own engine: statements give up after 1 s.
    short = make_engine(database_url, pool_size=2, command_timeout=1.0)
    holder = await asyncpg.connect(asyncpg_dsn(make_url(database_url)))
    before = metrics.POISON_ISOLATED._value.get()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", bad)
        handler = StatusHandler(Projector(short, 7 * 86400), short)
        events = [sent(m, f"p{uuid.uuid4().hex[:8]}") for m in mids]
        with caplog.at_level(logging.WARNING, logger="smsgw_inbound.store_retry"):
            outcomes = await asyncio.wait_for(handler.handle(events), 120)
        await tx.rollback()
    finally:
        await holder.close()
        await short.dispose()
    failed = [i for i, o in enumerate(outcomes) if o is not None]
    assert failed == [5]
    for m in mids:
        assert await status_of(engine, m) == ("queued" if m == bad else "sent")
    assert metrics.POISON_ISOLATED._value.get() - before == 1
    assert any(
        str(bad) in r.getMessage() and "fails on its own" in r.getMessage() for r in caplog.records
    )
    # Once the lock is gone the event applies like any other.
    ok = Projector(engine, 7 * 86400)
    assert await ok.apply_batch([events[5]]) == [APPLIED]
