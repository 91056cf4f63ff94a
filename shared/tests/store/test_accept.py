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
from smsgw_shared.store.repos.messages import MessageRepository


def _row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "batch_id": uuid.uuid4(),
        "api_key_id": None,
        "to_number": "+79160001234",
        "sender": None,
        "text": "hi",
        "encoding": "gsm7",
        "parts_count": 1,
        "route": "smpp:b1",
        "status": "queued",
        "flash": False,
        "dlr": True,
        "validity": None,
        "reference": None,
        "status_callback": None,
        "job_id": uuid.uuid4(),
        "send_at": None,
        "expires_at": None,
    }
    row.update(over)
    return row


def _job(message_id: uuid.UUID) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "exchange": "smsgw-test-none",
        "routing_key": "k",
        "body": f'{{"m": "{message_id}"}}',
        "available_at": datetime.now(UTC) + timedelta(days=1),
    }


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


async def test_rows_events_and_jobs_in_job_order(engine: AsyncEngine, direct: DirectConnection):
    repo = MessageRepository(engine)
    rows = [_row(to_number=f"+7916000{i:04d}", reference=f"r{i}") for i in range(50)]
    # Jobs in another order than the rows: the ids must follow the jobs.
    jobs = [_job(r["id"]) for r in reversed(rows)]
    ids = await repo.accept(direct, rows, jobs)
    assert len(ids) == 50
    async with engine.connect() as conn:
        res = await conn.execute(
            text("SELECT id, message_id FROM outbox WHERE id = ANY(:ids)"), {"ids": ids}
        )
        by_id = {r.id: r.message_id for r in res}
    assert [by_id[i] for i in ids] == [j["message_id"] for j in jobs]
    mids = [r["id"] for r in rows]
    assert await _count(engine, "messages", mids) == 50
    assert await _count(engine, "message_events", mids) == 50

    await repo.delete_outbox(direct, ids[:10])
    assert await _count(engine, "outbox", mids) == 40


async def test_scheduled_rows_without_jobs(engine: AsyncEngine, direct: DirectConnection):
    repo = MessageRepository(engine)
    row = _row(status="scheduled", send_at=datetime.now(UTC) + timedelta(hours=1))
    assert await repo.accept(direct, [row], []) == []
    assert await _count(engine, "messages", [row["id"]]) == 1
    assert await repo.accept(direct, [], []) == []


async def test_all_or_nothing(engine: AsyncEngine, direct: DirectConnection):
    """A row that violates a constraint fails the whole batch: no message, event or job of
    it is left behind (nothing half-accepted that the caller was told failed)."""
    repo = MessageRepository(engine)
    good = _row()
    await repo.accept(direct, [good], [_job(good["id"])])
    fresh = _row()
    dup = _row(id=good["id"])  # primary key taken
    with pytest.raises(asyncpg.UniqueViolationError):
        await repo.accept(direct, [fresh, dup], [_job(fresh["id"]), _job(dup["id"])])
    assert await _count(engine, "messages", [fresh["id"]]) == 0
    assert await _count(engine, "message_events", [fresh["id"]]) == 0
    assert await _count(engine, "outbox", [fresh["id"]]) == 0
    # The connection is still usable after a statement error.
    again = _row()
    assert len(await repo.accept(direct, [again], [_job(again["id"])])) == 1


async def test_reconnects_after_the_server_drops_it(engine: AsyncEngine, direct: DirectConnection):
    repo = MessageRepository(engine)
    first = _row()
    await repo.accept(direct, [first], [_job(first["id"])])
    pid = await direct.run(lambda c: c.fetchval("SELECT pg_backend_pid()"))
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    # The terminated connection is noticed (closed socket) or fails once; either way the
    # caller gets an error or success, and the next call works on a new connection.
    second = _row()
    try:
        await repo.accept(direct, [second], [_job(second["id"])])
    except StoreUnavailable:
        await repo.accept(direct, [second], [_job(second["id"])])
    assert await _count(engine, "messages", [second["id"]]) == 1
    assert await direct.run(lambda c: c.fetchval("SELECT pg_backend_pid()")) != pid


async def test_unreachable_server_raises_a_connection_error():
    conn = DirectConnection("postgresql://postgres@127.0.0.1:1/nothing", connect_timeout=2)
    with pytest.raises(StoreUnavailable):
        await conn.run(lambda c: c.fetchval("SELECT 1"))
    await conn.close()
