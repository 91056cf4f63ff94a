"""The URL guard at delivery time: subscriptions and status callbacks stored before a range
was refused (or while `allow_private` was on) are refused at their first attempt, without a
request, and dead at once (never retried)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.config import Settings, WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.store.schema import webhook_deliveries
from smsgw_shared.testing.helpers import wait_for

from .conftest import clear_webhooks

STORED = [
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
    "http://[::7f00:1]/hook",  # IPv4-compatible
    "http://[fec0::1]/hook",  # site-local
    "http://100.64.0.1/hook",  # CGNAT
    "http://a..b/hook",  # malformed
]


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[WebhookRepository]:
    await clear_webhooks(engine)
    yield WebhookRepository(engine)
    await clear_webhooks(engine)


async def test_stored_urls_refused_at_delivery(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    for url in STORED[:3]:
        await repo.create(url=url, events=["message.received"])
    received = LogEvent(
        stable_id("guard", uuid.uuid4()), "message.received", {"text": "hi"}, utcnow()
    )
    callbacks = [
        LogEvent(
            stable_id("guard", uuid.uuid4()),
            "message.status",
            {"status": "sent"},
            utcnow(),
            callback_url=url,
        )
        for url in STORED[3:]
    ]
    async with engine.begin() as conn:
        await record_events(conn, [received, *callbacks])
    cfg = WebhooksConfig.model_validate(
        settings.webhooks.model_dump()
        | {"allow_private": False, "poll_interval": 0.05, "timeout": 2.0, "retry_schedule": [0.1]}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(repo, cfg).run(stop))

    async def rows() -> list[dict[str, object]]:
        async with engine.connect() as conn:
            res = await conn.execute(select(webhook_deliveries))
            return [dict(r._mapping) for r in res]

    async def all_dead() -> bool:
        got = await rows()
        return len(got) == len(STORED) and all(r["status"] == "dead" for r in got)

    try:
        await wait_for(all_dead, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    for r in await rows():
        assert r["attempts"] == 1, r  # refused, not retried
        assert str(r["last_error"]).startswith("refused"), r
