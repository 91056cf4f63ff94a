"""Migrations run up and down on an empty database; `migrate` creates the database."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlparse

import asyncpg

from smsgw_shared.store.db import drop_database
from smsgw_shared.store.migrate import downgrade, upgrade


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


def test_up_down_up_on_a_new_database(postgres_url: str):
    url = urlparse(postgres_url)._replace(path=f"/smsgw_mig_{uuid.uuid4().hex[:8]}").geturl()
    try:
        upgrade(url)  # creates the database too
        tables = asyncio.run(_tables(url))
        assert {
            "messages",
            "message_parts",
            "outbox",
            "api_keys",
            "webhooks",
            "webhook_deliveries",
            "inbound_messages",
            "event_log",
        } <= tables
        downgrade(url, "base")
        assert asyncio.run(_tables(url)) == {"alembic_version"}
        upgrade(url)
        upgrade(url)  # idempotent
        assert "messages" in asyncio.run(_tables(url))
    finally:
        asyncio.run(drop_database(url))


async def _bodyless_job(url: str) -> str:
    """One queued message and its body-less outbox job; returns the message id."""
    conn = await asyncpg.connect(url)
    try:
        mid = uuid.uuid4()
        await conn.execute(
            """INSERT INTO messages (id, batch_id, to_number, sender, text, encoding,
                   parts_count, route, status, job_id, reference)
               VALUES ($1, $2, '+79160001234', 'Shop', 'héllo "q"', 'ucs2', 1, 'modem:*',
                   'queued', $3, 'r-1')""",
            mid,
            uuid.uuid4(),
            uuid.uuid4(),
        )
        await conn.execute(
            "INSERT INTO outbox (message_id, exchange, routing_key) VALUES ($1, 'x', 'k')", mid
        )
        return str(mid)
    finally:
        await conn.close()


async def _outbox_bodies(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r["body"] for r in await conn.fetch("SELECT body FROM outbox")]
    finally:
        await conn.close()


def test_downgrading_0004_gives_bodyless_jobs_their_body(postgres_url: str):
    from smsgw_shared.messages import SendJob

    url = urlparse(postgres_url)._replace(path=f"/smsgw_mig_{uuid.uuid4().hex[:8]}").geturl()
    try:
        upgrade(url)
        mid = asyncio.run(_bodyless_job(url))
        downgrade(url, "0003_deliveries_by_url")
        [body] = asyncio.run(_outbox_bodies(url))
        job = SendJob.from_bytes(body)
        assert (job.message_id, job.to, job.sender, job.text) == (
            mid,
            "+79160001234",
            "Shop",
            'héllo "q"',
        )
        assert (job.encoding, job.route, job.reference, job.dlr) == ("ucs2", "modem:*", "r-1", True)
        upgrade(url)
    finally:
        asyncio.run(drop_database(url))
