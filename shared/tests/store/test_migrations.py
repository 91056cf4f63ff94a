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
