"""Migration 0009: history lines get `reported_at`; down and up again with rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from urllib.parse import urlparse

import asyncpg

from smsgw_shared.store.db import drop_database
from smsgw_shared.store.migrate import downgrade, upgrade

DONE = datetime(2026, 3, 1, 12, 34, tzinfo=UTC)


async def _message(url: str) -> uuid.UUID:
    mid = uuid.uuid4()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO messages (id, batch_id, to_number, text, encoding, parts_count,
                   route, status, job_id) VALUES ($1, $1, '+79160001234', 'x', 'gsm7', 1,
                   'smpp:b1', 'queued', $1)""",
            mid,
        )
        await conn.execute(
            "INSERT INTO message_events (message_id, state, source) VALUES ($1, 'queued', 'api')",
            mid,
        )
        return mid
    finally:
        await conn.close()


async def _columns(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
            "message_events",
        )
        return {r["column_name"] for r in rows}
    finally:
        await conn.close()


async def _reported(url: str, mid: uuid.UUID, done: datetime | None) -> list[object]:
    conn = await asyncpg.connect(url)
    try:
        if done is not None:
            await conn.execute(
                """INSERT INTO message_events (message_id, state, source, reported_at)
                   VALUES ($1, 'delivered', 'smpp:b1', $2)""",
                mid,
                done,
            )
        rows = await conn.fetch(
            "SELECT reported_at FROM message_events WHERE message_id = $1 ORDER BY id", mid
        )
        return [r["reported_at"] for r in rows]
    finally:
        await conn.close()


def test_reported_at_down_to_0008_and_back(postgres_url: str) -> None:
    url = urlparse(postgres_url)._replace(path=f"/smsgw_mig_{uuid.uuid4().hex[:8]}").geturl()
    try:
        upgrade(url)
        mid = asyncio.run(_message(url))
        assert asyncio.run(_reported(url, mid, DONE)) == [None, DONE]
        downgrade(url, "0008_inbound_encoding_names")
        assert "reported_at" not in asyncio.run(_columns(url))
        upgrade(url)
        # The lines are kept; the times their reports gave went with the column.
        assert asyncio.run(_reported(url, mid, None)) == [None, None]
    finally:
        asyncio.run(drop_database(url))
