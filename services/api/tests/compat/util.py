"""Helpers for the compat tests: keys with chosen secrets, a stand-in for the workers.

These tests fake the workers and the projection (`set_status`, `fake_modem`: raw SQL) and
the event log (`log_event`: a hand-made envelope), so they check formats and error codes
cheaply but not what the compat APIs report after a real send and receipt: that is
tests/e2e/test_compat_pipeline.py, which runs each compat API through the real pipeline
(API, workers, simulators, inbound service).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import insert, text

from smsgw_api.deps import AppState
from smsgw_shared.store.repos.keys import ApiKey
from smsgw_shared.store.schema import event_log


async def seed_key(
    state: AppState, name: str, secret: str, scopes: tuple[str, ...] = ("send", "read"), **kw: Any
) -> ApiKey:
    """A key with the seed's own login and password/token (the keys API picks secrets).

    The test database lives for the whole run, so a key made by an earlier test is reused."""
    existing = await state.keys.by_secret(secret)
    if existing is not None:
        return existing
    key, _ = await state.keys.create(name, list(scopes), secret=secret, **kw)
    return key


async def fresh_key(state: AppState, **kw: Any) -> tuple[ApiKey, str]:
    """A new key of its own (name, secret): for tests that look at what one key sent."""
    name = "c" + uuid.uuid4().hex[:10]
    secret = "s" + uuid.uuid4().hex
    return await seed_key(state, name, secret, **kw), secret


async def set_status(state: AppState, message_id: str, status: str) -> None:
    """What the inbound projection does when a worker reports (sent_at/done_at too)."""
    async with state.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE messages SET status = :s, updated_at = now(),"
                " sent_at = CASE WHEN :sent THEN coalesce(sent_at, now()) ELSE sent_at END,"
                " done_at = CASE WHEN :done THEN now() ELSE done_at END"
                " WHERE id = :id"
            ),
            {
                "s": status,
                "sent": status in {"sent", "delivered", "undelivered"},
                "done": status in {"delivered", "undelivered", "failed", "expired", "rejected"},
                "id": uuid.UUID(message_id),
            },
        )
        await conn.execute(
            text(
                "INSERT INTO message_events (message_id, state, source)"
                " VALUES (:id, :s, 'test-worker')"
            ),
            {"s": status, "id": uuid.UUID(message_id)},
        )


@contextlib.asynccontextmanager
async def fake_modem(state: AppState, outcome: str = "sent") -> AsyncIterator[list[str]]:
    """Moves every message queued from now on to `outcome` a moment after it is stored
    (the test database lives for the whole run: older messages are left alone)."""
    done: list[str] = []
    async with state.engine.connect() as conn:
        start = (await conn.execute(text("SELECT now()"))).scalar_one()

    async def run() -> None:
        while True:
            async with state.engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT id FROM messages WHERE status = 'queued' AND created_at >= :t"),
                    {"t": start},
                )
                ids = [str(r[0]) for r in rows]
            for mid in ids:
                await set_status(state, mid, outcome)
                done.append(mid)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(run())
    try:
        yield done
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def log_event(
    state: AppState,
    type_: str,
    data: dict[str, Any],
    message_id: str | None = None,
    api_key_id: uuid.UUID | None = None,
) -> None:
    """An event as the inbound service logs it for live streams (the webhook envelope)."""
    event_id = "evt_" + uuid.uuid4().hex
    if message_id:
        data = {"message_id": message_id} | data
    envelope = {"id": event_id, "type": type_, "timestamp": "2024-01-01T00:00:00Z", "data": data}
    async with state.engine.begin() as conn:
        await conn.execute(
            insert(event_log).values(
                event_id=event_id,
                type=type_,
                message_id=uuid.UUID(message_id) if message_id else None,
                api_key_id=api_key_id,
                payload=envelope,
            )
        )
