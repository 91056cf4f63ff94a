"""The projection's lookups are planned as index scans on a young gateway's small tables.

PostgreSQL 15 costs a lookup of some hundred keys on a table of a few thousand rows as a
sequential scan (seen up to 30k rows), and then reads every row of it once per batch
(measured: the lookups of batches of 120 events over 20k messages took PostgreSQL 90 µs an
event instead of 66). `ProjectionRepository.index_plans` turns sequential scans off for
the projection's lookups and back on for its writes and webhook lookups."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsgw_inbound import projection
from smsgw_inbound.events import record_events
from smsgw_inbound.projection import APPLIED, Projector
from smsgw_shared.messages import PartRef, StatusEvent, utcnow
from smsgw_shared.store.direct import driver_of
from smsgw_shared.store.repos.projection import (
    APPLIED_EVENTS,
    LOAD_PARTS,
    MESSAGES_FOR_KEYS,
    ProjectionRepository,
)
from smsgw_shared.store.repos.webhooks import WebhookRepository

from .conftest import add_message

ROWS = 5000


async def _fill(engine: AsyncEngine) -> tuple[list[uuid.UUID], list[str]]:
    """Parts and history of ROWS messages (the engine's database is shared by the module's
    tests: every fill has rows of its own); a batch's worth of their ids and provider ids."""
    salt = uuid.uuid4().hex
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO message_parts (message_id, idx, route, provider_id, status) "
                "SELECT md5(:salt || i)::uuid, 1, 'smpp:b1', :salt || i, 'sent' "
                "FROM generate_series(1, :n) AS i"
            ),
            {"n": ROWS, "salt": salt},
        )
        await conn.execute(
            text(
                "INSERT INTO message_events (message_id, state, source, source_event_id) "
                "SELECT md5(:salt || i)::uuid, s, 'smpp:b1', 'evt_' || s || i "
                "FROM generate_series(1, :n) AS i, unnest(ARRAY['queued', 'sent']) AS s"
            ),
            {"n": ROWS, "salt": salt},
        )
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE message_parts, message_events"))
    batch = range(1, ROWS, 40)  # 125 messages: a batch's worth
    ids = [uuid.UUID(hashlib.md5(f"{salt}{i}".encode()).hexdigest()) for i in batch]
    return ids, [f"{salt}{i}" for i in batch]


async def _plans(conn: AsyncConnection, ids: list[uuid.UUID], keys: list[str]) -> str:
    pg = await driver_of(conn)
    plans = [
        await pg.fetch("EXPLAIN " + LOAD_PARTS, ids),
        await pg.fetch("EXPLAIN " + APPLIED_EVENTS, ids, [f"evt_sent{i}" for i in range(125)]),
        await pg.fetch(
            "EXPLAIN " + MESSAGES_FOR_KEYS,
            ["smpp:b1"] * len(keys),
            keys,
            utcnow() - timedelta(days=7),
        ),
    ]
    return "\n".join(r[0] for rows in plans for r in rows)


async def test_lookups_use_the_indexes_of_small_tables(engine: AsyncEngine):
    ids, keys = await _fill(engine)
    async with engine.begin() as conn, ProjectionRepository.index_plans(conn):
        plans = await _plans(conn, ids, keys)
    assert "Seq Scan" not in plans, plans
    assert "message_parts" in plans and "message_events" in plans


async def test_only_the_lookups_are_planned_without_scans(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
):
    """The webhook subscriptions' query has no index to use and no parameters: planned
    while scans are off its cached plan would keep the 10^10 penalty (and JIT for it, some
    90 ms a run) on the pooled connection after the transaction."""
    await WebhookRepository(engine).create(url="https://hooks.example/x", events=["message.status"])
    seen: list[tuple[str, str]] = []

    async def observed(conn: AsyncConnection, events: Any) -> None:
        pg = await driver_of(conn)
        seen.append((await pg.fetchval("SHOW enable_seqscan"), await pg.fetchval("SHOW jit")))
        await record_events(conn, events)

    monkeypatch.setattr(projection, "record_events", observed)
    mid = await add_message(engine)
    res = await Projector(engine, 86400).apply_batch(
        [
            StatusEvent(
                message_id=str(mid),
                state="sent",
                route="smpp:b1",
                parts=[PartRef(index=1, provider_id=uuid.uuid4().hex)],
            )
        ]
    )
    assert res == [APPLIED]
    assert seen == [("on", "off")]
    async with engine.connect() as conn:  # and nothing of it outlives the transaction
        pg = await driver_of(conn)
        assert await pg.fetchval("SHOW enable_seqscan") == "on"
