"""Webhook delivery caps: never more than `webhooks.concurrency_total` requests in flight,
nor more than `webhooks.concurrency_per_host` to one host however many URLs it has (counted
by a slow receiver); the claim respects a host's room without starving the others; the
dispatcher forgets endpoints and hosts it has nothing in hand for."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from smsgw_inbound.dispatcher import Dispatcher
from smsgw_inbound.events import LogEvent, record_events, stable_id
from smsgw_shared.config import Settings, WebhooksConfig
from smsgw_shared.messages import utcnow
from smsgw_shared.store.repos.webhooks import WebhookRepository, host_key
from smsgw_shared.store.schema import webhook_deliveries
from smsgw_shared.testing.helpers import free_port, wait_for

from .conftest import clear_webhooks


@dataclass
class CountingReceiver:
    """A slow HTTP receiver that counts the requests it is serving at once."""

    host: str
    port: int
    delay: float = 0.2
    received: int = 0
    in_flight: int = 0
    peak: int = 0
    paths: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path}"

    async def handler(self, request: web.Request) -> web.Response:
        await request.read()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.received += 1
        self.paths.add(request.path_qs)
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def counting_receiver(host: str = "127.0.0.1") -> AsyncIterator[CountingReceiver]:
    rec = CountingReceiver(host, free_port())
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", rec.port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()


def config(settings: Settings, **kw: object) -> WebhooksConfig:
    base = settings.webhooks.model_dump() | {"poll_interval": 0.05, "timeout": 5.0}
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


async def status_callbacks(engine: AsyncEngine, urls: list[str]) -> None:
    """One message.status event per URL, each with that URL as its status_callback."""
    now = utcnow()
    events = [
        LogEvent(
            event_id=stable_id("caps", uuid.uuid4()),
            type="message.status",
            data={"status": "sent", "n": i},
            created_at=now,
            callback_url=url,
        )
        for i, url in enumerate(urls)
    ]
    async with engine.begin() as conn:
        await record_events(conn, events)


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[WebhookRepository]:
    await clear_webhooks(engine)
    yield WebhookRepository(engine)
    await clear_webhooks(engine)


async def _true(value: bool) -> bool:
    return value


async def test_total_cap(engine: AsyncEngine, repo: WebhookRepository, settings: Settings) -> None:
    """40 status callbacks to 40 URLs on two hosts: at most 3 requests at once in all."""
    async with counting_receiver("127.0.0.1") as a, counting_receiver("localhost") as b:
        urls = [r.url(f"cb?m={i}") for i in range(20) for r in (a, b)]
        await status_callbacks(engine, urls)
        cfg = config(settings, concurrency_total=3, concurrency_per_host=100)
        peak_total = 0

        async def sample() -> None:
            nonlocal peak_total
            while True:
                peak_total = max(peak_total, a.in_flight + b.in_flight)
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        try:
            async with dispatching(engine, cfg):
                await wait_for(lambda: _true(a.received + b.received == 40), timeout=30)
        finally:
            sampler.cancel()
    assert len(a.paths | b.paths) == 20  # every URL (the two hosts share paths)
    assert 1 < peak_total <= 3, peak_total
    assert a.peak <= 3 and b.peak <= 3


async def test_per_host_cap(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    """30 URLs on one host (each its own endpoint with 8 slots): at most 2 requests to that
    host at once; another host gets its own 2 meanwhile."""
    async with counting_receiver("127.0.0.1") as a, counting_receiver("localhost") as b:
        urls = [a.url(f"hook/{i}") for i in range(30)] + [b.url(f"hook/{i}") for i in range(6)]
        for url in urls:
            await repo.create(url=url, events=["message.received"])
        async with engine.begin() as conn:
            await record_events(
                conn,
                [
                    LogEvent(
                        event_id=stable_id("caps-host", uuid.uuid4()),
                        type="message.received",
                        data={"text": "hi"},
                        created_at=utcnow(),
                    )
                ],
            )
        cfg = config(settings, concurrency_per_host=2, concurrency_per_endpoint=8)
        async with dispatching(engine, cfg):
            await wait_for(lambda: _true(a.received == 30 and b.received == 6), timeout=30)
    assert a.peak == 2 and b.peak == 2, (a.peak, b.peak)


async def test_claim_respects_host_room(engine: AsyncEngine, repo: WebhookRepository) -> None:
    """Host room in the claim: a host with many URLs gets no more than its room in all, a
    full host none, and the other hosts are claimed whatever the URLs' order."""
    base = utcnow() - timedelta(minutes=5)
    # 50 URLs on host a (they sort before host b's), 4 due deliveries each.
    rows = []
    for i in range(50):
        for j in range(4):
            rows.append(_row(f"http://a.invalid/cb?m={i:03}", base + timedelta(seconds=j)))
    for i in range(3):
        rows.append(_row(f"http://b.invalid:8080/cb?m={i}", base))
    async with engine.begin() as conn:
        await conn.execute(insert(webhook_deliveries), rows)
    assert host_key("http://a.invalid/cb?m=001") == "a.invalid"
    assert host_key("http://B.invalid:8080/x") == "b.invalid"
    assert host_key("http://[2001:DB8::1]:80/x") == "[2001:db8::1]"

    # 50 URLs x 4 due on host a, room 7 per host: host a gets 7 in all (not 8 per URL).
    got = await repo.claim(20, {}, 8, 60.0, 3600.0, {}, 7)
    hosts = [host_key(c.url) for c in got]
    assert hosts.count("a.invalid") == 7, hosts
    # Host a full: host b's deliveries are claimed, whatever host a's backlog, none of a's.
    got = await repo.claim(20, {}, 8, 60.0, 3600.0, {"a.invalid": 0}, 7)
    assert {host_key(c.url) for c in got} <= {"b.invalid"}
    assert hosts.count("b.invalid") + len(got) == 3
    # Host a with room 5: 5 more of its deliveries.
    got = await repo.claim(500, {}, 8, 60.0, 3600.0, {"a.invalid": 5}, 7)
    assert len(got) == 5 and {host_key(c.url) for c in got} == {"a.invalid"}


def _row(url: str, due: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "webhook_id": None,
        "url": url,
        "event_id": f"ev-{uuid.uuid4()}",
        "event_type": "message.status",
        "payload": "{}",
        "status": "pending",
        "next_attempt_at": due,
    }


async def test_idle_endpoints_evicted(
    engine: AsyncEngine, repo: WebhookRepository, settings: Settings
) -> None:
    """Status callbacks to 60 distinct URLs: once they are delivered the dispatcher holds no
    state for any of them (the map grew, then shrank to nothing)."""
    async with counting_receiver() as rec:
        rec.delay = 0.05
        await status_callbacks(engine, [rec.url(f"cb?m={i}") for i in range(60)])
        async with dispatching(engine, config(settings)) as d:
            seen = 0

            async def all_delivered() -> bool:
                nonlocal seen
                seen = max(seen, len(d.endpoints))
                return rec.received == 60

            await wait_for(all_delivered, timeout=30)
            await wait_for(lambda: _true(not d.endpoints and not d.hosts), timeout=5)
            assert seen > 1  # there was per-endpoint state while delivering


def _rows_read(plan: dict[str, Any]) -> Iterator[int]:
    """Rows of webhook_deliveries each scan of an EXPLAIN ANALYZE plan returned or dropped."""
    if plan.get("Relation Name") == "webhook_deliveries":
        dropped = plan.get("Rows Removed by Filter", 0) + plan.get(
            "Rows Removed by Index Recheck", 0
        )
        yield (plan["Actual Rows"] + dropped) * plan["Actual Loops"]
    for sub in plan.get("Plans", ()):
        yield from _rows_read(sub)


async def test_claim_never_reads_a_full_hosts_backlog(
    engine: AsyncEngine, repo: WebhookRepository
) -> None:
    """A full host with 3,000 due deliveries on 30 URLs (sorting before a healthy host's):
    the claim's statement, run again under EXPLAIN ANALYZE, reads the healthy host's rows
    and one index probe per URL, none of the full host's backlog."""
    base = utcnow() - timedelta(hours=1)
    rows = [
        _row(f"http://a-full.invalid/cb?m={i:02}", base + timedelta(milliseconds=j))
        for i in range(30)
        for j in range(100)
    ]
    rows += [_row("http://b-ok.invalid/hook", base + timedelta(seconds=j)) for j in range(300)]
    async with engine.begin() as conn:
        await conn.execute(insert(webhook_deliveries), rows)
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE webhook_deliveries"))
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, *_: Any) -> None:
        if "LATERAL" in stmt:
            captured.append((stmt, params))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        got = await repo.claim(500, {}, 100, 60.0, 3600.0, {"a-full.invalid": 0}, 100)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(got) == 100 and {c.url for c in got} == {"http://b-ok.invalid/hook"}
    [(stmt, params)] = captured
    async with engine.connect() as conn:  # rolled back: the rows it locks are not claimed
        res = await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + stmt, params)
        plan = res.scalar_one()[0]["Plan"]
    # 100 rows of the healthy host, the skip scan's probes (31 URLs), a few more.
    assert sum(_rows_read(plan)) <= 100 + 2 * 31 + 5
