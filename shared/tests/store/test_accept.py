"""The accept statement over a direct asyncpg connection: atomic, ids in job order, and the
connection is made again after the server drops it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_shared.store.db import StoreUnavailable
from smsgw_shared.store.direct import DirectConnection
from smsgw_shared.store.repos.messages import MessageRepository, NewMessages


def _group(n: int = 1, *, scheduled: bool = False, **over: Any) -> NewMessages:
    """A request's messages to `n` recipients (queued, with jobs, unless `scheduled`)."""
    group = NewMessages(
        batch_id=uuid.uuid4(),
        api_key_id=None,
        sender=None,
        text="hi",
        encoding="gsm7",
        parts_count=1,
        status="scheduled" if scheduled else "queued",
        send_at=datetime.now(UTC) + timedelta(hours=1) if scheduled else None,
        exchange=None if scheduled else "smsgw-test-none",
        available_at=datetime.now(UTC) + timedelta(days=1),
    )
    for k, v in over.items():
        setattr(group, k, v)
    for i in range(n):
        group.add(uuid.uuid4(), f"+7916000{i:04d}", "smpp:b1", uuid.uuid4(), "k")
    return group


async def _count(engine: AsyncEngine, table: str, ids: list[uuid.UUID]) -> int:
    column = "id" if table == "messages" else "message_id"
    async with engine.connect() as conn:
        res = await conn.execute(
            text(f"SELECT count(*) FROM {table} WHERE {column} = ANY(:ids)"), {"ids": ids}
        )
        return int(res.scalar_one())


@pytest.fixture
async def direct(engine: AsyncEngine):
    conn = MessageRepository(engine).direct()
    yield conn
    await conn.close()
    # The session database is shared: an API under test would relay these jobs (to an
    # exchange that does not exist) once due.
    async with engine.begin() as c:
        await c.execute(text("DELETE FROM outbox WHERE exchange = 'smsgw-test-none'"))


async def test_messages_events_and_jobs_in_order(engine: AsyncEngine, direct: DirectConnection):
    """Several requests in one statement: each message gets its request's shared values and
    its own, a history entry and a job; the outbox ids follow the requests' recipients."""
    repo = MessageRepository(engine)
    first = _group(30, reference="r1", sender="Shop", validity=600)
    later = _group(1, scheduled=True)
    second = _group(20, text="other text", flash=True, dlr=False)
    ids = await repo.accept(direct, [first, later, second])
    assert len(ids) == 50
    async with engine.connect() as conn:
        res = await conn.execute(
            text("SELECT id, message_id, body, routing_key FROM outbox WHERE id = ANY(:ids)"),
            {"ids": ids},
        )
        by_id = {r.id: r for r in res}
        mids = first.ids + second.ids
        assert [by_id[i].message_id for i in ids] == mids
        # no body: the API publishes the one it built, the relay makes it from the row
        assert {(by_id[i].body, by_id[i].routing_key) for i in ids} == {(None, "k")}
        stored = {
            r.id: r
            for r in await conn.execute(
                text("SELECT * FROM messages WHERE id = ANY(:ids)"),
                {"ids": mids + later.ids},
            )
        }
    for group in (first, later, second):
        for i, mid in enumerate(group.ids):
            row = stored[mid]
            assert (row.to_number, row.route, row.job_id) == (
                group.to_numbers[i],
                group.routes[i],
                group.job_ids[i],
            )
            for column in ("batch_id", "sender", "text", "status", "flash", "dlr", "validity"):
                assert getattr(row, column) == getattr(group, column), column
            assert row.reference == group.reference and row.send_at == group.send_at
    assert await _count(engine, "messages", mids + later.ids) == 51
    assert await _count(engine, "message_events", mids + later.ids) == 51
    assert await _count(engine, "outbox", later.ids) == 0

    await repo.delete_outbox(direct, ids[:10])
    assert await _count(engine, "outbox", mids) == 40


async def test_scheduled_messages_without_jobs(engine: AsyncEngine, direct: DirectConnection):
    repo = MessageRepository(engine)
    group = _group(scheduled=True)
    assert await repo.accept(direct, [group]) == []
    assert await _count(engine, "messages", group.ids) == 1
    assert await repo.accept(direct, []) == []
    assert await repo.accept(direct, [_group(0)]) == []


async def test_all_or_nothing(engine: AsyncEngine, direct: DirectConnection):
    """A row that violates a constraint fails the whole batch: no message, event or job of
    it is left behind (nothing half-accepted that the caller was told failed)."""
    repo = MessageRepository(engine)
    good = _group()
    await repo.accept(direct, [good])
    fresh = _group()
    dup = _group()
    dup.ids[0] = good.ids[0]  # primary key taken
    with pytest.raises(asyncpg.UniqueViolationError):
        await repo.accept(direct, [fresh, dup])
    assert await _count(engine, "messages", fresh.ids) == 0
    assert await _count(engine, "message_events", fresh.ids) == 0
    assert await _count(engine, "outbox", fresh.ids) == 0
    # The connection is still usable after a statement error.
    assert len(await repo.accept(direct, [_group()])) == 1


async def test_reconnects_after_the_server_drops_it(engine: AsyncEngine, direct: DirectConnection):
    repo = MessageRepository(engine)
    await repo.accept(direct, [_group()])
    pid = await direct.run(lambda c: c.fetchval("SELECT pg_backend_pid()"))
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    # The terminated connection is noticed (closed socket) or fails once; either way the
    # caller gets an error or success, and the next call works on a new connection.
    second = _group()
    try:
        await repo.accept(direct, [second])
    except StoreUnavailable:
        await repo.accept(direct, [second])
    assert await _count(engine, "messages", second.ids) == 1
    assert await direct.run(lambda c: c.fetchval("SELECT pg_backend_pid()")) != pid


async def test_unreachable_server_raises_a_connection_error():
    conn = DirectConnection("postgresql://postgres@127.0.0.1:1/nothing", connect_timeout=2)
    with pytest.raises(StoreUnavailable):
        await conn.run(lambda c: c.fetchval("SELECT 1"))
    await conn.close()


async def test_outbox_deletes_are_planned_with_their_real_array(engine: AsyncEngine):
    """A generic plan (costed for 10 ids, made while the outbox was small) would be a
    sequential scan of the whole outbox for every 1,000 confirmed jobs; the dispatcher's
    connections plan each delete with its array, which is an index scan (bench_api:
    PostgreSQL's CPU a recipient 50 → 23 µs)."""
    repo = MessageRepository(engine)
    conn = repo.direct_for_deletes()
    try:
        assert await conn.run(lambda c: c.fetchval("SHOW plan_cache_mode")) == "force_custom_plan"
        assert await conn.run(lambda c: c.fetchval("SHOW application_name")) == "smsgw"
    finally:
        await conn.close()
