"""Migrations 0006 and 0008: inbound numbers of any length, `raw_hex`, encoding names of
nine characters; down and up again with rows."""

from __future__ import annotations

import asyncio
import random
import uuid
from urllib.parse import urlparse

import asyncpg

from smsgw_shared.store.db import drop_database
from smsgw_shared.store.migrate import downgrade, upgrade

# Random digits: over a btree entry's 2704 bytes even after PostgreSQL compresses it.
LONG = "+" + "".join(random.choices("0123456789", k=3000))


async def _insert(url: str, sender: str, raw_hex: str | None, encoding: str = "ucs2") -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO inbound_messages (id, route, sender, recipient, text, encoding,
                   raw_hex) VALUES ($1, 'smpp:b1', $2, $2, 'x', $4, $3)""",
            uuid.uuid4(),
            sender,
            raw_hex,
            encoding,
        )
        await conn.execute(
            """INSERT INTO inbound_parts (route, sender, recipient, ref, ref_bits, total, seq,
                   text, encoding, event_id, raw_hex)
               VALUES ('smpp:b1', $1, $1, 1, 8, 2, 1, 'x', 'ucs2', $2, $3)""",
            sender,
            uuid.uuid4().hex,
            raw_hex,
        )
    finally:
        await conn.close()


async def _senders(url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT sender, encoding FROM inbound_messages ORDER BY length(sender)"
        )
        return [(r["sender"], r["encoding"]) for r in rows]
    finally:
        await conn.close()


def test_long_numbers_down_to_0005_and_back(postgres_url: str) -> None:
    url = urlparse(postgres_url)._replace(path=f"/smsgw_mig_{uuid.uuid4().hex[:8]}").geturl()
    try:
        upgrade(url)
        asyncio.run(_insert(url, LONG, "0000"))
        asyncio.run(_insert(url, "+79160001234", None, "iso8859-5"))
        downgrade(url, "0005_key_routes")
        assert asyncio.run(_senders(url)) == [("+79160001234", "iso8859-"), (LONG[:32], "ucs2")]
        upgrade(url)
        asyncio.run(_insert(url, LONG + "9", "0000"))
        assert len(asyncio.run(_senders(url))) == 3
    finally:
        asyncio.run(drop_database(url))
