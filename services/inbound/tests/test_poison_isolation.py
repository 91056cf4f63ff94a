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
from smsgw_shared.testing import wait_for

from .conftest import add_message, status_of

WAITING_ADVISORY = (
    "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted"
)


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


async def test_errors_of_statements_run_on_asyncpg_directly_are_classified_by_sqlstate(
    database_url: str,
) -> None:
    """The projection's statements run on the asyncpg connection, so the server's errors
    arrive unwrapped by SQLAlchemy: a real deadlock is retried in place (transient), a
    value the store refuses is not (the batch is split to find it)."""
    from smsgw_inbound.store_retry import is_transient

    dsn = asyncpg_dsn(make_url(database_url))
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        await a.execute("SELECT pg_advisory_xact_lock(9001)")
        await b.execute("SELECT pg_advisory_xact_lock(9002)")
        first = asyncio.create_task(a.execute("SELECT pg_advisory_xact_lock(9002)"))

        async def a_waits() -> bool:  # `a` queued on 9002 first: `b` closes the cycle
            return bool(await b.fetchval(WAITING_ADVISORY, a.get_server_pid()))

        await wait_for(a_waits, timeout=10)
        second = asyncio.create_task(b.execute("SELECT pg_advisory_xact_lock(9001)"))
        results = await asyncio.gather(first, second, return_exceptions=True)
        deadlocks = [r for r in results if isinstance(r, BaseException)]
        assert len(deadlocks) == 1, results
        assert isinstance(deadlocks[0], asyncpg.exceptions.DeadlockDetectedError)
        assert is_transient(deadlocks[0])
        for t in (ta, tb):
            await t.rollback()
        with pytest.raises(asyncpg.PostgresError) as too_long:
            await a.execute("CREATE TEMP TABLE t (v varchar(2)); INSERT INTO t VALUES ('abc')")
        assert too_long.value.sqlstate == "22001"
        assert not is_transient(too_long.value)
    finally:
        await a.close()
        await b.close()
