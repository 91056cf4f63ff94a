"""Webhook delivery to a real local HTTP receiver: signatures, retries, dead letters,
redelivery, SSRF refusal, a hanging endpoint next to a healthy one."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.config import Settings, WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.webhooks import WebhookRepository
from smsgw_shared.testing.helpers import wait_for
from smsgw_shared.urlguard import UrlRefused, check_url

from .conftest import clear_webhooks, http_receiver


def config(settings: Settings, **kw: object) -> WebhooksConfig:
    base = settings.webhooks.model_dump() | {"poll_interval": 0.05, "timeout": 2.0}
    return WebhooksConfig.model_validate(base | kw)


@contextlib.asynccontextmanager
async def dispatching(engine: AsyncEngine, cfg: WebhooksConfig) -> AsyncIterator[Dispatcher]:
    stop = asyncio.Event()
    d = Dispatcher(WebhookRepository(engine), cfg)
    task = asyncio.create_task(d.run(stop))
    try:
        yield d
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def emit(engine: AsyncEngine, n: int = 1, to: str = "+79160001234") -> list[str]:
    """Log `n` received-message events (they fan out to the subscriptions)."""
    now = utcnow()
    events = [
        LogEvent(
            event_id=stable_id("test", uuid.uuid4()),
            type="message.received",
            data={"id": str(uuid.uuid4()), "from": "+79990001122", "to": to, "text": f"hi {i}"},
            created_at=now,
            route="modem:m1",
        )
        for i in range(n)
    ]
    async with engine.begin() as conn:
        await record_events(conn, events)
    return [e.event_id for e in events]


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[WebhookRepository]:
    await clear_webhooks(engine)
    yield WebhookRepository(engine)
    await clear_webhooks(engine)


async def test_signed_per_standard_webhooks(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    async with http_receiver() as rec:
        hook, secret = await repo.create(url=rec.url, events=["message.received"])
        assert secret.startswith("whsec_")
        ids = await emit(engine)
        async with dispatching(engine, config(settings)):
            await wait_for(lambda: _async(len(rec.received) == 1))
        got = rec.received[0]
        payload = Webhook(secret).verify(got["body"], got["headers"])
        assert payload["id"] == ids[0] == got["headers"]["webhook-id"]
        assert payload["type"] == "message.received" and payload["data"]["text"] == "hi 0"
        # After a rotation both secrets sign (receivers switch over at their pace).
        new_secret = await repo.rotate(hook["id"])
        assert new_secret and new_secret != secret
        await emit(engine)
        async with dispatching(engine, config(settings)):
            await wait_for(lambda: _async(len(rec.received) == 2))
        got = rec.received[1]
        assert len(got["headers"]["webhook-signature"].split(" ")) == 2
        Webhook(secret).verify(got["body"], got["headers"])
        Webhook(new_secret).verify(got["body"], got["headers"])
        rows = await repo.deliveries(hook["id"], 10)
        assert {r["status"] for r in rows} == {"succeeded"}
        assert all(len(r["attempts_detail"]) == 1 for r in rows)


async def test_retry_schedule_then_success(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    async with http_receiver(respond=lambda n: 500 if n < 2 else 204) as rec:
        hook, _ = await repo.create(url=rec.url, events=["*"])
        await emit(engine)
        async with dispatching(engine, config(settings, retry_schedule=[0.2, 0.4, 5.0])):
            await wait_for(lambda: _async(len(rec.received) == 3), timeout=10)
            await wait_for(lambda: _delivery_status(repo, hook["id"], "succeeded"))
        times = [
            r["attempted_at"] for r in (await repo.deliveries(hook["id"], 1))[0]["attempts_detail"]
        ]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert 0.15 <= gaps[0] < 0.6 and 0.3 <= gaps[1] < 0.9  # 0.2 s, 0.4 s ± jitter (+poll)
        row = (await repo.deliveries(hook["id"], 1))[0]
        assert row["attempts"] == 3 and row["last_status_code"] == 204
        assert [a["status_code"] for a in row["attempts_detail"]] == [500, 500, 204]
        assert len({r["headers"]["webhook-id"] for r in rec.received}) == 1  # same id each time


async def test_dead_letter_then_manual_redelivery(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    answers = {"code": 503}
    async with http_receiver(respond=lambda n: answers["code"]) as rec:
        hook, _ = await repo.create(url=rec.url, events=["message.received"])
        await emit(engine)
        async with dispatching(engine, config(settings, retry_schedule=[0.1, 0.1])):
            await wait_for(lambda: _delivery_status(repo, hook["id"], "dead"), timeout=10)
            assert len(rec.received) == 3
            row = (await repo.deliveries(hook["id"], 1))[0]
            assert row["last_error"] == "HTTP 503" and len(row["attempts_detail"]) == 3
            answers["code"] = 200
            assert await repo.redeliver(hook["id"], row["id"])
            await wait_for(lambda: _delivery_status(repo, hook["id"], "succeeded"))
        assert len(rec.received) == 4


async def test_ssrf_refused_at_subscription_and_delivery(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://100.64.0.1/x",
        "ftp://example.com/x",
        "http://user:pw@8.8.8.8/x",
    ):
        with pytest.raises(UrlRefused):
            await check_url(url, allow_private=False)
    await check_url("http://8.8.8.8/hook", allow_private=False)
    await check_url("http://127.0.0.1:1/x", allow_private=True)
    async with http_receiver() as rec:
        for url in (rec.url, f"http://localhost:{rec.port}/hook"):
            hook, _ = await repo.create(url=url, events=["*"])  # stored while allowed…
        await emit(engine)
        # …then refused at delivery time, without a request being made.
        async with dispatching(engine, config(settings, allow_private=False)):
            await wait_for(lambda: _all_dead(repo), timeout=10)
        assert rec.received == []
        rows = await repo.deliveries(hook["id"], 5)
        assert rows[0]["last_error"].startswith("refused")


async def test_hanging_endpoint_does_not_delay_others(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    async with http_receiver(hang=30) as slow, http_receiver() as fast:
        await repo.create(url=slow.url, events=["*"])
        fast_hook, _ = await repo.create(url=fast.url, events=["*"])
        await emit(engine, 40)
        started = time.monotonic()
        async with dispatching(engine, config(settings, timeout=5.0, concurrency_per_endpoint=2)):
            await wait_for(lambda: _async(len(fast.received) == 40), timeout=10)
            took = time.monotonic() - started
            # All 40 arrived before the slow endpoint's first attempt even timed out.
            assert took < 5.0, took
            assert len(slow.received) == 2  # its two slots, still hanging
        rows = await repo.deliveries(fast_hook["id"], 100)
        assert len(rows) == 40


async def _async(value: bool) -> bool:
    return value


async def _delivery_status(repo: WebhookRepository, hook_id: uuid.UUID, status: str) -> bool:
    rows = await repo.deliveries(hook_id, 10)
    return bool(rows) and all(r["status"] == status for r in rows)


async def _all_dead(repo: WebhookRepository) -> bool:
    hooks = await repo.list_active(None)
    for h in hooks:
        if not await _delivery_status(repo, h["id"], "dead"):
            return False
    return True
